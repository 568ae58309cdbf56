package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

// TestShardsOfABotInManyGuilds (issue 14, test 5): one bot in 3,000
// emulated guilds, sharding required past 1,000 guilds a shard: the bridge
// identifies the three shards GET /gateway/bot asks for, paced by
// max_concurrency 2 (shards 0 and 2 share a bucket, so the emulator, which
// refuses a second identify of a bucket within its interval, sees none
// refused), and every guild's events arrive on the shard that carries it.
func TestShardsOfABotInManyGuilds(t *testing.T) {
	const (
		guilds = 3000
		shards = 3
	)
	checkLeaks(t)
	tune := fastTuning()
	d := &tune.demo.Discord
	d.GuildsPerShard = 1000
	d.MaxConcurrency = 2
	d.IdentifyInterval = time.Second
	// A thousand GUILD_CREATEs a shard take longer than the tests' usual
	// 100 ms heartbeat under the race detector.
	d.HeartbeatInterval = 5 * time.Second
	var extra []discordemu.Guild
	for k := uint64(1000); len(extra) < guilds-1; k++ { // the demo's guild is the 3,000th
		extra = append(extra, discordemu.Guild{ID: strconv.FormatUint(k<<22, 10), CategoryID: strconv.FormatUint(k<<22+1, 10), Bots: []string{primaryBotID}})
	}
	d.Guilds = extra
	fast := tune.gateway
	tune.gateway = func(o *gateway.Options) {
		fast(o)
		o.IdentifyInterval = 1100 * time.Millisecond // a bucket's window, a little over the emulator's
	}
	ta := startTestApp(t, tune, nil)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	t.Cleanup(cancel)

	// The primary bot's clients, one per shard (the demo's second bot,
	// in one guild, runs one).
	var mine []*gateway.Client
	for c := range ta.bots.rooms {
		if err := c.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		if c.Status().BotUserID == primaryBotID {
			mine = append(mine, c)
		}
	}
	if len(mine) != shards {
		t.Fatalf("the bot in %d guilds runs %d gateway clients, want one per shard (%d)", guilds, len(mine), shards)
	}
	identified := map[[2]int]int{}
	for _, f := range ta.demo.Discord.Sent() {
		if f.Op != 2 {
			continue
		}
		var id struct {
			Token string
			Shard []int
		}
		if err := json.Unmarshal(f.Data, &id); err != nil {
			t.Fatal(err)
		}
		if id.Token == ta.demo.Discord.Options().Token && len(id.Shard) == 2 {
			identified[[2]int{id.Shard[0], id.Shard[1]}]++
		}
	}
	// Each shard identified (again only if its session was lost, which
	// a loaded machine may cause), none with another count, and the
	// emulator refused none as too fast for max_concurrency.
	st := ta.demo.Discord.Stats()
	for s := range shards {
		if identified[[2]int{s, shards}] == 0 {
			t.Fatalf("identifies by shard %v, want each of shards 0-2 of 3 (emulator stats %+v)", identified, st)
		}
	}
	if len(identified) != shards {
		t.Fatalf("identifies by shard %v, want only the three of 3", identified)
	}
	if st.IdentifyViolations != 0 {
		t.Fatalf("the emulator refused %d identifies as too fast for max_concurrency (by shard %v)", st.IdentifyViolations, identified)
	}
	t.Logf("identifies by shard %v", identified)

	// A room in every guild: each must reach the bridge on its shard.
	all := append([]discordemu.Guild{{ID: ta.demo.Discord.Options().GuildID, CategoryID: ta.demo.Discord.Options().CategoryID}}, extra...)
	rooms := map[string]string{} // channel -> guild
	for i, g := range all {
		ch, err := ta.demo.Discord.CreateChannelIn(g.ID, fmt.Sprintf("room %d", i), 2, g.CategoryID)
		if err != nil {
			t.Fatal(err)
		}
		rooms[ch.ID] = g.ID
	}
	heardOn := func() map[string]*gateway.Client {
		out := map[string]*gateway.Client{}
		for _, c := range mine {
			for _, r := range c.Rooms() {
				if _, ok := rooms[r.ChannelID]; ok {
					out[r.ChannelID] = c
				}
			}
		}
		return out
	}
	waitUntil(t, ctx, "every guild's room known to the bridge", func() bool { return len(heardOn()) == len(rooms) })
	perShard := map[int]int{}
	for ch, c := range heardOn() {
		want := [2]int{gateway.ShardOf(rooms[ch], shards), shards}
		if got := c.Shard(); got != want {
			t.Fatalf("guild %s's room arrived on shard %v, want %v", rooms[ch], got, want)
		}
		perShard[want[0]]++
	}
	t.Logf("rooms by shard: %v", perShard)
}
