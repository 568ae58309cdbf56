package voice

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/voice/dave"
)

// VoiceUpdate is the bot's own VOICE_STATE_UPDATE (Server false:
// SessionID, ChannelID) or VOICE_SERVER_UPDATE (Server true: Token,
// Endpoint; EndpointNull while the voice server is being reallocated), as
// package gateway reports them.
type VoiceUpdate = gateway.VoiceUpdate

// Signaler is the part of the main gateway the voice client needs:
// sending op 4 and hearing the bot's own voice updates. gateway.Client
// implements it.
type Signaler interface {
	// UpdateVoiceState sends op 4; channelID "" leaves voice (null).
	UpdateVoiceState(ctx context.Context, guildID, channelID string, selfMute, selfDeaf bool) error
	// SubscribeVoice delivers the bot's voice updates for guildID until
	// the returned function is called.
	SubscribeVoice(guildID string) (<-chan VoiceUpdate, func())
}

// MediaKind says whether a frame is audio or video.
type MediaKind uint8

// Media kinds.
const (
	Audio MediaKind = iota + 1
	Video
)

// String names the kind.
func (k MediaKind) String() string {
	switch k {
	case Audio:
		return "audio"
	case Video:
		return "video"
	}
	return fmt.Sprintf("MediaKind(%d)", uint8(k))
}

// FrameEncryptor transforms each outgoing codec frame before it is
// packetized: the seam where DAVE end-to-end encryption plugs in. It
// appends the result to dst and returns it.
type FrameEncryptor interface {
	EncryptFrame(dst []byte, kind MediaKind, frame []byte) ([]byte, error)
}

// FrameDecryptor transforms each received codec frame after it is
// depacketized, knowing the sender's user id.
type FrameDecryptor interface {
	DecryptFrame(dst []byte, userID string, kind MediaKind, frame []byte) ([]byte, error)
}

// State is the connection's life-cycle state.
type State int

// Connection states.
const (
	StateConnecting State = iota
	StateConnected
	// StateResuming: the websocket dropped; resuming the same session.
	StateResuming
	// StateReconnecting: starting a new voice session (new server, or the
	// old session could not be resumed).
	StateReconnecting
	// StateWaitingForServer: VOICE_SERVER_UPDATE had a null endpoint.
	StateWaitingForServer
	// StateClosed: the connection ended.
	StateClosed
)

// String names the state.
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateResuming:
		return "resuming"
	case StateReconnecting:
		return "reconnecting"
	case StateWaitingForServer:
		return "waiting for server"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Event is something that happened on a connection; see the types below.
type Event interface{ voiceEvent() }

// Speaking reports a member's speaking flag (op 5), which also maps their
// user id to their audio SSRC.
type Speaking struct {
	UserID   string
	SSRC     uint32
	Speaking bool
}

// MemberJoined reports a user connecting to the call (op 11).
type MemberJoined struct{ UserID string }

// MemberLeft reports a user leaving the call (op 13).
type MemberLeft struct{ UserID string }

// StateChanged reports a new connection state.
type StateChanged struct{ State State }

// Left is the last event when the bot is no longer in the call: close
// 4014 or 4022, or the main gateway reporting the bot out of the channel.
type Left struct{ Reason string }

// Error reports a failure; Fatal errors are the last event.
type Error struct {
	Err   error
	Fatal bool
}

// PrivacyCodeChanged reports a new voice privacy code: the 30-digit code
// of the DAVE epoch whose keys our media now uses, which every member of
// the call sees alike (DAVE whitepaper, "Displayable Codes"). Code is ""
// when end-to-end encryption stopped (a downgrade, or a new voice session
// whose group is not formed yet).
type PrivacyCodeChanged struct{ Code string }

func (Speaking) voiceEvent()           {}
func (MemberJoined) voiceEvent()       {}
func (MemberLeft) voiceEvent()         {}
func (StateChanged) voiceEvent()       {}
func (Left) voiceEvent()               {}
func (Error) voiceEvent()              {}
func (PrivacyCodeChanged) voiceEvent() {}

