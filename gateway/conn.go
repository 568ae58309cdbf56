package gateway

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// link is one WebSocket connection: a reader goroutine decodes frames and
// hands them, in order, to the run goroutine, which is the only writer.
type link struct {
	conn   *websocket.Conn
	log    *slog.Logger
	frames chan frame
	errs   chan error // capacity 1: the read error that ended the reader
	done   chan struct{}
	wg     sync.WaitGroup
}

func startLink(conn *websocket.Conn, log *slog.Logger) *link {
	l := &link{
		conn:   conn,
		log:    log,
		frames: make(chan frame),
		errs:   make(chan error, 1),
		done:   make(chan struct{}),
	}
	l.wg.Add(1)
	go l.read()
	return l
}

// read runs until the socket fails or shutdown. Every read has a deadline:
// the handshake timeout until Hello, then two heartbeat intervals (ACKs
// arrive at least once per interval on a live connection).
func (l *link) read() {
	defer l.wg.Done()
	timeout := handshakeTimeout
	for {
		if err := l.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			l.errs <- err
			return
		}
		typ, b, err := l.conn.ReadMessage()
		if err != nil {
			l.errs <- err
			return
		}
		if typ != websocket.TextMessage {
			// We never ask for compression, so binary frames are not ours.
			l.log.Warn("ignoring binary gateway frame", "bytes", len(b))
			continue
		}
		f, err := decodeFrame(b)
		if err != nil {
			l.log.Warn("ignoring malformed gateway frame", "err", err)
			continue
		}
		if f.Op == opHello {
			if iv, err := decodeHello(f.D); err == nil {
				timeout = 2*iv + handshakeTimeout
			}
		}
		select {
		case l.frames <- f:
		case <-l.done:
			return
		}
	}
}

// write sends one payload with a deadline.
func (l *link) write(v outFrame) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: encode op %d: %v", ErrBadPayload, v.Op, err)
	}
	if err := l.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return l.conn.WriteMessage(websocket.TextMessage, b)
}

// closeWith sends a close frame. Codes other than 1000/1001 keep the
// session resumable (Discord docs, Gateway, Initiating a Disconnect).
func (l *link) closeWith(code int, text string) {
	err := l.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(writeTimeout))
	if err != nil {
		l.log.Debug("close frame not sent", "code", code, "err", err)
	}
}

// closeAndWait sends a close frame and waits, at most closeAckTimeout, for
// the peer's close in return (RFC 6455 §5.5.1), so that the peer has read
// our code before the TCP connection ends. Frames arriving meanwhile are
// dropped; the reader's error stays queued for whoever reads it next.
func (l *link) closeAndWait(code int, text string) {
	l.closeWith(code, text)
	t := time.NewTimer(closeAckTimeout)
	defer t.Stop()
	for {
		select {
		case <-l.frames:
		case err := <-l.errs:
			l.errs <- err
			return
		case <-t.C:
			return
		}
	}
}

// shutdown closes the socket and waits for the reader.
func (l *link) shutdown() {
	close(l.done)
	_ = l.conn.Close()
	l.wg.Wait()
}
