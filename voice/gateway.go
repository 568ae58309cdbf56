package voice

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Timeouts of the voice gateway connection.
const (
	// handshakeTimeout bounds the websocket dial and each handshake step
	// (Hello, Ready, Session Description, Resumed).
	handshakeTimeout = 10 * time.Second
	// writeTimeout bounds each websocket write.
	writeTimeout = 5 * time.Second
	// gatewayVersion is the voice gateway version we speak.
	gatewayVersion = 8
)

// gatewayConn is one websocket connection to a voice gateway: a reader
// goroutine that decodes messages, tracks the server's seq and answers
// heartbeat ACKs, and a heartbeater that detects zombie connections.
// Messages go to the owner through in; when the connection ends, in is
// closed and err/closeCode say why.
type gatewayConn struct {
	ws  *websocket.Conn
	log *slog.Logger

	writeMu sync.Mutex
	lastSeq atomic.Int64 // -1 until a sequenced message arrived

	in        chan message
	err       error // why the reader stopped; read after in is closed
	closeCode int   // the server's close code, 0 if none

	interval  atomic.Int64 // heartbeat interval in ns, from Hello
	hbStart   chan struct{}
	hbNonce   atomic.Int64
	hbPending atomic.Bool
	zombie    atomic.Bool
	// speaking is the flag last sent in op 5 on this connection, owned
	// by the pacer: a new connection or a resume starts without one, so
	// op 5 goes again before the first audio.
	speaking bool

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// gatewayURL builds wss://ENDPOINT/?v=8; the endpoint from
// VOICE_SERVER_UPDATE has no scheme (Discord voice docs, "Establishing a
// Voice Websocket Connection").
func gatewayURL(endpoint string) string {
	endpoint = strings.TrimPrefix(strings.TrimPrefix(endpoint, "wss://"), "ws://")
	endpoint = strings.TrimSuffix(endpoint, "/")
	return fmt.Sprintf("wss://%s/?v=%d", endpoint, gatewayVersion)
}

// dialGateway connects, waits for Hello and starts heartbeating. seq is
// the last sequence number seen on a previous connection of the same
// session (-1 for none), carried for a resume.
func dialGateway(ctx context.Context, endpoint string, tlsConf *tls.Config, netDial func(ctx context.Context, network, addr string) (net.Conn, error), seq int64, log *slog.Logger) (*gatewayConn, error) {
	d := websocket.Dialer{
		TLSClientConfig:  tlsConf,
		HandshakeTimeout: handshakeTimeout,
		NetDialContext:   netDial,
	}
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	url := gatewayURL(endpoint)
	ws, resp, err := d.DialContext(ctx, url, nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("voice: dial %s: %w", url, err)
	}
	g := &gatewayConn{
		ws:      ws,
		log:     log,
		in:      make(chan message, 64),
		hbStart: make(chan struct{}),
		stop:    make(chan struct{}),
	}
	g.lastSeq.Store(seq)
	g.wg.Add(2)
	go g.readLoop()
	go g.heartbeatLoop()

	m, err := g.next(ctx)
	if err != nil {
		g.close(websocket.CloseNormalClosure)
		return nil, fmt.Errorf("voice: waiting for Hello: %w", err)
	}
	if m.Op != OpHello {
		g.close(websocket.CloseNormalClosure)
		return nil, fmt.Errorf("voice: first message was op %d, want Hello (8): %w", m.Op, ErrHandshake)
	}
	var h helloData
	if err := decodeData(m, &h); err != nil || h.HeartbeatInterval <= 0 {
		g.close(websocket.CloseNormalClosure)
		return nil, fmt.Errorf("voice: Hello heartbeat_interval %v (%v): %w", h.HeartbeatInterval, err, ErrHandshake)
	}
	g.interval.Store(int64(h.HeartbeatInterval * float64(time.Millisecond)))
	close(g.hbStart)
	return g, nil
}

// next returns the next message, or why there is none.
func (g *gatewayConn) next(ctx context.Context) (message, error) {
	select {
	case m, ok := <-g.in:
		if !ok {
			return message{}, g.endErr()
		}
		return m, nil
	case <-ctx.Done():
		return message{}, fmt.Errorf("voice: voice gateway: %w", context.Cause(ctx))
	}
}

// endErr describes why the connection ended; valid once in is closed.
func (g *gatewayConn) endErr() error {
	if g.closeCode != 0 {
		row := lookupCloseCode(g.closeCode)
		return &CloseError{Code: g.closeCode, Name: row.Name, err: row.Err}
	}
	return g.err
}

// readTimeout is the read deadline: the handshake timeout before Hello,
// then two heartbeat intervals (an ACK is due every interval).
func (g *gatewayConn) readTimeout() time.Duration {
	if iv := time.Duration(g.interval.Load()); iv > 0 {
		return 2*iv + handshakeTimeout
	}
	return handshakeTimeout
}

func (g *gatewayConn) readLoop() {
	defer g.wg.Done()
	defer close(g.in)
	for {
		_ = g.ws.SetReadDeadline(time.Now().Add(g.readTimeout()))
		typ, data, err := g.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			switch {
			case g.zombie.Load():
				g.err = ErrZombie
			case errors.As(err, &ce):
				g.closeCode = ce.Code
				g.err = fmt.Errorf("voice: voice gateway closed with %d %q: %w", ce.Code, ce.Text, ErrClosedByServer)
			default:
				select {
				case <-g.stop:
					g.err = ErrClosed
				default:
					g.err = fmt.Errorf("voice: voice gateway read: %w", err)
				}
			}
			return
		}
		var m message
		switch typ {
		case websocket.TextMessage:
			m, err = decodeMessage(data)
		case websocket.BinaryMessage:
			m, err = decodeBinaryMessage(data)
		default:
			continue
		}
		if err != nil {
			g.log.Warn("ignoring undecodable voice gateway message", "err", err)
			continue
		}
		if m.Seq != nil {
			g.lastSeq.Store(*m.Seq)
		}
		if m.Op == OpHeartbeatACK {
			g.ack(m)
			continue
		}
		select {
		case g.in <- m:
		case <-g.stop:
			g.err = ErrClosed
			return
		}
	}
}

