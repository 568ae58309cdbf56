package webtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// Conn wraps the client side of a TCP connection that will carry a
// WebSocket and checks every message on it against the schema: what the
// client writes as Client messages, what it reads as Server messages. It
// checks only a connection whose upgrade request is for path (/api/ws);
// other WebSockets pass untouched. A violation goes to report and fails
// the Read or Write that carried it. allowed, when not nil, exempts a
// client message a test sends on purpose to see it refused.
//
// It parses RFC 6455 §5.2 framing itself, so it sees exactly the bytes on
// the wire whatever WebSocket library the client uses (without
// compression extensions, which the bridge does not negotiate).
func (p *Protocol) Conn(c net.Conn, path string, allowed func(msg []byte) bool, report func(error)) net.Conn {
	tc := &tappedConn{Conn: c}
	tc.out = frameTap{dir: Client, path: path, on: &tc.on, check: p.Check, allowed: allowed, report: report}
	tc.in = frameTap{dir: Server, path: path, on: &tc.on, check: p.Check, report: report}
	return tc
}

type tappedConn struct {
	net.Conn
	on    atomic.Bool // the upgrade request was for the checked path
	inMu  sync.Mutex
	in    frameTap
	outMu sync.Mutex
	out   frameTap
}

func (c *tappedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.inMu.Lock()
		verr := c.in.feed(b[:n])
		c.inMu.Unlock()
		if verr != nil {
			// Drop what this read carried: the bad message must not reach
			// the client as if it were fine.
			return 0, verr
		}
	}
	return n, err
}

func (c *tappedConn) Write(b []byte) (int, error) {
	c.outMu.Lock()
	verr := c.out.feed(b)
	c.outMu.Unlock()
	if verr != nil {
		return 0, verr
	}
	return c.Conn.Write(b)
}

// frameTap follows one direction of the connection: the HTTP upgrade
// head, then frames.
type frameTap struct {
	dir     Direction
	path    string
	on      *atomic.Bool
	check   func(Direction, []byte) error
	allowed func([]byte) bool
	report  func(error)

	buf      []byte
	headDone bool
	msg      []byte // a fragmented message so far
	fragment bool
}

// maxTapMessage bounds a message the tap reassembles.
const maxTapMessage = 1 << 20

func (t *frameTap) feed(b []byte) error {
	t.buf = append(t.buf, b...)
	if !t.headDone {
		i := bytes.Index(t.buf, []byte("\r\n\r\n"))
		if i < 0 {
			return nil
		}
		if t.dir == Client {
			// "GET /api/ws HTTP/1.1"
			line, _, _ := bytes.Cut(t.buf[:i], []byte("\r\n"))
			f := bytes.Fields(line)
			t.on.Store(len(f) == 3 && string(f[1]) == t.path)
		}
		t.buf = t.buf[i+4:]
		t.headDone = true
	}
	if !t.on.Load() {
		t.buf = t.buf[:0]
		return nil
	}
	for {
		payload, fin, op, n, ok := parseFrame(t.buf)
		if !ok {
			return nil
		}
		t.buf = t.buf[n:]
		var msg []byte
		switch {
		case op >= 8: // close, ping, pong
			continue
		case op == 2:
			return t.fail(fmt.Errorf("%w: binary %s message", ErrViolation, t.dir))
		case op == 1 && fin:
			msg = payload
		case op == 1:
			t.msg, t.fragment = append(t.msg[:0], payload...), true
			continue
		case op == 0 && t.fragment:
			if len(t.msg)+len(payload) > maxTapMessage {
				return t.fail(fmt.Errorf("%w: %s message over %d bytes", ErrViolation, t.dir, maxTapMessage))
			}
			t.msg = append(t.msg, payload...)
			if !fin {
				continue
			}
			msg, t.msg, t.fragment = t.msg, nil, false
		default:
			return t.fail(fmt.Errorf("%w: %s frame with opcode %d", ErrViolation, t.dir, op))
		}
		if t.allowed != nil && t.allowed(msg) {
			continue
		}
		if err := t.check(t.dir, msg); err != nil {
			return t.fail(err)
		}
	}
}

func (t *frameTap) fail(err error) error {
	if t.report != nil {
		t.report(err)
	}
	return err
}

// parseFrame reads one frame (RFC 6455 §5.2) from the front of b: its
// unmasked payload, FIN, opcode and length on the wire; ok is false until
// b holds the whole frame.
func parseFrame(b []byte) (payload []byte, fin bool, op byte, n int, ok bool) {
	if len(b) < 2 {
		return nil, false, 0, 0, false
	}
	fin, op = b[0]&0x80 != 0, b[0]&0x0f
	masked := b[1]&0x80 != 0
	size := uint64(b[1] & 0x7f)
	off := 2
	switch size {
	case 126:
		if len(b) < 4 {
			return nil, false, 0, 0, false
		}
		size, off = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return nil, false, 0, 0, false
		}
		size, off = binary.BigEndian.Uint64(b[2:10]), 10
	}
	var key []byte
	if masked {
		if len(b) < off+4 {
			return nil, false, 0, 0, false
		}
		key, off = b[off:off+4], off+4
	}
	if uint64(len(b)-off) < size {
		return nil, false, 0, 0, false
	}
	end := off + int(size)
	payload = append([]byte(nil), b[off:end]...)
	for i := range payload {
		if key != nil {
			payload[i] ^= key[i%4]
		}
	}
	return payload, fin, op, end, true
}