// Frame is one received codec frame, in sequence order per stream.
type Frame struct {
	UserID    string
	SSRC      uint32
	Kind      MediaKind
	Seq       uint16
	Timestamp uint32
	Payload   []byte
	// Missing counts frames lost just before this one (audio: packets,
	// conceal them with PLC; video: abandoned frames). For video, Seq is
	// the sequence number of the frame's last packet.
	Missing int
	// Keyframe marks a VP8 key frame.
	Keyframe bool
	// Received is when the UDP socket delivered the packet that completed
	// the frame (its only packet for audio): the start of the bridge's
	// own latency.
	Received time.Time
}

// Options configures a Client.
type Options struct {
	// Signaler sends op 4 and delivers the bot's voice updates. Required.
	Signaler Signaler
	// UserID is the bot's user id. Required; with DAVE on it must be a
	// decimal snowflake, as it is the MLS credential's identity.
	UserID string
	// TLSConfig for the voice websocket; nil uses the system roots.
	TLSConfig *tls.Config
	// Logger; nil discards.
	Logger *slog.Logger
	// JoinTimeout bounds waiting for the voice updates after op 4.
	// Default 10 s.
	JoinTimeout time.Duration
	// DisableDAVE turns end-to-end encryption off: Identify advertises
	// max_dave_protocol_version 0 and DAVE messages are ignored. By
	// default the client offers dave.ProtocolVersion and runs a
	// dave.Session per voice session (see doc.go, "DAVE").
	DisableDAVE bool
	// Encryptor and Decryptor, when set, transform codec frames in place
	// of the DAVE session (each for its own direction): they take
	// precedence, and the DAVE session still runs the gateway protocol
	// unless DisableDAVE is set. A custom Encryptor carries the duty
	// never to send plaintext while DAVE is in force. Without them and
	// with DAVE off, frames pass through unchanged.
	Encryptor FrameEncryptor
	Decryptor FrameDecryptor
	// SelfMute and SelfDeaf go into op 4.
	SelfMute, SelfDeaf bool
	// NetDial dials the websocket's TCP connection; nil uses net.Dialer.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialUDP opens the media socket to the voice server; nil uses
	// net.DialUDP.
	DialUDP func(raddr *net.UDPAddr) (*net.UDPConn, error)
	// MaxReconnects bounds consecutive recovery attempts after a lost
	// connection (the first half resume, the rest start new sessions)
	// before the connection stops with an error. Default 5.
	MaxReconnects int
}

// Client joins voice channels through a Signaler.
type Client struct {
	opts Options
	log  *slog.Logger
}

// NewClient returns a Client; Join reports missing options.
func NewClient(opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.JoinTimeout <= 0 {
		opts.JoinTimeout = 10 * time.Second
	}
	if opts.MaxReconnects <= 0 {
		opts.MaxReconnects = 5
	}
	if opts.DialUDP == nil {
		opts.DialUDP = func(raddr *net.UDPAddr) (*net.UDPConn, error) { return net.DialUDP("udp", nil, raddr) }
	}
	return &Client{opts: opts, log: opts.Logger}
}

// credentials are what the two voice updates give: enough to identify.
type credentials struct {
	sessionID, channelID, token, endpoint string
}

// Conn is a connection to one voice channel. Its goroutines: run (owns
// the gateway session and transport), the pacer (owns outgoing audio
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

const (
	eventBuffer = 256
	frameBuffer = 512
)

