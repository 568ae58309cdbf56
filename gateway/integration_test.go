package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder collects OnEvent calls and lets a test wait for a count.
type recorder struct {
	mu      sync.Mutex
	events  []gateway.Event
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) on(e gateway.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) snapshot() []gateway.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitN waits until at least n events arrived.
func (r *recorder) waitN(t *testing.T, n int, d time.Duration) []gateway.Event {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got, ch := len(r.events), r.changed
		r.mu.Unlock()
		if got >= n {
			return r.snapshot()
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("got %d events within %v, want %d: %v", got, d, n, describe(r.snapshot()))
		}
	}
}

func describe(evs []gateway.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		switch p := e.Payload.(type) {
		case gateway.VoicePayload:
			out = append(out, fmt.Sprintf("%s %s@%s", e.Name, p.UserID, p.ChannelID))
		case gateway.RoomPayload:
			out = append(out, fmt.Sprintf("%s %s", e.Name, p.ChannelID))
		default:
			out = append(out, e.Name+" ?")
		}
	}
	return out
}

type fixture struct {
	emu    *discordemu.Server
	client *gateway.Client
	rec    *recorder
	hc     *http.Client
}

func start(t *testing.T, eo discordemu.Options, co gateway.Options) *fixture {
	t.Helper()
	emu, err := discordemu.Start(eo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	f := &fixture{emu: emu, rec: newRecorder(), hc: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}}
	t.Cleanup(f.hc.CloseIdleConnections)
	o := emu.Options()
	if co.Token == "" {
		co.Token = o.Token
	}
	co.GuildID, co.CategoryID = o.GuildID, o.CategoryID
	co.APIBase = emu.URL() + "/api/v10"
	co.HTTPClient = f.hc
	co.OnEvent = f.rec.on
	if co.BackoffMin == 0 {
		co.BackoffMin, co.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	}
	if co.InvalidSessionWait == [2]time.Duration{} {
		co.InvalidSessionWait = [2]time.Duration{10 * time.Millisecond, 20 * time.Millisecond}
	}
	if co.IdentifyInterval == 0 {
		co.IdentifyInterval = o.IdentifyInterval
	}
	f.client, err = gateway.New(co)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.client.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.client.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := f.client.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) room(t *testing.T, name string) string {
	t.Helper()
	ch, err := f.emu.CreateChannel(name, 2, f.emu.Options().CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	return ch.ID
}

func waitStats(t *testing.T, emu *discordemu.Server, what string, cond func(discordemu.Stats) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := emu.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v (stats %+v)", what, err, emu.Stats())
	}
}

