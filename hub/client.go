package hub

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// queueEntryOverhead is what one queued message costs beyond its bytes
	// (the slice header in the queue), so the byte limit also bounds the
	// queue's own memory when messages are tiny.
	queueEntryOverhead = 32
	// maxIdleBatchCap is the largest batch array a writer keeps between
	// bursts.
	maxIdleBatchCap = 64
	// maxBadMessages malformed, binary or unknown-type messages are
	// answered with errors; the next one closes with CloseBadMessages.
	maxBadMessages = 10
	// closeGrace is how long the hub waits for the client's answer to its
	// close frame (RFC 6455 §7.1.1) before dropping the TCP connection.
	closeGrace = time.Second
	// verifyTimeout bounds a token check (a JWKS re-fetch at worst).
	verifyTimeout = 10 * time.Second
	// closeNoFrame marks a close where no close frame is sent: the peer
	// already closed or the connection broke.
	closeNoFrame = 0
	// stallTimeout is how long a data write may make no progress before
	// the client is closed with CloseSlowClient: a client that reads
	// nothing for a second is cut rather than kept up to WriteTimeout.
	stallTimeout = time.Second
	// maxWriteBytes bounds the frames gathered into one socket write.
	maxWriteBytes = 64 << 10
)

// Client is one /api/ws connection. A reader goroutine parses and
// dispatches its messages; a writer goroutine owns every data write and
// drains a queue bounded in bytes, so Send and Hub.Publish never wait for
// the network. Both belong to the Hub, which waits for them in Shutdown.
type Client struct {
	hub    *Hub
	conn   *websocket.Conn
	id     string
	log    *slog.Logger
	ctx    context.Context // ends when the client closes
	cancel context.CancelFunc

	wake       chan struct{} // capacity 1: "queue is not empty"
	done       chan struct{} // closed by close
	writerDone chan struct{}

	mu          sync.Mutex
	userID      string
	name        string
	expiry      *time.Timer
	queue       [][]byte
	queued      int // bytes not yet written, with queueEntryOverhead each
	closed      bool
	closeCode   int
	closeReason string
	finished    bool
	counted     bool // holds one of its user's SocketsPerUser
	onClose     []func()
	// guilds are the served guilds the token allows, set at the first
	// auth, before the client receives events, and never changed.
	guilds []string
}

func newClient(h *Hub, conn *websocket.Conn) *Client {
	var idb [8]byte
	_, _ = rand.Read(idb[:]) // crypto/rand.Read never fails (Go 1.24+)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		hub:        h,
		conn:       conn,
		id:         hex.EncodeToString(idb[:]),
		ctx:        ctx,
		cancel:     cancel,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	c.log = h.log.With("client", c.id, "remote", conn.RemoteAddr().String())
	return c
}

// ID is a random id of this connection.
func (c *Client) ID() string { return c.id }

// Guilds are the served guilds the client's token allows (nil before
// auth).
func (c *Client) Guilds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.guilds
}

// allows reports whether the client's token allows guildID. It reads
// guilds without the lock: they are written once, before the hub adds
// the client to the set Publish reads under Hub.mu.
func (c *Client) allows(guildID string) bool {
	for _, g := range c.guilds {
		if g == guildID {
			return true
		}
	}
	return false
}

// UserID is the token's subject ("" before auth).
func (c *Client) UserID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.userID
}

// Name is the token's display name ("" before auth).
func (c *Client) Name() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.name
}

// OnClose registers fn to run once the connection has closed and left the
// hub, on the connection's goroutine. If it has already closed, fn runs
// now, on the caller's goroutine.
func (c *Client) OnClose(fn func()) {
	c.mu.Lock()
	if !c.finished {
		c.onClose = append(c.onClose, fn)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	fn()
}

// Send queues v, encoded as JSON, for this client. It never blocks: if
// the message does not fit the send queue the client is closed with
// CloseSlowClient and ErrSlowClient returned.
func (c *Client) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("hub: encode message for client %s: %w", c.id, err)
	}
	return c.enqueue(b)
}

