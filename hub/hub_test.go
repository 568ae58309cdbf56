package hub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/lestrrat-go/jwx/v2/jwa"
)

func TestHubAuthAndPublish(t *testing.T) {
	e := newEnv(t, nil)
	a, ack := e.connect(t, e.idp.token(t, tokenSpec{sub: "ann", name: "Ann"}))
	if ack["v"] != float64(1) || ack["guildId"] != testGuild || ack["userId"] != "ann" || ack["name"] != "Ann" || ack["clientId"] == "" {
		t.Fatalf("ack %v", ack)
	}
	b, _ := e.connect(t, e.idp.token(t, tokenSpec{alg: jwa.ES256, sub: "bob"}))
	pending := e.dial(t, nil) // connected, not authenticated
	if n := e.hub.Clients(); n != 2 {
		t.Fatalf("Clients() = %d, want 2", n)
	}

	before := time.Now().UnixMilli()
	e.hub.Publish("room.created", map[string]any{"channelId": "42"})
	for _, c := range []*websocket.Conn{a, b} {
		m := readMsg(t, c)
		p, _ := m["payload"].(map[string]any)
		ts, _ := m["ts"].(float64)
		if m["v"] != float64(1) || m["type"] != "event" || m["event"] != "room.created" || p["channelId"] != "42" || int64(ts) < before {
			t.Fatalf("event %v", m)
		}
	}
	// The unauthenticated client got nothing: its first message is the ack.
	writeJSONMsg(t, pending, map[string]any{"type": "auth", "token": e.idp.token(t, tokenSpec{})})
	if m := readMsg(t, pending); m["type"] != "ack" {
		t.Fatalf("pending client's first message: %v", m)
	}
}

func TestHubAuthTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AuthTimeout = 200 * time.Millisecond })
	c := e.dial(t, nil)
	if reason := expectClose(t, c, CloseUnauthorized, false); !strings.Contains(reason, "no auth message") {
		t.Fatalf("reason %q", reason)
	}
}

func TestHubFirstMessageMustBeAuth(t *testing.T) {
	e := newEnv(t, nil)
	for _, first := range []string{`{"type":"ping"}`, `not json`, `{"type":"auth"}`, `{"type":"auth","token":42}`} {
		c := e.dial(t, nil)
		if err := c.WriteMessage(websocket.TextMessage, []byte(first)); err != nil {
			t.Fatal(err)
		}
		expectClose(t, c, CloseUnauthorized, false)
	}
}

