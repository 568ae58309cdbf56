package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
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
	// GuildID is the guild the bridge serves. Required.
	GuildID string
	// CategoryID is the category whose voice channels are rooms. Required.
	CategoryID string
	// Intents for Identify; zero means DefaultIntents (GUILDS | GUILD_VOICE_STATES).
	Intents int
	// APIBase is the REST root; default "https://discord.com/api/v10".
	APIBase string
	// HTTPClient does GET /gateway/bot; default: a client with a 20 s timeout.
	HTTPClient *http.Client
	// Dialer opens gateway WebSockets; default: proxy from environment,
	// 20 s handshake timeout.
	Dialer *websocket.Dialer
	// Logger receives connection events; default: discard.
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
	// IdentifyInterval is the minimum time between two Identify payloads;
	// zero means 5 s / max_concurrency from GET /gateway/bot.
	IdentifyInterval time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential wait between
	// reconnects; defaults 1 s and 60 s.
	BackoffMin, BackoffMax time.Duration
	// InvalidSessionWait is the random wait range after Invalid Session
	// (op 9) d:false before identifying anew; default 1 s to 5 s (Gateway
	// Events, Invalid Session).
	InvalidSessionWait [2]time.Duration
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
	state   *session.State
	limiter *commandLimiter
	events  *eventQueue
	cmds    chan command
	backoff backoff

	mu       sync.Mutex
	status   Status
	changed  chan struct{} // closed and replaced on every status change
	fatalErr error
	subs     map[*voiceSub]struct{}
	opened   bool
	closed   bool
	cancel   context.CancelFunc
	done     chan struct{} // closed when every goroutine has ended
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
	if opts.GuildID == "" {
		return nil, fmt.Errorf("%w: GuildID is empty: set the guild id", ErrOptions)
	}
	if opts.CategoryID == "" {
		return nil, fmt.Errorf("%w: CategoryID is empty: set the room category id", ErrOptions)
	}
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
	return &Client{
		opts:    opts,
		token:   strings.TrimPrefix(opts.Token, "Bot "),
		log:     opts.Logger.With("guild", opts.GuildID),
		state:   session.New(opts.GuildID, opts.CategoryID),
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

// Open starts the client's goroutines and returns. Connecting, and
// reconnecting after failures, happen in the background; Status and
// WaitReady tell how it goes. ctx is not kept: Close stops the client.
func (c *Client) Open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
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
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	stopEvents := make(chan struct{})
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		if c.opts.OnEvent == nil {
			<-stopEvents
			return
		}
		c.events.run(stopEvents, c.opts.OnEvent)
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

// Close stops the client: the socket is closed with a code that keeps the
// session resumable on Discord (not 1000/1001, Gateway, Initiating a
// Disconnect), queued events are delivered, and every goroutine has ended
// when Close returns nil. It is idempotent; ctx bounds the wait.
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

// Members returns the users currently in a voice channel of the guild, in
// the order they joined.
func (c *Client) Members(channelID string) []Member { return c.state.Members(channelID) }

// Rooms returns the rooms (voice channels under the category) with their
// members, as the gateway last reported them.
func (c *Client) Rooms() []Room { return c.state.Rooms() }

// VoiceStates returns every user in a voice channel of the guild (user id
// -> channel id).
func (c *Client) VoiceStates() map[string]string { return c.state.VoiceStates() }

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

// sessionInfo is what a Resume needs, owned by the run goroutine.
type sessionInfo struct {
	id        string
	resumeURL string
	seq       int64 // last processed dispatch
	botUserID string
}

// gatewayInfo is the cached answer of GET /gateway/bot.
type gatewayInfo struct {
	url              string
	identifyInterval time.Duration
	shards           int // the shard count to identify with, at least 1
}

// next is what the run loop does after a connection ended.
type next int

const (
	nextResume      next = iota // reconnect; Resume if a session exists
	nextIdentify                // reconnect with a new session
	nextInvalidated             // op 9 d:false: wait InvalidSessionWait, new session
	nextFatal                   // stop for good
	nextStop                    // Close was called
)

// result is how a connection ended.
type result struct {
	next       next
	err        error
	reshard    bool // closed with 4011: ask GET /gateway/bot for the shard count again
	ready      bool // the connection reached READY/RESUMED
	dialFailed bool // no WebSocket was opened
}

// resumeDialAttempts is how many failed dials of resume_gateway_url the
// client tries before resuming through the cached gateway URL instead
// (Gateway, Handling a Disconnect: "if the reconnect fails").
const resumeDialAttempts = 3

// run owns the session: it opens connections one after the other until
// ctx ends or a fatal error.
func (c *Client) run(ctx context.Context) {
	var (
		sess      sessionInfo
		gw        gatewayInfo
		lastIdent time.Time
		attempt   int
		conns     int
		dialFails int
	)
	defer func() {
		if ctx.Err() != nil {
			// Closed: stopped, unless a fatal error ended the run first
			// (Close may cancel ctx right after fail); that stays failed.
			c.setStatus(func(s *Status) {
				if s.State != StateFailed {
					s.State = StateStopped
				}
			})
		}
	}()
	for ctx.Err() == nil {
		if gw.url == "" {
			info, err := c.fetchGateway(ctx)
			if err != nil {
				if errors.Is(err, ErrFatalClose) {
					c.fail(err)
					return
				}
				if ctx.Err() != nil {
					return
				}
				c.log.Warn("GET /gateway/bot failed", "err", err)
				c.setState(StateReconnecting, err)
				if sleepCtx(ctx, c.backoff.delay(attempt)) != nil {
					return
				}
				attempt++
				continue
			}
			gw = info
		}
		if conns > 0 {
			c.setStatus(func(s *Status) { s.Reconnects++ })
		}
		conns++
		res := c.connect(ctx, &sess, gw, &lastIdent)
		if res.ready {
			attempt = 0
		}
		if res.dialFailed {
			dialFails++
		} else {
			dialFails = 0
		}
		if dialFails >= resumeDialAttempts && sess.resumeURL != "" {
			c.log.Warn("resume_gateway_url unreachable; resuming through the gateway URL", "url", redactQuery(sess.resumeURL))
			sess.resumeURL = ""
		}
		if res.reshard {
			before := gw.shards
			info, err := c.fetchGateway(ctx)
			switch {
			case err == nil && info.shards > before:
				c.log.Warn("Discord requires more shards; identifying again", "shards", info.shards, "was", before)
				gw = info
			case ctx.Err() != nil:
				return
			default:
				c.fail(fmt.Errorf("%w: %s (GET /gateway/bot recommends %d shards: %v)", ErrFatalClose, LookupCloseCode(4011).Reason(), info.shards, err))
				return
			}
		}
		switch res.next {
		case nextStop:
			return
		case nextFatal:
			c.fail(res.err)
			return
		case nextIdentify, nextInvalidated:
			sess = sessionInfo{botUserID: sess.botUserID}
			c.setStatus(func(s *Status) { s.SessionID = "" })
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Info("gateway connection ended", "err", res.err, "resume", sess.id != "")
		c.setState(StateReconnecting, res.err)
		wait := c.backoff.delay(attempt)
		if res.next == nextInvalidated {
			wait = randBetween(c.opts.InvalidSessionWait[0], c.opts.InvalidSessionWait[1])
		} else {
			attempt++
		}
		if sleepCtx(ctx, wait) != nil {
			return
		}
	}
}

// connect runs one connection from dial to close.
func (c *Client) connect(ctx context.Context, sess *sessionInfo, gw gatewayInfo, lastIdent *time.Time) result {
	resuming := sess.id != ""
	target := gw.url
	if resuming {
		c.setState(StateResuming, nil)
		if sess.resumeURL != "" {
			target = sess.resumeURL
		}
	} else {
		c.setState(StateConnecting, nil)
		// Identify rate limit (Gateway, Identifying): wait before dialing so
		// the socket does not sit idle.
		if !lastIdent.IsZero() {
			if err := sleepCtx(ctx, time.Until(lastIdent.Add(gw.identifyInterval))); err != nil {
				return result{next: nextStop}
			}
		}
	}
	wsURL, err := gatewayURL(target)
	if err != nil {
		// A bad resume_gateway_url: start over on the cached URL.
		return result{next: nextIdentify, err: err}
	}
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	conn, _, err := c.opts.Dialer.DialContext(dctx, wsURL, nil)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return result{next: nextStop}
		}
		return result{next: nextResume, err: fmt.Errorf("gateway: dial %s: %w", redactQuery(wsURL), err), dialFailed: true}
	}
	conn.SetReadLimit(maxFrameSize)
	l := startLink(conn, c.log)
	defer l.shutdown()

	hs := time.NewTimer(handshakeTimeout)
	defer hs.Stop()
	var hb *heartbeat
	select {
	case <-ctx.Done():
		l.closeAndWait(closeResumable, "bridge shutting down")
		return result{next: nextStop}
	case err := <-l.errs:
		return c.afterReadError(err, false)
	case <-hs.C:
		l.closeWith(closeResumable, "no hello")
		return result{next: nextResume, err: fmt.Errorf("%w: no Hello within %v", ErrHandshake, handshakeTimeout)}
	case f := <-l.frames:
		if f.Op != opHello {
			l.closeWith(closeResumable, "expected hello")
			return result{next: nextResume, err: fmt.Errorf("%w: first frame was op %d, not Hello", ErrHandshake, f.Op)}
		}
		iv, err := decodeHello(f.D)
		if err != nil {
			l.closeWith(closeResumable, "bad hello")
			return result{next: nextResume, err: err}
		}
		hb = newHeartbeat(iv, firstBeatJitter())
		c.limiter.setInterval(iv)
	}
	defer hb.stop()

	if resuming {
		c.log.Info("resuming gateway session", "url", redactQuery(wsURL), "seq", sess.seq)
		err = l.write(outFrame{Op: opResume, D: resumeData{Token: c.token, SessionID: sess.id, Seq: sess.seq}})
	} else {
		sess.seq = 0 // a new session numbers its dispatches from 1
		c.log.Info("identifying", "url", redactQuery(wsURL), "shards", gw.shards)
		*lastIdent = time.Now()
		id := identifyData{
			Token:      c.token,
			Intents:    c.opts.Intents,
			Properties: identifyProperties{OS: runtime.GOOS, Browser: "voicebridge", Device: "voicebridge"},
		}
		if gw.shards > 1 {
			id.Shard = &[2]int{ShardOf(c.opts.GuildID, gw.shards), gw.shards}
		}
		err = l.write(outFrame{Op: opIdentify, D: id})
	}
	if err != nil {
		return result{next: nextResume, err: fmt.Errorf("gateway: send handshake: %w", err)}
	}
	hs.Reset(handshakeTimeout)

	var (
		ready      bool
		awaitGuild bool
		cmds       chan command // nil (never selected) until ready
	)
	becomeReady := func() {
		ready = true
		cmds = c.cmds
		hs.Stop()
		c.setStatus(func(s *Status) {
			s.State, s.LastError, s.SessionID, s.BotUserID = StateReady, "", sess.id, sess.botUserID
		})
		c.log.Info("gateway ready", "session", sess.id, "resumed", resuming)
	}
	for {
		select {
		case <-ctx.Done():
			l.closeAndWait(closeResumable, "bridge shutting down")
			return result{next: nextStop, ready: ready}
		case err := <-l.errs:
			r := c.afterReadError(err, ready)
			return r
		case <-hs.C:
			l.closeWith(closeResumable, "handshake timeout")
			return result{next: nextResume, err: fmt.Errorf("%w: no READY/RESUMED within %v", ErrHandshake, handshakeTimeout)}
		case <-hb.timer.C:
			if !hb.due() {
				l.closeWith(closeZombie, "heartbeat not acknowledged")
				return result{next: nextResume, err: ErrZombie, ready: ready}
			}
			if err := l.write(heartbeatFrame(sess.seq)); err != nil {
				return result{next: nextResume, err: fmt.Errorf("gateway: send heartbeat: %w", err), ready: ready}
			}
			hb.sent(time.Now(), true)
		case cmd := <-cmds:
			err := l.write(cmd.payload)
			cmd.reply <- err
			if err != nil {
				return result{next: nextResume, err: fmt.Errorf("gateway: send op %d: %w", cmd.payload.Op, err), ready: ready}
			}
		case f := <-l.frames:
			switch f.Op {
			case opHeartbeat:
				if err := l.write(heartbeatFrame(sess.seq)); err != nil {
					return result{next: nextResume, err: fmt.Errorf("gateway: send heartbeat: %w", err), ready: ready}
				}
				hb.sent(time.Now(), false)
			case opHeartbeatACK:
				lat := hb.ack(time.Now())
				c.setStatus(func(s *Status) { s.HeartbeatLatency = lat })
			case opReconnect:
				l.closeWith(closeReconnectRequest, "reconnect requested")
				return result{next: nextResume, err: errors.New("gateway: server asked to reconnect (op 7)"), ready: ready}
			case opInvalidSession:
				l.closeWith(closeReconnectRequest, "invalid session")
				if decodeInvalidSession(f.D) {
					return result{next: nextResume, err: errors.New("gateway: invalid session (op 9), resumable"), ready: ready}
				}
				return result{next: nextInvalidated, err: errors.New("gateway: invalid session (op 9), starting a new session"), ready: ready}
			case opDispatch:
				switch c.dispatch(f, sess) {
				case stepReady:
					awaitGuild = true
				case stepReadyNoGuild:
					becomeReady()
					c.setStatus(func(s *Status) {
						s.LastError = fmt.Sprintf("the bot is not a member of guild %s: invite it with the bridge's permissions", c.opts.GuildID)
					})
				case stepResumed:
					becomeReady()
				case stepGuild:
					if awaitGuild && !ready {
						becomeReady()
					}
				}
			case opHello:
				// A second Hello changes nothing.
			default:
				c.log.Debug("ignoring gateway op", "op", f.Op)
			}
		}
	}
}

