package gateway_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

// scriptedGateway is a minimal gateway whose n-th connection runs
// script[n]; it records the first payload of each connection.
type scriptedGateway struct {
	t      *testing.T
	srv    *httptest.Server
	script []func(c *websocket.Conn)
	// interval is Hello's heartbeat_interval in ms; 0 means 60000.
	interval int
	mu       sync.Mutex
	conns    int
	firsts   []int // op of each connection's first client payload
}

func (g *scriptedGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/v10/gateway/bot" {
		w.Header().Set("Content-Type", "application/json")
		ws := "ws" + strings.TrimPrefix(g.srv.URL, "http") + "/gw"
		json.NewEncoder(w).Encode(map[string]any{"url": ws, "shards": 1,
			"session_start_limit": map[string]any{"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}})
		return
	}
	up := websocket.Upgrader{}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	g.mu.Lock()
	n := g.conns
	g.conns++
	g.mu.Unlock()
	iv := g.interval
	if iv == 0 {
		iv = 60000
	}
	send(c, map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": iv}})
	var first struct{ Op int }
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.ReadJSON(&first); err != nil {
		return
	}
	g.mu.Lock()
	g.firsts = append(g.firsts, first.Op)
	g.mu.Unlock()
	if n < len(g.script) {
		g.script[n](c)
	}
	// Read until the client goes away.
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

func send(c *websocket.Conn, v any) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.WriteJSON(v)
}

// TestOpsDuringHandshake: op 7 and op 9 arriving before READY neither
// deadlock nor confuse the client; it identifies again each time and
// becomes ready on the third connection.
func TestOpsDuringHandshake(t *testing.T) {
	g := &scriptedGateway{t: t}
	g.script = []func(*websocket.Conn){
		func(c *websocket.Conn) { send(c, map[string]any{"op": 7, "d": nil}) },
		func(c *websocket.Conn) { send(c, map[string]any{"op": 9, "d": false}) },
		func(c *websocket.Conn) {
			send(c, map[string]any{"op": 0, "s": 1, "t": "READY", "d": map[string]any{
				"session_id": "s1", "resume_gateway_url": "ws" + strings.TrimPrefix(g.srv.URL, "http") + "/resume",
				"user": map[string]any{"id": "1"}, "guilds": []any{}}})
		},
	}
	g.srv = httptest.NewServer(g)
	defer g.srv.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	c, err := gateway.New(gateway.Options{
		Token: "t", GuildID: "2", CategoryID: "3", APIBase: g.srv.URL + "/api/v10", HTTPClient: hc,
		IdentifyInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		InvalidSessionWait: [2]time.Duration{time.Millisecond, 2 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	st := c.Status()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns != 3 || len(g.firsts) != 3 {
		t.Fatalf("%d connections, first ops %v", g.conns, g.firsts)
	}
	for i, op := range g.firsts {
		if op != 2 {
			t.Fatalf("connection %d began with op %d, want Identify (no session existed)", i+1, op)
		}
	}
	// The guild is not in READY: ready, with the reason visible.
	if st.SessionID != "s1" || !strings.Contains(st.LastError, "not a member of guild 2") {
		t.Fatalf("status %+v", st)
	}
}

// TestIdentifySpacing: after op 9 d:false the new Identify waits for the
// identify interval even when the invalid-session wait is shorter, so the
// emulator sees no identify faster than max_concurrency allows.
func TestIdentifySpacing(t *testing.T) {
	// The client spaces identifies by its interval when it sends them, the
	// emulator measures them when it reads them: a loaded machine delaying
	// one read would turn equal intervals into a violation, so the client's
	// is a little longer than the one enforced, as a careful client's is.
	f := start(t, discordemu.Options{HeartbeatInterval: 300 * time.Millisecond, IdentifyInterval: 400 * time.Millisecond},
		gateway.Options{IdentifyInterval: 500 * time.Millisecond})
	f.open(t)
	for range 2 {
		before := f.emu.Stats().Identifies
		f.emu.SendInvalidSession(false)
		waitStats(t, f.emu, "a new session", func(s discordemu.Stats) bool { return s.Identifies > before && s.Connected })
	}
	if st := f.emu.Stats(); st.IdentifyViolations != 0 || st.Identifies != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestResumeFallsBackToGatewayURL: when resume_gateway_url cannot be
// reached, the client resumes (op 6, same session) through the gateway URL
// after a few attempts instead of dialing a dead host forever.
func TestResumeFallsBackToGatewayURL(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "ws://" + dead.Addr().String() + "/resume"
	dead.Close()
	g := &scriptedGateway{t: t}
	g.script = []func(*websocket.Conn){
		func(c *websocket.Conn) {
			send(c, map[string]any{"op": 0, "s": 1, "t": "READY", "d": map[string]any{
				"session_id": "s1", "resume_gateway_url": deadURL, "user": map[string]any{"id": "1"}, "guilds": []any{}}})
			c.Close()
		},
		func(c *websocket.Conn) {
			send(c, map[string]any{"op": 0, "s": 2, "t": "RESUMED", "d": map[string]any{}})
			send(c, map[string]any{"op": 0, "s": 3, "t": "CHANNEL_CREATE", "d": map[string]any{
				"id": "10", "guild_id": "2", "parent_id": "3", "type": 2, "name": "r"}})
		},
	}
	events := make(chan gateway.Event, 1)
	g.srv = httptest.NewServer(g)
	defer g.srv.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	c, err := gateway.New(gateway.Options{
		Token: "t", GuildID: "2", CategoryID: "3", APIBase: g.srv.URL + "/api/v10", HTTPClient: hc,
		IdentifyInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		OnEvent: func(e gateway.Event) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	select {
	case e := <-events:
		if e.Name != gateway.EventRoomCreated {
			t.Fatalf("event %+v", e)
		}
	case <-ctx.Done():
		t.Fatalf("no event after the resume: status %+v", c.Status())
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.firsts) != 2 || g.firsts[0] != 2 || g.firsts[1] != 6 {
		t.Fatalf("first ops per connection %v, want [2 6]", g.firsts)
	}
	if st := c.Status(); st.SessionID != "s1" || st.Reconnects < 2 {
		t.Fatalf("status %+v", st)
	}
}

// TestServerHeartbeatRequest: op 1 from the server is answered at once
// with the last sequence number. Hello asks for a 10 minute interval, so
// the answer cannot be a regular beat.
func TestServerHeartbeatRequest(t *testing.T) {
	answer := make(chan json.RawMessage, 1)
	g := &scriptedGateway{t: t, interval: 600000}
	g.script = []func(*websocket.Conn){
		func(c *websocket.Conn) {
			send(c, map[string]any{"op": 0, "s": 1, "t": "READY", "d": map[string]any{
				"session_id": "s1", "resume_gateway_url": "ws://127.0.0.1:1/r", "user": map[string]any{"id": "1"}, "guilds": []any{}}})
			send(c, map[string]any{"op": 1, "d": nil})
			var p struct {
				Op int
				D  json.RawMessage
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := c.ReadJSON(&p); err != nil || p.Op != 1 {
				answer <- json.RawMessage(`"no heartbeat"`)
				return
			}
			answer <- p.D
		},
	}
	g.srv = httptest.NewServer(g)
	defer g.srv.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	c, err := gateway.New(gateway.Options{Token: "t", GuildID: "2", CategoryID: "3", APIBase: g.srv.URL + "/api/v10", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	select {
	case d := <-answer:
		if string(d) != "1" {
			t.Fatalf("heartbeat answer d=%s, want 1", d)
		}
	case <-ctx.Done():
		t.Fatal("no answer to op 1")
	}
}
