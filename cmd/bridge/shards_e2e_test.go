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
		// A bucket's window, half as long again as the emulator's: a loaded
		// machine may send one identify late and the next on time.
		o.IdentifyInterval = 1500 * time.Millisecond
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

// TestReshardAtRuntime: a bot of two guilds runs one shard until Discord
// asks for two (its sessions closed with 4011): the bridge then runs a
// client for each shard, and the guild that moved to the new shard is
// served again without a restart: a room created in it reaches a hub
// socket, once.
func TestReshardAtRuntime(t *testing.T) {
	checkLeaks(t)
	tune := fastTuning()
	tune.demo.Discord.ExtraBots = []discordemu.Bot{} // the primary bot alone
	home := tune.demo.Discord.GuildID
	if home == "" {
		home = "200000000000000001" // the emulator's default
	}
	var moved string
	for k := uint64(1000); moved == ""; k++ {
		if id := strconv.FormatUint(k<<22, 10); gateway.ShardOf(id, 2) != gateway.ShardOf(home, 2) {
			moved = id
		}
	}
	movedCategory := strconv.FormatUint(mustParse(t, moved)+1, 10)
	tune.demo.Discord.Guilds = []discordemu.Guild{{ID: moved, Name: "Moved", CategoryID: movedCategory}}
	ta := startTestApp(t, tune, nil)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	t.Cleanup(cancel)
	if home != ta.demo.Discord.Options().GuildID {
		t.Fatalf("the demo's guild is %s, want %s", ta.demo.Discord.Options().GuildID, home)
	}
	if err := ta.gw.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(ta.bots.allClients()); n != 1 {
		t.Fatalf("%d gateway clients before sharding is required, want 1", n)
	}
	watch := ta.dialHub(t, ta.devTokenFor(t, "ann", []string{home, moved}))
	newVoiceRoomIn(t, ctx, ta, moved, movedCategory, "before")

	ta.demo.Discord.SetShards(2)
	if !ta.demo.Discord.CloseBotWithCode(primaryBotID, 4011, "Sharding required.") {
		t.Fatal("the bot had no connection to close")
	}
	waitUntil(t, ctx, "a client of each of the two shards, each ready", func() bool {
		got := map[[2]int]bool{}
		for _, c := range ta.bots.allClients() {
			if c.Status().State == gateway.StateReady && c.Loaded(ta.bots.homeOf(c)) {
				got[c.Shard()] = true
			}
		}
		return got[[2]int{0, 2}] && got[[2]int{1, 2}]
	})
	id := newVoiceRoomIn(t, ctx, ta, moved, movedCategory, "after")
	if err := watch.waitFor(ctx, func() bool { return roomCreations(t, watch)[id] > 0 }); err != nil {
		t.Fatalf("the room of the guild that moved shard did not reach the socket: %v (%v)", err, watch.eventNames())
	}
	r, ok := ta.bots.room(id)
	if !ok || r.GuildID != moved {
		t.Fatalf("the bridge lists the moved guild's room as %+v, %v", r, ok)
	}
	if c := ta.bots.reporterOf(moved); c == nil || c.Shard() != [2]int{gateway.ShardOf(moved, 2), 2} {
		t.Fatalf("the moved guild is reported by a client of shard %v, want %d of 2", c.Shard(), gateway.ShardOf(moved, 2))
	}
	if n := roomCreations(t, watch)[id]; n != 1 {
		t.Fatalf("the moved guild's room was reported %d times, want once", n)
	}
}

func mustParse(t *testing.T, id string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