// afterReadError turns a read failure into what to do next, from the close
// code table.
func (c *Client) afterReadError(err error, ready bool) result {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		cc := LookupCloseCode(ce.Code)
		switch {
		case cc.Code == 4011 && c.opts.Shards == 0:
			return result{next: nextIdentify, err: fmt.Errorf("gateway: closed with %s", cc.Reason()), ready: ready, reshard: true}
		case !cc.Reconnect:
			return result{next: nextFatal, err: fmt.Errorf("%w: %s", ErrFatalClose, cc.Reason()), ready: ready}
		case !cc.Resume:
			return result{next: nextIdentify, err: fmt.Errorf("gateway: closed with %s: starting a new session", cc.Reason()), ready: ready}
		}
		return result{next: nextResume, err: fmt.Errorf("gateway: closed with %s %q", cc.Reason(), ce.Text), ready: ready}
	}
	return result{next: nextResume, err: fmt.Errorf("gateway: connection lost: %w", err), ready: ready}
}

// step is what a dispatch meant for the handshake.
type step int

const (
	stepNone         step = iota
	stepReady             // READY; the guild's GUILD_CREATE follows
	stepReadyNoGuild      // READY, but the guild is not among the bot's
	stepResumed           // RESUMED
	stepGuild             // GUILD_CREATE of the configured guild
)

