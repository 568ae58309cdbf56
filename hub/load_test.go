package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// loadEvent is the payload the load tests publish.
type loadEvent struct {
	Seq  int    `json:"seq"`
	Sent int64  `json:"sent"` // unix ns, for delivery latency
	Pad  string `json:"pad,omitempty"`
}

// parseLoadEvent finds seq and sent in an event without a full decode, so
// the readers stay cheap next to the hub they measure.
func parseLoadEvent(data []byte) (seq int, sent int64, ok bool) {
	num := func(key string) (int64, bool) {
		i := bytes.Index(data, []byte(key))
		if i < 0 {
			return 0, false
		}
		rest := data[i+len(key):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
		return n, err == nil
	}
	s, ok1 := num(`"seq":`)
	t, ok2 := num(`"sent":`)
	return int(s), t, ok1 && ok2
}

// latencyHist is a lock-free histogram of durations: 8 buckets per
// power of two (12.5% resolution).
type latencyHist struct{ buckets [64 * 8]atomic.Uint64 }

func (h *latencyHist) add(ns int64) {
	if ns < 1 {
		ns = 1
	}
	exp := bits.Len64(uint64(ns)) - 1
	frac := 0
	if exp >= 3 {
		frac = int(uint64(ns)>>(exp-3)) & 7
	}
	h.buckets[exp*8+frac].Add(1)
}

// quantile returns the upper edge of the bucket holding quantile q.
func (h *latencyHist) quantile(q float64) time.Duration {
	var total uint64
	for i := range h.buckets {
		total += h.buckets[i].Load()
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= want {
			exp, frac := i/8, i%8
			return time.Duration(float64(uint64(1)<<exp) * (1 + float64(frac+1)/8))
		}
	}
	return 0
}

// loadRig is n authenticated gorilla clients on loopback, each read by a
// goroutine that checks every event arrives once and in order.
type loadRig struct {
	e        *env
	conns    []*websocket.Conn
	window   int
	progress chan int // seq/window, once per client per completed window
	hist     latencyHist
	wg       sync.WaitGroup

	closing atomic.Bool // close began: read errors are the rig's own

	mu   sync.Mutex
	errs []error
}

// newLoadRig connects the n clients, each socket's receive buffer set to
// readBuf bytes (0: the kernel's default). A buffer that holds a whole
// window of events keeps the hub's writes to a reader from ever blocking,
// however late the reader's goroutine is scheduled.
func newLoadRig(tb testing.TB, e *env, n, window, readBuf int) *loadRig {
	tb.Helper()
	raiseFDLimit(tb, uint64(2*n+256))
	r := &loadRig{e: e, window: window, progress: make(chan int, 4*n+64)}
	tok := e.idp.token(tb, tokenSpec{alg: "ES256"})
	r.conns = make([]*websocket.Conn, n)
	var (
		dialWG   sync.WaitGroup
		firstErr atomic.Value
		next     atomic.Int64
	)
	auth, _ := json.Marshal(map[string]string{"type": "auth", "token": tok})
	dialer := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil && readBuf > 0 {
			err = c.(*net.TCPConn).SetReadBuffer(readBuf)
		}
		return c, err
	}}
	for range 32 {
		dialWG.Add(1)
		go func() {
			defer dialWG.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				c, _, err := dialer.Dial(e.wsURL(), nil)
				if err == nil {
					err = c.WriteMessage(websocket.TextMessage, auth)
				}
				if err == nil {
					_ = c.SetReadDeadline(time.Now().Add(waitLimit))
					var data []byte
					if _, data, err = c.ReadMessage(); err == nil && !bytes.Contains(data, []byte(`"auth.ok"`)) {
						err = fmt.Errorf("want ack, got %s", data)
					}
					_ = c.SetReadDeadline(time.Time{})
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					if c != nil {
						c.Close()
					}
					return
				}
				r.conns[i] = c
			}
		}()
	}
	dialWG.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		r.close()
		tb.Fatalf("connecting %d clients: %v", n, err)
	}
	for _, c := range r.conns {
		r.wg.Add(1)
		go r.read(c)
	}
	tb.Cleanup(r.close)
	return r
}

