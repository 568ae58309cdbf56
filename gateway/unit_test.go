package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestCloseCodeTable(t *testing.T) {
	cases := []struct {
		code              int
		reconnect, resume bool
	}{
		{4000, true, true}, {4001, true, true}, {4002, true, true}, {4003, true, true},
		{4004, false, false}, {4005, true, true}, {4007, true, false}, {4008, true, true},
		{4009, true, false}, {4010, false, false}, {4011, false, false}, {4012, false, false},
		{4013, false, false}, {4014, false, false},
		{1000, true, true}, {1006, true, true}, {4999, true, true},
	}
	for _, c := range cases {
		got := LookupCloseCode(c.code)
		if got.Reconnect != c.reconnect || got.Resume != c.resume {
			t.Errorf("%d: reconnect=%v resume=%v, want %v %v", c.code, got.Reconnect, got.Resume, c.reconnect, c.resume)
		}
		if !got.Reconnect && got.Hint == "" {
			t.Errorf("%d is fatal but has no hint for the operator", c.code)
		}
	}
	if got := LookupCloseCode(4004).Reason(); got != "4004 authentication failed: check DISCORD_BOT_TOKEN" {
		t.Errorf("4004 reason %q", got)
	}
	// Our own close codes must keep the session (never 1000/1001).
	for _, code := range []int{closeResumable, closeZombie, closeReconnectRequest} {
		if code == closeNormal || code == closeGoingAway || code < 4000 || code > 4999 {
			t.Errorf("own close code %d would invalidate the session or is not application-defined", code)
		}
	}
}

func TestAfterReadErrorUsesTable(t *testing.T) {
	c := newTestClient(t, Options{})
	cases := []struct {
		err  error
		want next
	}{
		{&websocket.CloseError{Code: 4004}, nextFatal},
		{&websocket.CloseError{Code: 4014}, nextFatal},
		{&websocket.CloseError{Code: 4007}, nextIdentify},
		{&websocket.CloseError{Code: 4009}, nextIdentify},
		{&websocket.CloseError{Code: 4000}, nextResume},
		{errors.New("read tcp: connection reset"), nextResume},
	}
	for _, tc := range cases {
		got := c.afterReadError(tc.err, true)
		if got.next != tc.want {
			t.Errorf("%v: next %d, want %d", tc.err, got.next, tc.want)
		}
		if got.next == nextFatal && !errors.Is(got.err, ErrFatalClose) {
			t.Errorf("%v: fatal error %v does not wrap ErrFatalClose", tc.err, got.err)
		}
	}
}