func TestHubClientMessages(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.connect(t, e.idp.token(t, tokenSpec{}))

	send := func(typ int, s string) map[string]any {
		t.Helper()
		if err := c.WriteMessage(typ, []byte(s)); err != nil {
			t.Fatal(err)
		}
		return readMsg(t, c)
	}
	if m := send(websocket.TextMessage, `{"type":"ping","id":"p1"}`); m["type"] != "pong" || m["id"] != "p1" {
		t.Fatalf("ping: %v", m)
	}
	m := send(websocket.TextMessage, `{"type":"frobnicate","id":"7"}`)
	if m["type"] != "error" || m["id"] != "7" || errCode(m) != CodeUnknownType || !strings.Contains(m["error"].(map[string]any)["message"].(string), "frobnicate") {
		t.Fatalf("unknown type: %v", m)
	}
	for _, bad := range []string{`not json`, `[1,2]`, `{"type":1}`, `{"type":""}`, `{"no":"type"}`, `{"type":"a b"}`, `{"type":"x","id":5}`} {
		if m := send(websocket.TextMessage, bad); m["type"] != "error" || errCode(m) != CodeBadMessage {
			t.Fatalf("%s: %v", bad, m)
		}
	}
	if m := send(websocket.BinaryMessage, `{"type":"ping"}`); errCode(m) != CodeBadMessage {
		t.Fatalf("binary: %v", m)
	}
	// 9 bad messages so far; the limit is maxBadMessages, then a close.
	for range maxBadMessages - 9 {
		if m := send(websocket.TextMessage, `{`); errCode(m) != CodeBadMessage {
			t.Fatalf("bad: %v", m)
		}
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{`)); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, CloseBadMessages, true)
}

func TestHubMaxMessageSize(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxMessageBytes = 1024 })
	c, _ := e.connect(t, e.idp.token(t, tokenSpec{}))
	big := `{"type":"ping","pad":"` + strings.Repeat("x", 2000) + `"}`
	if err := c.WriteMessage(websocket.TextMessage, []byte(big)); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, websocket.CloseMessageTooBig, false)
}

func TestHubOrigin(t *testing.T) {
	dialOrigin := func(t *testing.T, e *env, origin string) int {
		t.Helper()
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, resp, err := websocket.DefaultDialer.Dial(e.wsURL(), h)
		if err == nil {
			c.Close()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if errCode(body) != "origin_not_allowed" {
			t.Errorf("refusal body %v", body)
		}
		return resp.StatusCode
	}
	t.Run("same origin by default", func(t *testing.T) {
		e := newEnv(t, nil)
		if got := dialOrigin(t, e, e.srv.URL); got != 101 {
			t.Errorf("same origin: %d", got)
		}
		if got := dialOrigin(t, e, ""); got != 101 {
			t.Errorf("no origin: %d", got)
		}
		if got := dialOrigin(t, e, "http://evil.test"); got != 403 {
			t.Errorf("other origin: %d", got)
		}
	})
	t.Run("allow list", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.AllowedOrigins = []string{"https://app.test"} })
		if got := dialOrigin(t, e, "https://app.test"); got != 101 {
			t.Errorf("allowed: %d", got)
		}
		// The bridge's own UI still opens its hub.
		if got := dialOrigin(t, e, e.srv.URL); got != 101 {
			t.Errorf("own origin with an allow list: %d", got)
		}
		for _, o := range []string{"https://app.test.evil", "http://app.test", "null", "http://evil.test"} {
			if got := dialOrigin(t, e, o); got != 403 {
				t.Errorf("%s: %d", o, got)
			}
		}
	})
}

func TestHubTokenExpiry(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now()
	// a's token expires in 3 s; b's in 2 s, but b sends a fresh token.
	a, _ := e.connect(t, e.idp.token(t, tokenSpec{sub: "a", exp: now.Add(3 * time.Second)}))
	b, _ := e.connect(t, e.idp.token(t, tokenSpec{sub: "b", exp: now.Add(2 * time.Second)}))
	writeJSONMsg(t, b, map[string]any{"type": "auth", "token": e.idp.token(t, tokenSpec{sub: "b"})})
	if m := readMsg(t, b); m["type"] != "ack" {
		t.Fatalf("re-auth: %v", m)
	}
	// Another subject's token is refused without closing.
	writeJSONMsg(t, b, map[string]any{"type": "auth", "token": e.idp.token(t, tokenSpec{sub: "mallory"}), "id": "r2"})
	if m := readMsg(t, b); errCode(m) != CodeAuthFailed || m["id"] != "r2" {
		t.Fatalf("re-auth as another subject: %v", m)
	}
	if reason := expectClose(t, a, CloseUnauthorized, false); reason != "token expired" {
		t.Fatalf("reason %q", reason)
	}
	// b's first token expired a second before a's; b is still served.
	writeJSONMsg(t, b, map[string]any{"type": "ping"})
	if m := readMsg(t, b); m["type"] != "pong" {
		t.Fatalf("b after a's expiry: %v", m)
	}
}

func TestHubHandleMessage(t *testing.T) {
	e := newEnv(t, nil)
	closed := make(chan string, 1)
	e.hub.HandleMessage("offer", func(ctx context.Context, c *Client, raw json.RawMessage) {
		var m struct{ SDP string }
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Errorf("raw: %v", err)
		}
		c.OnClose(func() {
			closed <- c.ID()
			// After close, Send refuses.
			if err := c.Send(map[string]string{"type": "late"}); !errors.Is(err, ErrClientClosed) {
				t.Errorf("Send after close: %v", err)
			}
		})
		if err := c.Send(map[string]string{"type": "answer", "sdp": "re:" + m.SDP, "user": c.UserID(), "name": c.Name()}); err != nil {
			t.Errorf("Send: %v", err)
		}
	})
	e.hub.HandleMessage("auth", func(context.Context, *Client, json.RawMessage) { t.Error("auth handler must not be registered") })
	c, ack := e.connect(t, e.idp.token(t, tokenSpec{sub: "u9", name: "Nine"}))
	writeJSONMsg(t, c, map[string]any{"type": "offer", "sdp": "v=0"})
	m := readMsg(t, c)
	if m["type"] != "answer" || m["sdp"] != "re:v=0" || m["user"] != "u9" || m["name"] != "Nine" {
		t.Fatalf("answer %v", m)
	}
	writeJSONMsg(t, c, map[string]any{"type": "auth", "token": e.idp.token(t, tokenSpec{sub: "u9"})})
	if m := readMsg(t, c); m["type"] != "ack" {
		t.Fatalf("re-auth went to a handler: %v", m)
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	select {
	case id := <-closed:
		if id != ack["clientId"] {
			t.Fatalf("closed %s, ack said %v", id, ack["clientId"])
		}
	case <-time.After(waitLimit):
		t.Fatal("OnClose did not run")
	}
}

func TestHubDropsSilentClient(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PingInterval = 500 * time.Millisecond })
	closed := make(chan struct{})
	e.hub.HandleMessage("watch", func(_ context.Context, c *Client, _ json.RawMessage) {
		c.OnClose(func() { close(closed) })
		_ = c.Send(map[string]string{"type": "watching"})
	})
	// A reading client answers pings (gorilla replies to each ping).
	live, _ := e.connect(t, e.idp.token(t, tokenSpec{}))
	pings := make(chan struct{}, 16)
	live.SetPingHandler(func(data string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	liveDone := make(chan error, 1)
	go func() {
		for {
			if _, _, err := live.ReadMessage(); err != nil {
				liveDone <- err
				return
			}
		}
	}()
	for range 3 {
		select {
		case <-pings:
		case <-time.After(waitLimit):
			t.Fatal("no pings")
		}
	}
	// A client that stops reading stops answering pings and is dropped.
	silent, _ := e.connect(t, e.idp.token(t, tokenSpec{}))
	writeJSONMsg(t, silent, map[string]any{"type": "watch"})
	if m := readMsg(t, silent); m["type"] != "watching" {
		t.Fatal(m)
	}
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("silent client was not dropped")
	}
	if n := e.hub.Clients(); n != 1 {
		t.Fatalf("Clients() = %d, want the live one", n)
	}
	live.Close()
	<-liveDone
}

func TestHubShutdown(t *testing.T) {
	e := newEnv(t, nil)
	var conns []*websocket.Conn
	for range 3 {
		c, _ := e.connect(t, e.idp.token(t, tokenSpec{}))
		conns = append(conns, c)
	}
	unauth := e.dial(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := e.hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(conns, unauth) {
		expectClose(t, c, websocket.CloseGoingAway, false)
	}
	if n := e.hub.Clients(); n != 0 {
		t.Fatalf("Clients() = %d after Shutdown", n)
	}
	_, resp, err := websocket.DefaultDialer.Dial(e.wsURL(), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v %v", err, resp)
	}
	resp.Body.Close()
	r, body := doJSON(t, http.MethodGet, e.srv.URL+"/readyz", "", "")
	if r.StatusCode != 503 || body["ready"] != false {
		t.Fatalf("readyz after shutdown: %d %v", r.StatusCode, body)
	}
	if err := e.hub.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	e.hub.Publish("room.created", map[string]any{}) // no clients, no panic
}

func TestParseClientMessage(t *testing.T) {
	good := map[string]clientMessage{
		`{"type":"auth","token":"x"}`:   {Type: "auth"},
		` {"type":"offer","id":"a1"} `:  {Type: "offer", ID: "a1"},
		`{"type":"x","id":null}`:        {Type: "x"},
		`{"type":"x","extra":[1,2,3]}`:  {Type: "x"},
		`{"type":"voice.mute","id":""}`: {Type: "voice.mute"},
	}
	for in, want := range good {
		got, err := parseClientMessage([]byte(in))
		if err != nil || got.Type != want.Type || got.ID != want.ID || !json.Valid(got.Raw) {
			t.Errorf("%s: %+v %v", in, got, err)
		}
	}
	bad := []string{``, `  `, `null`, `"type"`, `[{"type":"a"}]`, `{"type":null}`, `{"type":"` + strings.Repeat("a", 65) + `"}`,
		`{"type":"a\n"}`, `{"type":"ü"}`, `{"type":"a","id":{}}`, `{"type":"a","id":"` + strings.Repeat("i", 129) + `"}`, `{"type":"a"`, `{"type":"a"}x`}
	for _, in := range bad {
		if _, err := parseClientMessage([]byte(in)); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%q: want ErrBadMessage, got %v", in, err)
		}
	}
}

func FuzzClientMessage(f *testing.F) {
	for _, s := range []string{`{"type":"auth","token":"x"}`, `{"type":"offer","id":"1","sdp":"v=0"}`, `{}`, `[]`, `{"type":1}`, `nul`, "{\"type\":\"a\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseClientMessage(data)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error does not wrap ErrBadMessage: %v", err)
			}
			return
		}
		if m.Type == "" || len(m.Type) > maxTypeLen || len(m.ID) > maxIDLen {
			t.Fatalf("accepted bad fields: %+v", m)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(m.Raw, &obj); err != nil {
			t.Fatalf("accepted a non-object: %q", data)
		}
	})
}

// Past SocketsPerUser a user's next auth is refused with 4429; other
// users are not affected, and a closed socket frees its place.
func TestSocketsPerUser(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SocketsPerUser = 2 })
	alice := e.idp.token(t, tokenSpec{sub: "alice"})
	first, _ := e.connect(t, alice)
	e.connect(t, alice)
	c := e.dial(t, nil)
	writeJSONMsg(t, c, map[string]any{"type": "auth", "token": alice})
	if reason := expectClose(t, c, CloseTooManySockets, false); !strings.Contains(reason, "2 connections") {
		t.Fatalf("close reason %q does not state the limit", reason)
	}
	if _, ack := e.connect(t, e.idp.token(t, tokenSpec{sub: "bob"})); ack["event"] != "auth.ok" {
		t.Fatalf("bob: %v", ack)
	}
	if n := e.hub.Clients(); n != 3 {
		t.Fatalf("%d clients, want alice's 2 and bob's", n)
	}
	_ = first.Close()
	deadline := time.Now().Add(waitLimit)
	for e.hub.Clients() != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the closed socket never left the hub")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ack := e.connect(t, alice); ack["event"] != "auth.ok" {
		t.Fatalf("alice after closing one: %v", ack)
	}
	if _, _, users := e.hub.access.sizes(); users != 2 {
		t.Fatalf("%d users with sockets counted, want 2", users)
	}
}