// enqueue queues b, which may be shared with other clients and must not
// change afterwards.
func (c *Client) enqueue(b []byte) error {
	cost := len(b) + queueEntryOverhead
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClientClosed
	}
	if c.queued+cost > c.hub.opts.SendQueueBytes {
		behind := c.queued
		c.mu.Unlock()
		c.log.Warn("closing slow client", "behindBytes", behind, "limit", c.hub.opts.SendQueueBytes)
		c.close(CloseSlowClient, "send queue overflow: client too slow")
		return ErrSlowClient
	}
	c.queue = append(c.queue, b)
	c.queued += cost
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// close starts closing with code and reason (code closeNoFrame: no close
// frame). The first call wins; it drops the queue, ends the client's
// context and wakes the writer, which sends the close frame. It never
// blocks.
func (c *Client) close(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.closeCode, c.closeReason = code, closeReason(reason)
	clear(c.queue)
	c.queue, c.queued = nil, 0
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.mu.Unlock()
	close(c.done)
	c.cancel()
	if code == CloseSlowClient {
		// The writer is most likely stuck on a full socket: end that write
		// now rather than at WriteTimeout.
		_ = c.conn.UnderlyingConn().SetWriteDeadline(time.Now())
	}
}

func (c *Client) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// writeLoop is the only goroutine that writes data frames. It drains the
// queue, pings every PingInterval, and on close sends the close frame and
// gives the reader closeGrace to see the answer.
func (c *Client) writeLoop() {
	defer close(c.writerDone)
	opts := &c.hub.opts
	ping := time.NewTicker(opts.PingInterval)
	defer ping.Stop()
	var batch [][]byte
	for {
		select {
		case <-c.done:
			c.writeClose()
			return
		case <-c.wake:
			c.mu.Lock()
			batch, c.queue = c.queue, batch[:0]
			c.mu.Unlock()
			if err := c.writeBatch(batch); err != nil {
				c.broken(err)
				return
			}
			clear(batch) // let the shared bytes go
			if cap(batch) > maxIdleBatchCap {
				batch = nil // a burst's backing array is not kept for an idle client
			}
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(opts.WriteTimeout)); err != nil {
				c.broken(err)
				return
			}
		}
	}
}

// writeBatch writes queued messages, several frames per socket write,
// then releases their bytes from the queue account: a client is "behind"
// until its bytes are on the socket. A write that makes no progress for
// stallTimeout closes the client with CloseSlowClient; the frame it was
// in is completed first, so the close frame follows whole frames. A write
// cut short by close (queue overflow) ends the same way.
func (c *Client) writeBatch(batch [][]byte) error {
	if len(batch) == 0 {
		return nil
	}
	w := frameWriters.Get().(*frameWriter)
	defer w.release()
	nc := c.conn.UnderlyingConn()
	for len(batch) > 0 {
		if c.isClosed() {
			return nil // close wins; writeClose runs next
		}
		n := w.gather(batch)
		// Each write that makes progress earns another stallTimeout: a
		// slow reader is kept, one that reads nothing is cut.
		for written := 0; written < len(w.buf); {
			if err := nc.SetWriteDeadline(time.Now().Add(min(stallTimeout, c.hub.opts.WriteTimeout))); err != nil {
				return err
			}
			k, err := nc.Write(w.buf[written:])
			written += k
			if err == nil || (k > 0 && isTimeout(err) && !c.isClosed()) {
				continue
			}
			return c.writeStalled(nc, w, written, err)
		}
		cost := 0
		for _, b := range batch[:n] {
			cost += len(b) + queueEntryOverhead
		}
		c.mu.Lock()
		if !c.closed {
			c.queued -= cost
		}
		c.mu.Unlock()
		batch = batch[n:]
	}
	return nil
}

// writeStalled handles a write of w.buf that ended after written bytes
// with err. A timeout means the client reads too slowly (or the queue
// overflowed and close cut the write short): it is closed with
// CloseSlowClient, after the frame in progress is completed within
// closeGrace so the close frame that follows is well formed. Anything
// else broke the connection.
func (c *Client) writeStalled(nc net.Conn, w *frameWriter, written int, err error) error {
	if !isTimeout(err) {
		return err
	}
	if !c.isClosed() {
		c.log.Warn("closing stalled client", "stalled_for", min(stallTimeout, c.hub.opts.WriteTimeout).String())
	}
	c.close(CloseSlowClient, "client too slow: writes made no progress")
	if rest := w.restOfFrame(written); len(rest) > 0 {
		if err := nc.SetWriteDeadline(time.Now().Add(closeGrace)); err != nil {
			return err
		}
		if _, err := nc.Write(rest); err != nil {
			return err
		}
	}
	return nil
}

// frameWriter gathers queued messages into unmasked text frames (RFC 6455
// §5.2; a server never masks, §5.1) in one buffer, so that a burst of
// messages leaves in one system call.
type frameWriter struct {
	buf  []byte
	ends []int // where each frame of buf ends
}

