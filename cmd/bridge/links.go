package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/voicebridge/bridge/gateway/pool"
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

// voiceJoiner joins a free bot of the pool to a voice channel with our
// voice client; the connection is the room's media.DiscordLink, and the
// bot is the room's until the link closes.
type voiceJoiner struct {
	pool *pool.Pool
	tls  *tls.Config // nil: system roots (Discord); the emulator's otherwise
	log  *slog.Logger
	// video: the voice server accepts bot video (the embedded emulator;
	// Discord discards it), so the voice client sends its video fields.
	video bool
	m     *appMetrics // counts frames across the seam; nil counts nothing
}

func (j voiceJoiner) Join(ctx context.Context, guildID, channelID string) (media.DiscordLink, error) {
	lease, err := j.pool.Acquire(guildID, channelID)
	if errors.Is(err, pool.ErrNoFreeBot) || errors.Is(err, pool.ErrNoBot) {
		return nil, fmt.Errorf("%w: %w", media.ErrNoFreeBot, err) // the room waits in line
	}
	if err != nil {
		return nil, err
	}
	gw := lease.Bot.Client
	// The join ends early when the bot leaves the pool meanwhile.
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-lease.Lost():
			cancel()
		case <-ctx.Done():
		}
	}()
	defer cancel()
	if err := gw.WaitReady(ctx); err != nil {
		lease.Release()
		return nil, fmt.Errorf("%s: %w", lease.Bot.Name, err)
	}
	// A full room refuses a bot without Move Members silently: say so.
	if err := gw.CheckJoin(channelID); err != nil {
		lease.Release()
		return nil, fmt.Errorf("%s: %w", lease.Bot.Name, err)
	}
	vc := voice.NewClient(voice.Options{
		Signaler:  voiceSignaler{gw},
		UserID:    gw.Status().BotUserID,
		TLSConfig: j.tls,
		Logger:    j.log.With("bot", lease.Bot.Name), // voice names its component, guild and channel itself
		Video:     j.video,
	})
	conn, err := vc.Join(ctx, guildID, channelID)
	if err != nil {
		lease.Release()
		return nil, fmt.Errorf("%s: %w", lease.Bot.Name, err)
	}
	j.m.opened(conn)
	return voiceLink{conn: conn, lease: lease, m: j.m}, nil
}

// voiceLink is a voice connection as media's DiscordLink, on a leased bot.
// It has no goroutine of its own: Receive waits on the connection's frames
// and events in the caller's.
type voiceLink struct {
	conn  *voice.Conn
	lease *pool.Lease
	m     *appMetrics
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
		case <-l.lease.Lost():
			return nil, fmt.Errorf("%w: %s left the pool", media.ErrLinkEnded, l.lease.Bot.Name)
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

// Close leaves the voice channel and gives the bot back to the pool.
func (l voiceLink) Close(ctx context.Context) error {
	defer l.lease.Release()
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