func (r *loadRig) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *loadRig) read(c *websocket.Conn) {
	defer r.wg.Done()
	expected := 0
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			if !r.closing.Load() {
				r.fail(fmt.Errorf("reader's connection ended after event %d: %w", expected-1, err))
			}
			return
		}
		seq, sent, ok := parseLoadEvent(data)
		if !ok {
			r.fail(fmt.Errorf("unexpected message %.80s", data))
			return
		}
		r.hist.add(time.Now().UnixNano() - sent)
		if seq != expected {
			r.fail(fmt.Errorf("got event %d, want %d", seq, expected))
			return
		}
		expected++
		if expected%r.window == 0 {
			r.progress <- expected/r.window - 1
		}
	}
}

// waitWindow blocks until every client has read window w, counting
// signals of later windows on the way.
func (r *loadRig) waitWindow(tb testing.TB, w int, counts map[int]int) {
	tb.Helper()
	deadline := time.After(2 * time.Minute)
	for counts[w] < len(r.conns) {
		select {
		case got := <-r.progress:
			counts[got]++
		case <-deadline:
			errs := r.errors()
			if len(errs) > 3 {
				errs = errs[:3]
			}
			tb.Fatalf("window %d: only %d of %d clients got it; %d readers ended, first: %v", w, counts[w], len(r.conns), len(r.errors()), errs)
		}
	}
}

func (r *loadRig) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// close closes every client and waits for the readers.
func (r *loadRig) close() {
	r.closing.Store(true)
	for _, c := range r.conns {
		if c != nil {
			_ = c.Close()
		}
	}
	r.wg.Wait()
	r.conns = nil
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestBackpressure: one client that never reads and 1000 that do. The
// stalled one is closed once more than SendQueueBytes behind; every other
// client gets every event exactly once and in order; the heap stays
// within a bound set by the queue limit.
func TestBackpressure(t *testing.T) {
	const (
		readers = 1000
		events  = 2000
		window  = 100 // events in flight: ~100 KiB, far below the limit
	)
	// One user's many sockets: the per-user limit is not what is tested.
	e := newEnv(t, func(o *Options) { o.SocketsPerUser = 1 << 20 }) // default SendQueueBytes: 1 MiB
	stalledClosed := make(chan struct{})
	e.hub.HandleMessage("watch", func(_ context.Context, c *Client, _ json.RawMessage) {
		c.OnClose(func() { close(stalledClosed) })
		_ = c.Send(map[string]string{"type": "watching"})
	})
	// The stalled client keeps a small socket buffer so the kernel cannot
	// hide the backlog.
	dialer := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	stalled, _, err := dialer.Dial(e.wsURL(), nil)
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

	// Readers whose socket buffer holds a window: only the stalled client
	// makes the hub's writes block, however busy the machine.
	rig := newLoadRig(t, e, readers, window, 1<<20)
	if n := e.hub.Clients(); n != readers+1 {
		t.Fatalf("Clients() = %d", n)
	}
	base := heapInUse()
	var peak uint64
	pad := strings.Repeat("p", 1000)
	counts := map[int]int{}
	for i := range events {
		e.hub.Publish("load", loadEvent{Seq: i, Sent: time.Now().UnixNano(), Pad: pad})
		if (i+1)%window == 0 {
			rig.waitWindow(t, i/window, counts)
			peak = max(peak, heapInUse())
		}
	}
	select {
	case <-stalledClosed:
	case <-time.After(waitLimit):
		t.Fatal("the stalled client was not closed")
	}
	if errs := rig.errors(); len(errs) > 0 {
		t.Fatalf("%d readers saw errors, first: %v", len(errs), errs[0])
	}
	if n := e.hub.Clients(); n != readers {
		t.Fatalf("Clients() = %d, want %d", n, readers)
	}
	// Exactly once: one more window arrives right after the last event,
	// so no reader saw a duplicate or a stray message in between (each
	// reader checks every seq).
	for i := events; i < events+window; i++ {
		e.hub.Publish("load", loadEvent{Seq: i, Sent: time.Now().UnixNano()})
	}
	rig.waitWindow(t, events/window, counts)
	if errs := rig.errors(); len(errs) > 0 {
		t.Fatalf("after the last event: %v", errs[0])
	}

	// Queued bytes are shared across clients and bounded per client, so
	// the heap grows by little more than the stalled client's queue; 16x
	// the limit leaves room for GC timing and the readers' buffers.
	bound := uint64(16 * DefaultSendQueueBytes)
	grow := int64(peak) - int64(base)
	t.Logf("heap in use: base %d MiB, peak %d MiB (+%d KiB) over %d events to %d clients", base>>20, peak>>20, grow>>10, events, readers+1)
	if grow > int64(bound) {
		t.Fatalf("heap grew %d bytes, bound %d", grow, bound)
	}

	// The stalled client, reading at last, finds its stream cut short.
	_ = stalled.SetReadDeadline(time.Now().Add(waitLimit))
	got := 0
	for {
		_, data, err := stalled.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != CloseSlowClient && ce.Code != websocket.CloseAbnormalClosure {
				t.Fatalf("stalled client closed with %d", ce.Code)
			}
			break
		}
		if _, _, ok := parseLoadEvent(data); ok {
			got++
		}
	}
	if got >= events {
		t.Fatalf("stalled client got all %d events", got)
	}
	t.Logf("stalled client received %d of %d events before the cut", got, events)
}

