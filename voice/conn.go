package voice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/voice/dave"
)

// timing), and per transport a UDP reader and a keepalive sender.
type Conn struct {
	opts    Options
	log     *slog.Logger
	guildID string

	updates <-chan VoiceUpdate
	unsub   func()

	// Owned by run (and by Join before run starts).
	creds   credentials
	gw      *gatewayConn
	tr      *transport
	lastSeq int64

	// Read by the pacer, SendVP8 and Stats.
	gwPtr atomic.Pointer[gatewayConn]
	trPtr atomic.Pointer[transport]
	// davePtr is the DAVE session of the current voice session (nil with
	// DAVE off or between sessions); run replaces it, the receiver and the
	// public accessors read it.
	davePtr atomic.Pointer[dave.Session]
	// lastCode is the privacy code last reported (owned by run).
	lastCode string
	// lastEpoch is the DAVE epoch last counted (owned by run), with the
	// session it belongs to.
	lastEpoch     uint64
	lastEpochSess *dave.Session

	events chan Event
	frames chan Frame

	users   sync.RWMutex
	ssrcs   map[uint32]ssrcOwner
	userGen atomic.Uint64

	rx     *receiver
	sender *sender

	stats connStats

	cancel    context.CancelFunc
	runDone   chan struct{}
	paceDone  chan struct{}
	ended     atomic.Bool
	closeOnce sync.Once
	leaveOnce sync.Once
	leaveErr  error
}

type ssrcOwner struct {
	userID string
	kind   MediaKind
}

// other than the final Left or fatal Error are dropped when the consumer
// falls 256 behind.
func (c *Conn) Events() <-chan Event { return c.events }

// Frames delivers received frames; closed when the connection ends. A
// slow consumer loses frames (counted in Stats().FramesDropped).
func (c *Conn) Frames() <-chan Frame { return c.frames }

// emit queues a non-final event, keeping one slot for the final one.
func (c *Conn) emit(ev Event) {
	if len(c.events) >= cap(c.events)-1 {
		c.log.Warn("event consumer too slow; dropping event", "event", fmt.Sprintf("%T", ev))
		return
	}
	c.events <- ev
}

// finish queues the final event; run closes the channel after it.
func (c *Conn) finish(ev Event) {
	c.ended.Store(true)
	select {
	case c.events <- ev:
	default:
		c.log.Error("event channel full; final event lost", "event", fmt.Sprintf("%+v", ev))
	}
}

// Close leaves the channel (op 4 with a null channel), closes the voice
// gateway and UDP socket and waits for every goroutine. Idempotent; later
// calls return the first call's result.
func (c *Conn) Close(ctx context.Context) error {
	c.closeOnce.Do(c.cancel)
	for _, done := range []chan struct{}{c.runDone, c.paceDone} {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("voice: close: %w", context.Cause(ctx))
		}
	}
	c.leaveOnce.Do(func() {
		if err := c.opts.Signaler.UpdateVoiceState(ctx, c.guildID, "", c.opts.SelfMute, c.opts.SelfDeaf); err != nil {
			c.leaveErr = fmt.Errorf("voice: op 4 leave: %w", err)
		}
		c.unsub()
	})
	return c.leaveErr
}

// run owns the session: it handles gateway messages, recovers from
// dropped connections per the close code table, and follows voice server
// moves.
func (c *Conn) run(ctx context.Context) {
	defer close(c.runDone)
	defer func() {
		c.teardown()
		if !c.ended.Load() {
			c.finish(StateChanged{StateClosed}) // closed by Close
		}
		close(c.frames)
		close(c.events)
	}()
	for {
		var in <-chan message
		if c.gw != nil {
			in = c.gw.in
		}
		select {
		case <-ctx.Done():
			return
		case m, ok := <-in:
			if ok {
				c.handle(c.gw, m)
				continue
			}
			err := c.gw.endErr()
			c.lastSeq = c.gw.lastSeq.Load()
			c.dropGateway()
			c.log.Info("voice gateway connection ended", "err", err)
			if !c.recover(ctx, err, actionFor(err)) {
				return
			}
		case u, ok := <-c.updates:
			if !ok {
				c.updates = nil
				continue
			}
			if !c.followUpdate(ctx, u) {
				return
			}
		}
	}
}

// actionFor maps why a connection ended to what to do next.
func actionFor(err error) closeAction {
	var ce *CloseError
	if errors.As(err, &ce) {
		return lookupCloseCode(ce.Code).Action
	}
	return closeResume
}

