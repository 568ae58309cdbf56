package discordemu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Paths of the two gateway endpoints. GET /gateway answers gatewayPath;
// READY's resume_gateway_url names resumePath, so the two are told apart.
const (
	gatewayPath = "/gateway"
	resumePath  = "/resume-gateway"
)

// Options configures a Server. Zero fields take the documented defaults;
// Server.Options reports the effective values.
type Options struct {
	// Addr is the listen address; default "127.0.0.1:0".
	Addr string
	// Token is the bot token the emulator accepts, default
	// "emulator-bot-token". REST needs "Authorization: Bot <token>"; Identify
	// and Resume accept the token with or without the "Bot " prefix.
	Token string
	// BotUserID and BotName describe the bot user; defaults
	// "100000000000000001" and "bridge-bot".
	BotUserID, BotName string
	// ExtraBots are further bots in the guild, each its own application
	// with its own token, gateway session and identify pacing; they see
	// the same guild and its events. The bot above is the primary: the
	// fault controls act on it, and Stats' session fields describe it.
	ExtraBots []Bot
	// GuildID and GuildName describe the primary guild, which every bot
	// is in; defaults "200000000000000001" and "Emulated Guild".
	GuildID, GuildName string
	// Guilds are further guilds, each with its own room category and the
	// bots added to it: a bot sees (READY, GUILD_CREATE, dispatches, REST)
	// only the guilds it is in, and each guild's events go only to them.
	// The public state methods that take no guild act on the primary one.
	Guilds []Guild
	// CategoryID is the id of the category channel (type 4) named "Rooms"
	// that exists from the start; default "300000000000000001".
	CategoryID string
	// HeartbeatInterval is sent in Hello; default 41250ms. Tests use
	// 100-300ms. A connection without a heartbeat for 1.5 intervals is
	// closed with 4009.
	HeartbeatInterval time.Duration
	// IdentifyInterval is the minimum spacing of identifies (max_concurrency
	// 1 per interval); 0 means the default 5s, so tests wanting no limit
	// set 1ns. Faster identifies get op 9 d=false.
	IdentifyInterval time.Duration
	// Shards, when above 1, makes the bot need that many shards, as Discord
	// does for a bot in many guilds: GET /gateway/bot recommends it, an
	// identify with fewer shards is closed with 4011, and a session gets
	// the guild's events only when its shard holds the guild
	// ((guild_id >> 22) % num_shards). A bot runs one session per shard:
	// a new identify ends the bot's session of the same shard id, and
	// those identified with another shard count.
	Shards int
	// GuildsPerShard, when above 0, requires a bot in more guilds than
	// that to shard, as Discord does past 2,500: it needs at least
	// ceil(guilds / GuildsPerShard) shards (and at least Shards), which
	// GET /gateway/bot recommends; fewer are closed with 4011.
	GuildsPerShard int
	// MaxConcurrency is GET /gateway/bot's max_concurrency, default 1:
	// identifies of shards in different buckets (shard_id %
	// max_concurrency) may come together; one a bucket per
	// IdentifyInterval.
	MaxConcurrency int
	// ChannelRateLimit is the size of the per-second REST buckets of
	// channel create and delete; default 5. Tests that create many
	// channels in a burst raise it.
	ChannelRateLimit int
	// SessionLifetime is how long a session that lost its connection may
	// still be resumed; a later Resume gets Invalid Session (op 9) d:false.
	// 0 keeps sessions resumable for as long as their buffer reaches back.
	SessionLifetime time.Duration
	// BotPermissions are the permissions of the bot's role (a bit set,
	// Discord docs "Permissions"); 0 means BotRolePermissions. The
	// @everyone role adds Discord's defaults (View Channel, Connect,
	// Speak and others, not Manage Channels or Move Members).
	BotPermissions int64
	// CategoryOverwrites are the room category's permission overwrites.
	CategoryOverwrites []PermissionOverwrite
	// VoiceChannels are the ids of voice channels (type 2, 64 kbps, no user
	// limit) under the category that exist from the start, named "Voice 1",
	// "Voice 2" and so on, for callers that need ids known in advance.
	VoiceChannels []string
	// Voice, when set, allocates voice servers for the bot's op 4 and is
	// told about every voice-state change.
	Voice VoiceBackend
	// Logger receives the emulator's logs; default discards.
	Logger *slog.Logger
}

