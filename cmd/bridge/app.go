package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/voicebridge/bridge/emulator"
	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/media"
	"github.com/voicebridge/bridge/web"
)

// app is the wired bridge: every part, started, with one Shutdown.
type app struct {
	cfg *Config
	log *slog.Logger

	demo  *emulator.Demo  // the embedded default's emulated Discord
	gw    *gateway.Client // the first bot's gateway
	bots  *bots           // every bot: the pool (bots.go)
	hub   *hub.Hub
	media *media.Manager
	srv   *http.Server
	ln    net.Listener
	front *front            // HTTPS, redirect and trusted proxies (tls.go)
	turn  *media.TURNServer // embedded TURN server, nil unless TURN_PORT
	done  chan error
}

// devIssuer and devAudience are the claims of dev-auth tokens.
const (
	devIssuer   = "bridge-dev-auth"
	devAudience = "bridge"
)

// tuning adjusts the parts' timings and the emulator; the zero value is
// production's. Tests shorten heartbeats and backoffs with it.
type tuning struct {
	demo    emulator.DemoOptions
	gateway func(*gateway.Options)
	media   func(*media.Options)
	turn    func(*media.TURNOptions)
}

func newApp(ctx context.Context, cfg *Config, log *slog.Logger) (*app, error) {
	return newTunedApp(ctx, cfg, log, tuning{})
}

