package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/internal/metrics"
	"github.com/voicebridge/bridge/media"
	"github.com/voicebridge/bridge/voice"
)

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

// voiceJoiner joins the bot to a voice channel with our voice client; the
// connection is the room's media.DiscordLink.
type voiceJoiner struct {
	gw  *gateway.Client
	tls *tls.Config // nil: system roots (Discord); the emulator's otherwise
	log *slog.Logger
	// video: the voice server accepts bot video (the embedded emulator;
	// Discord discards it), so the voice client sends its video fields.
	video bool
	m     *appMetrics // counts frames across the seam; nil counts nothing
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
		Logger:    j.log, // voice names its component, guild and channel itself
		Video:     j.video,
	})
	conn, err := vc.Join(ctx, guildID, channelID)
	if err != nil {
		return nil, err
	}
	j.m.opened(conn)
	return voiceLink{conn, j.m}, nil
}

// voiceLink is a voice connection as media's DiscordLink. It has no
// goroutine of its own: Receive waits on the connection's frames and
// events in the caller's.
type voiceLink struct {
	conn *voice.Conn
	m    *appMetrics
}

// Receive returns the connection's next frame, member departure or privacy
// code; the other events are the gateway's to report, and media learns of
// speakers from the frames themselves.
func (l voiceLink) Receive(ctx context.Context) (media.LinkEvent, error) {
	frames, events := l.conn.Frames(), l.conn.Events()
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return nil, fmt.Errorf("%w: its frames ended", media.ErrLinkEnded)
			}
			kind, label := media.FrameAudio, "audio"
			if f.Kind == voice.Video {
				kind, label = media.FrameVideo, "video"
			}
			l.m.frame(metrics.ToBrowsers, label, len(f.Payload), nil)
			return media.DiscordFrame{UserID: f.UserID, Kind: kind, Payload: f.Payload,
				Missing: f.Missing, Keyframe: f.Keyframe, Received: f.Received}, nil
		case e, ok := <-events:
			if !ok {
				events = nil // frames end too; wait for them
				continue
			}
			switch e := e.(type) {
			case voice.MemberLeft:
				return media.UserLeft{UserID: e.UserID}, nil
			case voice.PrivacyCodeChanged:
				return media.PrivacyCode{Code: e.Code}, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (l voiceLink) SendOpus(frame []byte) error {
	err := l.conn.SendOpus(frame)
	l.m.frame(metrics.ToDiscord, "audio", len(frame), err)
	return err
}
func (l voiceLink) SendVP8(frame []byte, keyframe bool) error {
	err := l.conn.SendVP8(frame, keyframe)
	l.m.frame(metrics.ToDiscord, "video", len(frame), err)
	return err
}
func (l voiceLink) Close(ctx context.Context) error {
	l.m.closed(l.conn)
	return l.conn.Close(ctx)
}

// wireSignaling routes the hub's signaling messages to media, and a
// closed socket to media's cleanup.
func wireSignaling(h *hub.Hub, m *media.Manager) {
	var mu sync.Mutex
	watched := map[string]bool{}
	for _, typ := range media.SignalTypes() {
		h.HandleMessage(typ, func(ctx context.Context, c *hub.Client, raw json.RawMessage) {
			mu.Lock()
			first := !watched[c.ID()]
			watched[c.ID()] = true
			mu.Unlock()
			if first {
				c.OnClose(func() {
					m.PeerClosed(c)
					mu.Lock()
					delete(watched, c.ID())
					mu.Unlock()
				})
			}
			m.HandleSignal(ctx, c, typ, raw)
		})
	}
}
