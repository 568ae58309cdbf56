package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/media/mediatest"
)

// target is the bridge under test.
type target struct {
	base string // http(s)://host:port
}

// call sends a JSON request and decodes the answer; out may be nil.
func (t target) call(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w: %s", method, path, err, b)
		}
	}
	return nil
}

// devToken asks the bridge's dev auth (POST /api/dev/token) for a token.
func (t target) devToken(ctx context.Context, name string) (string, error) {
	var out struct{ Token string }
	if err := t.call(ctx, http.MethodPost, "/api/dev/token", "", map[string]string{"name": name}, &out); err != nil {
		return "", fmt.Errorf("dev token (is dev auth on? else give -tokens): %w", err)
	}
	return out.Token, nil
}

// peer is one pion browser signaling over the bridge's /api/ws.
type peer struct {
	*mediatest.Browser
	ws   *websocket.Conn
	wmu  sync.Mutex
	read chan struct{}
}

// dialPeer signs in with token over /api/ws and makes the browser; onRTP
// (may be nil) sees every packet it receives.
func dialPeer(ctx context.Context, t target, api *webrtc.API, token string, onRTP func(*mediatest.Track, []byte, time.Time)) (*peer, error) {
	url := "ws" + strings.TrimPrefix(t.base, "http") + "/api/ws"
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.DialContext(ctx, url, http.Header{"Origin": {t.base}})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteJSON(map[string]string{"type": "auth", "token": token}); err != nil {
		ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ack struct{ Type, Event string }
	if err := ws.ReadJSON(&ack); err != nil || ack.Event != "auth.ok" {
		ws.Close()
		return nil, fmt.Errorf("auth: %+v %v", ack, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	p := &peer{ws: ws, read: make(chan struct{})}
	o := mediatest.Options{API: api, Send: p.send, ReadTracks: true}
	if onRTP != nil {
		o.OnRTP = func(tr *mediatest.Track, pkt *rtp.Packet, at time.Time) { onRTP(tr, pkt.Payload, at) }
	}
	b, err := mediatest.NewBrowser(o)
	if err != nil {
		ws.Close()
		return nil, err
	}
	p.Browser = b
	go func() {
		defer close(p.read)
		for {
			_, raw, err := ws.ReadMessage()
			if err != nil {
				return
			}
			b.Deliver(raw)
		}
	}()
	return p, nil
}

// send writes one message on the socket.
func (p *peer) send(v map[string]any) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return p.ws.WriteJSON(v)
}

// join joins a room and waits for "joined".
func (p *peer) join(ctx context.Context, roomID string) error {
	from := p.Mark()
	if err := p.send(map[string]any{"type": "join", "roomId": roomID}); err != nil {
		return err
	}
	m, _, err := p.WaitMessage(ctx, from, func(m mediatest.Message) bool { return m.Type == "joined" || m.Type == "error" })
	if err != nil {
		return fmt.Errorf("join %s: no answer: %w", roomID, err)
	}
	if m.Type == "error" {
		return fmt.Errorf("join %s: %s", roomID, m.Raw)
	}
	return nil
}

// close hangs up and waits for the browser's goroutines.
func (p *peer) close() {
	_ = p.ws.Close()
	<-p.read
	p.Close()
}