// Guild is one more emulated guild besides the primary one.
type Guild struct {
	// ID and Name describe the guild; Name defaults to "Emulated Guild N".
	ID, Name string
	// CategoryID is its category named "Rooms".
	CategoryID string
	// VoiceChannels are voice channels under the category from the start,
	// as Options.VoiceChannels.
	VoiceChannels []string
	// Bots are the user ids of the bots added to the guild (the primary's
	// BotUserID or an ExtraBots UserID); empty means every bot.
	Bots []string
}

// Bot is one emulated bot application: its token and its user.
type Bot struct {
	// Token is what Identify and REST's "Authorization: Bot" carry.
	Token string
	// UserID and Name describe the bot user, a member of the guild.
	UserID, Name string
}

// VoiceBackend is the voice half of the emulator, which answers the bot's
// voice joins with a voice server. Its methods are called on one goroutine
// owned by the Server, in the order of the voice-state changes and never
// while the Server holds a lock, so they may call the Server. They must
// return promptly: Close waits for a call in progress.
type VoiceBackend interface {
	// Allocate is called when a user (the bot) joins or moves voice in a
	// guild; returns endpoint "127.0.0.1:PORT" (no scheme, as Discord sends
	// it) and a token.
	Allocate(guildID, channelID, userID, sessionID string) (endpoint, token string, err error)
	// Release is called when that user leaves voice in the guild.
	Release(guildID, userID string)
	// MemberVoiceState is told every voice-state change in the guild (any
	// user; channelID "" = left), after the dispatch.
	MemberVoiceState(guildID, userID, channelID string)
	// Renew is called when that user repeats a join (op 4) for the
	// channel it is in: the allocation now answers to a new voice session
	// id. As on Discord, only VOICE_STATE_UPDATE (with the new id) answers
	// such a join; no VOICE_SERVER_UPDATE follows.
	Renew(guildID, userID, sessionID string)
}

// GatewayFrame is one payload the bot sent on the gateway.
type GatewayFrame struct {
	// Op is the payload's opcode, or -1 when the frame could not be decoded
	// (Data then holds the raw bytes, which may not be JSON).
	Op int
	// Data is the payload's "d".
	Data json.RawMessage
	// At is when the emulator read it.
	At time.Time
	// Conn is the number of the connection it came on (see Connections).
	Conn int
}

// RESTCall is one REST request the emulator answered.
type RESTCall struct {
	// Method and Path are the request's, Path including the /api/vN prefix
	// (and no query string).
	Method, Path string
	// Status is the HTTP status answered.
	Status int
	// Body is the request body.
	Body []byte
	// At is when the request arrived.
	At time.Time
	// Response is the answered body.
	Response []byte
}

// Stats counts what happened on the gateway and the REST API. The session
// counters (Identifies, Resumes, IdentifyViolations, MisdirectedResumes)
// and fields (LastSeq, Connected, SessionID) are the primary bot's.
type Stats struct {
	// Connections counts gateway WebSocket connections accepted.
	Connections int
	// Identifies counts successful identifies (new sessions).
	Identifies int
	// Resumes counts successful resumes.
	Resumes int
	// IdentifyViolations counts identifies refused for coming faster than
	// Options.IdentifyInterval.
	IdentifyViolations int
	// LastSeq is the sequence number of the session's latest dispatch.
	LastSeq int64
	// Connected is true while a connection carries a live session.
	Connected bool
	// SessionID is the current session's id, "" when there is none.
	SessionID string

	// Heartbeats counts heartbeats (op 1) received.
	Heartbeats int
	// MisdirectedResumes counts resumes sent on a connection opened on the
	// GET /gateway URL instead of READY's resume_gateway_url.
	MisdirectedResumes int
	// InvalidSessions counts Invalid Session (op 9) payloads sent.
	InvalidSessions int
	// RejectedVoiceUpdates counts op 4 payloads naming an unknown guild or a
	// channel that is not a voice or stage channel; they change nothing.
	RejectedVoiceUpdates int
	// RefusedFullJoins counts op 4 joins of a voice channel whose user
	// limit was reached, from a bot without Move Members: ignored, as
	// Discord does.
	RefusedFullJoins int

	// RESTRequests counts REST requests answered.
	RESTRequests int
	// InvalidRequests counts REST answers with status 401, 403 or 429, the
	// ones Discord counts toward its IP ban (10,000 per 10 minutes,
	// rate-limits.mdx "Invalid Request Limit").
	InvalidRequests int
}

