package hub

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func sign(secret []byte, ts, body string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "." + body))
	return hex.EncodeToString(m.Sum(nil))
}

func postEvent(t *testing.T, e *env, ts, sig, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/internal/events", strings.NewReader(body))
	if ts != "" {
		req.Header.Set("X-Timestamp", ts)
	}
	if sig != "" {
		req.Header.Set("X-Signature", sig)
	}
	return doReq(t, req)
}

func TestInternalEvents(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HMACSecret = testSecret })
	c, _ := e.connect(t, e.idp.token(t, tokenSpec{}))
	now := strconv.FormatInt(time.Now().Unix(), 10)
	body := `{"event":"voice.joined","payload":{"channelId":"5","userId":"9"}}`
	good := sign(testSecret, now, body)

	refused := []struct {
		name, ts, sig, body string
		status              int
		code                string
	}{
		{"no timestamp", "", good, body, 401, "bad_timestamp"},
		{"timestamp not a number", "12a", good, body, 401, "bad_timestamp"},
		{"signed timestamp", "+" + now, sign(testSecret, "+"+now, body), body, 401, "bad_timestamp"},
		// 65 s, not 61: whole-second timestamps and a loaded machine need a margin to the 60 s window.
		{"stale", ts(-65 * time.Second), sign(testSecret, ts(-65*time.Second), body), body, 401, "stale_timestamp"},
		{"future", ts(65 * time.Second), sign(testSecret, ts(65*time.Second), body), body, 401, "stale_timestamp"},
		{"no signature", now, "", body, 401, "bad_signature"},
		{"signature not hex", now, "zz" + good[2:], body, 401, "bad_signature"},
		{"short signature", now, good[:62], body, 401, "bad_signature"},
		{"wrong secret", now, sign([]byte("another secret another secret!!"), now, body), body, 401, "bad_signature"},
		{"body changed", now, good, strings.Replace(body, `"9"`, `"8"`, 1), 401, "bad_signature"},
		{"timestamp changed", ts(-5 * time.Second), good, body, 401, "bad_signature"},
		{"event not allowed", now, sign(testSecret, now, `{"event":"admin.grant","payload":{}}`), `{"event":"admin.grant","payload":{}}`, 400, "invalid_body"},
		{"payload not object", now, sign(testSecret, now, `{"event":"voice.left","payload":[1]}`), `{"event":"voice.left","payload":[1]}`, 400, "invalid_body"},
		{"unknown field", now, sign(testSecret, now, `{"event":"voice.left","payload":{},"x":1}`), `{"event":"voice.left","payload":{},"x":1}`, 400, "invalid_body"},
	}
	for _, tc := range refused {
		resp, got := postEvent(t, e, tc.ts, tc.sig, tc.body)
		if resp.StatusCode != tc.status || errCode(got) != tc.code {
			t.Errorf("%s: %d %v, want %d %s", tc.name, resp.StatusCode, got, tc.status, tc.code)
		}
	}

	resp, got := postEvent(t, e, now, good, body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("good event: %d %v", resp.StatusCode, got)
	}
	resp, got = postEvent(t, e, now, good, body)
	if resp.StatusCode != http.StatusUnauthorized || errCode(got) != "replayed" {
		t.Fatalf("replay: %d %v", resp.StatusCode, got)
	}
	// Upper-case hex is the same signature: still a replay.
	resp, got = postEvent(t, e, now, strings.ToUpper(good), body)
	if resp.StatusCode != http.StatusUnauthorized || errCode(got) != "replayed" {
		t.Fatalf("replay in upper case: %d %v", resp.StatusCode, got)
	}

	// The client saw exactly the one good event: after it comes the marker.
	e.hub.Publish("marker", nil)
	m := readMsg(t, c)
	if m["event"] != "voice.joined" || m["payload"].(map[string]any)["userId"] != "9" {
		t.Fatalf("first message %v, want the good event", m)
	}
	if m := readMsg(t, c); m["event"] != "marker" {
		t.Fatalf("a refused request was broadcast: %v", m)
	}
}

func ts(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).Unix(), 10) }

