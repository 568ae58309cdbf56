package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/gateway/session"
)

// Timeouts of the connection itself; heartbeats cover liveness after the
// handshake.
const (
	closeAckTimeout  = time.Second      // how long Close waits for the server's close reply
	handshakeTimeout = 20 * time.Second // dial, Hello, and READY/RESUMED (+GUILD_CREATE)
	writeTimeout     = 10 * time.Second // every socket write
	restTimeout      = 20 * time.Second // GET /gateway/bot
	maxFrameSize     = 64 << 20         // a GUILD_CREATE of a big guild fits
	identifyWindow   = 5 * time.Second  // max_concurrency identifies per 5 s (Gateway, Session Start Limit)
	userAgent        = "DiscordBot (https://github.com/voicebridge/bridge, 1)"
)

// Options configures a Client.
type Options struct {
	// Token is the bot token, with or without the "Bot " prefix. Required.
	Token string
	// GuildID is the guild the bridge serves and CategoryID the category
	// whose voice channels are its rooms: the one-guild form of Guilds.
	GuildID    string
	CategoryID string
	// Guilds are the guilds the client serves on its one connection, each
	// with its room category; the first is the home guild (its shard is
	// the one identified). GuildID/CategoryID, when set, come first. At
	// least one guild is required.
	Guilds []Guild
	// Intents for Identify; zero means DefaultIntents (GUILDS | GUILD_VOICE_STATES).
	Intents int
	// APIBase is the REST root; default "https://discord.com/api/v10".
	APIBase string
	// HTTPClient does GET /gateway/bot; default: a client with a 20 s timeout.
	HTTPClient *http.Client
	// Dialer opens gateway WebSockets; default: proxy from environment,
	// 20 s handshake timeout.
	Dialer *websocket.Dialer
	// Logger receives connection events; default: discard. The client
	// adds component=gateway and guild_id.
	Logger *slog.Logger
	// OnEvent receives room events, from one goroutine, in order, never
	// under a lock of the client. It may be slow: events queue up, the
	// gateway keeps running. Nil means no events are reported.
	OnEvent func(Event)
	// Shards is how many shards the bot's guilds are split into (a bot in
	// many guilds must shard, Gateway "Sharding"); the client connects the
	// one shard that holds GuildID, (guild_id >> 22) % Shards. Zero follows
	// GET /gateway/bot's recommendation, and a close 4011 (sharding
	// required) asks again.
	Shards int
	// OnReshard, when set, is told the new shard count when a close 4011
	// (sharding required) made the client identify with more shards
	// (Shards zero): its served guilds that now fall on other shards are
	// no longer on its connection, and the caller may connect those
	// shards. It runs on the client's connection goroutine, under no lock
	// of the client, and must not block.
	OnReshard func(shards int)
	// IdentifyInterval is the minimum time between two Identify payloads;
	// zero means 5 s / max_concurrency from GET /gateway/bot. With
	// Identify, it is the window of one max_concurrency bucket (zero:
	// Discord's 5 s).
	IdentifyInterval time.Duration
	// Identify, when set, is the queue shared by the clients of one bot's
	// shards, which paces their identifies by max_concurrency buckets
	// (shard_id % max_concurrency). Nil: the client paces only its own.
	Identify *IdentifyQueue
	// BackoffMin and BackoffMax bound the jittered exponential wait between
	// reconnects; defaults 1 s and 60 s.
	BackoffMin, BackoffMax time.Duration
	// OnSession receives the session's resume state (id, resume URL, last
	// sequence) each time it changes, on the goroutine that calls
	// OnEvent and after the OnEvent calls of the dispatches it covers, so
	// that a consumer which saves it knows every event up to Seq was
	// handed over. Changes that come together are reported once, the
	// latest. Nil means none are reported.
	OnSession func(Session)
	// InvalidSessionWait is the random wait range after Invalid Session
	// (op 9) d:false before identifying anew; default 1 s to 5 s (Gateway
	// Events, Invalid Session).
	InvalidSessionWait [2]time.Duration
}

