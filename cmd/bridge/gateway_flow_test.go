package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/emulator/discordemu"
)

// TestVoiceEventsReachEveryHubClientExactlyOnceThroughFaults is the issue's
// scripted run: 200 voice join/leave/move steps in the emulator,
// interleaved with 10 gateway faults, reach each of 50 hub clients exactly
// once and in order. Then an Invalid Session that loses dispatches is
// reconciled from GUILD_CREATE, and a 4004 close stops the bridge for good.
func TestVoiceEventsReachEveryHubClientExactlyOnceThroughFaults(t *testing.T) {
	// One bot: the faults act on it and the counts are its own; the pool
	// tests run several.
	tune := fastTuning()
	tune.demo.Discord.ExtraBots = []discordemu.Bot{}
	// A heartbeat later than 1.5 intervals ends the session with 4009 (as
	// on Discord), which would turn a resume into an identify and lose the
	// events meanwhile; under the race detector on a loaded machine 150 ms
	// stalls happen, so this script, which is about resumes, leaves more room.
	tune.demo.Discord.HeartbeatInterval = 500 * time.Millisecond
	const operator = "operator-token-of-at-least-32-bytes-0123456789"
	ta := startTestApp(t, tune, map[string]string{"SOCKETS_PER_USER": "100", "OPERATOR_TOKEN": operator})
	emu := ta.demo.Discord
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ta.gw.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	// Three more rooms and twenty members who are not in voice yet.
	rooms := []string{ta.demo.Lobby.ID, ta.demo.Table.ID}
	for i := range 3 {
		ch, err := emu.CreateChannel(fmt.Sprintf("room-%d", i), int(discordgo.ChannelTypeGuildVoice), emu.Options().CategoryID)
		if err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, ch.ID)
	}
	var users []string
	for i := range 20 {
		id := fmt.Sprintf("5000000000000000%02d", i)
		emu.AddMember(id, fmt.Sprintf("user%d", i))
		users = append(users, id)
	}
	// Wait until the bridge has seen the rooms, so no client misses them.
	waitUntil(t, ctx, "bridge sees the rooms", func() bool { return len(ta.gw.Rooms()) == len(rooms) })

	token := ta.devToken(t, "watcher")
	clients := make([]*hubClient, 50)
	for i := range clients {
		clients[i] = ta.dialHub(t, token)
	}

	// The script and the events it must produce.
	rng := rand.New(rand.NewPCG(1, 2))
	where := map[string]string{}
	var want []voiceEvent
	move := func(user, to string) {
		if err := emu.SetVoiceState(user, to); err != nil {
			t.Fatal(err)
		}
		if from := where[user]; from != "" {
			want = append(want, voiceEvent{"voice.left", from, user})
		}
		if to != "" {
			want = append(want, voiceEvent{"voice.joined", to, user})
		}
		where[user] = to
	}
	faults := []struct {
		name string
		do   func()
	}{
		{"socket drop", emu.DropConnection},
		{"zombie", func() {
			before := emu.Stats().Connections
			emu.SetHeartbeatACK(false)
			if err := emu.WaitFor(ctx, func(s discordemu.Stats) bool { return s.Connections > before }); err != nil {
				t.Fatal("the bridge did not leave a zombie connection:", err)
			}
			emu.SetHeartbeatACK(true)
		}},
		{"op 7", emu.SendReconnect},
		{"op 9 resumable", func() { emu.SendInvalidSession(true) }},
		{"close 4000", func() { emu.CloseWithCode(4000, "unknown error") }},
	}
	conns := emu.Stats().Connections - 1
	for step := range 200 {
		user := users[rng.IntN(len(users))]
		switch {
		case where[user] == "":
			move(user, rooms[rng.IntN(len(rooms))])
		case rng.IntN(3) == 0:
			to := rooms[rng.IntN(len(rooms))]
			if to == where[user] {
				to = ""
			}
			move(user, to)
		default:
			move(user, "")
		}
		if step%20 == 10 {
			// Each fault hits a live connection: the previous one has
			// been recovered from (while the steps since went on).
			if err := emu.WaitFor(ctx, func(s discordemu.Stats) bool { return s.Connected && s.Connections > conns }); err != nil && step > 10 {
				t.Fatalf("step %d: the bridge did not reconnect after the previous fault: %v", step, err)
			}
			conns = emu.Stats().Connections
			f := faults[(step/20)%len(faults)]
			t.Logf("step %d: %s", step, f.name)
			f.do()
		}
	}
	if err := emu.WaitFor(ctx, func(s discordemu.Stats) bool { return s.Connected && s.Connections > conns }); err != nil {
		t.Fatal("the bridge did not reconnect after the last fault:", err)
	}
	statsBefore := emu.Stats()
	if statsBefore.Identifies != 1 || statsBefore.Resumes < 10 {
		t.Errorf("10 resumable faults caused %d identifies and %d resumes, want 1 and at least 10", statsBefore.Identifies, statsBefore.Resumes)
	}

	for i, c := range clients {
		err := c.waitFor(ctx, func() bool {
			return len(c.voiceEvents(t)) >= len(want) || c.closeErr() != nil
		})
		if err != nil {
			t.Fatalf("client %d: %v; %s", i, err, diffEvents(c.voiceEvents(t), want))
		}
	}
	// A sentinel event after the script: nothing more may arrive before it.
	move(users[0], "")
	move(users[0], rooms[0])
	for i, c := range clients {
		if err := c.waitFor(ctx, func() bool {
			return len(c.voiceEvents(t)) >= len(want) || c.closeErr() != nil
		}); err != nil {
			t.Fatal(err)
		}
		if d := diffEvents(c.voiceEvents(t), want); d != "" {
			t.Fatalf("client %d: %s", i, d)
		}
	}
	t.Logf("%d voice events reached each of %d clients exactly once, in order, through %d reconnects",
		len(want), len(clients), emu.Stats().Connections-1)

	// Invalid Session d:false: dispatches made meanwhile are lost; the
	// bridge re-identifies and reconciles from GUILD_CREATE.
	identifies := emu.Stats().Identifies
	emu.SendInvalidSession(false)
	for _, u := range users[:8] {
		if where[u] == "" {
			_ = emu.SetVoiceState(u, rooms[1])
			where[u] = rooms[1]
		} else {
			_ = emu.SetVoiceState(u, "")
			where[u] = ""
		}
	}
	if err := emu.WaitFor(ctx, func(s discordemu.Stats) bool { return s.Identifies > identifies }); err != nil {
		t.Fatal("no re-identify after op 9 d:false:", err)
	}
	truth := func() map[string]string {
		m := map[string]string{}
		for u, ch := range emu.VoiceStates() {
			if slices.Contains(rooms, ch) {
				m[u] = ch
			}
		}
		return m
	}
	for i, c := range clients {
		err := c.waitFor(ctx, func() bool {
			return mapsEqual(viewFrom(t, c), truth())
		})
		if err != nil {
			t.Fatalf("client %d's view never matched the emulator: %v\nview  %v\ntruth %v", i, err, viewFrom(t, c), truth())
		}
	}
	for _, r := range rooms {
		var got []string
		for _, m := range ta.gw.Members(r) {
			got = append(got, m.UserID)
		}
		var exp []string
		for u, ch := range truth() {
			if ch == r {
				exp = append(exp, u)
			}
		}
		slices.Sort(got)
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			t.Fatalf("room %s members %v, emulator has %v", r, got, exp)
		}
	}

	// 4004: no more reconnects, and /readyz says why; its operator view
	// shows the one bot left the pool.
	emu.CloseWithCode(4004, "Authentication failed.")
	waitUntil(t, ctx, "gateway reports a fatal stop", func() bool { return ta.gw.Status().Fatal })
	var ready struct {
		Reasons  []string
		Operator struct {
			Gateway struct {
				Bots []struct {
					Name   string
					InPool bool
					Reason string
				}
			}
		}
	}
	waitUntil(t, ctx, "/readyz names the failed bot", func() bool {
		req, _ := http.NewRequest(http.MethodGet, ta.base+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+operator)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil {
			t.Fatal(err)
		}
		bots := ready.Operator.Gateway.Bots
		return resp.StatusCode == http.StatusServiceUnavailable && len(bots) == 1 && !bots[0].InPool
	})
	if b := ready.Operator.Gateway.Bots[0]; b.Name != "bot 1" || !strings.Contains(b.Reason, "4004") {
		t.Fatalf("/readyz bot after 4004: %+v", b)
	}
	if len(ready.Reasons) != 1 || !strings.Contains(ready.Reasons[0], "4004") {
		t.Fatalf("/readyz reasons after 4004: %q", ready.Reasons)
	}
	conns = emu.Stats().Connections
	// Absence of a reconnect can only be observed over time: ten times the
	// longest backoff is far more than the bridge would wait.
	time.Sleep(10 * 100 * time.Millisecond)
	if n := emu.Stats().Connections; n != conns {
		t.Fatalf("the bridge reconnected after 4004 (%d connections, was %d)", n, conns)
	}
}

