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
	// video: the voice server accepts bot video (the embedded emulator;
	// Discord discards it), so the voice client sends its video fields.
	video bool
	// onPrivacy receives the call's voice privacy code whenever DAVE
	// changes it ("" when the call is not end-to-end encrypted).
	onPrivacy func(channelID, code string)
}

func (j voiceJoiner) Join(ctx context.Context, guildID, channelID string) (media.DiscordLink, error) {
	if err := j.gw.WaitReady(ctx); err != nil {
		return nil, err
	}
	// A full room refuses a bot without Move Members silently: say so.
	if err := j.gw.CheckJoin(channelID); err != nil {
		return nil, err
	}
	vc := voice.NewClient(voice.Options{
		Signaler:  voiceSignaler{j.gw},
		UserID:    j.gw.Status().BotUserID,
		TLSConfig: j.tls,
		Logger:    j.log,
		Video:     j.video,
	})
	conn, err := vc.Join(ctx, guildID, channelID)
	if err != nil {
		return nil, err
	}
	l := &voiceLink{conn: conn, frames: make(chan media.DiscordFrame, 64), left: make(chan string, 16),
		stop: make(chan struct{}), pumped: make(chan struct{}),
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
	left      chan string   // users who left the channel, from the events
	stop      chan struct{} // closed by Close
	pumped    chan struct{} // closed when pump ends
	stopOnce  sync.Once
	wg        sync.WaitGroup
}

// pump is the only writer of l.frames: the connection's frames, and the
// users drainEvents reports leaving, in the order they come.
func (l *voiceLink) pump() {
	defer l.wg.Done()
	defer close(l.pumped)
	defer close(l.frames)
	in := l.conn.Frames()
	for {
		var out media.DiscordFrame
		select {
		case f, ok := <-in:
			if !ok {
				return
			}
			kind := media.FrameAudio
			if f.Kind == voice.Video {
				kind = media.FrameVideo
			}
			out = media.DiscordFrame{UserID: f.UserID, Kind: kind, Payload: f.Payload, Missing: f.Missing, Keyframe: f.Keyframe, Received: f.Received}
		case uid := <-l.left:
			out = media.DiscordFrame{UserID: uid, Kind: media.FrameUserLeft}
		case <-l.stop:
			return
		}
		select {
		case l.frames <- out:
		case <-l.stop:
			return
		}
	}
}

// drainEvents keeps the connection's event channel flowing, passes the
// DAVE privacy code on and hands users leaving the channel (op 13) to pump,
// so media removes their tracks; media learns of speakers from the frames
// themselves.
func (l *voiceLink) drainEvents() {
	defer l.wg.Done()
	for e := range l.conn.Events() {
		switch e := e.(type) {
		case voice.PrivacyCodeChanged:
			l.onPrivacy(e.Code)
		case voice.MemberLeft:
			select {
			case l.left <- e.UserID:
			case <-l.pumped: // the link is ending: nobody to tell
			case <-l.stop:
			}
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
