package media

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
	"golang.org/x/net/ipv6"
)

const (
	// batchMaxPending bounds the datagrams waiting for the batch writer,
	// about 1.5 MB of video at most. A full queue drops the newest, as a
	// full socket buffer would.
	batchMaxPending = 1024
	// batchSize is the most datagrams handed to one sendmmsg.
	batchSize = 64
	// batchBufCap is the capacity of a pooled datagram buffer: pion's
	// SRTP packets stay under 1500 bytes; a larger datagram gets its own.
	batchBufCap = 1500
	// batchAddrCache bounds the cache of destination addresses.
	batchAddrCache = 4096
)

// batchConn is the UDP socket every browser connection shares (the ICE
// UDP mux's), sending many datagrams per system call: sendmmsg(2),
// through x/net's WriteBatch. A write copies the datagram into a queue
// and returns; one writer goroutine takes whatever is queued when it
// wakes and sends it in one call. No timer holds a datagram back: at low
// load each goes out alone as soon as the writer runs; under load the
// datagrams that arrive while a batch is on its way form the next, so a
// datagram waits at most for one batch's system call. Datagrams leave in
// the order they were written, so no stream is reordered.
//
// Reads go straight to the socket.
type batchConn struct {
	*net.UDPConn
	pc  *ipv6.PacketConn // WriteBatch only; IPv4 destinations work on either family (Linux)
	log *slog.Logger

	wake chan struct{} // capacity 1: the queue is not empty
	done chan struct{} // closed by Close
	wg   sync.WaitGroup
	once sync.Once
	// holds counts forwarding goroutines inside hold/release: while one
	// is, writes do not wake the writer; release sends them.
	holds atomic.Int32

	// sendMu serializes taking datagrams from the queue with sending
	// them, so two senders never reorder them.
	sendMu sync.Mutex
	batch  []datagram

	mu      sync.Mutex
	pending []datagram
	free    [][]byte
	closed  bool
	max     int

	dropped atomic.Uint64
	failed  atomic.Uint64
	batches atomic.Uint64 // system calls, for tests and benchmarks
	sent    atomic.Uint64

	// Under sendMu.
	msgs  []ipv6.Message
	addrs map[netip.AddrPort]*net.UDPAddr
}

// inlinePair reports whether media toward a browser whose selected
// candidate pair is pair may be written inline by the forwarding
// goroutine: the local candidate is a UDP host or server-reflexive
// candidate on the mux's batched socket, whose writes end in a queue
// append and never block. A TCP candidate's write can block on a slow
// peer, and a relayed one goes through its TURN allocation: those keep the
// browser's queue and writer goroutine.
func (e *engine) inlinePair(pair *webrtc.ICECandidatePair) bool {
	if !e.inlineWrites || pair == nil || pair.Local == nil {
		return false
	}
	l := pair.Local
	if l.Protocol != webrtc.ICEProtocolUDP {
		return false
	}
	port := e.batch.LocalAddr().(*net.UDPAddr).Port
	switch l.Typ {
	case webrtc.ICECandidateTypeHost:
		return int(l.Port) == port
	case webrtc.ICECandidateTypeSrflx:
		return int(l.RelatedPort) == port // its base
	}
	return false
}

// burst runs send, a forwarding goroutine's writes of one packet to every
// subscriber, as one burst of the batched socket (batchConn.hold): the
// copies leave together, sent by the caller. Without the mux it just runs
// send.
func (e *engine) burst(send func()) {
	if e.batch == nil {
		send()
		return
	}
	e.batch.hold()
	send()
	e.batch.release()
}

// datagram is one queued write.
type datagram struct {
	b  []byte
	to netip.AddrPort
}

// newBatchConn wraps conn and starts its writer; maxPending bounds the
// queue (batchMaxPending in production).
func newBatchConn(conn *net.UDPConn, maxPending int, log *slog.Logger) *batchConn {
	c := newStoppedBatchConn(conn, maxPending, log)
	c.start()
	return c
}

// newStoppedBatchConn is newBatchConn without its writer.
func newStoppedBatchConn(conn *net.UDPConn, maxPending int, log *slog.Logger) *batchConn {
	c := &batchConn{
		UDPConn: conn,
		pc:      ipv6.NewPacketConn(conn),
		log:     log,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		max:     maxPending,
		msgs:    make([]ipv6.Message, batchSize),
		addrs:   make(map[netip.AddrPort]*net.UDPAddr),
	}
	for i := range c.msgs {
		c.msgs[i].Buffers = make([][]byte, 1)
	}
	return c
}