// ConnInfo describes one gateway connection.
type ConnInfo struct {
	// ID numbers connections from 1 in the order they were accepted.
	ID int
	// Path is the URL path the client connected to: "/gateway" (GET
	// /gateway's url) or "/resume-gateway" (READY's resume_gateway_url).
	Path string
	// Query is the raw query string, such as "v=10&encoding=json".
	Query string
	// Opened and Closed bracket the connection; Closed is zero while open.
	Opened, Closed time.Time
	// Identified and Resumed tell how the connection got its session.
	Identified, Resumed bool
	// CloseCode is the close code sent by the server or received from the
	// client; 0 when the TCP connection just ended.
	CloseCode int
	// ClosedByServer is true when the emulator ended the connection.
	ClosedByServer bool
}

// Server is a running Discord emulator. Its methods are safe for concurrent
// use.
type Server struct {
	opts     Options
	log      *slog.Logger
	ln       net.Listener
	httpSrv  *http.Server
	upgrader websocket.Upgrader
	baseURL  string
	wg       sync.WaitGroup
	stop     chan struct{}

	closeOnce sync.Once

	mu      sync.Mutex
	closed  bool
	changed chan struct{}
	guild   *guildState   // the primary guild, guilds[0]
	guilds  []*guildState // every guild, the primary first
	ids     snowflakes

	bots       []*botState // bots[0] is the primary bot
	conns      map[*conn]struct{}
	connLog    []ConnInfo
	ackEnabled bool
	stats      Stats
	sent       []GatewayFrame
	rest       []RESTCall
	limiter    *rateLimiter

	effects    []voiceEffect
	effectWake chan struct{}
}

const discordEpochMillis = 1420070400000

// snowflakes makes ids shaped like Discord's (developers/reference
// "Snowflakes"): milliseconds since 2015 shifted left 22 bits, plus an
// increment; strictly increasing.
type snowflakes struct{ last uint64 }

func (g *snowflakes) next(now time.Time) string {
	id := uint64(now.UnixMilli()-discordEpochMillis) << 22
	if id <= g.last {
		id = g.last + 1
	}
	g.last = id
	return strconv.FormatUint(id, 10)
}

