package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/voiceemu"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/gateway"
)

// testApp is the bridge in its embedded default, started in process on a
// loopback port, with the handles a test needs.
type testApp struct {
	*app
	base string // http://127.0.0.1:PORT
}

// startTestApp runs the embedded default with the given tuning. env adds
// to a loopback-only configuration.
func startTestApp(t testing.TB, tune tuning, env map[string]string) *testApp {
	t.Helper()
	vars := map[string]string{"LISTEN_ADDR": "127.0.0.1:0", "ICE_UDP_PORT": "0", "ICE_TCP_PORT": "off",
		"HTTP_REDIRECT_ADDR": "off", "LOG_LEVEL": "warn"}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := loadConfig(nil, envFrom(vars))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := newTunedApp(context.Background(), cfg, log, tune)
	if err != nil {
		t.Fatal(err)
	}
	ta := &testApp{app: a, base: "http://" + a.Addr()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return ta
}

// fastTuning shortens every timer of the gateway path so fault scripts run
// in seconds.
func fastTuning() tuning {
	var tune tuning
	tune.demo.Discord.HeartbeatInterval = 100 * time.Millisecond
	// Tests read what the demo members heard.
	tune.demo.Record = voiceemu.DefaultRecord
	tune.demo.Discord.IdentifyInterval = time.Nanosecond
	tune.demo.Discord.ChannelRateLimit = 1000
	tune.gateway = func(o *gateway.Options) {
		o.BackoffMin, o.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
		o.InvalidSessionWait = [2]time.Duration{20 * time.Millisecond, 60 * time.Millisecond}
		o.IdentifyInterval = 10 * time.Millisecond
	}
	return tune
}

// testWriter sends the app's log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// devToken asks the embedded default's dev auth for a token.
func (ta *testApp) devToken(t testing.TB, name string) string {
	t.Helper()
	return ta.devTokenFor(t, name, nil)
}

// devTokenFor is devToken with a guilds claim listing guilds (none when
// nil: the default guild applies).
func (ta *testApp) devTokenFor(t testing.TB, name string, guilds []string) string {
	t.Helper()
	var out struct{ Token string }
	body := map[string]any{"name": name}
	if guilds != nil {
		body["guilds"] = guilds
	}
	ta.doJSON(t, http.MethodPost, "/api/dev/token", "", body, http.StatusOK, &out)
	if out.Token == "" {
		t.Fatal("dev token answer had no token")
	}
	return out.Token
}

// doJSON sends a request and checks the status; out may be nil.
func (ta *testApp) doJSON(t testing.TB, method, path, token string, body any, want int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, ta.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// hubEvent is one event a hub client received.
type hubEvent struct {
	V       int             `json:"v"`
	Type    string          `json:"type"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
}

// voiceEvent is the part of a voice.* event the tests compare.
type voiceEvent struct {
	Event, ChannelID, UserID string
}

func (e voiceEvent) String() string { return e.Event + " " + e.UserID + "@" + e.ChannelID }

// hubClient is an authenticated /api/ws connection that records events.
type hubClient struct {
	conn *websocket.Conn

	mu      sync.Mutex
	events  []hubEvent
	closed  error
	changed chan struct{}
	done    chan struct{}
}

func (ta *testApp) dialHub(t testing.TB, token string) *hubClient {
	t.Helper()
	url := "ws" + strings.TrimPrefix(ta.base, "http") + "/api/ws"
	conn, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {ta.base}})
	if err != nil {
		t.Fatalf("dial hub: %v (%v)", err, resp)
	}
	if err := conn.WriteJSON(map[string]string{"type": "auth", "token": token}); err != nil {
		t.Fatal(err)
	}
	var ack hubEvent
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "ack" || ack.Event != "auth.ok" {
		t.Fatalf("hub auth: %+v %v", ack, err)
	}
	conn.SetReadDeadline(time.Time{})
	c := &hubClient{conn: conn, changed: make(chan struct{}, 1), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { conn.Close(); <-c.done })
	return c
}

func (c *hubClient) read() {
	defer close(c.done)
	for {
		var e hubEvent
		if err := c.conn.ReadJSON(&e); err != nil {
			c.mu.Lock()
			c.closed = err
			c.mu.Unlock()
			c.notify()
			return
		}
		if e.Type != "event" {
			continue
		}
		c.mu.Lock()
		c.events = append(c.events, e)
		c.mu.Unlock()
		c.notify()
	}
}

func (c *hubClient) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds; cond reads the client through its
// accessors, and is checked again each time something arrives.
func (c *hubClient) waitFor(ctx context.Context, cond func() bool) error {
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.changed:
		}
	}
}

// voiceEvents returns the voice.* events received, in order.
func (c *hubClient) voiceEvents(t testing.TB) []voiceEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []voiceEvent
	for _, e := range c.events {
		if !strings.HasPrefix(e.Event, "voice.") {
			continue
		}
		var p struct {
			ChannelID string `json:"channelId"`
			UserID    string `json:"userId"`
		}
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatalf("voice event payload %s: %v", e.Payload, err)
		}
		out = append(out, voiceEvent{e.Event, p.ChannelID, p.UserID})
	}
	return out
}

// closeErr is why the connection ended, nil while it is open.
func (c *hubClient) closeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// eventNames lists the names of the events received, in order.
func (c *hubClient) eventNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.events))
	for i, e := range c.events {
		out[i] = e.Event
	}
	return out
}

// diffEvents describes the first difference between two event lists.
func diffEvents(got, want []voiceEvent) string {
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			return fmt.Sprintf("event %d: got %v, want %v", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d events, want %d", len(got), len(want))
	}
	return ""
}