// followUpdate applies a voice update received while running. A new
// VOICE_SERVER_UPDATE moves the connection to the new server (a new
// session); a null endpoint tears the session down and waits.
func (c *Conn) followUpdate(ctx context.Context, u VoiceUpdate) bool {
	if !u.Server {
		if u.ChannelID == "" {
			c.finish(Left{Reason: "the bot is no longer in the voice channel"})
			return false
		}
		if u.ChannelID != c.creds.channelID {
			c.log.Info("moved to another voice channel", "new_channel_id", u.ChannelID)
		}
		c.creds.sessionID, c.creds.channelID = u.SessionID, u.ChannelID
		return true
	}
	if c.gw != nil && u.Token == c.creds.token && u.Endpoint == c.creds.endpoint {
		return true // a repeat of the update we are connected with
	}
	c.teardown()
	c.notePrivacyCode()
	if u.EndpointNull || u.Endpoint == "" {
		c.creds.endpoint = ""
		c.emit(StateChanged{StateWaitingForServer})
		return true
	}
	c.creds.token, c.creds.endpoint = u.Token, u.Endpoint
	c.log.Info("moving to a new voice server", "endpoint", u.Endpoint)
	c.emit(StateChanged{StateReconnecting})
	if err := c.connectNew(ctx); err != nil {
		return c.recover(ctx, err, actionForHandshake(err))
	}
	c.emit(StateChanged{StateConnected})
	return true
}

// actionForHandshake is actionFor for a failed identify: without a
// session there is nothing to resume.
func actionForHandshake(err error) closeAction {
	if a := actionFor(err); a != closeResume {
		return a
	}
	if errors.Is(err, ErrNoCommonMode) {
		return closeStop
	}
	return closeNewSession
}

// recover acts on a lost connection until connected again (true) or
// finished (false, final event sent).
//
// A new voice session asks the main gateway again (op 4 for the channel
// the bot is in) and reconnects on whichever update answers: Discord
// answers a repeated join with only one of VOICE_STATE_UPDATE and
// VOICE_SERVER_UPDATE, often only the voice state, so the newest of each
// is kept in c.creds and combined. Leaving and joining the channel again,
// which brings both, is the last resort.
func (c *Conn) recover(ctx context.Context, err error, action closeAction) bool {
	newSessions := 0
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return false
		}
		switch action {
		case closeLeft:
			reason := "voice session ended"
			var ce *CloseError
			if errors.As(err, &ce) {
				reason = fmt.Sprintf("voice gateway closed with %d (%s)", ce.Code, ce.Name)
			}
			c.finish(Left{Reason: reason})
			return false
		case closeStop:
			c.finish(Error{Err: err, Fatal: true})
			return false
		}
		if attempt >= c.opts.MaxReconnects {
			c.finish(Error{Err: fmt.Errorf("voice: gave up after %d reconnect attempts: %w", attempt, err), Fatal: true})
			return false
		}
		if action == closeAwaitServer {
			// 4014: removed (a voice state with a null channel follows), or
			// moved to another voice server (a server update follows).
			c.teardown()
			c.notePrivacyCode()
			c.emit(StateChanged{StateWaitingForServer})
			got, werr := c.awaitUpdate(ctx, c.opts.ServerUpdateWait, true)
			switch {
			case errors.Is(werr, errLeftChannel):
				c.finish(Left{Reason: "the bot is no longer in the voice channel"})
				return false
			case werr != nil:
				return false // ctx ended
			case got:
				c.log.Info("voice server changed", "endpoint", c.creds.endpoint)
				c.emit(StateChanged{StateReconnecting})
				if err = c.connectNew(ctx); err == nil {
					c.emit(StateChanged{StateConnected})
					return true
				}
				c.log.Warn("connecting to the new voice server failed", "attempt", attempt+1, "err", err)
				action = actionForHandshake(err)
				continue
			}
			c.log.Info("no voice update after close 4014; starting a new voice session", "waited", c.opts.ServerUpdateWait)
			action = closeNewSession
		}
		if attempt > 0 {
			c.emit(Error{Err: err})
			if !sleepCtx(ctx, backoff(attempt)) {
				return false
			}
		}
		if action == closeResume && attempt > 0 && attempt >= (c.opts.MaxReconnects+1)/2 {
			// Resuming keeps failing: the voice server may be gone; a new
			// session lets Discord assign another.
			action = closeNewSession
		}
		if action == closeResume && c.tr != nil && c.creds.endpoint != "" {
			c.emit(StateChanged{StateResuming})
			if err = c.resume(ctx); err == nil {
				c.emit(StateChanged{StateConnected})
				return true
			}
			c.log.Warn("resume failed", "attempt", attempt+1, "err", err)
			if a := actionFor(err); a != closeResume {
				action = a
			}
			continue
		}
		c.emit(StateChanged{StateReconnecting})
		c.teardown()
		c.notePrivacyCode()
		if newSessions < lastResortAfter {
			err = c.rejoin(ctx)
		} else {
			err = c.leaveAndJoin(ctx)
		}
		newSessions++
		if errors.Is(err, errLeftChannel) {
			c.finish(Left{Reason: "the bot is no longer in the voice channel"})
			return false
		}
		if err == nil {
			if err = c.connectNew(ctx); err == nil {
				c.emit(StateChanged{StateConnected})
				return true
			}
		}
		c.log.Warn("new voice session failed", "attempt", attempt+1, "err", err)
		action = actionForHandshake(err)
	}
}

