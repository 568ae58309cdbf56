package gateway

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/gateway/session"
)

// sessionInfo is what a Resume needs, owned by the run goroutine.
type sessionInfo struct {
	id        string
	resumeURL string
	seq       int64 // last processed dispatch
	botUserID string
	// awaiting are the served guilds READY listed whose GUILD_CREATE has
	// not come yet; missing are the served guilds READY did not list.
	awaiting map[string]bool
	missing  []string
}

// gatewayInfo is the cached answer of GET /gateway/bot.
type gatewayInfo struct {
	url              string
	identifyInterval time.Duration
	shards           int // the shard count to identify with, at least 1
	maxConcurrency   int // identify buckets, at least 1
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
	if st := c.start; st.ID != "" {
		sess = sessionInfo{id: st.ID, resumeURL: st.ResumeURL, seq: st.Seq, botUserID: st.BotUserID}
		for _, g := range c.guilds {
			g.state.SetSelf(st.BotUserID)
		}
		c.setStatus(func(s *Status) { s.SessionID, s.Seq, s.BotUserID = st.ID, st.Seq, st.BotUserID })
		c.log.Info("starting from a saved gateway session: resuming it", "session_id", st.ID, "seq", st.Seq)
		if st.Guilds != nil {
			c.saved = make(map[string]*session.Saved, len(st.Guilds))
			for id, v := range st.Guilds {
				if g := c.guild(id); g != nil && v != nil {
					g.state.Restore(*v)
					c.saved[id] = v
					c.mu.Lock()
					g.loaded = true
					c.mu.Unlock()
				}
			}
		}
	}
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
				if c.opts.OnReshard != nil {
					c.opts.OnReshard(info.shards)
				}
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
			if c.start.ID != "" && sess.id == c.start.ID {
				c.log.Warn("Discord refused to resume the saved gateway session: identifying anew; events dispatched since it was saved are lost",
					"session_id", sess.id, "seq", sess.seq, "err", res.err)
			}
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

// connect runs one connection from dial to close: the handshake, then
// serving the session until the connection ends.
func (c *Client) connect(ctx context.Context, sess *sessionInfo, gw gatewayInfo, lastIdent *time.Time) result {
	resuming := sess.id != ""
	l, hb, answered, res := c.handshake(ctx, sess, gw, lastIdent)
	if l == nil {
		return res
	}
	defer answered()
	defer l.shutdown()
	defer hb.stop()
	return c.serve(ctx, l, hb, sess, resuming, answered)
}

// handshake dials the gateway (resume_gateway_url when resuming), waits
// for Hello and sends Identify or Resume (Gateway, Connecting). On success
// it returns the link and the heartbeat, which the caller stops; otherwise
// a nil link and how the attempt ended. With an identify queue, an
// identify sent holds its bucket until answered is called: on Discord's
// answer (READY or Invalid Session) or when the connection ends. Its
// window then starts at the answer rather than at the send, so a server
// slow to read the identify never sees the next one of the bucket early.
func (c *Client) handshake(ctx context.Context, sess *sessionInfo, gw gatewayInfo, lastIdent *time.Time) (*link, *heartbeat, func(), result) {
	resuming := sess.id != ""
	identified := false // an Identify was sent on this attempt
	answered := func() {}
	target := gw.url
	if resuming {
		c.setState(StateResuming, nil)
		if sess.resumeURL != "" {
			target = sess.resumeURL
		}
	} else {
		c.setState(StateConnecting, nil)
		// Identify rate limit (Gateway, Identifying): wait before dialing so
		// the socket does not sit idle. The shards of one bot share a
		// queue of max_concurrency buckets.
		if q := c.opts.Identify; q != nil {
			window := c.opts.IdentifyInterval
			if window == 0 {
				window = identifyWindow
			}
			release, err := q.wait(ctx, c.shardOf(gw), gw.maxConcurrency, window)
			if err != nil {
				return nil, nil, nil, result{next: nextStop}
			}
			// The bucket is this shard's until the identify is answered
			// (its window starts then) or the attempt ends without one.
			answered = func() { release(true) }
			defer func() {
				if !identified {
					release(false)
				}
			}()
		} else if !lastIdent.IsZero() {
			if err := sleepCtx(ctx, time.Until(lastIdent.Add(gw.identifyInterval))); err != nil {
				return nil, nil, nil, result{next: nextStop}
			}
		}
	}
	wsURL, err := gatewayURL(target)
	if err != nil {
		// A bad resume_gateway_url: start over on the cached URL.
		return nil, nil, nil, result{next: nextIdentify, err: err}
	}
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	conn, _, err := c.opts.Dialer.DialContext(dctx, wsURL, nil)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, nil, result{next: nextStop}
		}
		return nil, nil, nil, result{next: nextResume, err: fmt.Errorf("gateway: dial %s: %w", redactQuery(wsURL), err), dialFailed: true}
	}
	conn.SetReadLimit(maxFrameSize)
	l := startLink(conn, c.log)
	fail := func(r result) (*link, *heartbeat, func(), result) {
		l.shutdown()
		return nil, nil, nil, r
	}

	hs := time.NewTimer(handshakeTimeout)
	defer hs.Stop()
	var hb *heartbeat
	select {
	case <-ctx.Done():
		c.closeAtStop(l)
		return fail(result{next: nextStop})
	case err := <-l.errs:
		return fail(c.afterReadError(err, false))
	case <-hs.C:
		l.closeWith(closeResumable, "no hello")
		return fail(result{next: nextResume, err: fmt.Errorf("%w: no Hello within %v", ErrHandshake, handshakeTimeout)})
	case f := <-l.frames:
		if f.Op != opHello {
			l.closeWith(closeResumable, "expected hello")
			return fail(result{next: nextResume, err: fmt.Errorf("%w: first frame was op %d, not Hello", ErrHandshake, f.Op)})
		}
		iv, err := decodeHello(f.D)
		if err != nil {
			l.closeWith(closeResumable, "bad hello")
			return fail(result{next: nextResume, err: err})
		}
		hb = newHeartbeat(iv, firstBeatJitter())
		c.limiter.setInterval(iv)
	}

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
			id.Shard = &[2]int{c.shardOf(gw), gw.shards}
		}
		c.mu.Lock()
		c.shard = [2]int{c.shardOf(gw), gw.shards}
		c.mu.Unlock()
		err = l.write(outFrame{Op: opIdentify, D: id})
		identified = err == nil
	}
	if err != nil {
		hb.stop()
		return fail(result{next: nextResume, err: fmt.Errorf("gateway: send handshake: %w", err)})
	}
	return l, hb, answered, result{}
}