func newTestClient(t *testing.T, o Options) *Client {
	t.Helper()
	if o.Token == "" {
		o.Token = "tok"
	}
	o.GuildID, o.CategoryID = "200000000000000001", "300000000000000001"
	if o.OnEvent == nil {
		o.OnEvent = func(Event) {}
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dispatchFrame(t *testing.T, s int64, typ string, d any) frame {
	t.Helper()
	b, err := json.Marshal(map[string]any{"op": 0, "s": s, "t": typ, "d": d})
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func voiceStateJSON(user, channel string) map[string]any {
	var ch any
	if channel != "" {
		ch = channel
	}
	return map[string]any{"guild_id": "200000000000000001", "user_id": user, "channel_id": ch, "session_id": "x",
		"member": map[string]any{"user": map[string]any{"id": user, "username": "name" + user}}}
}

func eventNames(evs []queued) []string {
	var out []string
	for _, it := range evs {
		if it.sess != nil {
			continue
		}
		e := it.ev
		p := e.Payload.(VoicePayload)
		out = append(out, fmt.Sprintf("%s %s@%s", e.Name, p.UserID, p.ChannelID))
	}
	return out
}

// TestDispatchDedup feeds a replay that overlaps what was processed: each
// sequence number reaches the state once.
func TestDispatchDedup(t *testing.T) {
	c := newTestClient(t, Options{})
	sess := &sessionInfo{}
	frames := []frame{
		dispatchFrame(t, 1, "VOICE_STATE_UPDATE", voiceStateJSON("1", "10")),
		dispatchFrame(t, 2, "VOICE_STATE_UPDATE", voiceStateJSON("2", "10")),
		// Replay after a resume from seq 1: 2 again, then 3.
		dispatchFrame(t, 2, "VOICE_STATE_UPDATE", voiceStateJSON("2", "10")),
		dispatchFrame(t, 1, "VOICE_STATE_UPDATE", voiceStateJSON("1", "10")),
		dispatchFrame(t, 3, "VOICE_STATE_UPDATE", voiceStateJSON("1", "")),
		dispatchFrame(t, 3, "VOICE_STATE_UPDATE", voiceStateJSON("1", "")),
	}
	for _, f := range frames {
		c.dispatch(f, sess)
	}
	want := []string{"voice.joined 1@10", "voice.joined 2@10", "voice.left 1@10"}
	if got := eventNames(c.events.take()); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if sess.seq != 3 || c.Status().Seq != 3 {
		t.Fatalf("seq %d / status %d, want 3", sess.seq, c.Status().Seq)
	}
	if m := c.Members("10"); len(m) != 1 || m[0].UserID != "2" || m[0].Name != "name2" {
		t.Fatalf("members %+v", m)
	}
}

func TestDispatchReadyAndVoiceUpdates(t *testing.T) {
	c := newTestClient(t, Options{})
	ch, cancel := c.SubscribeVoice("200000000000000001")
	defer cancel()
	sess := &sessionInfo{}
	st := c.dispatch(dispatchFrame(t, 1, "READY", map[string]any{
		"session_id": "abc", "resume_gateway_url": "ws://127.0.0.1:1/r",
		"user": map[string]any{"id": "42"}, "guilds": []any{map[string]any{"id": "200000000000000001", "unavailable": true}},
	}), sess)
	if st != stepReady || sess.id != "abc" || sess.resumeURL != "ws://127.0.0.1:1/r" || sess.botUserID != "42" {
		t.Fatalf("READY: step %d session %+v", st, sess)
	}
	c.dispatch(dispatchFrame(t, 2, "VOICE_STATE_UPDATE", voiceStateJSON("7", "10")), sess) // someone else
	c.dispatch(dispatchFrame(t, 3, "VOICE_STATE_UPDATE", voiceStateJSON("42", "10")), sess)
	c.dispatch(dispatchFrame(t, 4, "VOICE_SERVER_UPDATE", map[string]any{"guild_id": "200000000000000001", "token": "t", "endpoint": nil}), sess)
	c.dispatch(dispatchFrame(t, 5, "VOICE_SERVER_UPDATE", map[string]any{"guild_id": "200000000000000001", "token": "t2", "endpoint": "h:1"}), sess)
	want := []VoiceUpdate{
		{SessionID: "x", ChannelID: "10"},
		{Server: true, Token: "t", EndpointNull: true},
		{Server: true, Token: "t2", Endpoint: "h:1"},
	}
	for i, w := range want {
		select {
		case got := <-ch:
			if got != w {
				t.Fatalf("update %d: %+v, want %+v", i, got, w)
			}
		default:
			t.Fatalf("update %d missing", i)
		}
	}
	select {
	case got := <-ch:
		t.Fatalf("unexpected update %+v", got)
	default:
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after cancel")
	}
	st = c.dispatch(dispatchFrame(t, 6, "READY", map[string]any{"session_id": "d", "user": map[string]any{"id": "42"}, "guilds": []any{}}), sess)
	if st != stepReadyNoGuild {
		t.Fatalf("READY without our guild: step %d", st)
	}
}

func TestDecodeFrame(t *testing.T) {
	cases := []struct {
		in string
		ok bool
	}{
		{`{"op":10,"d":{"heartbeat_interval":41250}}`, true},
		{`{"op":0,"s":5,"t":"READY","d":{}}`, true},
		{`{"op":0,"s":null,"t":"READY","d":{}}`, false},
		{`{"op":0,"s":1,"d":{}}`, false},
		{`{"d":{}}`, false},
		{`[1,2]`, false},
		{`{"op":11}`, true},
	}
	for _, c := range cases {
		_, err := decodeFrame([]byte(c.in))
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.in, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrBadPayload) {
			t.Errorf("%s: %v does not wrap ErrBadPayload", c.in, err)
		}
	}
	if _, err := decodeHello(json.RawMessage(`{"heartbeat_interval":0}`)); err == nil {
		t.Error("hello with interval 0 accepted")
	}
	if iv, err := decodeHello(json.RawMessage(`{"heartbeat_interval":41250}`)); err != nil || iv != 41250*time.Millisecond {
		t.Errorf("hello: %v %v", iv, err)
	}
	if !decodeInvalidSession(json.RawMessage(`true`)) || decodeInvalidSession(json.RawMessage(`false`)) || decodeInvalidSession(nil) {
		t.Error("invalid session d decoding")
	}
}

func TestOutgoingPayloads(t *testing.T) {
	b, _ := json.Marshal(heartbeatFrame(0))
	if string(b) != `{"op":1,"d":null}` {
		t.Errorf("first heartbeat %s", b)
	}
	b, _ = json.Marshal(heartbeatFrame(12))
	if string(b) != `{"op":1,"d":12}` {
		t.Errorf("heartbeat %s", b)
	}
	b, _ = json.Marshal(outFrame{Op: opVoiceStateUpdate, D: voiceStateData{GuildID: "1"}})
	if string(b) != `{"op":4,"d":{"guild_id":"1","channel_id":null,"self_mute":false,"self_deaf":false}}` {
		t.Errorf("leave voice %s", b)
	}
}

func TestGatewayURL(t *testing.T) {
	got, err := gatewayURL("wss://gateway.discord.gg")
	if err != nil || got != "wss://gateway.discord.gg?encoding=json&v=10" {
		t.Fatalf("%q %v", got, err)
	}
	got, err = gatewayURL("ws://127.0.0.1:5/resume-gateway?v=9")
	if err != nil || got != "ws://127.0.0.1:5/resume-gateway?encoding=json&v=10" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := gatewayURL("https://x"); err == nil {
		t.Fatal("https gateway URL accepted")
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: time.Second, max: 60 * time.Second}
	for attempt := range 12 {
		d := b.delay(attempt)
		hi := min(time.Second<<attempt, 60*time.Second)
		if d < hi/2 || d >= hi {
			t.Fatalf("attempt %d: %v outside [%v, %v)", attempt, d, hi/2, hi)
		}
	}
	// Jittered: two clients do not retry in lockstep.
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[b.delay(3)] = true
	}
	if len(seen) < 2 {
		t.Fatal("backoff has no jitter")
	}
}

func TestCommandLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newCommandLimiter()
	l.nowFunc = func() time.Time { return now }
	l.setInterval(41250 * time.Millisecond)
	// 60 s / 41.25 s -> 2 beats, +2 spare: 116 commands per window.
	if l.budget != sendLimit-4 {
		t.Fatalf("budget %d, want %d", l.budget, sendLimit-4)
	}
	for i := range l.budget {
		if d := l.reserve(); d != 0 {
			t.Fatalf("command %d refused (%v) within the budget", i, d)
		}
		now = now.Add(10 * time.Millisecond)
	}
	d := l.reserve()
	if d <= 0 || d > sendWindow {
		t.Fatalf("over budget: wait %v", d)
	}
	now = now.Add(d)
	if l.reserve() != 0 {
		t.Fatal("slot not freed after the window slid")
	}
	// Tiny test intervals keep at least half the limit for commands.
	l.setInterval(time.Millisecond)
	if l.budget != sendLimit/2 {
		t.Fatalf("budget %d with 1 ms beats", l.budget)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.nowFunc = func() time.Time { return now }
	for l.reserve() == 0 {
	}
	if err := l.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait on a cancelled ctx: %v", err)
	}
}