func TestInternalEventTooLarge(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HMACSecret = testSecret; o.MaxBody = 1024 })
	c, _ := e.connect(t, e.idp.token(t, tokenSpec{}))
	body := `{"event":"voice.left","payload":{"pad":"` + strings.Repeat("x", 2000) + `"}}`
	now := ts(0)
	resp, got := postEvent(t, e, now, sign(testSecret, now, body), body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d %v", resp.StatusCode, got)
	}
	e.hub.Publish("marker", nil)
	if m := readMsg(t, c); m["event"] != "marker" {
		t.Fatalf("oversized event was broadcast: %v", m)
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
}

func TestReplayCacheExpires(t *testing.T) {
	rc := newReplayCache(time.Minute)
	t0 := time.Unix(1_700_000_000, 0)
	var sig [32]byte
	for i := range 1000 {
		sig[0], sig[1] = byte(i), byte(i>>8)
		if r := rc.add(sig, t0.Add(time.Minute), t0); r != replayNew {
			t.Fatalf("entry %d: %v", i, r)
		}
	}
	if r := rc.add(sig, t0.Add(time.Minute), t0.Add(time.Second)); r != replaySeen {
		t.Fatal("replay inside the window not seen")
	}
	// Two windows later, one insert sweeps every expired entry.
	sig[2] = 1
	if r := rc.add(sig, t0.Add(3*time.Minute), t0.Add(2*time.Minute)); r != replayNew {
		t.Fatal(r)
	}
	if n := rc.len(); n != 1 {
		t.Fatalf("%d entries after expiry, want 1", n)
	}
}

func TestParseInternalEvent(t *testing.T) {
	for _, ok := range []string{
		`{"event":"room.created","payload":{"channelId":"1"}}`,
		` {"payload":{},"event":"speaking.started"} `,
	} {
		if _, err := parseInternalEvent([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{``, `null`, `{}`, `{"event":"room.created"}`, `{"event":"room.created","payload":null}`,
		`{"event":"room.created","payload":"x"}`, `{"event":"Room.Created","payload":{}}`, `{"event":"room.created","payload":{}} {}`,
		`{"event":1,"payload":{}}`, `{"event":"room.created","payload":{},"extra":1}`} {
		if _, err := parseInternalEvent([]byte(bad)); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%q: want ErrBadEvent, got %v", bad, err)
		}
	}
}

func FuzzInternalEvent(f *testing.F) {
	for _, s := range []string{`{"event":"room.created","payload":{"a":1}}`, `{"event":"voice.left","payload":[]}`, `{}`, `{"event":"x"}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := parseInternalEvent(body)
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("error does not wrap ErrBadEvent: %v", err)
			}
			return
		}
		if !internalEvents[ev.Event] {
			t.Fatalf("accepted event %q", ev.Event)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(ev.Payload, &obj); err != nil || obj == nil {
			t.Fatalf("accepted payload %q", ev.Payload)
		}
		// What is accepted must be publishable.
		if _, err := json.Marshal(eventMessage{Payload: ev.Payload}); err != nil {
			t.Fatalf("accepted payload does not encode: %v", err)
		}
	})
}

// The signature headers are checked before the body is read: a request
// that cannot be authentic is refused while its body has not even been
// sent, and a body announced larger than MaxBody is refused unread.
func TestInternalEventHeadersBeforeBody(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HMACSecret = testSecret; o.MaxBody = 1024 })
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	now := strconv.FormatInt(time.Now().Unix(), 10)
	sig := strings.Repeat("ab", 32)
	cases := []struct {
		name, headers string
		status        int
		code          string
	}{
		{"no timestamp", "", 401, "bad_timestamp"},
		{"stale timestamp", "X-Timestamp: 1000\r\nX-Signature: " + sig + "\r\n", 401, "stale_timestamp"},
		{"no signature", "X-Timestamp: " + now + "\r\n", 401, "bad_signature"},
		{"too large", "X-Timestamp: " + now + "\r\nX-Signature: " + sig + "\r\n", 413, "body_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			length := 100
			if tc.status == 413 {
				length = 1 << 20
			}
			// Headers only: the announced body never comes.
			req := fmt.Sprintf("POST /api/internal/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n", length, tc.headers)
			if _, err := conn.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			defer resp.Body.Close()
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status || errCode(body) != tc.code {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
}