// Session is what a Resume needs (Gateway, Resuming): the session id and
// resume_gateway_url from READY and the last dispatch sequence processed,
// with the bot's user id, which READY gave and a resume does not repeat.
// A client can start from one another client saved (OpenSession), so that
// a gateway connection moves between processes without losing an event.
type Session struct {
	ID        string `json:"sessionId"`
	ResumeURL string `json:"resumeUrl"`
	Seq       int64  `json:"seq"`
	BotUserID string `json:"botUserId"`
	// Guilds is the view of each served guild (rooms, who sits where) as
	// of Seq, by guild id, which a resume does not send again; nil when
	// unknown. Shared read-only.
	Guilds map[string]*session.Saved `json:"guilds,omitempty"`
}

// Guild is a guild the client serves and its room category.
type Guild struct {
	ID, CategoryID string
}

// guildView is the client's view of one served guild.
type guildView struct {
	id, categoryID string
	state          *session.State
	// perms are the bot's permissions in the room category, known from
	// the guild's GUILD_CREATE (see CheckJoin); guarded by Client.mu.
	perms      int64
	permsKnown bool
	// loaded is true once the view holds the guild as Discord sent it (a
	// GUILD_CREATE, or the saved view of a resumed session); name is the
	// guild's name from its GUILD_CREATE or GUILD_UPDATE. Guarded by
	// Client.mu.
	loaded bool
	name   string
}

// State is where the client is in its connection life.
type State string

// Client states.
const (
	StateIdle         State = "idle"         // before Open
	StateConnecting   State = "connecting"   // opening a connection to Identify
	StateResuming     State = "resuming"     // opening a connection to Resume
	StateReady        State = "ready"        // READY (+ the guild) or RESUMED received
	StateReconnecting State = "reconnecting" // waiting before the next connection
	StateStopped      State = "stopped"      // closed
	StateFailed       State = "failed"       // stopped for good on a fatal error
)

// Status is a snapshot of the client for health checks.
type Status struct {
	State State `json:"state"`
	// HeartbeatLatency is the round trip of the last acknowledged heartbeat.
	HeartbeatLatency time.Duration `json:"-"`
	// LastError is the last connection problem, empty when none.
	LastError string `json:"lastError,omitempty"`
	// Fatal is true when the client stopped on a reason retrying cannot
	// fix; LastError says which and what to do.
	Fatal     bool   `json:"fatal"`
	SessionID string `json:"sessionId,omitempty"`
	// BotUserID is the bot's user id from READY; the voice client
	// identifies with it.
	BotUserID string `json:"botUserId,omitempty"`
	// Seq is the last processed dispatch sequence number.
	Seq int64 `json:"seq"`
	// Reconnects counts connections opened after the first.
	Reconnects int `json:"reconnects"`
	// Permissions reports what the bot lacks in the room category, from
	// the guild's GUILD_CREATE; nil before it.
	Permissions *PermissionReport `json:"permissions,omitempty"`
}

// MarshalJSON adds the heartbeat latency in milliseconds.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status
	return json.Marshal(struct {
		plain
		HeartbeatLatencyMS float64 `json:"heartbeatLatencyMs"`
	}{plain(s), float64(s.HeartbeatLatency) / float64(time.Millisecond)})
}