func newTunedApp(ctx context.Context, cfg *Config, log *slog.Logger, tune tuning) (a *app, err error) {
	a = &app{cfg: cfg, log: log, done: make(chan error, 1)}
	built := a // a is nil once an error is returned
	defer func() {
		if err != nil {
			built.closeParts(context.Background())
		}
	}()

	tokens, guildID, categoryID, apiBase := cfg.BotTokens, cfg.GuildID, cfg.CategoryID, cfg.APIBase
	if cfg.Embedded {
		demoOpts := tune.demo
		demoOpts.Logger = log
		a.demo, err = emulator.StartDemo(demoOpts)
		if err != nil {
			return nil, fmt.Errorf("embedded Discord emulator: %w", err)
		}
		o := a.demo.Discord.Options()
		tokens, guildID, categoryID = []string{o.Token}, o.GuildID, o.CategoryID
		for _, b := range o.ExtraBots {
			tokens = append(tokens, b.Token)
		}
		apiBase = a.demo.Discord.URL() + "/api/v10"
		log.Warn("no DISCORD_BOT_TOKEN: running on the embedded Discord emulator", "guild", guildID)
	}

	a.bots, err = newBots(botSpec{
		tokens: tokens, shards: cfg.Shards, guildID: guildID, categoryID: categoryID, apiBase: apiBase,
		tune: tune.gateway,
		publish: func(e gateway.Event) {
			a.hub.Publish(e.Name, e.Payload)
			if p, ok := e.Payload.(gateway.RoomPayload); ok && e.Name == gateway.EventRoomDeleted {
				a.media.RoomEnded(p.ChannelID)
			}
		},
		onChange: func() {
			if a.media != nil {
				a.media.LinksChanged()
			}
		},
		log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	a.gw = a.bots.first

	hubOpts := hub.Options{
		GuildID:        guildID,
		DefaultGuildID: guildID, // tokens without a guilds claim keep the one guild
		Rooms:          roomsAdapter{a.bots.leadRooms},
		HMACSecret:     []byte(cfg.HMACSecret),
		AllowedOrigins: cfg.AllowedOrigins,
		Status:         func() any { return a.bots.status() },
		Ready:          func() bool { return a.bots.pool.Healthy() },
		Logger:         log.With("part", "hub"),
	}
	if cfg.DevAuth {
		dev, err := hub.NewDevAuth(devIssuer, devAudience)
		if err != nil {
			return nil, fmt.Errorf("dev auth: %w", err)
		}
		hubOpts.DevAuth = dev
		hubOpts.Auth = dev.Verifier()
		log.Warn("DEV AUTH IS ON: anyone who can reach this server can mint tokens at POST /api/dev/token; never expose it")
	} else {
		hubOpts.Auth, err = hub.NewVerifier(ctx, hub.VerifierOptions{
			JWKSURL:     cfg.JWKSURL,
			Issuer:      cfg.JWTIssuer,
			Audience:    cfg.JWTAudience,
			GuildsClaim: cfg.GuildsClaim,
		})
		if err != nil {
			return nil, fmt.Errorf("JWKS_URL: %w", err)
		}
	}
	a.hub, err = hub.New(hubOpts)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}

	if a.front, err = newFront(cfg, log); err != nil {
		return nil, err
	}
	if a.turn, err = startTURN(cfg, a.front.tls, log, tune.turn); err != nil {
		return nil, err
	}
	if a.media, err = media.NewManager(a.mediaOptions(guildID, tune)); err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	wireSignaling(a.hub, a.media)

	a.srv = &http.Server{
		Handler:           trustProxies(cfg.TrustedProxies, routes(a.hub.Handler(), web.Handler())),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	a.ln, err = net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("LISTEN_ADDR %s: %w", cfg.ListenAddr, err)
	}
	warnInsecure(cfg, a.ln.Addr(), log)
	if a.ln, err = a.front.listener(a.ln); err != nil {
		return nil, err
	}
	if err := a.bots.pool.Open(ctx); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	go func() {
		err := a.srv.Serve(a.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		a.done <- err
	}()
	return a, nil
}

// Addr is the address the HTTP server listens on.
func (a *app) Addr() string { return a.ln.Addr().String() }

// URL is the address to open in a browser.
func (a *app) URL() string {
	host, port, _ := net.SplitHostPort(a.Addr())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	scheme := "http://"
	if a.front.tls != nil {
		scheme = "https://"
		if len(a.cfg.TLSDomains) > 0 {
			host = a.cfg.TLSDomains[0]
		}
	}
	return scheme + net.JoinHostPort(host, port) + "/"
}

// Done reports the HTTP server stopping on its own.
func (a *app) Done() <-chan error { return a.done }

// Shutdown stops in order: hub clients get a close frame, in-flight HTTP
// requests finish, the gateway closes with a resumable code, then the
// emulators stop.
func (a *app) Shutdown(ctx context.Context) error {
	var errs []error
	if a.hub != nil {
		errs = append(errs, a.hub.Shutdown(ctx))
	}
	if a.srv != nil {
		errs = append(errs, a.srv.Shutdown(ctx))
	}
	errs = append(errs, a.closeParts(ctx))
	return errors.Join(errs...)
}

// mediaOptions turns the ICE settings into media's options.
func (a *app) mediaOptions(guildID string, tune tuning) media.Options {
	cfg := a.cfg
	var voiceTLS *tls.Config
	if a.demo != nil {
		voiceTLS = a.demo.Voice.TLSConfig()
	}
	o := media.Options{
		Joiner:  voiceJoiner{pool: a.bots.pool, tls: voiceTLS, log: a.log},
		GuildID: guildID,
		Links:   a.bots.pool.Capacity,
		RoomName: func(channelID string) string {
			for _, r := range a.bots.lead().Rooms() {
				if r.ChannelID == channelID {
					return r.Name
				}
			}
			return ""
		},
		RoomExists: func(channelID string) bool {
			for _, r := range a.bots.lead().Rooms() {
				if r.ChannelID == channelID {
					return true
				}
			}
			return false
		},
		ICEUDPListen: net.JoinHostPort("", strconv.Itoa(cfg.ICEUDPPort)),
		Grace:        cfg.RoomGrace,
		Logger:       a.log,
		Publish:      func(event string, payload any) { a.hub.Publish(event, payload) },
		MemberName: func(userID string) string {
			for _, r := range a.bots.lead().Rooms() {
				for _, m := range r.Members {
					if m.UserID == userID {
						return m.Name
					}
				}
			}
			return ""
		},
	}
	if cfg.ICEPublicIP != "" {
		o.PublicIPs = []string{cfg.ICEPublicIP}
	}
	o.ICEServers = cfg.ICEServers
	o.ICEServersFor = a.turnICEServers
	if cfg.ICETCPPort >= 0 {
		o.ICETCPListen = net.JoinHostPort("", strconv.Itoa(cfg.ICETCPPort))
	}
	if tune.media != nil {
		tune.media(&o)
	}
	return o
}

func (a *app) closeParts(ctx context.Context) error {
	var errs []error
	if a.media != nil {
		errs = append(errs, a.media.Close(ctx))
	}
	if a.turn != nil {
		errs = append(errs, a.turn.Close())
	}
	if a.bots != nil {
		errs = append(errs, a.bots.pool.Close(ctx))
	}
	if a.demo != nil {
		a.demo.Close()
	}
	if a.front != nil {
		errs = append(errs, a.front.close(ctx))
	}
	return errors.Join(errs...)
}

// roomsAdapter presents gateway.Rooms as hub.Rooms: the hub declares what it
// needs and knows nothing of Discord.
type roomsAdapter struct{ r func() *gateway.Rooms }

func (ra roomsAdapter) CreateRoom(ctx context.Context, name string, userLimit int) (hub.Room, error) {
	room, err := ra.r().CreateRoom(ctx, name, userLimit)
	return toHubRoom(room), hubError(err)
}

func (ra roomsAdapter) EndRoom(ctx context.Context, channelID string) error {
	return hubError(ra.r().EndRoom(ctx, channelID))
}

func (ra roomsAdapter) ListRooms(ctx context.Context) ([]hub.Room, error) {
	rooms, err := ra.r().ListRooms(ctx)
	if err != nil {
		return nil, hubError(err)
	}
	out := make([]hub.Room, len(rooms))
	for i, r := range rooms {
		out[i] = toHubRoom(r)
	}
	return out, nil
}

func toHubRoom(r gateway.Room) hub.Room {
	out := hub.Room{ChannelID: r.ChannelID, Name: r.Name, GuildID: r.GuildID, UserLimit: r.UserLimit}
	for _, m := range r.Members {
		out.Members = append(out.Members, hub.Member{UserID: m.UserID, Name: m.Name, Bot: m.Bot})
	}
	return out
}

// hubError maps the gateway's errors onto the hub's, keeping the cause.
func hubError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gateway.ErrNotRoom):
		return fmt.Errorf("%w: %w", hub.ErrNotRoom, err)
	case errors.Is(err, gateway.ErrForbidden):
		return fmt.Errorf("%w: %w", hub.ErrForbidden, err)
	case errors.Is(err, gateway.ErrNotFound):
		return fmt.Errorf("%w: %w", hub.ErrNotFound, err)
	case errors.Is(err, gateway.ErrRateLimited):
		return fmt.Errorf("%w: %w", hub.ErrRateLimited, err)
	}
	return err
}
