package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// receivedEvent is a "load" event as a client decodes it.
type receivedEvent struct {
	Type    string    `json:"type"`
	Event   string    `json:"event"`
	Payload loadEvent `json:"payload"`
}

// padFor is event i's padding: sizes on both sides of the 7-bit, 16-bit
// and 64-bit frame lengths, and now and then a message larger than one
// socket write gathers.
func padFor(i int) string {
	sizes := []int{0, 90, 200, 65600}
	n := sizes[i%3]
	if i%100 == 99 {
		n = sizes[3]
	}
	return strings.Repeat("x", n)
}

// A burst of events reaches a client gathered into a few socket writes,
// and still every event arrives once, whole and in order.
func TestCoalescedWritesDeliverEveryEventOnceInOrder(t *testing.T) {
	const events = 600
	e := newEnv(t, nil)
	c, _ := e.connect(t, e.idp.token(t, tokenSpec{}))
	defer c.Close()
	for i := range events {
		e.hub.Publish("load", loadEvent{Seq: i, Pad: padFor(i)})
	}
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	for i := range events {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("after %d events: %v", i, err)
		}
		var ev receivedEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Fatalf("event %d: %v: %.80q", i, err, data)
		}
		if ev.Event != "load" || ev.Payload.Seq != i || ev.Payload.Pad != padFor(i) {
			t.Fatalf("message %d: event %q seq %d pad %d bytes, want load %d with %d", i,
				ev.Event, ev.Payload.Seq, len(ev.Payload.Pad), i, len(padFor(i)))
		}
	}
	// Nothing more: a ping answered proves the stream ends here.
	writeJSONMsg(t, c, map[string]any{"type": "ping", "id": "end"})
	if m := readMsg(t, c); m["type"] != "pong" {
		t.Fatalf("after the last event: %v, want the pong", m)
	}
}

// A client that stops reading is closed once the hub's writes make no
// progress, long before its queue would overflow, and what it finally
// reads is whole events in order followed by a close frame with
// CloseSlowClient.
func TestStalledClientClosedWithCloseFrame(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SocketSendBuffer = 4 << 10 })
	server := make(chan *Client, 1)
	e.hub.HandleMessage("watch", func(_ context.Context, c *Client, _ json.RawMessage) {
		server <- c
		_ = c.Send(map[string]string{"type": "watching"})
	})
	// The client keeps the kernel's default receive buffer: a tiny one
	// would make the sender wait for zero-window probes once it reads
	// again.
	stalled, _, err := websocket.DefaultDialer.Dial(e.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	writeJSONMsg(t, stalled, map[string]any{"type": "auth", "token": e.idp.token(t, tokenSpec{})})
	readMsg(t, stalled)
	writeJSONMsg(t, stalled, map[string]any{"type": "watch"})
	if m := readMsg(t, stalled); m["type"] != "watching" {
		t.Fatal(m)
	}
	sc := <-server

	// 600 KiB: far more than the socket buffers, less than the send
	// queue's 1 MiB, so only the stall can close the client.
	const events = 600
	pad := strings.Repeat("p", 1000)
	for i := range events {
		if err := sc.Send(receivedEvent{Type: "event", Event: "load", Payload: loadEvent{Seq: i, Pad: pad}}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	select {
	case <-sc.done:
	case <-time.After(waitLimit):
		t.Fatal("the stalled client was not closed")
	}

	_ = stalled.SetReadDeadline(time.Now().Add(waitLimit))
	got := 0
	for {
		_, data, err := stalled.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != CloseSlowClient {
				t.Fatalf("after %d events: %v, want a close frame with %d", got, err, CloseSlowClient)
			}
			break
		}
		var ev receivedEvent
		if err := json.Unmarshal(data, &ev); err != nil || ev.Payload.Seq != got || ev.Payload.Pad != pad {
			t.Fatalf("message %d is not event %d whole: %v %.80q", got, got, err, data)
		}
		got++
	}
	if got >= events {
		t.Fatalf("the stalled client got all %d events", got)
	}
}