// gather fills buf with frames of the first messages of batch, up to
// maxWriteBytes (at least one message), and returns how many it took.
func (w *frameWriter) gather(batch [][]byte) int {
	w.buf, w.ends = w.buf[:0], w.ends[:0]
	n := 0
	for _, b := range batch {
		if n > 0 && len(w.buf)+len(b)+10 > maxWriteBytes {
			break
		}
		w.buf = appendTextFrame(w.buf, b)
		w.ends = append(w.ends, len(w.buf))
		n++
	}
	return n
}

// restOfFrame is what remains of the frame in progress after written
// bytes of buf went out: nothing when the write stopped between frames.
func (w *frameWriter) restOfFrame(written int) []byte {
	for i, end := range w.ends {
		if written < end {
			start := 0
			if i > 0 {
				start = w.ends[i-1]
			}
			if written == start {
				return nil
			}
			return w.buf[written:end]
		}
	}
	return nil
}

// frameWriters lends frame buffers to the writers while they write, so an
// idle client holds none (most of a hub's clients are idle most of the
// time).
var frameWriters = sync.Pool{New: func() any { return new(frameWriter) }}

// release returns w to frameWriters, without a buffer grown past
// maxWriteBytes by one large message.
func (w *frameWriter) release() {
	if cap(w.buf) > 2*maxWriteBytes {
		w.buf = nil
	}
	w.buf, w.ends = w.buf[:0], w.ends[:0]
	frameWriters.Put(w)
}

// appendTextFrame appends b as one final text frame (FIN, opcode 1, the
// 7-, 16- or 64-bit payload length of RFC 6455 §5.2).
func appendTextFrame(dst, b []byte) []byte {
	const finText = 0x81
	switch n := len(b); {
	case n <= 125:
		dst = append(dst, finText, byte(n))
	case n <= 0xffff:
		dst = append(dst, finText, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, finText, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, b...)
}

// broken handles a failed write: the connection is unusable, so close
// without a frame and unblock the reader at once.
func (c *Client) broken(err error) {
	if !c.isClosed() {
		c.log.Debug("write failed", "err", err)
	}
	c.close(closeNoFrame, "")
	_ = c.conn.SetReadDeadline(time.Now())
}

// writeClose sends the close frame, if any, and bounds the reader's wait
// for the client's answer.
func (c *Client) writeClose() {
	c.mu.Lock()
	code, reason := c.closeCode, c.closeReason
	c.mu.Unlock()
	if code != closeNoFrame {
		err := c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeGrace))
		if err != nil {
			_ = c.conn.SetReadDeadline(time.Now())
			return
		}
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(closeGrace))
}

// run is the reader: auth first, then messages until the connection ends.
// It returns once the writer has stopped and the socket is closed.
func (c *Client) run() {
	c.readLoop()
	c.close(closeNoFrame, "")
	<-c.writerDone
	_ = c.conn.Close()
	c.cancel()
}