// BenchmarkBroadcast publishes small events to 1,000 and 10,000 loopback
// clients (in this process, so they share the CPU with the hub) and
// reports events/s (each delivered to every client), deliveries/s and the
// p50/p99 latency from Publish to a client's read. mode=burst keeps up to
// two windows of 64 events in flight: throughput, with queueing latency.
// mode=paced publishes the next event only when every client has the
// last: the fan-out latency of a lone event.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, mode := range []struct {
			name   string
			window int
		}{{"burst", 64}, {"paced", 1}} {
			b.Run(fmt.Sprintf("clients=%d/mode=%s", n, mode.name), func(b *testing.B) {
				benchBroadcast(b, n, mode.window)
			})
		}
	}
}

func benchBroadcast(b *testing.B, n, window int) {
	b.ReportAllocs()
	e := newEnv(b, func(o *Options) { o.SocketsPerUser = 1 << 20 })
	lg := startLoadgen(b, e, n, window)
	// In burst mode the publisher runs one window ahead; paced, none.
	ahead := 1
	if window == 1 {
		ahead = 0
	}
	b.ResetTimer()
	start := time.Now()
	waited := -1
	for i := range b.N {
		e.hub.Publish("bench", loadEvent{Seq: i, Sent: time.Now().UnixNano()})
		if w := i / window; (i+1)%window == 0 && w >= ahead {
			lg.waitWindow(b, w-ahead)
			waited = w - ahead
		}
	}
	// Pad to a window boundary so the last events are counted.
	last := b.N
	for last%window != 0 {
		e.hub.Publish("bench", loadEvent{Seq: last, Sent: time.Now().UnixNano()})
		last++
	}
	if final := last/window - 1; final > waited {
		lg.waitWindow(b, final)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	hist := lg.stop(b)
	b.ReportMetric(float64(last)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(last)*float64(n)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(hist.quantile(0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(hist.quantile(0.99).Microseconds()), "p99-µs")
}

// bytesPerIdleConn connects n authenticated clients from a child process
// (so only the hub's side is in this heap) and returns the growth of heap
// and goroutine stacks per connection.
func bytesPerIdleConn(tb testing.TB, n int) float64 {
	tb.Helper()
	e := newEnv(tb, func(o *Options) { o.SocketsPerUser = 1 << 20 })
	measure := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	// One connection first, so pools and caches are warm before measuring.
	warm := startLoadgen(tb, e, 1, 1)
	before := measure()
	lg := startLoadgen(tb, e, n, 1)
	if got := e.hub.Clients(); got != n+1 {
		tb.Fatalf("Clients() = %d, want %d", got, n+1)
	}
	after := measure()
	lg.stop(tb)
	warm.stop(tb)
	return float64(int64(after)-int64(before)) / float64(n)
}

// TestIdleConnMemory bounds what an idle authenticated connection costs
// the hub: two goroutines, a read buffer and the client record.
func TestIdleConnMemory(t *testing.T) {
	per := bytesPerIdleConn(t, 500)
	t.Logf("%.0f bytes per idle authenticated connection", per)
	if per > 64<<10 {
		t.Fatalf("%.0f bytes per idle connection, want under 64 KiB", per)
	}
}

// BenchmarkIdleConn reports bytes of heap and stack per idle
// authenticated connection (B/conn) at 1,000 and 10,000 connections.
func BenchmarkIdleConn(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var per float64
			for range b.N {
				per = bytesPerIdleConn(b, n)
			}
			b.ReportMetric(per, "B/conn")
		})
	}
}