// TestFaultsDeliverEveryEventOnce runs 200 voice changes interleaved with
// every recoverable fault (socket drop, zombie, op 7, op 9 d:true, close
// 4000). The session survives each, so OnEvent must receive exactly the
// events a perfect observer would, once each, in order.
func TestFaultsDeliverEveryEventOnce(t *testing.T) {
	f := start(t, discordemu.Options{HeartbeatInterval: 300 * time.Millisecond, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	rooms := []string{f.room(t, "a"), f.room(t, "b"), f.room(t, "c")}
	var users []string
	for i := range 8 {
		id := fmt.Sprintf("%d", 500000000000000001+i)
		users = append(users, id)
		f.emu.AddMember(id, "user"+id[len(id)-1:])
	}
	f.open(t)
	initial := f.rec.waitN(t, len(rooms), 5*time.Second)

	var want []string
	seat := map[string]string{}
	rng := rand.New(rand.NewPCG(7, 9))
	faults := []struct {
		name string
		do   func()
	}{
		{"drop", f.emu.DropConnection},
		{"zombie", func() {
			before := f.emu.Stats().Resumes
			f.emu.SetHeartbeatACK(false)
			waitStats(t, f.emu, "resume after zombie", func(s discordemu.Stats) bool { return s.Resumes > before })
			f.emu.SetHeartbeatACK(true)
		}},
		{"op7", f.emu.SendReconnect},
		{"op9-resumable", func() { f.emu.SendInvalidSession(true) }},
		{"close4000", func() { f.emu.CloseWithCode(4000, "unknown error") }},
	}
	resumes := 0
	live := func() {
		waitStats(t, f.emu, "a resumed connection", func(s discordemu.Stats) bool { return s.Connected && s.Resumes >= resumes })
	}
	for step := range 200 {
		if step%40 == 20 {
			// Each fault hits a live connection; the voice changes right
			// after it happen while the client is away.
			live()
			fl := faults[step/40]
			t.Logf("step %d: fault %s", step, fl.name)
			fl.do()
			resumes++
		}
		u := users[rng.IntN(len(users))]
		target := ""
		if rng.IntN(4) != 0 {
			target = rooms[rng.IntN(len(rooms))]
		}
		if old := seat[u]; old != target {
			if old != "" {
				want = append(want, fmt.Sprintf("voice.left %s@%s", u, old))
			}
			if target != "" {
				want = append(want, fmt.Sprintf("voice.joined %s@%s", u, target))
			}
		}
		if target == "" {
			delete(seat, u)
		} else {
			seat[u] = target
		}
		if err := f.emu.SetVoiceState(u, target); err != nil {
			t.Fatal(err)
		}
	}
	live()
	// A sentinel last event: once it arrived, everything before it did,
	// and any duplicate would show in the exact comparison.
	sentinel := users[0]
	if seat[sentinel] != "" {
		want = append(want, fmt.Sprintf("voice.left %s@%s", sentinel, seat[sentinel]))
		delete(seat, sentinel)
		if err := f.emu.SetVoiceState(sentinel, ""); err != nil {
			t.Fatal(err)
		}
	}
	want = append(want, fmt.Sprintf("voice.joined %s@%s", sentinel, rooms[0]))
	seat[sentinel] = rooms[0]
	if err := f.emu.SetVoiceState(sentinel, rooms[0]); err != nil {
		t.Fatal(err)
	}

	got := describe(f.rec.waitN(t, len(initial)+len(want), 20*time.Second)[len(initial):])
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("event %d: got %q, want %q (got %d events, want %d)", i, got[i], want[i], len(got), len(want))
			}
		}
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	if !maps.Equal(f.client.VoiceStates(), f.emu.VoiceStates()) {
		t.Fatalf("client voice states %v, emulator %v", f.client.VoiceStates(), f.emu.VoiceStates())
	}
	for _, ev := range f.rec.snapshot() {
		if p, ok := ev.Payload.(gateway.VoicePayload); ok && p.Username != "user"+p.UserID[len(p.UserID)-1:] {
			t.Fatalf("event %s for %s has username %q", ev.Name, p.UserID, p.Username)
		}
	}
	for _, c := range f.emu.Connections() {
		if !c.ClosedByServer && (c.CloseCode == 1000 || c.CloseCode == 1001) {
			t.Fatalf("connection %d closed by the client with %d, which ends the session", c.ID, c.CloseCode)
		}
	}
	st := f.emu.Stats()
	if st.Identifies != 1 || st.Resumes < len(faults) || st.MisdirectedResumes != 0 || st.IdentifyViolations != 0 {
		t.Fatalf("emulator stats %+v: want 1 identify, >= %d resumes, all on resume_gateway_url", st, len(faults))
	}
	t.Logf("%d events over %d connections, %d resumes; client status %+v", len(want), st.Connections, st.Resumes, f.client.Status())
}

