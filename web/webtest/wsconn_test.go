package webtest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestConnChecksBothDirections: through Conn, a client's unknown message
// fails its write, a server's bad message fails the read, good messages
// pass, and a socket on another path is not checked.
func TestConnChecksBothDirections(t *testing.T) {
	p, err := NewProtocol()
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			// Answer a good ack, then echo whatever came.
			_ = c.WriteMessage(websocket.TextMessage, []byte(`{"v":1,"type":"pong"}`))
			_ = c.WriteMessage(websocket.TextMessage, msg)
		}
	}))
	defer srv.Close()

	var mu sync.Mutex
	var reported []error
	dial := func(path string) *websocket.Conn {
		d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return p.Conn(c, "/api/ws", nil, func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() }), nil
		}}
		c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := dial("/api/ws")
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello"}`)); !errors.Is(err, ErrViolation) {
		t.Fatalf("unknown client message written: %v", err)
	}
	c2 := dial("/api/ws")
	defer c2.Close()
	// A good client message that is not a good server message: the echo
	// must fail the read.
	if err := c2.WriteMessage(websocket.TextMessage, []byte(`{"type":"leave"}`)); err != nil {
		t.Fatalf("good client message refused: %v", err)
	}
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, msg, err := c2.ReadMessage()
		if errors.Is(err, ErrViolation) {
			break
		}
		if err != nil || string(msg) != `{"v":1,"type":"pong"}` {
			t.Fatalf("read %q %v; want the pong, then a violation", msg, err)
		}
	}

	other := dial("/elsewhere")
	defer other.Close()
	if err := other.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello"}`)); err != nil {
		t.Fatalf("a socket on another path was checked: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 2 {
		t.Fatalf("reported %d violations, want 2: %v", len(reported), reported)
	}
}