func TestHeartbeatZombie(t *testing.T) {
	h := newHeartbeat(time.Hour, 0)
	defer h.stop()
	now := time.Unix(0, 0)
	if !h.due() {
		t.Fatal("first beat reported as zombie")
	}
	h.sent(now, true)
	if h.due() {
		t.Fatal("unacknowledged beat not detected")
	}
	if lat := h.ack(now.Add(30 * time.Millisecond)); lat != 30*time.Millisecond {
		t.Fatalf("latency %v", lat)
	}
	if !h.due() {
		t.Fatal("acknowledged beat reported as zombie")
	}
}

func TestNewValidates(t *testing.T) {
	base := Options{Token: "t", GuildID: "1", CategoryID: "2"}
	cases := map[string]func(*Options){
		"Token":              func(o *Options) { o.Token = " " },
		"GuildID":            func(o *Options) { o.GuildID = "" },
		"CategoryID":         func(o *Options) { o.CategoryID = "" },
		"APIBase":            func(o *Options) { o.APIBase = "ftp://x" },
		"BackoffMax":         func(o *Options) { o.BackoffMin, o.BackoffMax = 2*time.Second, time.Second },
		"InvalidSessionWait": func(o *Options) { o.InvalidSessionWait = [2]time.Duration{2, 1} },
	}
	for field, mut := range cases {
		o := base
		mut(&o)
		_, err := New(o)
		if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err %v, want ErrOptions naming the field", field, err)
		}
	}
	if _, err := New(base); err != nil {
		t.Fatal(err)
	}
}