// TestResumeUsesResumeGatewayURL: after a drop the client resumes on READY's
// resume_gateway_url (a different path), with the same query parameters.
func TestResumeUsesResumeGatewayURL(t *testing.T) {
	f := start(t, discordemu.Options{HeartbeatInterval: 300 * time.Millisecond, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	f.emu.DropConnection()
	waitStats(t, f.emu, "resume", func(s discordemu.Stats) bool { return s.Resumes == 1 && s.Connected })
	conns := f.emu.Connections()
	if len(conns) != 2 {
		t.Fatalf("connections %+v", conns)
	}
	wantPath := strings.TrimPrefix(f.emu.ResumeGatewayURL(), "ws://"+strings.TrimPrefix(f.emu.URL(), "http://"))
	if !conns[1].Resumed || conns[1].Path != wantPath || conns[0].Path == wantPath {
		t.Fatalf("resume went to %q (first connection %q), want %q", conns[1].Path, conns[0].Path, wantPath)
	}
	for _, c := range conns {
		if c.Query != "encoding=json&v=10" {
			t.Fatalf("connection %d query %q", c.ID, c.Query)
		}
	}
	if st := f.emu.Stats(); st.MisdirectedResumes != 0 || st.Identifies != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestInvalidSessionReconcile: op 9 d:false forgets the session; changes
// made while the client has none are never dispatched, yet after the new
// Identify the client reports their net effect and matches the emulator.
func TestInvalidSessionReconcile(t *testing.T) {
	f := start(t, discordemu.Options{HeartbeatInterval: 300 * time.Millisecond, IdentifyInterval: time.Nanosecond},
		gateway.Options{InvalidSessionWait: [2]time.Duration{700 * time.Millisecond, 800 * time.Millisecond}})
	a, b := f.room(t, "a"), f.room(t, "b")
	for i := 1; i <= 6; i++ {
		f.emu.AddMember(fmt.Sprint(600000000000000000+i), fmt.Sprint("m", i))
	}
	u := func(i int) string { return fmt.Sprint(600000000000000000 + i) }
	for _, s := range [][2]string{{u(1), a}, {u(2), a}, {u(3), b}} {
		if err := f.emu.SetVoiceState(s[0], s[1]); err != nil {
			t.Fatal(err)
		}
	}
	f.open(t)
	before := f.rec.waitN(t, 5, 5*time.Second) // 2 rooms created, 3 joined (first GUILD_CREATE)

	f.emu.SendInvalidSession(false)
	if err := f.emu.DeleteChannel(b); err != nil { // disconnects 3
		t.Fatal(err)
	}
	c := f.room(t, "c")
	d := f.room(t, "d")
	for _, s := range [][2]string{{u(1), c}, {u(2), ""}, {u(4), a}, {u(5), c}, {u(6), d}} {
		if err := f.emu.SetVoiceState(s[0], s[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.emu.DeleteChannel(d); err != nil { // 6 joined and left with it: no net change
		t.Fatal(err)
	}
	if st := f.emu.Stats(); st.Identifies != 1 {
		t.Fatalf("the client identified again before the changes were made (stats %+v); the test needs them made while invalidated", st)
	}
	want := []string{
		"voice.left " + u(1) + "@" + a, "voice.left " + u(2) + "@" + a, "voice.left " + u(3) + "@" + b,
		"room.deleted " + b, "room.created " + c,
		"voice.joined " + u(1) + "@" + c, "voice.joined " + u(4) + "@" + a, "voice.joined " + u(5) + "@" + c,
	}
	got := describe(f.rec.waitN(t, len(before)+len(want), 10*time.Second)[len(before):])
	if !slices.Equal(got, want) {
		t.Fatalf("reconciliation events\n got %v\nwant %v", got, want)
	}
	if st := f.emu.Stats(); st.Identifies != 2 || st.IdentifyViolations != 0 {
		t.Fatalf("stats %+v: want exactly one new identify", st)
	}
	if !maps.Equal(f.client.VoiceStates(), f.emu.VoiceStates()) {
		t.Fatalf("client %v, emulator %v", f.client.VoiceStates(), f.emu.VoiceStates())
	}
	var rooms []string
	for _, r := range f.client.Rooms() {
		rooms = append(rooms, r.ChannelID)
		var ids []string
		for _, m := range r.Members {
			ids = append(ids, m.UserID)
		}
		var emuIDs []string
		for uid, ch := range f.emu.VoiceStates() {
			if ch == r.ChannelID {
				emuIDs = append(emuIDs, uid)
			}
		}
		slices.Sort(ids)
		slices.Sort(emuIDs)
		if !slices.Equal(ids, emuIDs) {
			t.Fatalf("room %s members %v, emulator %v", r.ChannelID, ids, emuIDs)
		}
	}
	slices.Sort(rooms)
	if want := []string{a, c}; !slices.Equal(rooms, want) {
		t.Fatalf("rooms %v, want %v", rooms, want)
	}
}

// TestFatalCloseStops: close 4004 is fatal: no reconnect, a clear reason.
func TestFatalCloseStops(t *testing.T) {
	f := start(t, discordemu.Options{HeartbeatInterval: 300 * time.Millisecond, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	f.emu.CloseWithCode(4004, "Authentication failed.")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for f.client.Status().State != gateway.StateFailed {
		if err := f.client.WaitReady(ctx); err != nil && !errors.Is(err, gateway.ErrFatalClose) {
			t.Fatalf("WaitReady: %v", err)
		}
	}
	err := f.client.WaitReady(ctx)
	if !errors.Is(err, gateway.ErrFatalClose) {
		t.Fatalf("WaitReady after 4004: %v", err)
	}
	st := f.client.Status()
	if !st.Fatal || st.LastError != err.Error() || !strings.Contains(st.LastError, "4004 authentication failed: check DISCORD_BOT_TOKEN") {
		t.Fatalf("status %+v", st)
	}
	// The run loop has returned (state failed): no further dial can happen.
	if n := f.emu.Stats().Connections; n != 1 {
		t.Fatalf("%d connections after a fatal close, want 1", n)
	}
}

// TestBadTokenNeverConnects: a token the REST API rejects stops the client
// before any gateway connection.
func TestBadTokenNeverConnects(t *testing.T) {
	f := start(t, discordemu.Options{IdentifyInterval: time.Nanosecond}, gateway.Options{Token: "wrong"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.client.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer f.client.Close(ctx)
	if err := f.client.WaitReady(ctx); !errors.Is(err, gateway.ErrUnauthorized) {
		t.Fatalf("WaitReady: %v", err)
	}
	if st := f.emu.Stats(); st.Connections != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestVoiceJoinSignals: op 4 joins and leaves; the bot's own voice state
// and voice server updates reach the subscriber.
func TestVoiceJoinSignals(t *testing.T) {
	f := start(t, discordemu.Options{HeartbeatInterval: 300 * time.Millisecond, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	room := f.room(t, "a")
	f.open(t)
	guild := f.emu.Options().GuildID
	updates, cancelSub := f.client.SubscribeVoice(guild)
	defer cancelSub()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	next := func() gateway.VoiceUpdate {
		t.Helper()
		select {
		case u, ok := <-updates:
			if !ok {
				t.Fatal("subscription closed")
			}
			return u
		case <-ctx.Done():
			t.Fatal("no voice update")
		}
		return gateway.VoiceUpdate{}
	}
	if err := f.client.UpdateVoiceState(ctx, guild, room, false, true); err != nil {
		t.Fatal(err)
	}
	u := next()
	if u.Server || u.ChannelID != room || u.SessionID == "" {
		t.Fatalf("first update %+v", u)
	}
	if got := f.emu.VoiceStates()[f.emu.Options().BotUserID]; got != room {
		t.Fatalf("emulator has the bot in %q", got)
	}
	// The emulator allocates a voice server for the join; then a scripted
	// reallocation (null endpoint) and a move to another server.
	f.emu.SendVoiceServerUpdate(guild, nil, "tok")
	for u = next(); !u.Server || u.Token != "tok"; u = next() {
	}
	if !u.EndpointNull || u.Endpoint != "" {
		t.Fatalf("server update %+v", u)
	}
	ep := "127.0.0.1:4000"
	f.emu.SendVoiceServerUpdate(guild, &ep, "tok2")
	if u = next(); !u.Server || u.EndpointNull || u.Endpoint != ep || u.Token != "tok2" {
		t.Fatalf("server update %+v", u)
	}
	if err := f.client.UpdateVoiceState(ctx, guild, "", false, false); err != nil {
		t.Fatal(err)
	}
	for u = next(); u.Server || u.ChannelID != ""; u = next() {
	}
	if _, in := f.emu.VoiceStates()[f.emu.Options().BotUserID]; in {
		t.Fatal("bot still in voice after leaving")
	}
}

func newRooms(t *testing.T, f *fixture) *gateway.Rooms {
	t.Helper()
	o := f.emu.Options()
	r, err := gateway.NewRooms(gateway.RoomsOptions{
		Token: o.Token, GuildID: o.GuildID, CategoryID: o.CategoryID,
		APIBase: f.emu.URL() + "/api/v10", HTTPClient: f.hc, Members: f.client.Members,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func calls(emu *discordemu.Server, since int) []string {
	var out []string
	for _, c := range emu.RESTCalls()[since:] {
		if strings.Contains(c.Path, "/gateway") {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %d", c.Method, c.Path, c.Status))
	}
	return out
}

// TestRoomsRateLimitedOnce: create and end a room, each hit by a scripted
// 429 that the service retries exactly once; a second 429 in a row is
// ErrRateLimited.
func TestRoomsRateLimitedOnce(t *testing.T) {
	f := start(t, discordemu.Options{HeartbeatInterval: 300 * time.Millisecond, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	rooms := newRooms(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	guild := f.emu.Options().GuildID

	mark := len(f.emu.RESTCalls())
	f.emu.Script429("POST", "/guilds/", 50*time.Millisecond, false)
	room, err := rooms.CreateRoom(ctx, "standup", 5)
	if err != nil {
		t.Fatal(err)
	}
	if room.Name != "standup" || room.UserLimit != 5 || room.GuildID != guild || room.ChannelID == "" {
		t.Fatalf("room %+v", room)
	}
	post := "POST /api/v10/guilds/" + guild + "/channels"
	if got, want := calls(f.emu, mark), []string{post + " 429", post + " 201"}; !slices.Equal(got, want) && !slices.Equal(got, []string{post + " 429", post + " 200"}) {
		t.Fatalf("REST calls %v, want %v", got, want)
	}
	ch, ok := f.emu.Channel(room.ChannelID)
	if !ok || ch.Type != 2 || ch.ParentID != f.emu.Options().CategoryID {
		t.Fatalf("emulator channel %+v", ch)
	}
	// The gateway reports it too.
	evs := f.rec.waitN(t, 1, 5*time.Second)
	if p, ok := evs[len(evs)-1].Payload.(gateway.RoomPayload); !ok || evs[len(evs)-1].Name != gateway.EventRoomCreated || p.ChannelID != room.ChannelID || p.UserLimit != 5 {
		t.Fatalf("events %v", describe(evs))
	}

	list, err := rooms.ListRooms(ctx)
	if err != nil || len(list) != 1 || list[0].ChannelID != room.ChannelID || list[0].Members == nil {
		t.Fatalf("ListRooms %+v %v", list, err)
	}

	mark = len(f.emu.RESTCalls())
	f.emu.Script429("DELETE", "/channels/", 50*time.Millisecond, false)
	if err := rooms.EndRoom(ctx, room.ChannelID); err != nil {
		t.Fatal(err)
	}
	path := "/api/v10/channels/" + room.ChannelID
	if got, want := calls(f.emu, mark), []string{"GET " + path + " 200", "DELETE " + path + " 429", "DELETE " + path + " 200"}; !slices.Equal(got, want) {
		t.Fatalf("REST calls %v, want %v", got, want)
	}
	if _, ok := f.emu.Channel(room.ChannelID); ok {
		t.Fatal("channel still exists")
	}

	mark = len(f.emu.RESTCalls())
	f.emu.Script429("POST", "/guilds/", 30*time.Millisecond, false)
	f.emu.Script429("POST", "/guilds/", 30*time.Millisecond, false)
	if _, err := rooms.CreateRoom(ctx, "again", 0); !errors.Is(err, gateway.ErrRateLimited) {
		t.Fatalf("two 429s: %v", err)
	}
	if got := calls(f.emu, mark); !slices.Equal(got, []string{post + " 429", post + " 429"}) {
		t.Fatalf("REST calls %v: want exactly one retry", got)
	}
}

// TestEndRoomRefusesOtherChannels: channels outside the category are not
// rooms; they are never deleted.
func TestEndRoomRefusesOtherChannels(t *testing.T) {
	f := start(t, discordemu.Options{HeartbeatInterval: 300 * time.Millisecond, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	rooms := newRooms(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	outside, err := f.emu.CreateChannel("lobby", 2, "")
	if err != nil {
		t.Fatal(err)
	}
	text, err := f.emu.CreateChannel("chat", 0, f.emu.Options().CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{outside.ID, text.ID, f.emu.Options().CategoryID} {
		mark := len(f.emu.RESTCalls())
		if err := rooms.EndRoom(ctx, id); !errors.Is(err, gateway.ErrNotRoom) {
			t.Fatalf("EndRoom(%s): %v", id, err)
		}
		if _, ok := f.emu.Channel(id); !ok {
			t.Fatalf("channel %s deleted", id)
		}
		for _, c := range calls(f.emu, mark) {
			if strings.HasPrefix(c, "DELETE") {
				t.Fatalf("sent %s", c)
			}
		}
	}
	if err := rooms.EndRoom(ctx, "999999999999999999"); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("unknown channel: %v", err)
	}
	list, err := rooms.ListRooms(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("ListRooms %+v %v", list, err)
	}
}

// TestRoomsForbiddenNotRetried: a 403 (no MANAGE_CHANNELS) is reported at
// once, never retried.
func TestRoomsForbiddenNotRetried(t *testing.T) {
	f := start(t, discordemu.Options{IdentifyInterval: time.Nanosecond}, gateway.Options{})
	rooms := newRooms(t, f)
	f.emu.SetManageChannels(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mark := len(f.emu.RESTCalls())
	if _, err := rooms.CreateRoom(ctx, "x", 0); !errors.Is(err, gateway.ErrForbidden) {
		t.Fatalf("CreateRoom: %v", err)
	}
	if got := calls(f.emu, mark); len(got) != 1 {
		t.Fatalf("REST calls %v, want one", got)
	}
	if _, err := rooms.CreateRoom(ctx, "", 0); !errors.Is(err, gateway.ErrBadRequest) {
		t.Fatalf("empty name: %v", err)
	}
	if _, err := rooms.CreateRoom(ctx, "x", 100); !errors.Is(err, gateway.ErrBadRequest) {
		t.Fatalf("user limit 100: %v", err)
	}
}