// Client is a connection to Discord's main gateway (v10, JSON) for one
// guild. It keeps the guild's rooms and voice members and reports changes
// through Options.OnEvent.
type Client struct {
	opts    Options
	token   string // without "Bot "
	log     *slog.Logger
	guilds  []*guildView // Options.Guilds, in order; fixed after New
	limiter *commandLimiter
	events  *eventQueue
	cmds    chan command
	backoff backoff

	mu       sync.Mutex
	status   Status
	changed  chan struct{} // closed and replaced on every status change
	fatalErr error
	subs     map[*voiceSub]struct{}
	// absent are the served guilds the latest READY did not list: the bot
	// is not in them (on this shard).
	absent  map[string]bool
	shard   [2]int // the last identified [shard_id, num_shards]
	opened  bool
	closed  bool
	start   Session // the session OpenSession resumes; zero for Open
	abandon bool    // Abandon: close without ending the session
	// saved is the guild views last reported through OnSession, by guild
	// id; owned by the run goroutine, replaced (not changed) when a view
	// changes.
	saved  map[string]*session.Saved
	cancel context.CancelFunc
	done   chan struct{} // closed when every goroutine has ended
}

// command is an outgoing payload handed to the run goroutine.
type command struct {
	payload outFrame
	reply   chan error // capacity 1
}

// New validates opts and returns a Client that is not connected yet.
func New(opts Options) (*Client, error) {
	if opts.Token = strings.TrimSpace(opts.Token); opts.Token == "" {
		return nil, fmt.Errorf("%w: Token is empty: set DISCORD_BOT_TOKEN", ErrOptions)
	}
	guilds, err := normalizeGuilds(opts.GuildID, opts.CategoryID, opts.Guilds)
	if err != nil {
		return nil, err
	}
	opts.Guilds, opts.GuildID, opts.CategoryID = guilds, guilds[0].ID, guilds[0].CategoryID
	if opts.Intents == 0 {
		opts.Intents = DefaultIntents
	}
	if opts.Intents < 0 {
		return nil, fmt.Errorf("%w: Intents %d is negative", ErrOptions, opts.Intents)
	}
	if opts.APIBase == "" {
		opts.APIBase = "https://discord.com/api/v10"
	}
	if _, err := parseAPIBase(opts.APIBase); err != nil {
		return nil, err
	}
	opts.APIBase = strings.TrimRight(opts.APIBase, "/")
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: restTimeout}
	}
	if opts.Dialer == nil {
		opts.Dialer = &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: handshakeTimeout}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 60 * time.Second
	}
	if opts.BackoffMax < opts.BackoffMin {
		return nil, fmt.Errorf("%w: BackoffMax %v is below BackoffMin %v", ErrOptions, opts.BackoffMax, opts.BackoffMin)
	}
	if opts.InvalidSessionWait == [2]time.Duration{} {
		opts.InvalidSessionWait = [2]time.Duration{time.Second, 5 * time.Second}
	}
	if w := opts.InvalidSessionWait; w[0] < 0 || w[1] < w[0] {
		return nil, fmt.Errorf("%w: InvalidSessionWait %v must be a range [low, high] with 0 <= low <= high", ErrOptions, w)
	}
	if opts.IdentifyInterval < 0 {
		return nil, fmt.Errorf("%w: IdentifyInterval %v is negative", ErrOptions, opts.IdentifyInterval)
	}
	if opts.Shards < 0 {
		return nil, fmt.Errorf("%w: Shards %d is negative; 0 follows Discord's recommendation", ErrOptions, opts.Shards)
	}
	views := make([]*guildView, len(guilds))
	for i, g := range guilds {
		views[i] = &guildView{id: g.ID, categoryID: g.CategoryID, state: session.New(g.ID, g.CategoryID)}
	}
	log := opts.Logger.With("component", "gateway", "guild_id", opts.GuildID)
	if len(guilds) > 1 {
		log = opts.Logger.With("component", "gateway", "guilds", len(guilds))
	}
	return &Client{
		opts:    opts,
		token:   strings.TrimPrefix(opts.Token, "Bot "),
		log:     log,
		guilds:  views,
		limiter: newCommandLimiter(),
		events:  newEventQueue(),
		cmds:    make(chan command),
		backoff: backoff{min: opts.BackoffMin, max: opts.BackoffMax},
		status:  Status{State: StateIdle},
		changed: make(chan struct{}),
		subs:    make(map[*voiceSub]struct{}),
		done:    make(chan struct{}),
	}, nil
}

