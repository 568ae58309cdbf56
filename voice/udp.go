package voice

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voicebridge/bridge/voice/dave"
)

const (
	// keepaliveInterval is how often an idle-proof datagram goes to the
	// voice server, as Discord's own clients and libraries do (~5 s).
	keepaliveInterval = 5 * time.Second
	// discoveryTimeout bounds each IP discovery attempt.
	discoveryTimeout = 2 * time.Second
	discoveryTries   = 3
	// rxTick is the read deadline of the UDP reader: how often it
	// releases reorder buffers that wait on lost packets.
	rxTick = 20 * time.Millisecond
	// maxDatagram bounds received packets.
	maxDatagram = 2048
)

// transport is one voice session's UDP side: the socket, our SSRCs and
// the transport ciphers. The UDP reader goroutine owns the opener; senders
// share the sealer under sealMu.
type transport struct {
	c    *Conn
	log  *slog.Logger
	udp  *net.UDPConn
	mode Mode

	ssrc, videoSSRC, rtxSSRC uint32

	sealMu  sync.Mutex
	sealer  *Cipher
	sendBuf []byte
	opener  *Cipher

	// speaking: op 5 speaking 1 went out for this transport and no
	// speaking 0 since. While the gateway resumes, audio keeps flowing
	// on it; the new connection announces again before the next frame.
	speaking       atomic.Bool
	videoAnnounced atomic.Bool

	// dave is the DAVE session our media is encrypted with for this
	// transport's life (nil with DAVE off). Set before the transport is
	// published, so no frame can be sent under a session that has not
	// started.
	dave *dave.Session

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// newTransport opens the UDP socket to Ready's ip:port.
func newTransport(c *Conn, ready readyData, mode Mode) (*transport, error) {
	ip, err := netip.ParseAddr(ready.IP)
	if err != nil || ready.Port <= 0 || ready.Port > 65535 {
		return nil, fmt.Errorf("voice: Ready address %q port %d: %w", ready.IP, ready.Port, ErrHandshake)
	}
	if ready.SSRC == 0 {
		return nil, fmt.Errorf("voice: Ready without ssrc: %w", ErrHandshake)
	}
	udp, err := c.opts.DialUDP(net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(ready.Port))))
	if err != nil {
		return nil, fmt.Errorf("voice: UDP socket to %s:%d: %w", ready.IP, ready.Port, err)
	}
	t := &transport{
		c:       c,
		log:     c.log.With("ssrc", ready.SSRC),
		udp:     udp,
		mode:    mode,
		ssrc:    ready.SSRC,
		sendBuf: make([]byte, 0, maxDatagram),
		stop:    make(chan struct{}),
	}
	for _, s := range ready.Streams {
		if s.Type == "video" && s.SSRC != 0 {
			t.videoSSRC, t.rtxSSRC = s.SSRC, s.RTXSSRC
			break
		}
	}
	return t, nil
}

// discover runs IP discovery: our external address as the server sees it
// (Discord voice docs, "IP Discovery").
func (t *transport) discover(ctx context.Context) (netip.AddrPort, error) {
	req := AppendDiscoveryRequest(nil, t.ssrc)
	buf := make([]byte, maxDatagram)
	// answerErr (a malformed answer, or one for another SSRC) says more
	// than the timeout or cancellation that follows it: fail keeps it.
	var answerErr error
	fail := func(what string, cause error) (netip.AddrPort, error) {
		if answerErr != nil {
			return netip.AddrPort{}, fmt.Errorf("voice: IP discovery %s: %w (last answer: %w)", what, cause, answerErr)
		}
		return netip.AddrPort{}, fmt.Errorf("voice: IP discovery %s: %w", what, cause)
	}
	var readErr error
	for try := 0; try < discoveryTries; try++ {
		if ctx.Err() != nil {
			return fail("stopped", context.Cause(ctx))
		}
		deadline := time.Now().Add(discoveryTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = t.udp.SetWriteDeadline(deadline)
		if _, err := t.udp.Write(req); err != nil {
			return fail("request", err)
		}
		_ = t.udp.SetReadDeadline(deadline)
		for {
			n, err := t.udp.Read(buf)
			if err != nil {
				readErr = err
				break
			}
			r, err := ParseDiscoveryResponse(buf[:n])
			if err != nil {
				answerErr = err
				continue // not the answer (media may already flow)
			}
			if r.SSRC != t.ssrc {
				answerErr = fmt.Errorf("voice: discovery answer for SSRC %d, ours is %d: %w", r.SSRC, t.ssrc, ErrBadDiscovery)
				continue
			}
			return r.Addr, nil
		}
	}
	return fail(fmt.Sprintf("failed after %d tries", discoveryTries), readErr)
}

// setKey creates the two ciphers from Session Description's key.
func (t *transport) setKey(key []byte) error {
	var err error
	if t.sealer, err = NewCipher(t.mode, key); err != nil {
		return err
	}
	t.opener, err = NewCipher(t.mode, key)
	return err
}

// start launches the UDP reader (feeding rx) and the keepalive sender.
func (t *transport) start(rx *receiver) {
	t.wg.Add(2)
	go t.readLoop(rx)
	go t.keepalive()
}

// close stops the goroutines, closes the socket and waits. Idempotent.
func (t *transport) close() {
	t.stopOnce.Do(func() {
		close(t.stop)
		_ = t.udp.Close()
	})
	t.wg.Wait()
}

// send seals and writes one RTP packet.
func (t *transport) send(h *Header, payload []byte) error {
	t.sealMu.Lock()
	defer t.sealMu.Unlock()
	if t.sealer == nil {
		return fmt.Errorf("voice: no session key yet: %w", ErrNotConnected)
	}
	pkt, err := t.sealer.SealRTP(t.sendBuf[:0], h, payload)
	if err != nil {
		return err
	}
	t.sendBuf = pkt[:0]
	if len(pkt) > maxDatagram {
		return fmt.Errorf("voice: packet of %d bytes: %w", len(pkt), ErrFrameTooLarge)
	}
	_ = t.udp.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := t.udp.Write(pkt); err != nil {
		return fmt.Errorf("voice: UDP write: %w", err)
	}
	return nil
}

// keepalive sends an 8-byte datagram (a counter) every 5 s so NATs keep
// the mapping and the server knows the socket is alive.
func (t *transport) keepalive() {
	defer t.wg.Done()
	tick := time.NewTicker(keepaliveInterval)
	defer tick.Stop()
	var buf [8]byte
	var n uint32
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		n++
		binary.LittleEndian.PutUint32(buf[:], n)
		_ = t.udp.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := t.udp.Write(buf[:]); err != nil {
			t.log.Debug("UDP keepalive failed", "err", err)
		}
	}
}

// readLoop reads datagrams until stopped. The short read deadline doubles
// as the tick that releases reorder buffers waiting on lost packets.
func (t *transport) readLoop(rx *receiver) {
	defer t.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		select {
		case <-t.stop:
			return
		default:
		}
		_ = t.udp.SetReadDeadline(time.Now().Add(rxTick))
		n, err := t.udp.Read(buf)
		now := time.Now()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				rx.tick(now)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Debug("UDP read", "err", err)
			continue
		}
		rx.packet(t, buf[:n], now)
		rx.maybeTick(now)
	}
}
