package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/emulator"
	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

// roomCreations counts the room.created events of each channel a hub
// client received.
func roomCreations(t testing.TB, c *hubClient) map[string]int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, e := range c.events {
		if e.Event != gateway.EventRoomCreated {
			continue
		}
		var p struct{ ChannelID string }
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatalf("room.created payload %s: %v", e.Payload, err)
		}
		out[p.ChannelID]++
	}
	return out
}

// TestGuildEventsReportedOnceFromStart: two bots, two guilds, bot 1 only
// in guild A, bot 2 in both, and bot 1's gateway held back at start-up.
// Rooms created in either guild while only bot 2 is connected reach a hub
// socket, and once bot 1 is connected too, every room created before and
// after reaches it exactly once.
func TestGuildEventsReportedOnceFromStart(t *testing.T) {
	checkLeaks(t)
	tune := poolTuning([]discordemu.Bot{{Token: emulator.DemoSecondBotToken, UserID: emulator.DemoSecondBotID}})
	tune.demo.Discord.Guilds = []discordemu.Guild{{ID: guildB, Name: "Guild B", CategoryID: categoryB, Bots: []string{emulator.DemoSecondBotID}}}
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	base := tune.gateway
	tune.gateway = func(o *gateway.Options) {
		base(o)
		if strings.TrimPrefix(o.Token, "Bot ") == emulator.DemoSecondBotToken {
			return
		}
		// Bot 1 connects only once released.
		o.Dialer = &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	}
	ta := startTestApp(t, tune, nil)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	if len(ta.bots.clients) != 2 {
		t.Fatalf("%d gateway clients, want one per bot", len(ta.bots.clients))
	}
	bot1, bot2 := ta.bots.clients[0], ta.bots.clients[1]
	if err := bot2.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	guildA := ta.demo.Discord.Options().GuildID
	watch := ta.dialHub(t, ta.devTokenFor(t, "ann", []string{guildA, guildB}))

	create := func(guild, category, name string) string {
		t.Helper()
		c, err := ta.demo.Discord.CreateChannelIn(guild, name, 2, category)
		if err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	early := []string{create(guildA, ta.demo.Discord.Options().CategoryID, "a-early"), create(guildB, categoryB, "b-early")}
	if err := watch.waitFor(ctx, func() bool {
		n := roomCreations(t, watch)
		return n[early[0]] > 0 && n[early[1]] > 0
	}); err != nil {
		t.Fatalf("rooms created while only bot 2 is connected did not reach the socket: %v (got %v)", err, watch.eventNames())
	}
	if st := bot1.Status().State; st == gateway.StateReady {
		t.Fatalf("bot 1 is %s before it was let connect", st)
	}

	open()
	if err := bot1.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	late := []string{create(guildA, ta.demo.Discord.Options().CategoryID, "a-late"), create(guildB, categoryB, "b-late")}
	if err := watch.waitFor(ctx, func() bool {
		n := roomCreations(t, watch)
		return n[late[0]] > 0 && n[late[1]] > 0
	}); err != nil {
		t.Fatalf("rooms created with both bots connected did not reach the socket: %v (got %v)", err, watch.eventNames())
	}
	// A later event of each guild, which comes behind the rooms above on
	// every bot's gateway: by its arrival any duplicate would be there too.
	last := []string{create(guildA, ta.demo.Discord.Options().CategoryID, "a-last"), create(guildB, categoryB, "b-last")}
	if err := watch.waitFor(ctx, func() bool {
		n := roomCreations(t, watch)
		return n[last[0]] > 0 && n[last[1]] > 0
	}); err != nil {
		t.Fatalf("the last rooms did not reach the socket: %v", err)
	}
	waitUntil(t, ctx, "both bots know guild A's last room", func() bool {
		return hasRoom(bot1.Rooms(), last[0]) && hasRoom(bot2.Rooms(), last[0])
	})
	n := roomCreations(t, watch)
	for _, id := range append(append(early, late...), last...) {
		if n[id] != 1 {
			t.Errorf("room %s was reported %d times, want once (events %v)", id, n[id], watch.eventNames())
		}
	}
}

// hasRoom reports whether rooms lists channelID.
func hasRoom(rooms []gateway.Room, channelID string) bool {
	for _, r := range rooms {
		if r.ChannelID == channelID {
			return true
		}
	}
	return false
}

// TestGuildEventsReportedOnceAcrossReporterFailure: two bots in the guild;
// the one reporting its events is closed with 4004 and a room is created
// at once, which only the other bot sees: the room reaches a hub socket
// exactly once (from the new reporter's catch-up or its own event), and
// so does one created after.
func TestGuildEventsReportedOnceAcrossReporterFailure(t *testing.T) {
	checkLeaks(t)
	tune := poolTuning([]discordemu.Bot{{Token: emulator.DemoSecondBotToken, UserID: emulator.DemoSecondBotID}})
	ta := startTestApp(t, tune, nil)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	for _, c := range ta.bots.allClients() {
		if err := c.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	guild := ta.demo.Discord.Options().GuildID
	category := ta.demo.Discord.Options().CategoryID
	watch := ta.dialHub(t, ta.devToken(t, "ann"))
	first := ta.bots.report.lead(guild)
	if first == nil {
		first = ta.bots.reporterOf(guild)
	}
	if first == nil {
		t.Fatal("no bot reports the guild's events with both ready")
	}
	if !ta.demo.Discord.CloseBotWithCode(first.Status().BotUserID, 4004, "Authentication failed.") {
		t.Fatal("the reporting bot had no connection")
	}
	gap, err := ta.demo.Discord.CreateChannelIn(guild, "in-the-gap", 2, category)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "another bot reports the guild", func() bool {
		c := ta.bots.report.lead(guild)
		return c != nil && c != first
	})
	after, err := ta.demo.Discord.CreateChannelIn(guild, "after", 2, category)
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.waitFor(ctx, func() bool {
		n := roomCreations(t, watch)
		return n[gap.ID] > 0 && n[after.ID] > 0
	}); err != nil {
		t.Fatalf("the rooms did not reach the socket: %v (%v)", err, watch.eventNames())
	}
	n := roomCreations(t, watch)
	if n[gap.ID] != 1 || n[after.ID] != 1 {
		t.Fatalf("rooms reported %d and %d times, want once each (%v)", n[gap.ID], n[after.ID], watch.eventNames())
	}
}