// dispatch handles op 0: de-duplication by sequence, session fields, state
// changes and voice updates.
func (c *Client) dispatch(f frame, sess *sessionInfo) step {
	if f.S <= sess.seq {
		// Replayed after a Resume, already processed (Gateway, Resuming).
		c.log.Debug("dropping replayed dispatch", "t", f.T, "s", f.S, "last", sess.seq)
		return stepNone
	}
	sess.seq = f.S
	c.setStatus(func(s *Status) { s.Seq = f.S })

	var (
		changes []session.Change
		err     error
		st      = stepNone
	)
	switch f.T {
	case "READY":
		var r readyData
		if r, err = decodeReady(f.D); err != nil {
			break
		}
		sess.id, sess.resumeURL, sess.botUserID = r.SessionID, r.ResumeGatewayURL, r.User.ID
		c.state.SetSelf(r.User.ID)
		st = stepReadyNoGuild
		for _, g := range r.Guilds {
			if g.ID == c.opts.GuildID {
				st = stepReady
			}
		}
	case "RESUMED":
		st = stepResumed
	case "GUILD_CREATE":
		var g guildCreateData
		if g, err = decodeGuildCreate(f.D); err != nil || g.ID != c.opts.GuildID || g.Unavailable {
			break
		}
		changes = c.state.Reconcile(session.Snapshot{Channels: g.Channels, VoiceStates: g.VoiceStates, Members: g.Members})
		st = stepGuild
	case "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE":
		ch, derr := decodeChannel(f.T, f.D)
		if err = derr; err != nil {
			break
		}
		switch f.T {
		case "CHANNEL_DELETE":
			changes, err = c.state.ChannelDelete(ch)
		default:
			changes, err = c.state.ChannelUpdate(ch)
		}
	case "VOICE_STATE_UPDATE":
		vs, derr := decodeVoiceState(f.D)
		if err = derr; err != nil {
			break
		}
		changes, err = c.state.VoiceState(vs)
		if vs.UserID == sess.botUserID && vs.GuildID != "" {
			c.publishVoice(vs.GuildID, VoiceUpdate{SessionID: vs.SessionID, ChannelID: vs.ChannelID})
		}
	case "VOICE_SERVER_UPDATE":
		v, derr := decodeVoiceServer(f.D)
		if err = derr; err != nil {
			break
		}
		u := VoiceUpdate{Server: true, Token: v.Token, EndpointNull: v.Endpoint == nil}
		if v.Endpoint != nil {
			u.Endpoint = *v.Endpoint
		}
		c.publishVoice(v.GuildID, u)
	case "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE":
		var m struct {
			GuildID string `json:"guild_id"`
			memberName
		}
		if json.Unmarshal(f.D, &m) == nil && m.GuildID == c.opts.GuildID && m.User != nil {
			c.state.RememberName(m.User.ID, m.name())
		}
	}
	if err != nil {
		c.log.Warn("ignoring malformed dispatch", "t", f.T, "s", f.S, "err", err)
	}
	if len(changes) > 0 && c.opts.OnEvent != nil {
		evs := make([]Event, len(changes))
		for i, ch := range changes {
			evs[i] = toEvent(c.opts.GuildID, sess.botUserID, ch)
		}
		c.events.push(evs...)
	}
	return st
}