// ack clears the pending heartbeat when op 6 echoes its nonce (v8: an
// object with t; older servers send the bare number).
func (g *gatewayConn) ack(m message) {
	var d heartbeatACKData
	if err := json.Unmarshal(m.D, &d); err != nil {
		if err := json.Unmarshal(m.D, &d.T); err != nil {
			g.log.Warn("ignoring undecodable heartbeat ACK", "err", err)
			return
		}
	}
	if d.T == g.hbNonce.Load() {
		g.hbPending.Store(false)
	}
}

// heartbeatLoop sends op 3 every Hello interval; a heartbeat still
// unacknowledged when the next is due marks the connection a zombie and
// closes it (Discord voice docs, "Heartbeating").
func (g *gatewayConn) heartbeatLoop() {
	defer g.wg.Done()
	select {
	case <-g.hbStart:
	case <-g.stop:
		return
	}
	t := time.NewTicker(time.Duration(g.interval.Load()))
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		if g.hbPending.Load() {
			g.log.Warn("voice gateway heartbeat not acknowledged; closing zombie connection")
			g.zombie.Store(true)
			_ = g.ws.Close()
			return
		}
		nonce := time.Now().UnixMilli()
		if prev := g.hbNonce.Load(); nonce <= prev {
			nonce = prev + 1
		}
		g.hbNonce.Store(nonce)
		g.hbPending.Store(true)
		if err := g.send(OpHeartbeat, heartbeatData{T: nonce, SeqAck: g.lastSeq.Load()}); err != nil {
			g.log.Debug("heartbeat write failed", "err", err)
		}
	}
}

// send writes one JSON message with a write deadline.
func (g *gatewayConn) send(op Opcode, d any) error {
	b, err := json.Marshal(struct {
		Op Opcode `json:"op"`
		D  any    `json:"d"`
	}{op, d})
	if err != nil {
		return fmt.Errorf("voice: encode op %d: %w", op, err)
	}
	g.writeMu.Lock()
	defer g.writeMu.Unlock()
	_ = g.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := g.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("voice: write op %d: %w", op, err)
	}
	return nil
}

// sendBinary writes one client binary message, `u8 op | payload` (client
// to server binary frames carry no sequence number: Discord voice docs,
// "Binary Websocket Messages"), with a write deadline.
func (g *gatewayConn) sendBinary(op int, payload []byte) error {
	if op < 0 || op > 255 {
		return fmt.Errorf("voice: binary op %d does not fit a byte: %w", op, ErrBadMessage)
	}
	b := make([]byte, 0, 1+len(payload))
	b = append(append(b, byte(op)), payload...)
	g.writeMu.Lock()
	defer g.writeMu.Unlock()
	_ = g.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := g.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return fmt.Errorf("voice: write binary op %d: %w", op, err)
	}
	return nil
}

// close sends a close frame with code (best effort), closes the socket and
// waits for the reader and heartbeater. Idempotent.
func (g *gatewayConn) close(code int) {
	g.stopOnce.Do(func() {
		close(g.stop)
		g.writeMu.Lock()
		_ = g.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		g.writeMu.Unlock()
		_ = g.ws.Close()
	})
	g.wg.Wait()
}