// lastResortAfter is how many new sessions through a repeated op 4 are
// tried before leaving the channel and joining it again.
const lastResortAfter = 2

// errLeftChannel: a VOICE_STATE_UPDATE with a null channel arrived.
var errLeftChannel = errors.New("voice: the bot is no longer in the voice channel")

// rejoin sends op 4 again for the channel and waits for whichever voice
// update answers it; without an answer it tries the credentials it has.
func (c *Conn) rejoin(ctx context.Context) error {
	if err := c.opts.Signaler.UpdateVoiceState(ctx, c.guildID, c.creds.channelID, c.opts.SelfMute, c.opts.SelfDeaf); err != nil {
		return fmt.Errorf("voice: op 4 rejoin: %w", err)
	}
	got, err := c.awaitUpdate(ctx, c.opts.JoinTimeout, false)
	if err != nil {
		return err
	}
	if !got {
		c.log.Warn("no voice update answered op 4; identifying with the last ones", "waited", c.opts.JoinTimeout)
	}
	if c.creds.endpoint == "" {
		return fmt.Errorf("voice: no voice server to connect to after op 4: %w", ErrJoinTimeout)
	}
	return nil
}

// leaveAndJoin leaves the channel (op 4 with a null channel) and joins it
// again, which Discord answers with both voice updates, as a first join.
func (c *Conn) leaveAndJoin(ctx context.Context) error {
	c.log.Info("leaving and joining the voice channel again")
	if err := c.opts.Signaler.UpdateVoiceState(ctx, c.guildID, "", c.opts.SelfMute, c.opts.SelfDeaf); err != nil {
		return fmt.Errorf("voice: op 4 leave: %w", err)
	}
	// Our own leave comes back as a voice state with a null channel.
	t := time.NewTimer(c.opts.JoinTimeout)
	defer t.Stop()
	for left := false; !left; {
		select {
		case u, ok := <-c.updates:
			if !ok {
				return fmt.Errorf("voice: voice update subscription closed: %w", ErrClosed)
			}
			left = !u.Server && u.ChannelID == ""
		case <-t.C:
			left = true
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	if err := c.opts.Signaler.UpdateVoiceState(ctx, c.guildID, c.creds.channelID, c.opts.SelfMute, c.opts.SelfDeaf); err != nil {
		return fmt.Errorf("voice: op 4 join: %w", err)
	}
	creds, err := awaitCredentials(ctx, c.updates, c.opts.JoinTimeout, c.creds)
	if err != nil {
		return err
	}
	c.creds = creds
	return nil
}

// awaitUpdate applies voice updates to c.creds until one lets the client
// connect (true): with needServer a server update with an endpoint,
// otherwise any update once an endpoint is known. It returns false when
// timeout passes first and errLeftChannel when the bot is out of the
// channel.
func (c *Conn) awaitUpdate(ctx context.Context, timeout time.Duration, needServer bool) (bool, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case u, ok := <-c.updates:
			if !ok {
				return false, fmt.Errorf("voice: voice update subscription closed: %w", ErrClosed)
			}
			if !u.Server {
				if u.ChannelID == "" {
					return false, errLeftChannel
				}
				c.creds.sessionID, c.creds.channelID = u.SessionID, u.ChannelID
				if !needServer && c.creds.endpoint != "" {
					return true, nil
				}
				continue
			}
			if u.EndpointNull || u.Endpoint == "" {
				c.creds.endpoint = ""
				c.emit(StateChanged{StateWaitingForServer})
				continue
			}
			c.creds.token, c.creds.endpoint = u.Token, u.Endpoint
			return true, nil
		case <-t.C:
			return false, nil
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
}

func backoff(attempt int) time.Duration {
	d := time.Duration(1<<min(attempt-1, 4)) * 500 * time.Millisecond
	return min(d, 8*time.Second)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dropGateway closes and forgets the websocket, keeping the transport.
func (c *Conn) dropGateway() {
	if c.gw != nil {
		c.gwPtr.Store(nil)
		c.gw.close(websocket.CloseNormalClosure)
		c.gw = nil
	}
}

// teardown closes websocket and transport and ends the DAVE session.
func (c *Conn) teardown() {
	c.dropGateway()
	if c.tr != nil {
		c.trPtr.Store(nil)
		c.tr.close()
		c.tr = nil
	}
	c.dropDAVESession()
	c.lastSeq = -1
}

// connectNew identifies on c.creds.endpoint and sets up a fresh
// transport: Identify → Ready → IP discovery → Select Protocol →
// Session Description.
//
