package media

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// udpReceiver is a loopback socket that records the (stream, seq) pairs
// it receives.
type udpReceiver struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  []uint32
	wake chan struct{}
	done chan struct{}
}

func newUDPReceiver(t *testing.T) *udpReceiver {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &udpReceiver{conn: conn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if n < 4 {
				continue
			}
			r.mu.Lock()
			r.got = append(r.got, binary.BigEndian.Uint32(buf))
			r.mu.Unlock()
			kick(r.wake)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-r.done })
	return r
}

func (r *udpReceiver) addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// wait waits until n datagrams arrived and returns them.
func (r *udpReceiver) wait(t *testing.T, n int) []uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for {
		r.mu.Lock()
		got := append([]uint32(nil), r.got...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			t.Fatalf("%s got %d of %d datagrams", r.addr(), len(got), n)
		}
	}
}

func newTestBatchConn(t *testing.T, maxPending int) *batchConn {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := newStoppedBatchConn(conn, maxPending, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { c.Close() })
	return c
}

func datagramOf(seq uint32, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, seq)
	return b
}

// Datagrams queued for several destinations while the writer is busy go
// out in few system calls, each destination's in the order written, every
// one exactly once.
func TestBatchConnSendsEveryDatagramOnceInOrder(t *testing.T) {
	const streams, per = 4, 50 // 200 datagrams: four sendmmsg of up to 64
	c := newTestBatchConn(t, batchMaxPending)
	rs := make([]*udpReceiver, streams)
	for i := range rs {
		rs[i] = newUDPReceiver(t)
	}
	for seq := range uint32(per) {
		for i, r := range rs {
			size := 150
			if i%2 == 1 {
				size = 1200 // video-sized
			}
			if _, err := c.WriteToAddrPort(datagramOf(seq, size), r.addr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.start()
	for i, r := range rs {
		got := r.wait(t, per)
		if len(got) != per {
			t.Fatalf("stream %d: %d datagrams, want %d", i, len(got), per)
		}
		for k, seq := range got {
			if seq != uint32(k) {
				t.Fatalf("stream %d: datagram %d is %d: %v", i, k, seq, got)
			}
		}
	}
	c.flush() // waits for the writer's last system call to return
	if b, want := c.batches.Load(), uint64((streams*per+batchSize-1)/batchSize); b != want {
		t.Fatalf("%d system calls for %d datagrams, want %d", b, streams*per, want)
	}
	if c.sent.Load() != streams*per || c.dropped.Load() != 0 || c.failed.Load() != 0 {
		t.Fatalf("sent %d, dropped %d, failed %d", c.sent.Load(), c.dropped.Load(), c.failed.Load())
	}
}

// Writers on many goroutines, as the browsers' writers are, each keep
// their stream's order through the shared batches.
func TestBatchConnConcurrentWritersKeepOrder(t *testing.T) {
	const streams, rounds, window = 8, 6, 40
	c := newTestBatchConn(t, batchMaxPending)
	c.start()
	var wg sync.WaitGroup
	for i := range streams {
		r := newUDPReceiver(t)
		wg.Go(func() {
			for round := range rounds {
				for k := range window {
					// A window at a time, so the receiver's socket buffer
					// never overflows.
					if _, err := c.WriteTo(datagramOf(uint32(round*window+k), 150), net.UDPAddrFromAddrPort(r.addr())); err != nil {
						t.Error(err)
						return
					}
				}
				r.wait(t, (round+1)*window)
			}
			for k, seq := range r.wait(t, rounds*window) {
				if seq != uint32(k) {
					t.Errorf("stream %d: datagram %d is %d", i, k, seq)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A full queue drops the newest datagrams, never blocks the writer that
// offers them, and sends the ones it kept.
func TestBatchConnFullQueueDropsNewest(t *testing.T) {
	c := newTestBatchConn(t, 10)
	r := newUDPReceiver(t)
	for seq := range uint32(15) {
		if n, err := c.WriteToAddrPort(datagramOf(seq, 100), r.addr()); err != nil || n != 100 {
			t.Fatalf("write %d: %d, %v", seq, n, err)
		}
	}
	if d := c.dropped.Load(); d != 5 {
		t.Fatalf("dropped %d, want 5", d)
	}
	c.start()
	got := r.wait(t, 10)
	for k, seq := range got {
		if seq != uint32(k) {
			t.Fatalf("got %v, want 0..9", got)
		}
	}
	// Written after the queue drained: sent again.
	if _, err := c.WriteToAddrPort(datagramOf(10, 100), r.addr()); err != nil {
		t.Fatal(err)
	}
	if got := r.wait(t, 11); got[10] != 10 {
		t.Fatalf("got %v", got)
	}
}

func TestBatchConnClosed(t *testing.T) {
	c := newTestBatchConn(t, 10)
	c.start()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToAddrPort([]byte{1}, netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// BenchmarkBatchConnWrite is one datagram into the queue (the writer
// sends them on another goroutine, and drops what outruns it, so ns/op is
// the writing side only); allocs/op must be 0.
func BenchmarkBatchConnWrite(b *testing.B) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	c := newBatchConn(conn, batchMaxPending, slog.New(slog.DiscardHandler))
	defer c.Close()
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	pkt := make([]byte, 150)
	// Warm the buffer pool and the address cache.
	for range batchMaxPending {
		_, _ = c.WriteToAddrPort(pkt, to)
	}
	for c.sent.Load()+c.dropped.Load()+c.failed.Load() < batchMaxPending {
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.WriteToAddrPort(pkt, to); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(c.sent.Load())/float64(max(c.batches.Load(), 1)), "datagrams/syscall")
}

// A burst written between hold and release (one packet to every
// subscriber) leaves from the releasing goroutine in the fewest system
// calls, in order, without waking the writer.
func TestBatchConnBurstSentByRelease(t *testing.T) {
	const n = 100
	c := newTestBatchConn(t, batchMaxPending)
	c.start()
	r := newUDPReceiver(t)
	c.hold()
	for seq := range uint32(n) {
		if _, err := c.WriteToAddrPort(datagramOf(seq, 150), r.addr()); err != nil {
			t.Fatal(err)
		}
	}
	if b := c.batches.Load(); b != 0 {
		t.Fatalf("%d system calls before release", b)
	}
	c.release()
	if b, s := c.batches.Load(), c.sent.Load(); b != 2 || s != n {
		t.Fatalf("release: %d system calls sent %d datagrams, want 2 and %d", b, s, n)
	}
	for k, seq := range r.wait(t, n) {
		if seq != uint32(k) {
			t.Fatalf("datagram %d is %d", k, seq)
		}
	}
}