// normalizeGuilds puts the one-guild form first and checks every guild
// has an id and a category, each guild once.
func normalizeGuilds(guildID, categoryID string, guilds []Guild) ([]Guild, error) {
	var out []Guild
	if guildID != "" || categoryID != "" {
		out = append(out, Guild{ID: guildID, CategoryID: categoryID})
	}
	for _, g := range guilds {
		if len(out) > 0 && g == out[0] {
			continue // the one-guild form repeated in Guilds
		}
		out = append(out, g)
	}
	seen := map[string]bool{}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: GuildID is empty: set the guild id", ErrOptions)
	}
	for i, g := range out {
		switch {
		case g.ID == "":
			return nil, fmt.Errorf("%w: GuildID is empty: set the guild id (guild %d)", ErrOptions, i+1)
		case g.CategoryID == "":
			return nil, fmt.Errorf("%w: CategoryID is empty: set the room category id of guild %s", ErrOptions, g.ID)
		case seen[g.ID]:
			return nil, fmt.Errorf("%w: guild %s is listed twice", ErrOptions, g.ID)
		}
		seen[g.ID] = true
	}
	return out, nil
}

// guild is the view of a served guild; nil when the client does not
// serve it. An empty id (a channel inside GUILD_CREATE) is the home guild.
func (c *Client) guild(id string) *guildView {
	if id == "" {
		return c.guilds[0]
	}
	for _, g := range c.guilds {
		if g.id == id {
			return g
		}
	}
	return nil
}

// InGuild reports whether the client serves guildID and the bot is in it:
// true from New until a READY that does not list the guild.
func (c *Client) InGuild(guildID string) bool {
	if g := c.guild(guildID); g == nil || guildID == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.absent[guildID]
}

// Loaded reports whether the bot is in guildID and the client holds the
// guild's view as Discord sent it: a GUILD_CREATE of the guild came (or
// the session it resumed carried the view), and no READY since left the
// guild out. Unlike InGuild it is false before the first READY, so a
// client that has not connected yet is never taken for one that sees the
// guild's events.
func (c *Client) Loaded(guildID string) bool {
	g := c.guild(guildID)
	if g == nil || guildID == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return g.loaded && !c.absent[guildID]
}

// GuildName is the name of a served guild as its GUILD_CREATE (or a later
// GUILD_UPDATE) gave it; "" before that or for a guild not served.
func (c *Client) GuildName(guildID string) string {
	g := c.guild(guildID)
	if g == nil || guildID == "" {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return g.name
}

// Guilds are the guilds the client serves, the home guild first.
func (c *Client) Guilds() []Guild { return append([]Guild(nil), c.opts.Guilds...) }

// Open starts the client's goroutines and returns. Connecting, and
// reconnecting after failures, happen in the background; Status and
// WaitReady tell how it goes. ctx is not kept: Close stops the client.
func (c *Client) Open(ctx context.Context) error { return c.OpenSession(ctx, Session{}) }

// OpenSession is Open starting from a session another client held (see
// Options.OnSession): the first connection resumes it (op 6 with its id
// and sequence, to its resume URL), so Discord replays what was dispatched
// since, rather than identifying anew. The guild view starts from
// s.Guilds, as of s.Seq (a resume does not send the guilds again). If
// Discord refuses the resume (op 9 not resumable), the client identifies
// anew and says so in its log. A zero Session is Open.
func (c *Client) OpenSession(ctx context.Context, s Session) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.ID == "" && (s.ResumeURL != "" || s.Seq != 0 || s.BotUserID != "" || s.Guilds != nil) {
		return fmt.Errorf("%w: a session to resume needs its id", ErrOptions)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return ErrClosed
	case c.opened:
		return ErrAlreadyOpen
	}
	c.opened = true
	c.start = s
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	stopEvents := make(chan struct{})
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		if c.opts.OnEvent == nil && c.opts.OnSession == nil {
			<-stopEvents
			return
		}
		c.events.run(stopEvents, c.opts.OnEvent, c.opts.OnSession)
	}()
	go func() {
		defer close(c.done)
		c.run(runCtx)
		close(stopEvents)
		<-eventsDone
		c.closeSubs()
	}()
	return nil
}