// serve runs an identified (or resuming) connection: it waits (handshake
// timeout) for READY and the guild's GUILD_CREATE, or RESUMED, then
// handles heartbeats, dispatches and queued commands until the connection
// ends.
func (c *Client) serve(ctx context.Context, l *link, hb *heartbeat, sess *sessionInfo, resuming bool, answered func()) result {
	hs := time.NewTimer(handshakeTimeout)
	defer hs.Stop()
	var (
		ready      bool
		awaitGuild bool
		cmds       chan command // nil (never selected) until ready
	)
	// becomeReady reports the client ready, with lastError ("" for
	// none) in the same status change, so no watcher sees it ready
	// without it.
	becomeReady := func(lastError string) {
		ready = true
		cmds = c.cmds
		hs.Stop()
		c.setStatus(func(s *Status) {
			s.State, s.LastError, s.SessionID, s.BotUserID = StateReady, lastError, sess.id, sess.botUserID
		})
		c.log.Info("gateway ready", "session_id", sess.id, "resumed", resuming)
	}
	for {
		select {
		case <-ctx.Done():
			c.closeAtStop(l)
			return result{next: nextStop, ready: ready}
		case err := <-l.errs:
			return c.afterReadError(err, ready)
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
			if f.Op == opDispatch || f.Op == opInvalidSession {
				answered() // READY or Invalid Session: the identify was read
			}
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
					becomeReady(c.reportMissing(sess.missing))
				case stepResumed:
					becomeReady("")
				case stepGuild:
					if awaitGuild && !ready {
						becomeReady(c.reportMissing(sess.missing))
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

// closeAtStop closes the socket when the client stops: with 1000, which
// ends the session, unless the client abandons it to another (Abandon).
func (c *Client) closeAtStop(l *link) {
	c.mu.Lock()
	abandon := c.abandon
	c.mu.Unlock()
	if abandon {
		l.closeAndWait(closeResumable, "handing the session over")
		return
	}
	l.closeAndWait(websocket.CloseNormalClosure, "bridge shutting down")
}

// shardOf is the shard the client identifies: its home guild's.
func (c *Client) shardOf(gw gatewayInfo) int { return ShardOf(c.opts.GuildID, gw.shards) }

// Shard is the shard the client last identified, [shard_id, num_shards]
// ([0, 1] unsharded); zero before the first identify.
func (c *Client) Shard() [2]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shard
}

// reportMissing logs the served guilds the bot is not in (on this shard)
// and returns the LastError that names them for Status; "" for none.
func (c *Client) reportMissing(missing []string) string {
	if len(missing) == 0 {
		return ""
	}
	msg := fmt.Sprintf("the bot is not a member of guild %s: invite it with the bridge's permissions", strings.Join(missing, ", "))
	if len(missing) > 1 {
		msg = fmt.Sprintf("the bot is not a member of guilds %s: invite it with the bridge's permissions", strings.Join(missing, ", "))
	}
	c.log.Warn("served guilds missing from READY", "missing", strings.Join(missing, ","))
	return msg
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