func (o *Options) fill() error {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Token == "" {
		o.Token = "emulator-bot-token"
	}
	if o.BotUserID == "" {
		o.BotUserID = "100000000000000001"
	}
	if o.BotName == "" {
		o.BotName = "bridge-bot"
	}
	if o.GuildID == "" {
		o.GuildID = "200000000000000001"
	}
	if o.GuildName == "" {
		o.GuildName = "Emulated Guild"
	}
	if o.CategoryID == "" {
		o.CategoryID = "300000000000000001"
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 41250 * time.Millisecond
	}
	if o.IdentifyInterval == 0 {
		o.IdentifyInterval = 5 * time.Second
	}
	if o.MaxConcurrency == 0 {
		o.MaxConcurrency = 1
	}
	if o.Shards < 0 || o.MaxConcurrency < 0 {
		return fmt.Errorf("%w: Shards %d and MaxConcurrency %d must not be negative", ErrInvalidOptions, o.Shards, o.MaxConcurrency)
	}
	if o.ChannelRateLimit == 0 {
		o.ChannelRateLimit = 5
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	tokens := map[string]bool{o.Token: true}
	users := map[string]bool{o.BotUserID: true}
	o.ExtraBots = append([]Bot(nil), o.ExtraBots...)
	for i, b := range o.ExtraBots {
		switch {
		case b.Token == "" || tokens[b.Token]:
			return fmt.Errorf("%w: ExtraBots[%d] needs a token of its own", ErrInvalidOptions, i)
		case !isSnowflake(b.UserID) || users[b.UserID]:
			return fmt.Errorf("%w: ExtraBots[%d].UserID %q is not a snowflake of its own", ErrInvalidOptions, i, b.UserID)
		}
		tokens[b.Token], users[b.UserID] = true, true
		if b.Name == "" {
			o.ExtraBots[i].Name = "bridge-bot-" + strconv.Itoa(i+2)
		}
	}
	for name, id := range map[string]string{"BotUserID": o.BotUserID, "GuildID": o.GuildID, "CategoryID": o.CategoryID} {
		if !isSnowflake(id) {
			return fmt.Errorf("%w: %s %q is not a snowflake (a decimal uint64)", ErrInvalidOptions, name, id)
		}
	}
	for i, id := range o.VoiceChannels {
		if !isSnowflake(id) || id == o.GuildID || id == o.CategoryID {
			return fmt.Errorf("%w: VoiceChannels[%d] %q is not a snowflake distinct from the guild and the category", ErrInvalidOptions, i, id)
		}
	}
	if o.GuildID == o.CategoryID {
		return fmt.Errorf("%w: GuildID and CategoryID are both %s", ErrInvalidOptions, o.GuildID)
	}
	if err := o.fillGuilds(users); err != nil {
		return err
	}
	if o.HeartbeatInterval < time.Millisecond {
		return fmt.Errorf("%w: HeartbeatInterval %v is below 1ms", ErrInvalidOptions, o.HeartbeatInterval)
	}
	if o.ChannelRateLimit < 0 {
		return fmt.Errorf("%w: ChannelRateLimit %d is negative", ErrInvalidOptions, o.ChannelRateLimit)
	}
	if o.IdentifyInterval < 0 {
		return fmt.Errorf("%w: IdentifyInterval %v is negative", ErrInvalidOptions, o.IdentifyInterval)
	}
	return nil
}

// fillGuilds validates Options.Guilds: ids of their own, bots that exist.
func (o *Options) fillGuilds(bots map[string]bool) error {
	o.Guilds = append([]Guild(nil), o.Guilds...)
	seen := map[string]bool{o.GuildID: true, o.CategoryID: true}
	for _, id := range o.VoiceChannels {
		seen[id] = true
	}
	for i := range o.Guilds {
		g := &o.Guilds[i]
		ids := append([]string{g.ID, g.CategoryID}, g.VoiceChannels...)
		for _, id := range ids {
			if !isSnowflake(id) || seen[id] {
				return fmt.Errorf("%w: Guilds[%d]: id %q is not a snowflake of its own (guild, category and voice channel ids must be distinct)", ErrInvalidOptions, i, id)
			}
			seen[id] = true
		}
		for _, b := range g.Bots {
			if !bots[b] {
				return fmt.Errorf("%w: Guilds[%d].Bots: %q is not the user id of a bot (BotUserID or an ExtraBots UserID)", ErrInvalidOptions, i, b)
			}
		}
		g.Bots = append([]string(nil), g.Bots...)
		g.VoiceChannels = append([]string(nil), g.VoiceChannels...)
		if g.Name == "" {
			g.Name = "Emulated Guild " + strconv.Itoa(i+2)
		}
	}
	return nil
}

func isSnowflake(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// Start listens on opts.Addr and serves the emulator until Close.
func Start(opts Options) (*Server, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("discordemu: listen on %s: %w", opts.Addr, err)
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger.With("component", "discordemu"),
		ln:         ln,
		baseURL:    "http://" + ln.Addr().String(),
		stop:       make(chan struct{}),
		changed:    make(chan struct{}),
		conns:      make(map[*conn]struct{}),
		ackEnabled: true,
		limiter:    newRateLimiter(),
		effectWake: make(chan struct{}, 1),
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 5 * time.Second,
		// Browsers are not the emulator's clients; any origin may connect.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	now := time.Now()
	s.guild = newGuildState(Guild{ID: opts.GuildID, Name: opts.GuildName, CategoryID: opts.CategoryID, VoiceChannels: opts.VoiceChannels}, opts, now)
	s.guilds = []*guildState{s.guild}
	for _, g := range opts.Guilds {
		s.guilds = append(s.guilds, newGuildState(g, opts, now))
	}
	s.bots = []*botState{{token: opts.Token, userID: opts.BotUserID, lastIdentify: map[int]time.Time{}, shards: map[int]*session{}}}
	for _, b := range opts.ExtraBots {
		s.bots = append(s.bots, &botState{token: b.Token, userID: b.UserID, lastIdentify: map[int]time.Time{}, shards: map[int]*session{}, limiter: newRateLimiter()})
	}
	s.ids.next(time.Now())

	mux := http.NewServeMux()
	mux.HandleFunc(gatewayPath, s.serveGateway)
	mux.HandleFunc(gatewayPath+"/", s.serveGateway)
	mux.HandleFunc(resumePath, s.serveGateway)
	mux.HandleFunc(resumePath+"/", s.serveGateway)
	mux.HandleFunc("/api/", s.serveAPI)
	s.httpSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}

	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http serve stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.runEffects()
	}()
	s.log.Info("emulator started", "url", s.baseURL)
	return s, nil
}