// Close stops the client: the socket is closed with 1000, which ends the
// session so Discord shows the bot offline at once rather than after the
// session times out (Gateway, Initiating a Disconnect); leave voice
// channels before. Queued events are delivered, and every goroutine has
// ended when Close returns nil. It is idempotent; ctx bounds the wait.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	opened, cancel := c.opened, c.cancel
	c.mu.Unlock()
	if !opened {
		if first {
			c.setStatus(func(s *Status) { s.State = StateStopped })
			c.closeSubs()
		}
		return nil
	}
	cancel()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gateway: close: %w", ctx.Err())
	}
}

// Abandon stops the client like Close but leaves the session resumable:
// the socket closes with a code other than 1000/1001, so that another
// client resuming the session (OpenSession) continues it. A client whose
// right to the connection ended (its lease taken) abandons it.
func (c *Client) Abandon(ctx context.Context) error {
	c.mu.Lock()
	c.abandon = true
	c.mu.Unlock()
	return c.Close(ctx)
}

// Status returns a snapshot of the connection state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Changed returns a channel closed at the next change of Status, for
// watchers that follow the client without polling.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// WaitReady blocks until the client is ready (READY with the guild, or
// RESUMED), it failed for good (the error wraps ErrFatalClose), it was
// closed (ErrClosed), or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		c.mu.Lock()
		st, ch, ferr, closed := c.status, c.changed, c.fatalErr, c.closed
		c.mu.Unlock()
		switch {
		case st.State == StateReady:
			return nil
		case st.Fatal:
			return ferr
		case closed || st.State == StateStopped:
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			if st.LastError != "" {
				return fmt.Errorf("gateway: not ready (%s): %w", st.LastError, ctx.Err())
			}
			return fmt.Errorf("gateway: not ready: %w", ctx.Err())
		case <-ch:
		}
	}
}

// Members returns the users currently in a voice channel of a served
// guild, in the order they joined.
func (c *Client) Members(channelID string) []Member {
	for _, g := range c.guilds {
		if m := g.state.Members(channelID); len(m) > 0 {
			return m
		}
	}
	return c.guilds[0].state.Members(channelID)
}

// Rooms returns the rooms (voice channels under each guild's category)
// with their members, as the gateway last reported them, guild by guild.
func (c *Client) Rooms() []Room {
	var out []Room
	for _, g := range c.guilds {
		out = append(out, g.state.Rooms()...)
	}
	if out == nil {
		out = []Room{}
	}
	return out
}

// VoiceStates returns every user in a voice channel of the home guild
// (user id -> channel id).
func (c *Client) VoiceStates() map[string]string { return c.guilds[0].state.VoiceStates() }

// VoiceStatesIn is VoiceStates for a served guild; nil for another.
func (c *Client) VoiceStatesIn(guildID string) map[string]string {
	if g := c.guild(guildID); g != nil && guildID != "" {
		return g.state.VoiceStates()
	}
	return nil
}

func (c *Client) setStatus(fn func(*Status)) {
	c.mu.Lock()
	fn(&c.status)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *Client) setState(st State, err error) {
	c.setStatus(func(s *Status) {
		s.State = st
		if err != nil {
			s.LastError = err.Error()
		}
	})
}

func (c *Client) fail(err error) {
	c.log.Error("gateway stopped for good", "err", err)
	c.mu.Lock()
	c.fatalErr = err
	c.mu.Unlock()
	c.setStatus(func(s *Status) {
		s.State, s.Fatal, s.LastError = StateFailed, true, err.Error()
	})
}