// viewFrom replays a client's voice events into user -> channel, starting
// from the rooms' members at the time the client connected (none of the
// script's users were in voice then; the demo members are left out).
func viewFrom(t testing.TB, c *hubClient) map[string]string {
	m := map[string]string{}
	for _, e := range c.voiceEvents(t) {
		switch e.Event {
		case "voice.joined":
			m[e.UserID] = e.ChannelID
		case "voice.left":
			if m[e.UserID] == e.ChannelID {
				delete(m, e.UserID)
			}
		}
	}
	return m
}

func mapsEqual(a, b map[string]string) bool {
	// Demo members were in voice before any client connected.
	for _, id := range []string{emulator.DemoTalkerID, emulator.DemoCameraID, emulator.DemoEchoID, emulator.DemoTableTalkerID} {
		delete(b, id)
	}
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// waitUntil polls cond (cheap, in-memory state) until it holds.
func waitUntil(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-tick.C:
		}
	}
}

// TestRoomLifecycleOverRESTReachesHubClients: create and end a room over
// REST; every hub client sees room.created then room.deleted; a scripted
// 429 is honoured with exactly one retry; a channel outside the category
// cannot be ended and still exists.
func TestRoomLifecycleOverRESTReachesHubClients(t *testing.T) {
	ta := startTestApp(t, fastTuning(), nil)
	emu := ta.demo.Discord
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ta.gw.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	token := ta.devToken(t, "alice")
	clients := make([]*hubClient, 5)
	for i := range clients {
		clients[i] = ta.dialHub(t, token)
	}

	emu.Script429(http.MethodPost, "/api/v9/guilds/", 200*time.Millisecond, false)
	var room struct {
		ChannelID, Name, GuildID string
		UserLimit                int
	}
	ta.doJSON(t, http.MethodPost, "/api/create-room", token, map[string]any{"name": "standup", "userLimit": 7}, http.StatusCreated, &room)
	if room.Name != "standup" || room.UserLimit != 7 || room.GuildID != emu.Options().GuildID || room.ChannelID == "" {
		t.Fatalf("create-room answer %+v", room)
	}
	ch, ok := emu.Channel(room.ChannelID)
	if !ok || ch.ParentID != emu.Options().CategoryID || ch.Type != discordgo.ChannelTypeGuildVoice || ch.UserLimit != 7 {
		t.Fatalf("emulator channel %+v (exists %v)", ch, ok)
	}
	var creates []int
	for _, c := range emu.RESTCalls() {
		if c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/channels") {
			creates = append(creates, c.Status)
		}
	}
	if !slices.Equal(creates, []int{429, 201}) {
		t.Fatalf("channel create calls answered %v, want one 429 then one retry", creates)
	}

	// Another user without the admin role may not end it; the room stays.
	ta.doJSON(t, http.MethodDelete, "/api/end-room/"+room.ChannelID, ta.devToken(t, "bob"), nil, http.StatusForbidden, nil)
	if _, ok := emu.Channel(room.ChannelID); !ok {
		t.Fatal("a refused end-room deleted the room")
	}
	ta.doJSON(t, http.MethodDelete, "/api/end-room/"+room.ChannelID, token, nil, http.StatusNoContent, nil)
	if _, ok := emu.Channel(room.ChannelID); ok {
		t.Fatal("room still exists after end-room")
	}
	for i, c := range clients {
		err := c.waitFor(ctx, func() bool {
			return slices.Contains(c.eventNames(), "room.deleted")
		})
		if err != nil {
			t.Fatalf("client %d: %v (got %v)", i, err, c.eventNames())
		}
		var got []string
		for _, e := range c.eventNames() {
			if strings.HasPrefix(e, "room.") {
				got = append(got, e)
			}
		}
		if !slices.Equal(got, []string{"room.created", "room.deleted"}) {
			t.Fatalf("client %d got %v", i, got)
		}
	}

	// A channel outside the rooms category cannot be ended.
	other, err := emu.CreateChannel("general-voice", int(discordgo.ChannelTypeGuildVoice), "")
	if err != nil {
		t.Fatal(err)
	}
	var admin struct{ Token string }
	ta.doJSON(t, http.MethodPost, "/api/dev/token", "", map[string]any{"name": "root", "roles": []string{"admin"}}, http.StatusOK, &admin)
	ta.doJSON(t, http.MethodDelete, "/api/end-room/"+other.ID, admin.Token, nil, http.StatusNotFound, nil)
	if _, ok := emu.Channel(other.ID); !ok {
		t.Fatal("end-room deleted a channel outside the rooms category")
	}
	// And nothing happens without a token.
	ta.doJSON(t, http.MethodDelete, "/api/end-room/"+ta.demo.Lobby.ID, "", nil, http.StatusUnauthorized, nil)
	if _, ok := emu.Channel(ta.demo.Lobby.ID); !ok {
		t.Fatal("the Lobby was deleted without a token")
	}
}

