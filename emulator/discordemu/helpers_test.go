package discordemu

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const (
	testIntents  = intentGuilds | intentGuildVoiceStates
	readDeadline = 5 * time.Second
)

// payload is a gateway message as a client decodes it.
type payload struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d"`
	S  *int64          `json:"s"`
	T  *string         `json:"t"`
}

func (p payload) event() string {
	if p.T == nil {
		return ""
	}
	return *p.T
}

func (p payload) seq() int64 {
	if p.S == nil {
		return -1
	}
	return *p.S
}

// startServer starts an emulator with test timings and closes it at the
// end of the test.
func startServer(t testing.TB, mod func(*Options)) *Server {
	t.Helper()
	opts := Options{HeartbeatInterval: 5 * time.Second, IdentifyInterval: time.Nanosecond}
	if mod != nil {
		mod(&opts)
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// rawClient is a bare gateway client on gorilla/websocket.
type rawClient struct {
	t  testing.TB
	ws *websocket.Conn
}

func dial(t testing.TB, url string) *rawClient {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	c := &rawClient{t: t, ws: ws}
	t.Cleanup(func() { ws.Close() })
	return c
}

func dialGateway(t testing.TB, s *Server) *rawClient {
	return dial(t, s.GatewayURL()+"?v=10&encoding=json")
}

// next reads one payload (text, or binary holding one zlib stream).
func (c *rawClient) next() payload {
	c.t.Helper()
	p, err := c.tryNext()
	if err != nil {
		c.t.Fatalf("reading gateway payload: %v", err)
	}
	return p
}

func (c *rawClient) tryNext() (payload, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(readDeadline))
	mt, data, err := c.ws.ReadMessage()
	if err != nil {
		return payload{}, err
	}
	if mt == websocket.BinaryMessage {
		zr, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			return payload{}, err
		}
		data, err = io.ReadAll(zr)
		if err != nil {
			return payload{}, err
		}
	}
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return payload{}, err
	}
	return p, nil
}

func (c *rawClient) send(op int, d any) {
	c.t.Helper()
	b, err := json.Marshal(map[string]any{"op": op, "d": d})
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

func (c *rawClient) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// expectOp reads until a payload with op arrives (skipping heartbeat ACKs
// and heartbeat requests unless asked for) and returns it.
func (c *rawClient) expectOp(op int) payload {
	c.t.Helper()
	for {
		p := c.next()
		if p.Op == op {
			return p
		}
		if p.Op == opHeartbeatACK {
			continue
		}
		c.t.Fatalf("want op %d, got op %d t=%q d=%s", op, p.Op, p.event(), p.D)
	}
}

// expectDispatch reads the next dispatch and checks its event name.
func (c *rawClient) expectDispatch(event string) payload {
	c.t.Helper()
	p := c.expectOp(opDispatch)
	if p.event() != event {
		c.t.Fatalf("want dispatch %s, got %s (s=%d) d=%s", event, p.event(), p.seq(), p.D)
	}
	return p
}

// expectClose reads until the connection ends and checks the close code.
func (c *rawClient) expectClose(code int) {
	c.t.Helper()
	for {
		p, err := c.tryNext()
		if err == nil {
			if p.Op == opHeartbeatACK || p.Op == opHello {
				continue
			}
			c.t.Fatalf("want close %d, got op %d t=%q", code, p.Op, p.event())
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("want close %d, got %v", code, err)
		}
		if ce.Code != code {
			c.t.Fatalf("want close %d, got %d (%q)", code, ce.Code, ce.Text)
		}
		return
	}
}

// expectAbruptEnd reads until the connection ends without a close frame.
func (c *rawClient) expectAbruptEnd() {
	c.t.Helper()
	for {
		_, err := c.tryNext()
		if err == nil {
			continue
		}
		// gorilla reports a TCP end without a close frame as 1006.
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
			c.t.Fatalf("want an abrupt end, got close %d", ce.Code)
		}
		return
	}
}

func identifyPayload(token string, intents int) map[string]any {
	return map[string]any{
		"token":      token,
		"intents":    intents,
		"properties": map[string]any{"os": "linux", "browser": "test", "device": "test"},
	}
}

// identify performs Hello, Identify, READY, GUILD_CREATE and returns READY's
// d and GUILD_CREATE's d.
func (c *rawClient) identify(s *Server) (ready, guild map[string]any) {
	c.t.Helper()
	c.expectOp(opHello)
	c.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
	r := c.expectDispatch("READY")
	g := c.expectDispatch("GUILD_CREATE")
	if err := json.Unmarshal(r.D, &ready); err != nil {
		c.t.Fatal(err)
	}
	if err := json.Unmarshal(g.D, &guild); err != nil {
		c.t.Fatal(err)
	}
	return ready, guild
}

func waitFor(t testing.TB, s *Server, what string, cond func(Stats) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v (stats %+v)", what, err, s.Stats())
	}
}

// rest sends one REST request with the bot's authorization unless auth is
// given ("-" for none).
func rest(t testing.TB, s *Server, method, path, auth string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			raw, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			rd = bytes.NewReader(raw)
		}
	}
	req, err := http.NewRequest(method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	switch auth {
	case "":
		req.Header.Set("Authorization", "Bot "+s.Options().Token)
	case "-":
	default:
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, out
}

// fakeVoice records VoiceBackend calls.
type fakeVoice struct {
	mu    sync.Mutex
	calls []string
	fail  bool
	ch    chan string
}

func newFakeVoice() *fakeVoice { return &fakeVoice{ch: make(chan string, 64)} }

func (f *fakeVoice) record(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
	f.ch <- s
}

func (f *fakeVoice) Allocate(guildID, channelID, userID, sessionID string) (string, string, error) {
	f.record("allocate " + guildID + " " + channelID + " " + userID + " " + sessionID)
	if f.fail {
		return "", "", errors.New("no voice server")
	}
	return "127.0.0.1:4242", "voice-token-" + channelID, nil
}

func (f *fakeVoice) Release(guildID, userID string) {
	f.record("release " + guildID + " " + userID)
}

func (f *fakeVoice) MemberVoiceState(guildID, userID, channelID string) {
	f.record("state " + guildID + " " + userID + " " + channelID)
}

func (f *fakeVoice) Renew(guildID, userID, sessionID string) {
	f.record("renew " + guildID + " " + userID + " " + sessionID)
}

// expect waits for the next call and checks it.
func (f *fakeVoice) expect(t testing.TB, want string) {
	t.Helper()
	select {
	case got := <-f.ch:
		if got != want {
			t.Fatalf("voice backend call %q, want %q", got, want)
		}
	case <-time.After(readDeadline):
		t.Fatalf("voice backend call %q never came", want)
	}
}

func decodeMap(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return m
}
