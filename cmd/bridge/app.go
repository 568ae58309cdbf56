package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/voicebridge/bridge/emulator"
	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/media"
	"github.com/voicebridge/bridge/media/opusenc"
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
	calls *presence         // browsers in each room's call, for GET /api/rooms
	front *front            // HTTPS, redirect and trusted proxies (tls.go)
	turn  *media.TURNServer // embedded TURN server, nil unless TURN_PORT
	conns *connLimiter
	// serving is set once Serve owns the listener.
	serving bool
	// verifier checks tokens against JWKS_URL (nil with dev auth).
	verifier *hub.Verifier
	done     chan error

	cluster *cluster    // the instances sharing REDIS_URL (scale.go)
	metrics *appMetrics // GET /metrics (metrics.go)
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
	server  serverLimits
}

func newApp(ctx context.Context, cfg *Config, log *slog.Logger) (*app, error) {
	return newTunedApp(ctx, cfg, log, tuning{})
}

func newTunedApp(ctx context.Context, cfg *Config, log *slog.Logger, tune tuning) (*app, error) {
	a := &app{cfg: cfg, log: log, calls: newPresence(), done: make(chan error, 1)}
	if err := a.start(ctx, tune); err != nil {
		// Whatever started is stopped again: a failed start leaves no
		// listener and no goroutine behind.
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if cerr := a.closeParts(closeCtx); cerr != nil {
			log.Warn("cleanup after a failed start", "err", cerr)
		}
		return nil, err
	}
	return a, nil
}