// TestGracefulShutdown: hub clients get a close frame, an in-flight REST
// call finishes, and the gateway closes with 1000 so Discord shows the bot
// offline at once.
func TestGracefulShutdown(t *testing.T) {
	cfg, err := loadConfig(nil, envFrom(map[string]string{"LISTEN_ADDR": "127.0.0.1:0", "ICE_UDP_PORT": "0"}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newTunedApp(context.Background(), cfg, slog.New(slog.DiscardHandler), fastTuning())
	if err != nil {
		t.Fatal(err)
	}
	ta := &testApp{app: a, base: "http://" + a.Addr()}
	emu := a.demo.Discord
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.gw.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	token := ta.devToken(t, "bob")
	c := ta.dialHub(t, token)

	// A create-room call held up by a 429 is in flight during shutdown.
	emu.Script429(http.MethodPost, "/api/v9/guilds/", 500*time.Millisecond, false)
	var wg sync.WaitGroup
	status := make(chan int, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		body := strings.NewReader(`{"name":"late","userLimit":0}`)
		req, _ := http.NewRequest(http.MethodPost, ta.base+"/api/create-room", body)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- -1
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	waitUntil(t, ctx, "the create call reached the emulator", func() bool {
		for _, call := range emu.RESTCalls() {
			if call.Status == http.StatusTooManyRequests {
				return true
			}
		}
		return false
	})
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if s := <-status; s != http.StatusCreated {
		t.Fatalf("in-flight create-room answered %d, want 201 (finished before shutdown)", s)
	}
	if err := c.waitFor(ctx, func() bool { return c.closeErr() != nil }); err != nil {
		t.Fatal(err)
	}
	closed := c.closeErr()
	var ce *websocket.CloseError
	if !errors.As(closed, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("hub client closed with %v, want a 1001 close frame", closed)
	}
	conns := emu.Connections()
	last := conns[len(conns)-1]
	if last.CloseCode != websocket.CloseNormalClosure || last.ClosedByServer {
		t.Fatalf("gateway closed with %d (by the server: %v), want the bot's 1000 so Discord shows it offline at once", last.CloseCode, last.ClosedByServer)
	}
}
