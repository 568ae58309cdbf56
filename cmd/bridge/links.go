package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/media"
	"github.com/voicebridge/bridge/voice"
)

// signalTypes are the hub messages that carry WebRTC signaling to media.
var signalTypes = []string{"join", "offer", "answer", "candidate", "leave", "mute", "camera", "restart-ice"}

// routes sends the API paths to the hub and everything else to the UI.
func routes(api, ui http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/.well-known/") || p == "/healthz" || p == "/readyz" {
			api.ServeHTTP(w, r)
			return
		}
		ui.ServeHTTP(w, r)
	})
}

// voiceJoiner joins the bot to a voice channel with our voice client and
// presents the connection to media as its Discord leg.
type voiceJoiner struct {
	gw  *gateway.Client
	tls *tls.Config // nil: system roots (Discord); the emulator's otherwise
	log *slog.Logger
	// onPrivacy receives the call's voice privacy code whenever DAVE
	// changes it ("" when the call is not end-to-end encrypted).
	onPrivacy func(channelID, code string)
}

func (j voiceJoiner) Join(ctx context.Context, guildID, channelID string) (media.DiscordLink, error) {
	if err := j.gw.WaitReady(ctx); err != nil {
		return nil, err
	}
	vc := voice.NewClient(voice.Options{
		Signaler:  j.gw,
		UserID:    j.gw.Status().BotUserID,
		TLSConfig: j.tls,
		Logger:    j.log.With("guild", guildID, "channel", channelID),
	})
	conn, err := vc.Join(ctx, guildID, channelID)
	if err != nil {
		return nil, err
	}
	l := &voiceLink{conn: conn, frames: make(chan media.DiscordFrame, 64), stop: make(chan struct{}),
		onPrivacy: func(code string) { j.onPrivacy(channelID, code) }}
	l.wg.Add(2)
	go l.pump()
	go l.drainEvents()
	return l, nil
}

// voiceLink is a voice connection as media's DiscordLink. Its Frames
// channel closes when the connection ends, which makes media rejoin.
type voiceLink struct {
	conn      *voice.Conn
	onPrivacy func(code string)
	frames    chan media.DiscordFrame
	stop      chan struct{}
	stopOnce  sync.Once
	wg        sync.WaitGroup
}

func (l *voiceLink) pump() {
	defer l.wg.Done()
	defer close(l.frames)
	for f := range l.conn.Frames() {
		kind := media.FrameAudio
		if f.Kind == voice.Video {
			kind = media.FrameVideo
		}
		select {
		case l.frames <- media.DiscordFrame{UserID: f.UserID, Kind: kind, Payload: f.Payload, Missing: f.Missing, Keyframe: f.Keyframe, Received: f.Received}:
		case <-l.stop:
			return
		}
	}
}

// drainEvents keeps the connection's event channel flowing and passes the
// DAVE privacy code on; media learns of speakers from the frames
// themselves.
func (l *voiceLink) drainEvents() {
	defer l.wg.Done()
	for e := range l.conn.Events() {
		if p, ok := e.(voice.PrivacyCodeChanged); ok {
			l.onPrivacy(p.Code)
		}
	}
}

func (l *voiceLink) SendOpus(frame []byte) error { return l.conn.SendOpus(frame) }
func (l *voiceLink) SendVP8(frame []byte, keyframe bool) error {
	return l.conn.SendVP8(frame, keyframe)
}
func (l *voiceLink) Frames() <-chan media.DiscordFrame { return l.frames }

func (l *voiceLink) Close(ctx context.Context) error {
	err := l.conn.Close(ctx)
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
	return err
}

// hubPeer is a hub client as media sees it.
type hubPeer struct{ c *hub.Client }

func (p hubPeer) ID() string       { return p.c.ID() }
func (p hubPeer) UserID() string   { return p.c.UserID() }
func (p hubPeer) Name() string     { return p.c.Name() }
func (p hubPeer) Send(v any) error { return p.c.Send(v) }

// wireSignaling routes the hub's signaling messages to media, and a
// closed socket to media's cleanup.
func wireSignaling(h *hub.Hub, m *media.Manager) {
	var mu sync.Mutex
	watched := map[string]bool{}
	for _, typ := range signalTypes {
		h.HandleMessage(typ, func(ctx context.Context, c *hub.Client, raw json.RawMessage) {
			p := hubPeer{c}
			mu.Lock()
			first := !watched[c.ID()]
			watched[c.ID()] = true
			mu.Unlock()
			if first {
				c.OnClose(func() {
					m.PeerClosed(p)
					mu.Lock()
					delete(watched, c.ID())
					mu.Unlock()
				})
			}
			m.HandleSignal(ctx, p, typ, raw)
		})
	}
}