// start wires and starts every part; an error is a *StartError and a
// failed start leaves a for closeParts to undo.
func (a *app) start(ctx context.Context, tune tuning) error {
	cfg, log := a.cfg, a.log
	limits := tune.server.withDefaults()

	// The port first: a busy LISTEN_ADDR is the commonest failure and
	// needs nothing else started to be found.
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return &StartError{What: "LISTEN_ADDR " + cfg.ListenAddr, Err: err,
			Fix: "stop whatever listens there, or set LISTEN_ADDR to a free address such as :8081"}
	}
	a.conns = newConnLimiter(ln, cfg.MaxConnsPerIP, cfg.MaxConns, cfg.TrustedProxies, log.With("component", "bridge"))
	a.ln = a.conns

	tokens, defaultGuild, apiBase := cfg.BotTokens, cfg.GuildID, cfg.APIBase
	var guilds []gateway.Guild
	for _, g := range cfg.Guilds {
		guilds = append(guilds, gateway.Guild{ID: g.ID, CategoryID: g.CategoryID})
	}
	if cfg.Embedded {
		demoOpts := tune.demo
		demoOpts.Logger = slog.New(quietHandler{log.Handler()})
		a.demo, err = emulator.StartDemo(demoOpts)
		if err != nil {
			return &StartError{What: "embedded Discord emulator", Err: err, Fix: "report this as a bug, or set DISCORD_BOT_TOKEN to run against Discord"}
		}
		o := a.demo.Discord.Options()
		tokens, defaultGuild = []string{o.Token}, o.GuildID
		guilds = []gateway.Guild{{ID: o.GuildID, CategoryID: o.CategoryID}}
		for _, g := range o.Guilds {
			guilds = append(guilds, gateway.Guild{ID: g.ID, CategoryID: g.CategoryID})
		}
		for _, b := range o.ExtraBots {
			tokens = append(tokens, b.Token)
		}
		apiBase = a.demo.Discord.URL() + "/api/v10"
		log.Debug("no DISCORD_BOT_TOKEN: running on the embedded Discord emulator", "guild_id", o.GuildID, "guilds", len(guilds))
	}
	guildID := guilds[0].ID // the home guild: Redis stream, media's default

	if a.metrics, err = newAppMetrics(); err != nil {
		return &StartError{What: "metrics", Err: err, Fix: "report this as a bug"}
	}
	var saveSession func(int, gateway.Session)
	if cfg.RedisURL != "" {
		// With other instances, each gateway session is saved for the
		// next holder of its lease (scale.go).
		saveSession = func(bot int, s gateway.Session) { a.cluster.saveSession(bot, s) }
	}
	a.bots, err = newBots(botSpec{
		tokens: tokens, shards: cfg.Shards, guilds: guilds, apiBase: apiBase,
		shardsOf: func(token string) int {
			// A bot of several guilds that Discord has shard gets a client
			// per shard: ask GET /gateway/bot how many before connecting.
			if cfg.Shards > 0 || len(guilds) < 2 {
				return cfg.Shards
			}
			rctx, cancel := context.WithTimeout(ctx, shardsLookupTimeout)
			defer cancel()
			r, err := gateway.RecommendedShards(rctx, a.metrics.httpClient(), apiBase, token)
			if err != nil {
				log.Warn("GET /gateway/bot failed; connecting one shard and following Discord from there", "err", err)
				return 0
			}
			return r.Shards
		},
		httpClient: a.metrics.httpClient(),
		tune:       tune.gateway,
		session:    saveSession,
		// Alone, the bridge connects the shards a bot's servers move to
		// when Discord asks for more (close 4011); with other instances
		// each gateway is leased on its own, so that waits for a restart.
		reshard: cfg.RedisURL == "",
		publish: func(bot int, e gateway.Event) {
			if p, ok := e.Payload.(gateway.VoicePayload); ok && !p.Bot && a.bots.own(p.UserID) {
				p.Bot = true // another bot of the pool: the bridge's own too
				e.Payload = p
			}
			a.cluster.publish(a.hub, bot, e)
			if p, ok := e.Payload.(gateway.RoomPayload); ok && e.Name == gateway.EventRoomDeleted {
				a.hub.RoomEnded(p.ChannelID)
				a.media.RoomEnded(p.ChannelID)
				a.calls.roomEnded(p.ChannelID)
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
		return &StartError{What: "Discord gateway", Err: err, Fix: "check DISCORD_BOT_TOKEN(S), DISCORD_GUILD_ID and ROOM_CATEGORY_ID"}
	}
	a.gw = a.bots.first

	if a.cluster, err = startCluster(cfg, guildID, a.bots, a.announce, log); err != nil {
		return &StartError{What: "REDIS_URL", Err: err, Fix: "check that REDIS_URL points to a reachable Redis (redis://host:6379/0), or unset it to run one instance"}
	}
	hubOpts := hub.Options{
		Bus:            a.cluster.hubBus(),
		Cluster:        a.cluster.status,
		GuildID:        guildID,
		Guilds:         a.bots.guildIDs(),
		DefaultGuildID: defaultGuild, // tokens without a guilds claim keep DISCORD_GUILD_ID
		GuildName:      a.bots.guildName,
		Rooms:          roomsAdapter{b: a.bots, calls: a.calls},
		HMACSecret:     []byte(cfg.HMACSecret),
		AllowedOrigins: cfg.AllowedOrigins,
		OperatorToken:  []byte(cfg.OperatorToken),
		AdminClaim:     cfg.AdminClaim,
		AdminRole:      cfg.AdminRole,
		RoomsPerHour:   cfg.RoomsPerUser,
		SocketsPerUser: cfg.SocketsPerUser,
		Status:         func() any { return a.bots.status() },
		Ready:          func() error { return a.cluster.readiness(a.bots.readiness()) },
		Logger:         log.With("component", "hub"),
	}
	if cfg.DevAuth {
		dev, err := hub.NewDevAuth(devIssuer, devAudience)
		if err != nil {
			return &StartError{What: "dev auth", Err: err, Fix: "report this as a bug"}
		}
		hubOpts.DevAuth = dev
		hubOpts.Auth = dev.Verifier()
		if !cfg.Embedded { // the embedded default's banner says so
			log.Warn("DEV AUTH IS ON: anyone who can reach this server can mint tokens at POST /api/dev/token; never expose it")
		}
	} else {
		a.verifier, err = hub.NewVerifier(ctx, hub.VerifierOptions{
			JWKSURL:      cfg.JWKSURL,
			Issuer:       cfg.JWTIssuer,
			Audience:     cfg.JWTAudience,
			GuildsClaim:  cfg.GuildsClaim,
			FetchTimeout: cfg.JWKSTimeout,
			Logger:       log.With("component", "hub"),
		})
		if err != nil {
			return &StartError{What: "JWKS_URL " + cfg.JWKSURL, Err: err,
				Fix: fmt.Sprintf("check that JWKS_URL is your identity provider's key set and answers within JWKS_TIMEOUT (%s)", cfg.JWKSTimeout)}
		}
		hubOpts.Auth = a.verifier
	}
	if a.hub, err = hub.New(hubOpts); err != nil {
		return &StartError{What: "hub", Err: err, Fix: "check ALLOWED_ORIGINS, ADMIN_CLAIM and the per-user limits"}
	}

	if a.front, err = newFront(cfg, log); err != nil {
		return &StartError{What: "HTTPS", Err: err,
			Fix: "check that TLS_CERT_FILE and TLS_KEY_FILE are a readable PEM pair, or TLS_DOMAIN and ACME_CACHE_DIR"}
	}
	if a.turn, err = startTURN(cfg, a.front.tls, log, tune.turn); err != nil {
		return &StartError{What: fmt.Sprintf("embedded TURN server (TURN_PORT %d)", cfg.TURNPort), Err: err,
			Fix: "stop whatever uses that port, or set TURN_PORT to a free one"}
	}
	if a.media, err = media.NewManager(a.mediaOptions(guildID, tune)); err != nil {
		return &StartError{What: fmt.Sprintf("media (ICE_UDP_PORT %d)", cfg.ICEUDPPort), Err: err,
			Fix: "stop whatever uses that UDP port, or set ICE_UDP_PORT to a free one"}
	}
	wireSignaling(a.hub, a.media)
	if err := a.metrics.register(a); err != nil {
		return &StartError{What: "metrics", Err: err, Fix: "report this as a bug"}
	}

	a.srv = &http.Server{
		Handler:           limits.wrap(trustProxies(cfg.TrustedProxies, a.metrics.withMetrics(routes(a.hub.Handler(), web.Handler())))),
		ReadHeaderTimeout: limits.HeaderTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.With("component", "bridge").Handler(), slog.LevelWarn),
	}
	a.cluster.listening(a.URL(), a.hub)
	warnInsecure(cfg, a.ln.Addr(), log)
	tlsLn, err := a.front.listener(a.ln)
	if err != nil {
		return &StartError{What: "HTTPS", Err: err, Fix: "stop whatever listens on HTTP_REDIRECT_ADDR, or set HTTP_REDIRECT_ADDR=off"}
	}
	a.ln = tlsLn
	if err := a.cluster.openGateway(ctx, a.bots); err != nil {
		return &StartError{What: "Discord gateway", Err: err, Fix: "check DISCORD_BOT_TOKEN(S) and the network path to Discord"}
	}
	a.serving = true
	go func() {
		err := a.srv.Serve(a.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		a.done <- err
	}()
	return nil
}

// shardsLookupTimeout bounds the GET /gateway/bot a bot of several
// guilds makes at start to plan its shards.
const shardsLookupTimeout = 10 * time.Second

// gatewayReadiness says, for anyone to read on /readyz, why the bridge is
// not ready: the gateway's state and its last problem, nothing of its
// session.
func gatewayReadiness(st gateway.Status) error {
	switch {
	case st.State == gateway.StateReady:
		return nil
	case st.LastError != "":
		return fmt.Errorf("the Discord gateway is %s: %s", st.State, st.LastError)
	}
	return fmt.Errorf("the Discord gateway is %s", st.State)
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
	o := media.Options{
		Joiner:  voiceJoiner{pool: a.bots.pool, tls: a.voiceTLS(), log: a.log, video: a.demo != nil, m: a.metrics},
		GuildID: guildID,
		Links:   a.bots.pool.Capacity,
		GuildOf: func(channelID string) string {
			r, _ := a.bots.room(channelID)
			return r.GuildID
		},
		MayJoin: func(p media.Peer, guildID string) bool {
			c, ok := p.(*hub.Client)
			return !ok || slices.Contains(c.Guilds(), guildID)
		},
		RoomName: func(channelID string) string {
			r, _ := a.bots.room(channelID)
			return r.Name
		},
		RoomExists: func(channelID string) bool {
			_, ok := a.bots.room(channelID)
			return ok
		},
		ICEUDPListen: net.JoinHostPort(mediaHost(cfg), strconv.Itoa(cfg.ICEUDPPort)),
		// A browser on the bridge's machine reaches it over loopback.
		IncludeLoopback: sameMachine(cfg),
		Grace:           cfg.RoomGrace,
		Logger:          a.log, // media adds component=media itself
		Publish: func(event string, payload any) {
			a.calls.observe(event, payload)
			guild := ""
			if p, ok := payload.(media.ParticipantEvent); ok {
				r, _ := a.bots.room(p.RoomID)
				guild = r.GuildID
			}
			a.hub.PublishGuild(guild, event, payload)
		},
		MemberName: func(userID string) string {
			for _, r := range a.bots.knownRooms() {
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
	if a.metrics != nil {
		o.ObserveDiscordAudio = a.metrics.lat.ToBrowsers
	}
	if cfg.Mix {
		o.Mix = media.MixOptions{
			NewEncoder: func(bitrate int) (media.Encoder, error) {
				return opusenc.New(opusenc.Options{Bitrate: bitrate})
			},
			Bitrate: cfg.MixBitrate, MaxSpeakers: cfg.MixMaxSpeakers,
			JitterMin: cfg.MixJitterMin, JitterMax: cfg.MixJitterMax,
		}
		if a.metrics != nil {
			o.Mix.ObserveLatency = a.metrics.lat.Mixed
		}
	}
	o.ICEServers = cfg.ICEServers
	o.ICEServersFor = a.turnICEServers
	if cfg.ICETCPPort >= 0 {
		o.ICETCPListen = net.JoinHostPort(mediaHost(cfg), strconv.Itoa(cfg.ICETCPPort))
	}
	if tune.media != nil {
		tune.media(&o)
	}
	return o
}

// mediaHost is where the media ports bind: where the HTTP listener is, so
// LISTEN_ADDR=127.0.0.1:8080 keeps media off the other interfaces too.
func mediaHost(cfg *Config) string {
	host, _, _ := net.SplitHostPort(cfg.ListenAddr) // validated in loadConfig
	return host
}

// sameMachine reports whether browsers are expected on the bridge's own
// machine, so loopback candidates are offered: the embedded default (opened
// at http://localhost), a loopback LISTEN_ADDR, or a loopback ICE_PUBLIC_IP.
func sameMachine(cfg *Config) bool {
	if cfg.Embedded {
		return true
	}
	for _, h := range []string{mediaHost(cfg), cfg.ICEPublicIP} {
		if h == "localhost" {
			return true
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			return true
		}
	}
	return false
}

func (a *app) closeParts(ctx context.Context) error {
	var errs []error
	if !a.serving && a.ln != nil {
		// Opened but never served: no Shutdown will close the listener.
		errs = append(errs, a.ln.Close())
	}
	if a.verifier != nil {
		a.verifier.Close()
	}
	if a.media != nil {
		errs = append(errs, a.media.Close(ctx))
	}
	if a.turn != nil {
		errs = append(errs, a.turn.Close())
	}
	if a.bots != nil {
		a.cluster.handOver(ctx) // with other instances: the gateways go on there
		errs = append(errs, a.bots.pool.Close(ctx))
	}
	errs = append(errs, a.cluster.close(ctx))
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
// It adds the browsers in each room's call, which media knows, and marks
// every bot of the pool as the bridge's own, not only the lead.
type roomsAdapter struct {
	b     *bots // each guild's calls go through the guild's lead bot
	calls *presence
}

// roomsOf is the guild's REST client, or an error saying no bot serves it.
func (ra roomsAdapter) roomsOf(guildID string) (*gateway.Rooms, error) {
	if r := ra.b.roomsOf(guildID); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("%w: no bot serves guild %s", hub.ErrNotFound, guildID)
}

func (ra roomsAdapter) CreateRoom(ctx context.Context, guildID, name string, userLimit int) (hub.Room, error) {
	r, err := ra.roomsOf(guildID)
	if err != nil {
		return hub.Room{}, err
	}
	room, err := r.CreateRoom(ctx, name, userLimit)
	return toHubRoom(room, ra.b.own), hubError(err)
}

// EndRoom ends a room through its guild's bot; a channel the gateways do
// not know as a room goes to the home guild's, which answers that it is
// not a room (or not found).
func (ra roomsAdapter) EndRoom(ctx context.Context, channelID string) error {
	guildID := ra.b.guilds[0].ID
	if room, ok := ra.b.room(channelID); ok {
		guildID = room.GuildID
	}
	r, err := ra.roomsOf(guildID)
	if err != nil {
		return err
	}
	return hubError(r.EndRoom(ctx, channelID))
}

// ListRooms lists every served guild's rooms, guild by guild.
func (ra roomsAdapter) ListRooms(ctx context.Context) ([]hub.Room, error) {
	var out []hub.Room
	for _, g := range ra.b.guilds {
		r := ra.b.roomsOf(g.ID)
		if r == nil {
			continue
		}
		rooms, err := r.ListRooms(ctx)
		if err != nil {
			return nil, hubError(err)
		}
		for _, room := range rooms {
			h := toHubRoom(room, ra.b.own)
			h.Participants = ra.calls.in(room.ChannelID)
			out = append(out, h)
		}
	}
	return out, nil
}

// RoomGuild is the guild of a room the gateways know.
func (ra roomsAdapter) RoomGuild(channelID string) string {
	room, _ := ra.b.room(channelID)
	return room.GuildID
}

func toHubRoom(r gateway.Room, own func(userID string) bool) hub.Room {
	out := hub.Room{ChannelID: r.ChannelID, Name: r.Name, GuildID: r.GuildID, UserLimit: r.UserLimit}
	for _, m := range r.Members {
		out.Members = append(out.Members, hub.Member{UserID: m.UserID, Name: m.Name, Bot: m.Bot || own(m.UserID)})
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
