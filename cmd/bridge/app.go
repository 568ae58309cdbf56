package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/gateway/discordtest"
	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/voice/voicetest"
)

// app is the wired bridge: every part, started, with one Shutdown.
type app struct {
	cfg *Config
	log *slog.Logger

	voiceEmu *voicetest.Server   // embedded default only
	emu      *discordtest.Server // embedded default only
	gw       *gateway.Client
	hub      *hub.Hub
	srv      *http.Server
	ln       net.Listener
	done     chan error
}

// devIssuer and devAudience are the claims of dev-auth tokens.
const (
	devIssuer   = "bridge-dev-auth"
	devAudience = "bridge"
)

func newApp(ctx context.Context, cfg *Config, log *slog.Logger) (a *app, err error) {
	a = &app{cfg: cfg, log: log, done: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.closeParts(context.Background())
		}
	}()

	token, guildID, categoryID, apiBase := cfg.BotToken, cfg.GuildID, cfg.CategoryID, cfg.APIBase
	if cfg.Embedded {
		a.voiceEmu, err = voicetest.Start(voicetest.Options{Logger: log.With("part", "voice-emulator")})
		if err != nil {
			return nil, fmt.Errorf("voice emulator: %w", err)
		}
		a.emu, err = discordtest.Start(discordtest.Options{
			Voice:            a.voiceEmu,
			IdentifyInterval: time.Second,
			Logger:           log.With("part", "discord-emulator"),
		})
		if err != nil {
			return nil, fmt.Errorf("discord emulator: %w", err)
		}
		o := a.emu.Options()
		token, guildID, categoryID = o.Token, o.GuildID, o.CategoryID
		apiBase = a.emu.URL() + "/api/v10"
		log.Warn("no DISCORD_BOT_TOKEN: running on the embedded Discord emulator", "guild", guildID)
	}

	a.gw, err = gateway.New(gateway.Options{
		Token:      token,
		GuildID:    guildID,
		CategoryID: categoryID,
		APIBase:    apiBase,
		Logger:     log.With("part", "gateway"),
		OnEvent: func(e gateway.Event) {
			a.hub.Publish(e.Name, e.Payload)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	rooms, err := gateway.NewRooms(gateway.RoomsOptions{
		Token:      token,
		GuildID:    guildID,
		CategoryID: categoryID,
		APIBase:    apiBase,
		Logger:     log.With("part", "rooms"),
		Members:    a.gw.Members,
	})
	if err != nil {
		return nil, fmt.Errorf("rooms: %w", err)
	}

	hubOpts := hub.Options{
		GuildID:        guildID,
		Rooms:          roomsAdapter{rooms},
		HMACSecret:     []byte(cfg.HMACSecret),
		AllowedOrigins: cfg.AllowedOrigins,
		Status:         func() any { return a.gw.Status() },
		Ready:          func() bool { return a.gw.Status().State == gateway.StateReady },
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
			JWKSURL:  cfg.JWKSURL,
			Issuer:   cfg.JWTIssuer,
			Audience: cfg.JWTAudience,
		})
		if err != nil {
			return nil, fmt.Errorf("JWKS_URL: %w", err)
		}
	}
	a.hub, err = hub.New(hubOpts)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("/", a.hub.Handler())
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	a.ln, err = net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("LISTEN_ADDR %s: %w", cfg.ListenAddr, err)
	}
	if err := a.gw.Open(ctx); err != nil {
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
	return "http://" + net.JoinHostPort(host, port) + "/"
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

func (a *app) closeParts(ctx context.Context) error {
	var errs []error
	if a.gw != nil {
		errs = append(errs, a.gw.Close(ctx))
	}
	if a.emu != nil {
		a.emu.Close()
	}
	if a.voiceEmu != nil {
		a.voiceEmu.Close()
	}
	return errors.Join(errs...)
}

// roomsAdapter presents gateway.Rooms as hub.Rooms: the hub declares what it
// needs and knows nothing of Discord.
type roomsAdapter struct{ r *gateway.Rooms }

func (ra roomsAdapter) CreateRoom(ctx context.Context, name string, userLimit int) (hub.Room, error) {
	room, err := ra.r.CreateRoom(ctx, name, userLimit)
	return toHubRoom(room), hubError(err)
}

func (ra roomsAdapter) EndRoom(ctx context.Context, channelID string) error {
	return hubError(ra.r.EndRoom(ctx, channelID))
}

func (ra roomsAdapter) ListRooms(ctx context.Context) ([]hub.Room, error) {
	rooms, err := ra.r.ListRooms(ctx)
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
		out.Members = append(out.Members, hub.Member{UserID: m.UserID, Name: m.Name})
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