// TestFetchGatewayUnauthorizedIsFatal: a rejected token stops the client at
// once instead of retrying (repeated 401s earn an IP ban).
func TestFetchGatewayUnauthorizedIsFatal(t *testing.T) {
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if r.Header.Get("Authorization") != "Bot tok" {
			t.Errorf("authorization %q", r.Header.Get("Authorization"))
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	c := newTestClient(t, Options{Token: "Bot tok", APIBase: srv.URL + "/api/v10", BackoffMin: time.Millisecond})
	if err := c.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.WaitReady(ctx)
	if !errors.Is(err, ErrFatalClose) || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("WaitReady: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); !st.Fatal || st.State != StateFailed || !strings.Contains(st.LastError, "DISCORD_BOT_TOKEN") {
		t.Fatalf("status %+v", st)
	}
	if calls != 1 {
		t.Fatalf("GET /gateway/bot called %d times, want 1", calls)
	}
}

func TestCloseBeforeOpen(t *testing.T) {
	c := newTestClient(t, Options{})
	ch, _ := c.SubscribeVoice("1")
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("subscription open after Close")
	}
	if err := c.Open(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := c.UpdateVoiceState(context.Background(), "1", "", false, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("UpdateVoiceState after Close: %v", err)
	}
}

func TestStatusJSON(t *testing.T) {
	b, err := json.Marshal(Status{State: StateReady, HeartbeatLatency: 1500 * time.Microsecond, Seq: 3})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["state"] != "ready" || m["heartbeatLatencyMs"] != 1.5 || m["seq"] != 3.0 {
		t.Fatalf("%s", b)
	}
}

// FuzzGatewayPayload feeds arbitrary bytes through frame decoding and every
// dispatch handler: nothing panics, and bad input is an ErrBadPayload.
func FuzzGatewayPayload(f *testing.F) {
	seeds := []string{
		`{"op":10,"d":{"heartbeat_interval":41250}}`,
		`{"op":0,"s":1,"t":"READY","d":{"session_id":"a","resume_gateway_url":"ws://x","user":{"id":"1"},"guilds":[{"id":"200000000000000001"}]}}`,
		`{"op":0,"s":2,"t":"GUILD_CREATE","d":{"id":"200000000000000001","channels":[{"id":"5","type":2,"parent_id":"300000000000000001"}],"voice_states":[{"user_id":"1","channel_id":"5"}],"members":[{"user":{"id":"1","username":"a"}}]}}`,
		`{"op":0,"s":3,"t":"VOICE_STATE_UPDATE","d":{"guild_id":"200000000000000001","user_id":"1","channel_id":null}}`,
		`{"op":0,"s":4,"t":"CHANNEL_DELETE","d":{"id":"5","type":2,"guild_id":"200000000000000001","parent_id":"300000000000000001"}}`,
		`{"op":0,"s":5,"t":"VOICE_SERVER_UPDATE","d":{"guild_id":"200000000000000001","token":"t","endpoint":null}}`,
		`{"op":0,"s":6,"t":"GUILD_MEMBER_UPDATE","d":{"guild_id":"200000000000000001","user":{"id":"1","username":"b"}}}`,
		`{"op":9,"d":true}`,
		`{"op":0,"s":1,"t":"CHANNEL_CREATE","d":{"id":5}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	c, err := New(Options{Token: "t", GuildID: "200000000000000001", CategoryID: "300000000000000001", OnEvent: func(Event) {}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("error %v does not wrap ErrBadPayload", err)
			}
			return
		}
		if fr.Op == opHello {
			if _, err := decodeHello(fr.D); err != nil && !errors.Is(err, ErrBadPayload) {
				t.Fatal(err)
			}
		}
		if fr.Op == opDispatch {
			c.dispatch(fr, &sessionInfo{})
			c.events.take()
		}
	})
}

// BenchmarkDispatchVoiceState measures one VOICE_STATE_UPDATE from raw
// bytes to queued event: frame decoding, dedup, state change.
func BenchmarkDispatchVoiceState(b *testing.B) {
	c, err := New(Options{Token: "t", GuildID: "200000000000000001", CategoryID: "300000000000000001", OnEvent: func(Event) {}})
	if err != nil {
		b.Fatal(err)
	}
	var raws [2][]byte
	for i, ch := range []string{`"10"`, `null`} {
		raws[i] = []byte(`{"op":0,"s":1,"t":"VOICE_STATE_UPDATE","d":{"guild_id":"200000000000000001","user_id":"42","channel_id":` + ch +
			`,"session_id":"x","member":{"user":{"id":"42","username":"ann"}}}}`)
	}
	sess := &sessionInfo{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f, err := decodeFrame(raws[i%2])
		if err != nil {
			b.Fatal(err)
		}
		f.S = sess.seq + 1
		c.dispatch(f, sess)
		if i%64 == 0 {
			c.events.take()
		}
	}
}