// URL is the emulator's base URL, "http://127.0.0.1:PORT"; REST is served at
// URL()+"/api/v10" and URL()+"/api/v9".
func (s *Server) URL() string { return s.baseURL }

// GatewayURL is "ws://127.0.0.1:PORT/gateway", what GET /gateway returns.
func (s *Server) GatewayURL() string { return "ws://" + s.ln.Addr().String() + gatewayPath }

// ResumeGatewayURL is "ws://127.0.0.1:PORT/resume-gateway", what READY's
// resume_gateway_url names.
func (s *Server) ResumeGatewayURL() string { return "ws://" + s.ln.Addr().String() + resumePath }

// Options returns the effective options, defaults filled in.
func (s *Server) Options() Options { return s.opts }

// Close stops the emulator: it ends every gateway connection abruptly, stops
// the HTTP server and waits for all of its goroutines. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.notifyLocked()
		s.mu.Unlock()

		close(s.stop)
		for _, c := range conns {
			c.shutdown()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			s.log.Warn("http shutdown incomplete; closing", "err", err)
			_ = s.httpSrv.Close()
		}
		cancel()
		s.wg.Wait()
		s.log.Info("emulator closed")
	})
}

// notifyLocked wakes every WaitFor; call it after any change to what Stats,
// Sent or RESTCalls report.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Stats returns the gateway counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked()
}

func (s *Server) statsLocked() Stats {
	st := s.stats
	st.Connected = false
	st.SessionID = ""
	st.LastSeq = 0
	if sess := s.bots[0].sess; sess != nil {
		st.SessionID = sess.id
		st.LastSeq = sess.seq
		st.Connected = sess.conn != nil
	}
	return st
}

// WaitFor returns nil as soon as cond holds for the current Stats; cond is
// checked now and after every change of state (gateway payloads, session
// changes, REST calls). It returns ctx's error if ctx ends first, or
// ErrClosed when the Server closes.
func (s *Server) WaitFor(ctx context.Context, cond func(Stats) bool) error {
	for {
		s.mu.Lock()
		st := s.statsLocked()
		ch := s.changed
		closed := s.closed
		s.mu.Unlock()
		if cond(st) {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Sent returns every payload the bot sent on the gateway, over all
// connections, in the order read (heartbeats included).
func (s *Server) Sent() []GatewayFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]GatewayFrame, len(s.sent))
	copy(out, s.sent)
	return out
}

// RESTCalls returns every REST request answered, in order.
func (s *Server) RESTCalls() []RESTCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RESTCall, len(s.rest))
	copy(out, s.rest)
	return out
}

// Connections describes every gateway connection accepted, in order.
func (s *Server) Connections() []ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ConnInfo, len(s.connLog))
	copy(out, s.connLog)
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails on supported platforms (Go 1.24+).
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