// finish runs the OnClose callbacks, after the hub has forgotten c.
func (c *Client) finish() {
	c.mu.Lock()
	if c.counted {
		c.counted = false
		c.hub.access.removeSocket(c.userID)
	}
	c.finished = true
	fns := c.onClose
	c.onClose = nil
	c.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

func (c *Client) readLoop() {
	opts := &c.hub.opts
	pongWait := 2 * opts.PingInterval
	authed := false
	c.conn.SetReadLimit(opts.MaxMessageBytes)
	_ = c.conn.SetReadDeadline(time.Now().Add(opts.AuthTimeout))
	c.conn.SetPongHandler(func(string) error {
		if authed && !c.isClosed() {
			return c.conn.SetReadDeadline(time.Now().Add(pongWait))
		}
		return nil
	})
	bad := 0
	for {
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			c.readFailed(err, authed)
			return
		}
		if c.isClosed() {
			continue // draining until the client answers our close frame
		}
		var msg clientMessage
		if typ != websocket.TextMessage {
			err = fmt.Errorf("%w: binary messages are not accepted", ErrBadMessage)
		} else {
			msg, err = parseClientMessage(data)
		}
		if !authed {
			if err != nil || msg.Type != TypeAuth {
				c.close(CloseUnauthorized, "first message must be {\"type\":\"auth\",\"token\":...}")
				continue
			}
			if authed = c.auth(msg, false); authed {
				_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
			}
			continue
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
		if err == nil {
			switch msg.Type {
			case TypeAuth:
				c.auth(msg, true)
			case TypePing:
				_ = c.Send(pongMessage{V: ProtocolVersion, Type: TypePong, ID: msg.ID})
			default:
				if fn := c.hub.handler(msg.Type); fn != nil {
					fn(c.ctx, c, msg.Raw)
				} else {
					err = fmt.Errorf("unknown message type %q", msg.Type)
					c.sendError(msg.ID, CodeUnknownType, err.Error())
				}
			}
		} else {
			c.sendError(msg.ID, CodeBadMessage, err.Error())
		}
		if err != nil {
			if bad++; bad > maxBadMessages {
				c.close(CloseBadMessages, "too many bad messages")
			}
		}
	}
}

// readFailed picks the close for a read error.
func (c *Client) readFailed(err error, authed bool) {
	var ne net.Error
	switch {
	case c.isClosed():
	case errors.Is(err, websocket.ErrReadLimit):
		c.close(websocket.CloseMessageTooBig, fmt.Sprintf("message larger than %d bytes", c.hub.opts.MaxMessageBytes))
	case !authed && errors.As(err, &ne) && ne.Timeout():
		c.close(CloseUnauthorized, fmt.Sprintf("no auth message within %s", c.hub.opts.AuthTimeout))
	default:
		// The client closed, or went silent past two ping intervals.
		c.log.Debug("read ended", "err", err)
		c.close(closeNoFrame, "")
	}
}

// auth verifies the token of an auth message. The first auth admits the
// client to the hub (false on failure, after closing it with
// CloseUnauthorized); a later one (again) must name the same subject and
// moves the expiry.
func (c *Client) auth(msg clientMessage, again bool) bool {
	var am authMessage
	if err := json.Unmarshal(msg.Raw, &am); err != nil || am.Token == "" {
		return c.authFailed(msg.ID, again, "auth message needs a \"token\" string")
	}
	ctx, cancel := context.WithTimeout(c.ctx, verifyTimeout)
	claims, err := c.hub.opts.Auth.Verify(ctx, am.Token)
	cancel()
	if err != nil {
		c.log.Debug("token refused", "err", err) // the detail may quote the token: logs only
		return c.authFailed(msg.ID, again, PublicReason(err))
	}
	guilds := c.hub.allowedGuilds(claims)
	if len(guilds) == 0 {
		return c.authFailed(msg.ID, again, c.hub.errNoGuildAllowed())
	}
	c.mu.Lock()
	if again && claims.Subject != c.userID {
		c.mu.Unlock()
		return c.authFailed(msg.ID, again, "a new token must have the same subject")
	}
	if again && !slices.Equal(guilds, c.guilds) {
		c.mu.Unlock()
		return c.authFailed(msg.ID, again, "a new token must allow the same Discord servers; reconnect to change them")
	}
	c.userID, c.name = claims.Subject, claims.Name
	if !again {
		c.guilds = guilds
	}
	until := time.Until(claims.Expiry)
	if c.expiry == nil {
		c.expiry = time.AfterFunc(until, func() { c.close(CloseUnauthorized, "token expired") })
	} else {
		c.expiry.Reset(until)
	}
	c.mu.Unlock()
	ack := ackMessage{
		V: ProtocolVersion, Type: TypeAck, Event: "auth.ok", GuildID: guilds[0], Guilds: guilds, Servers: c.hub.servers(guilds),
		UserID: claims.Subject, Name: claims.Name, ClientID: c.id, ExpiresAt: claims.Expiry.Unix(),
		Admin: c.hub.IsAdmin(claims),
	}
	if again {
		_ = c.Send(ack)
	} else {
		if !c.hub.access.addSocket(claims.Subject, c.hub.opts.SocketsPerUser) {
			c.log.Info("refusing a socket over the per-user limit", "user_id", claims.Subject, "limit", c.hub.opts.SocketsPerUser)
			c.close(CloseTooManySockets, fmt.Sprintf("this user already holds %d connections, the most allowed", c.hub.opts.SocketsPerUser))
			return false
		}
		c.mu.Lock()
		c.counted = true
		c.mu.Unlock()
		// Out of the listener's unauthenticated count (cmd/bridge caps
		// those); the per-user limit bounds it from now on.
		if a, ok := c.conn.UnderlyingConn().(interface{ Authenticated() }); ok {
			a.Authenticated()
		}
		if !c.hub.authenticated(c, ack) {
			c.close(websocket.CloseGoingAway, "server shutting down")
			return false
		}
		c.log.Debug("client authenticated", "user", claims.Subject)
	}
	return true
}

func (c *Client) authFailed(id string, again bool, reason string) bool {
	if again {
		c.sendError(id, CodeAuthFailed, reason)
		return true
	}
	c.close(CloseUnauthorized, reason)
	return false
}

func (c *Client) sendError(id, code, message string) {
	_ = c.Send(errorMessage{V: ProtocolVersion, Type: TypeError, ID: id, Error: errorBody{Code: code, Message: message}})
}