// memberName is the part of a guild member that names it.
type memberName struct {
	Nick string `json:"nick"`
	User *struct {
		ID         string `json:"id"`
		Username   string `json:"username"`
		GlobalName string `json:"global_name"`
	} `json:"user"`
}

func (m memberName) name() string {
	switch {
	case m.Nick != "":
		return m.Nick
	case m.User == nil:
		return ""
	case m.User.GlobalName != "":
		return m.User.GlobalName
	}
	return m.User.Username
}

// gatewayBot is GET /gateway/bot (Gateway, Get Gateway Bot).
type gatewayBot struct {
	URL               string `json:"url"`
	Shards            int    `json:"shards"`
	SessionStartLimit struct {
		Total          int   `json:"total"`
		Remaining      int   `json:"remaining"`
		ResetAfter     int64 `json:"reset_after"`
		MaxConcurrency int   `json:"max_concurrency"`
	} `json:"session_start_limit"`
}

// fetchGateway asks for the gateway URL and the identify limits. A 401 is
// fatal: retrying a bad token only earns an IP ban.
func (c *Client) fetchGateway(ctx context.Context) (gatewayInfo, error) {
	rctx, cancel := context.WithTimeout(ctx, restTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, c.opts.APIBase+"/gateway/bot", nil)
	if err != nil {
		return gatewayInfo{}, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	req.Header.Set("Authorization", "Bot "+c.token)
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return gatewayInfo{}, fmt.Errorf("%w: GET /gateway/bot: %v", ErrUpstream, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return gatewayInfo{}, fmt.Errorf("%w: GET /gateway/bot: %v", ErrUpstream, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return gatewayInfo{}, fmt.Errorf("%w: GET /gateway/bot answered 401: %w", ErrFatalClose, ErrUnauthorized)
	case resp.StatusCode != http.StatusOK:
		return gatewayInfo{}, fmt.Errorf("%w: GET /gateway/bot answered %s", ErrUpstream, resp.Status)
	}
	var gb gatewayBot
	if err := json.Unmarshal(body, &gb); err != nil {
		return gatewayInfo{}, fmt.Errorf("%w: GET /gateway/bot: %v", ErrUpstream, err)
	}
	if _, err := gatewayURL(gb.URL); err != nil {
		return gatewayInfo{}, fmt.Errorf("%w: GET /gateway/bot: %w", ErrUpstream, err)
	}
	info := gatewayInfo{url: gb.URL, identifyInterval: c.opts.IdentifyInterval, shards: max(1, c.opts.Shards)}
	if c.opts.Shards == 0 {
		info.shards = max(1, gb.Shards)
	}
	if info.identifyInterval == 0 {
		info.identifyInterval = identifyWindow / time.Duration(max(1, gb.SessionStartLimit.MaxConcurrency))
	}
	if ssl := gb.SessionStartLimit; ssl.Total > 0 && ssl.Remaining == 0 {
		wait := time.Duration(ssl.ResetAfter) * time.Millisecond
		c.log.Warn("daily identify limit used up; waiting for the reset", "wait", wait)
		c.setState(StateReconnecting, fmt.Errorf("gateway: daily identify limit used up, resets in %v", wait))
		if err := sleepCtx(ctx, wait); err != nil {
			return gatewayInfo{}, err
		}
	}
	return info, nil
}

// gatewayURL adds the version and encoding to a gateway URL (Gateway,
// Connecting); a Resume uses the same parameters as the first connection.
func gatewayURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return "", fmt.Errorf("%w: gateway URL %q is not a ws:// or wss:// URL", ErrBadPayload, raw)
	}
	q := u.Query()
	q.Set("v", "10")
	q.Set("encoding", "json")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func redactQuery(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i]
	}
	return s
}

func parseAPIBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: APIBase %q must be an http(s) URL such as https://discord.com/api/v10", ErrOptions, raw)
	}
	return u, nil
}

// ShardOf is the shard that carries a guild's events among shards:
// (guild_id >> 22) % shards (Gateway, "Sharding"). A malformed id or a
// count below 2 gives shard 0.
func ShardOf(guildID string, shards int) int {
	id, err := strconv.ParseUint(guildID, 10, 64)
	if err != nil || shards < 2 {
		return 0
	}
	return int((id >> 22) % uint64(shards))
}