// Join sends op 4 for channelID, waits (JoinTimeout) for the bot's voice
// state and voice server updates, and connects: voice gateway handshake,
// UDP IP discovery, Select Protocol, Session Description (Discord voice
// docs, "Connecting to Voice").
func (c *Client) Join(ctx context.Context, guildID, channelID string) (*Conn, error) {
	switch {
	case c.opts.Signaler == nil:
		return nil, fmt.Errorf("voice: Options.Signaler is nil: %w", ErrOptions)
	case c.opts.UserID == "":
		return nil, fmt.Errorf("voice: Options.UserID is empty: %w", ErrOptions)
	case guildID == "" || channelID == "":
		return nil, fmt.Errorf("voice: Join needs a guild and a channel id: %w", ErrOptions)
	}
	updates, unsub := c.opts.Signaler.SubscribeVoice(guildID)
	log := c.log.With("guild", guildID, "channel", channelID)
	if err := c.opts.Signaler.UpdateVoiceState(ctx, guildID, channelID, c.opts.SelfMute, c.opts.SelfDeaf); err != nil {
		unsub()
		return nil, fmt.Errorf("voice: op 4 join: %w", err)
	}
	fail := func(err error) (*Conn, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		defer cancel()
		if lerr := c.opts.Signaler.UpdateVoiceState(lctx, guildID, "", c.opts.SelfMute, c.opts.SelfDeaf); lerr != nil {
			log.Warn("op 4 leave after failed join", "err", lerr)
		}
		unsub()
		return nil, err
	}
	creds, err := awaitCredentials(ctx, updates, c.opts.JoinTimeout, credentials{})
	if err != nil {
		return fail(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	conn := &Conn{
		opts:     c.opts,
		log:      log,
		guildID:  guildID,
		updates:  updates,
		unsub:    unsub,
		creds:    creds,
		lastSeq:  -1,
		events:   make(chan Event, eventBuffer),
		frames:   make(chan Frame, frameBuffer),
		ssrcs:    make(map[uint32]ssrcOwner),
		cancel:   cancel,
		runDone:  make(chan struct{}),
		paceDone: make(chan struct{}),
	}
	conn.rx = newReceiver(conn)
	conn.sender = newSender(conn)
	conn.emit(StateChanged{StateConnecting})
	if err := conn.connectNew(ctx); err != nil {
		cancel()
		conn.teardown()
		return fail(err)
	}
	conn.emit(StateChanged{StateConnected})
	go conn.run(runCtx)
	go conn.sender.run(runCtx)
	return conn, nil
}

// awaitCredentials reads voice updates until it has a session id and a
// non-null endpoint, starting from have.
func awaitCredentials(ctx context.Context, updates <-chan VoiceUpdate, timeout time.Duration, have credentials) (credentials, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	var gotState, gotServer bool
	for !gotState || !gotServer {
		select {
		case u, ok := <-updates:
			if !ok {
				return have, fmt.Errorf("voice: voice update subscription closed: %w", ErrClosed)
			}
			if !u.Server {
				if u.ChannelID == "" {
					continue
				}
				have.sessionID, have.channelID, gotState = u.SessionID, u.ChannelID, true
				continue
			}
			if u.EndpointNull || u.Endpoint == "" {
				gotServer = false
				continue
			}
			have.token, have.endpoint, gotServer = u.Token, u.Endpoint, true
		case <-t.C:
			return have, fmt.Errorf("voice: state update %v, server update %v after %v: %w", gotState, gotServer, timeout, ErrJoinTimeout)
		case <-ctx.Done():
			return have, fmt.Errorf("voice: waiting for voice updates: %w", context.Cause(ctx))
		}
	}
	return have, nil
}

// Events delivers connection events; closed after the last one. Events
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
			c.log.Info("moved to another voice channel", "to", u.ChannelID)
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
func (c *Conn) recover(ctx context.Context, err error, action closeAction) bool {
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
		// A new session: ask the main gateway again (op 4), then identify.
		c.emit(StateChanged{StateReconnecting})
		c.teardown()
		c.notePrivacyCode()
		if err = c.rejoin(ctx); err == nil {
			if err = c.connectNew(ctx); err == nil {
				c.emit(StateChanged{StateConnected})
				return true
			}
		}
		c.log.Warn("new voice session failed", "attempt", attempt+1, "err", err)
		action = actionForHandshake(err)
	}
}

// rejoin sends op 4 again and waits for fresh credentials.
func (c *Conn) rejoin(ctx context.Context) error {
	if err := c.opts.Signaler.UpdateVoiceState(ctx, c.guildID, c.creds.channelID, c.opts.SelfMute, c.opts.SelfDeaf); err != nil {
		return fmt.Errorf("voice: op 4 rejoin: %w", err)
	}
	creds, err := awaitCredentials(ctx, c.updates, c.opts.JoinTimeout, c.creds)
	if err != nil {
		return err
	}
	c.creds = creds
	return nil
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
// Each new session gets a new DAVE session (a new MLS group membership);
// a resume keeps it.
func (c *Conn) connectNew(ctx context.Context) error {
	if err := c.newDAVESession(); err != nil {
		return err
	}
	g, err := dialGateway(ctx, c.creds.endpoint, c.opts.TLSConfig, c.opts.NetDial, -1, c.log)
	if err != nil {
		c.dropDAVESession()
		return err
	}
	tr, err := c.handshake(ctx, g)
	if err != nil {
		g.close(websocket.CloseNormalClosure)
		c.dropDAVESession()
		return err
	}
	c.gw, c.tr, c.lastSeq = g, tr, -1
	c.gwPtr.Store(g)
	c.trPtr.Store(tr)
	tr.start(c.rx)
	c.notePrivacyCode()
	return nil
}

// handshake runs Identify through Session Description on g.
func (c *Conn) handshake(ctx context.Context, g *gatewayConn) (*transport, error) {
	err := g.send(OpIdentify, identifyData{
		ServerID:               c.guildID,
		UserID:                 c.opts.UserID,
		SessionID:              c.creds.sessionID,
		Token:                  c.creds.token,
		MaxDAVEProtocolVersion: c.maxDAVEVersion(),
		Video:                  true,
		Streams:                []streamSpec{{Type: "video", RID: "100", Quality: 100}},
	})
	if err != nil {
		return nil, err
	}
	var ready readyData
	if err := c.awaitOp(ctx, g, OpReady, &ready); err != nil {
		return nil, err
	}
	mode, err := SelectMode(ready.Modes)
	if err != nil {
		return nil, err
	}
	tr, err := newTransport(c, ready, mode)
	if err != nil {
		return nil, err
	}
	ext, err := tr.discover(ctx)
	if err != nil {
		tr.close()
		return nil, err
	}
	err = g.send(OpSelectProtocol, selectProtocolData{
		Protocol: "udp",
		Data:     selectProtocolAddr{Address: ext.Addr().String(), Port: int(ext.Port()), Mode: string(mode)},
		Codecs:   ourCodecs(),
	})
	if err != nil {
		tr.close()
		return nil, err
	}
	var sd sessionDescriptionData
	if err := c.awaitOp(ctx, g, OpSessionDescription, &sd); err != nil {
		tr.close()
		return nil, err
	}
	if Mode(sd.Mode) != mode {
		tr.close()
		return nil, fmt.Errorf("voice: selected %s, session description says %q: %w", mode, sd.Mode, ErrHandshake)
	}
	key, err := sd.key()
	if err == nil {
		err = tr.setKey(key)
	}
	if err == nil {
		err = c.startDAVE(g, tr, sd.DAVEProtocolVersion)
	}
	if err != nil {
		tr.close()
		return nil, err
	}
	c.log.Info("voice connected", "mode", mode, "ssrc", ready.SSRC, "dave_protocol_version", sd.DAVEProtocolVersion)
	return tr, nil
}

// awaitOp waits (handshake timeout) for op, handling other messages on
// the way, and decodes its data into v.
func (c *Conn) awaitOp(ctx context.Context, g *gatewayConn, op Opcode, v any) error {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	for {
		m, err := g.next(ctx)
		if err != nil {
			return fmt.Errorf("voice: waiting for op %d: %w", op, err)
		}
		if m.Op != op || m.Binary != nil {
			c.handle(g, m)
			continue
		}
		if v == nil {
			return nil
		}
		return decodeData(m, v)
	}
}

// resume reconnects to the same endpoint and sends Resume (op 7) with
// the last seq seen; the server answers Resumed (op 9) and replays what
// we missed, which run then handles (Discord voice docs, "Buffered
// Resume").
func (c *Conn) resume(ctx context.Context) error {
	g, err := dialGateway(ctx, c.creds.endpoint, c.opts.TLSConfig, c.opts.NetDial, c.lastSeq, c.log)
	if err != nil {
		return err
	}
	err = g.send(OpResume, resumeData{ServerID: c.guildID, SessionID: c.creds.sessionID, Token: c.creds.token, SeqAck: c.lastSeq})
	if err == nil {
		err = c.awaitOp(ctx, g, OpResumed, nil)
	}
	if err != nil {
		c.lastSeq = g.lastSeq.Load()
		g.close(websocket.CloseNormalClosure)
		return err
	}
	c.gw = g
	c.gwPtr.Store(g)
	return nil
}

// handle applies one server message received on g.
func (c *Conn) handle(g *gatewayConn, m message) {
	if m.Binary != nil {
		c.handleDAVEBinary(g, m)
		return
	}
	switch m.Op {
	case OpSpeaking:
		var d speakingData
		if err := decodeData(m, &d); err != nil || d.UserID == "" {
			c.log.Warn("bad speaking message", "err", err)
			return
		}
		c.mapSSRC(d.UserID, Audio, d.SSRC)
		c.emit(Speaking{UserID: d.UserID, SSRC: d.SSRC, Speaking: d.Speaking != 0})
	case OpClientsConnect:
		var d clientsConnectData
		if err := decodeData(m, &d); err != nil {
			c.log.Warn("bad clients connect message", "err", err)
			return
		}
		for _, id := range d.UserIDs {
			c.emit(MemberJoined{UserID: id})
		}
		c.handleDAVEJSON(g, m)
	case OpClientDisconnect:
		var d clientDisconnectData
		if err := decodeData(m, &d); err != nil || d.UserID == "" {
			c.log.Warn("bad client disconnect message", "err", err)
			return
		}
		c.unmapUser(d.UserID)
		c.emit(MemberLeft{UserID: d.UserID})
		c.handleDAVEJSON(g, m)
	case OpVideo:
		var d videoData
		if err := decodeData(m, &d); err != nil || d.UserID == "" {
			c.log.Debug("ignoring op 12", "err", err)
			return
		}
		c.mapSSRC(d.UserID, Audio, d.AudioSSRC)
		c.mapSSRC(d.UserID, Video, d.VideoSSRC)
		for _, s := range d.Streams {
			c.mapSSRC(d.UserID, Video, s.SSRC)
		}
	case dave.OpPrepareTransition, dave.OpExecuteTransition, dave.OpPrepareEpoch:
		c.handleDAVEJSON(g, m)
	default:
		c.log.Debug("ignoring voice gateway message", "op", int(m.Op))
	}
}

func (c *Conn) mapSSRC(userID string, kind MediaKind, ssrc uint32) {
	if ssrc == 0 {
		return
	}
	c.users.Lock()
	c.ssrcs[ssrc] = ssrcOwner{userID: userID, kind: kind}
	c.users.Unlock()
	c.userGen.Add(1)
}

func (c *Conn) unmapUser(userID string) {
	c.users.Lock()
	for s, o := range c.ssrcs {
		if o.userID == userID {
			delete(c.ssrcs, s)
		}
	}
	c.users.Unlock()
	c.userGen.Add(1)
}

func (c *Conn) ssrcOwner(ssrc uint32) (ssrcOwner, bool) {
	c.users.RLock()
	defer c.users.RUnlock()
	o, ok := c.ssrcs[ssrc]
	return o, ok
}