// start runs the writer; tests queue datagrams before they call it.
func (c *batchConn) start() {
	c.wg.Add(1)
	go c.writeLoop()
}

// WriteTo queues b for addr.
func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: net.InvalidAddrError("not a UDP address")}
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// WriteToAddrPort queues b for to. It never blocks; it fails only once
// the connection is closed.
func (c *batchConn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(c.pending) >= c.max {
		c.mu.Unlock()
		c.dropped.Add(1)
		return len(b), nil
	}
	var buf []byte
	if n := len(c.free); n > 0 && len(b) <= batchBufCap {
		buf, c.free = c.free[n-1][:0], c.free[:n-1]
	} else {
		buf = make([]byte, 0, max(len(b), batchBufCap))
	}
	c.pending = append(c.pending, datagram{b: append(buf, b...), to: to})
	c.mu.Unlock()
	if c.holds.Load() == 0 {
		kick(c.wake)
	}
	return len(b), nil
}

// hold starts a burst of writes from a forwarding goroutine (one packet
// to every subscriber); release ends it and sends the burst, and anything
// else queued meanwhile, from the calling goroutine: a packet's copies
// leave in one system call per batchSize, with no hand-off to the writer.
func (c *batchConn) hold() { c.holds.Add(1) }

// release ends hold and sends what is queued.
func (c *batchConn) release() {
	c.holds.Add(-1)
	c.flush()
}

// ReadFromAddrPort reads one datagram (the ICE mux's allocation-free
// read).
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(b)
}

// Close stops the writer, dropping what it has not sent, and closes the
// socket. It is idempotent.
func (c *batchConn) Close() error {
	var err error
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		err = c.UDPConn.Close() // ends a write blocked on the socket
		close(c.done)
		c.wg.Wait()
	})
	return err
}

// writeLoop sends the queue in batches until Close.
func (c *batchConn) writeLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		c.flush()
	}
}

// flush sends everything queued.
func (c *batchConn) flush() {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	c.batch, c.pending = c.pending, c.batch[:0]
	c.mu.Unlock()
	for rest := c.batch; len(rest) > 0; {
		n := c.send(rest[:min(len(rest), batchSize)])
		c.recycle(rest[:n])
		rest = rest[n:]
	}
	c.batch = c.batch[:0]
}

// send hands datagrams to one sendmmsg and returns how many it is done
// with: sent, or failed and skipped.
func (c *batchConn) send(ds []datagram) int {
	for i, d := range ds {
		c.msgs[i].Buffers[0] = d.b
		c.msgs[i].Addr = c.addr(d.to)
	}
	n, err := c.pc.WriteBatch(c.msgs[:len(ds)], 0)
	for i := range ds {
		c.msgs[i].Buffers[0], c.msgs[i].Addr = nil, nil
	}
	c.batches.Add(1)
	if n > 0 {
		c.sent.Add(uint64(n))
	}
	if err != nil && n < len(ds) {
		select {
		case <-c.done:
			return len(ds) // closing: the rest is dropped
		default:
		}
		// The first unsent datagram is the one that failed (a route or
		// address error): skip it, keep the rest.
		c.failed.Add(1)
		c.log.Debug("batch send", "to", ds[n].to.String(), "err", err)
		n++
	}
	return n
}

// addr is to as a *net.UDPAddr, cached so that a steady set of browsers
// costs no allocation per datagram.
func (c *batchConn) addr(to netip.AddrPort) *net.UDPAddr {
	if a, ok := c.addrs[to]; ok {
		return a
	}
	if len(c.addrs) >= batchAddrCache {
		clear(c.addrs)
	}
	a := net.UDPAddrFromAddrPort(to)
	c.addrs[to] = a
	return a
}

// recycle returns sent datagrams' buffers to the pool.
func (c *batchConn) recycle(ds []datagram) {
	c.mu.Lock()
	for i := range ds {
		if cap(ds[i].b) == batchBufCap && len(c.free) < 2*c.max { // the queue and the batch on its way
			c.free = append(c.free, ds[i].b)
		}
		ds[i] = datagram{}
	}
	c.mu.Unlock()
}
