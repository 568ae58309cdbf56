// Throwaway dev server for the web UI; deleted before hand-off.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/gateway/discordtest"
	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/media"
	"github.com/voicebridge/bridge/voice"
	"github.com/voicebridge/bridge/web"
)

type roomsAdapter struct{ r *gateway.Rooms }

func (ra roomsAdapter) CreateRoom(ctx context.Context, name string, userLimit int) (hub.Room, error) {
	room, err := ra.r.CreateRoom(ctx, name, userLimit)
	return toHubRoom(room), err
}
func (ra roomsAdapter) EndRoom(ctx context.Context, id string) error { return ra.r.EndRoom(ctx, id) }
func (ra roomsAdapter) ListRooms(ctx context.Context) ([]hub.Room, error) {
	rooms, err := ra.r.ListRooms(ctx)
	out := make([]hub.Room, len(rooms))
	for i, r := range rooms {
		out[i] = toHubRoom(r)
	}
	return out, err
}
func toHubRoom(r gateway.Room) hub.Room {
	out := hub.Room{ChannelID: r.ChannelID, Name: r.Name, GuildID: r.GuildID, UserLimit: r.UserLimit}
	for _, m := range r.Members {
		out.Members = append(out.Members, hub.Member{UserID: m.UserID, Name: m.Name})
	}
	return out
}

type joiner struct{ c *voice.Client }

type link struct {
	c  *voice.Conn
	fr chan media.DiscordFrame
}

func (j joiner) Join(ctx context.Context, g, ch string) (media.DiscordLink, error) {
	c, err := j.c.Join(ctx, g, ch)
	if err != nil {
		return nil, err
	}
	l := &link{c: c, fr: make(chan media.DiscordFrame, 64)}
	go func() {
		defer close(l.fr)
		for f := range c.Frames() {
			k := media.FrameAudio
			if f.Kind == voice.Video {
				k = media.FrameVideo
			}
			l.fr <- media.DiscordFrame{UserID: f.UserID, Kind: k, Payload: f.Payload, Missing: f.Missing, Keyframe: f.Keyframe}
		}
	}()
	go func() {
		for range c.Events() {
		}
	}()
	return l, nil
}
func (l *link) SendOpus(b []byte) error               { return l.c.SendOpus(b) }
func (l *link) SendVP8(b []byte, k bool) error        { return l.c.SendVP8(b, k) }
func (l *link) Frames() <-chan media.DiscordFrame     { return l.fr }
func (l *link) Close(ctx context.Context) error       { return l.c.Close(ctx) }

type peer struct{ c *hub.Client }

func (p peer) ID() string        { return p.c.ID() }
func (p peer) UserID() string    { return p.c.UserID() }
func (p peer) Name() string      { return p.c.Name() }
func (p peer) Send(v any) error  { return p.c.Send(v) }

func main() {
	addr := flag.String("addr", "127.0.0.1:8099", "")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	demo, err := discordtest.StartDemo(discordtest.DemoOptions{Logger: log})
	must(err)
	o := demo.Discord.Options()
	apiBase := demo.Discord.URL() + "/api/v10"
	var h *hub.Hub
	var mgr *media.Manager
	gw, err := gateway.New(gateway.Options{Token: o.Token, GuildID: o.GuildID, CategoryID: o.CategoryID, APIBase: apiBase, Logger: log,
		OnEvent: func(e gateway.Event) {
			h.Publish(e.Name, e.Payload)
			if e.Name == gateway.EventRoomDeleted {
				mgr.RoomEnded(e.Payload.(gateway.RoomPayload).ChannelID)
			}
		}})
	must(err)
	rooms, err := gateway.NewRooms(gateway.RoomsOptions{Token: o.Token, GuildID: o.GuildID, CategoryID: o.CategoryID, APIBase: apiBase, Logger: log, Members: gw.Members})
	must(err)
	dev, err := hub.NewDevAuth("i", "a")
	must(err)
	h, err = hub.New(hub.Options{GuildID: o.GuildID, Rooms: roomsAdapter{rooms}, DevAuth: dev, Auth: dev.Verifier(), Logger: log})
	must(err)
	vc := voice.NewClient(voice.Options{Signaler: gw, UserID: o.BotUserID, TLSConfig: demo.Voice.TLSConfig(), Logger: log})
	mgr, err = media.NewManager(media.Options{Joiner: joiner{vc}, GuildID: o.GuildID, Logger: log, Publish: h.Publish,
		IncludeLoopback: true, IPFilter: func(ip net.IP) bool { return ip.IsLoopback() },
		MemberName: func(id string) string {
			for _, m := range gw.Members(demo.Lobby.ID) {
				if m.UserID == id {
					return m.Name
				}
			}
			return id
		}})
	must(err)
	for _, t := range []string{"join", "offer", "answer", "candidate", "leave", "mute", "camera", "restart-ice"} {
		t := t
		h.HandleMessage(t, func(ctx context.Context, c *hub.Client, raw json.RawMessage) {
			p := peer{c}
			c.OnClose(func() { mgr.PeerClosed(p) })
			mgr.HandleSignal(ctx, p, t, raw)
		})
	}
	must(gw.Open(context.Background()))
	w := web.Handler()
	api := h.Handler()
	mux := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/.well-known/") || p == "/healthz" || p == "/readyz" {
			api.ServeHTTP(rw, r)
			return
		}
		w.ServeHTTP(rw, r)
	})
	fmt.Println("listening", *addr)
	must(http.ListenAndServe(*addr, mux))
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
