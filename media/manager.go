package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Peer is the signal transport of one browser: what media needs from a hub
// client.
type Peer interface {
	// ID identifies the connection (one WebSocket).
	ID() string
	// UserID is the authenticated Discord user id.
	UserID() string
	// Name is the user's display name.
	Name() string
	// Send delivers one JSON-encodable message to the browser. It must not
	// block for long; media calls it from its own goroutines, never while
	// holding a lock.
	Send(v any) error
}

// FrameKind says whether a DiscordFrame carries audio or video.
type FrameKind int

// Frame kinds.
const (
	// FrameAudio is one 20 ms Opus frame.
	FrameAudio FrameKind = iota
	// FrameVideo is one VP8 frame.
	FrameVideo
	// FrameUserLeft says the user left the voice channel (voice gateway
	// op 13, Client Disconnect); it carries no payload. Their tracks are
	// removed from every browser.
	FrameUserLeft
)

// DiscordFrame is one codec frame received from a Discord user.
type DiscordFrame struct {
	// UserID is the Discord user who sent the frame.
	UserID string
	// Kind is audio (Opus), video (VP8) or the user leaving.
	Kind FrameKind
	// Payload is the codec frame; the receiver of the frame owns it.
	Payload []byte
	// Missing is how many frames of this user were lost before this one.
	Missing int
	// Keyframe marks a VP8 keyframe.
	Keyframe bool
	// Received is when the frame reached the bridge (the voice client's
	// UDP read); zero means when media takes it from Frames.
	Received time.Time
}

// DiscordLink is the Discord leg of a room: what media needs from a voice
// connection.
type DiscordLink interface {
	// SendOpus sends one 20 ms Opus frame toward Discord; the link keeps
	// its own sequence numbers, timestamps and silence frames.
	SendOpus(frame []byte) error
	// SendVP8 sends one VP8 frame; it may fail (Discord refuses bot video),
	// after which media stops offering video to this link.
	SendVP8(frame []byte, keyframe bool) error
	// Frames delivers what Discord users send; it is closed when the link
	// ends.
	Frames() <-chan DiscordFrame
	// Close leaves the voice channel.
	Close(ctx context.Context) error
}

// Joiner connects the bot to a Discord voice channel.
type Joiner interface {
	// Join makes the bot join channelID of guildID and returns the live
	// link; ctx bounds the join and is cancelled when the room lets go.
	Join(ctx context.Context, guildID, channelID string) (DiscordLink, error)
}

// Options configures a Manager. Joiner and GuildID are required; everything
// else has a default.
type Options struct {
	// Joiner joins the bot to a room's voice channel.
	Joiner Joiner
	// GuildID is the Discord server whose voice channels are rooms.
	GuildID string
	// RoomExists reports whether a channel id is a room browsers may join.
	// Nil accepts every well-formed channel id.
	RoomExists func(channelID string) bool

	// ICEServers are handed to browsers in the "joined" message.
	ICEServers []webrtc.ICEServer
	// ICEUDPListen, when set ("0.0.0.0:3478", "127.0.0.1:0"), serves every
	// browser over one UDP socket (ICE_UDP_PORT). Empty: an ephemeral port
	// per browser.
	ICEUDPListen string
	// ICETCPListen, when set, also accepts media over TCP on that address
	// (ICE-TCP, RFC 6544 passive candidates) for browsers whose network
	// blocks UDP.
	ICETCPListen string
	// ICEServersFor, when set, gives the ICE servers for one browser
	// (per-user TURN credentials); they follow ICEServers.
	ICEServersFor func(userID string) []webrtc.ICEServer
	// PublicIPs replace the host candidates' addresses (ICE_PUBLIC_IP),
	// for a server behind 1:1 NAT.
	PublicIPs []string
	// IPFilter and InterfaceFilter limit candidate gathering (tests keep it
	// on loopback).
	IPFilter        func(net.IP) bool
	InterfaceFilter func(string) bool
	// NetworkTypes limits candidate networks; default udp4 and udp6, and
	// tcp4 and tcp6 with ICETCPListen.
	NetworkTypes []webrtc.NetworkType
	// IncludeLoopback gathers loopback candidates (tests).
	IncludeLoopback bool

	// Grace is how long the bot stays in a channel after the last browser
	// left; default 30 s.
	Grace time.Duration
	// ICEFailTimeout is how long a browser may stay ICE-disconnected before
	// it is removed; default 15 s.
	ICEFailTimeout time.Duration
	// RejoinBackoff is the first delay before rejoining a failed link; it
	// doubles up to 30 s. Default 1 s.
	RejoinBackoff time.Duration

	// Logger receives the manager's logs; default slog.Default().
	Logger *slog.Logger
	// Publish receives room events (see the Event constants) with a
	// ParticipantEvent payload. It must not block for long.
	Publish func(event string, payload any)
	// MemberName names a Discord user for participant lists.
	MemberName func(userID string) string
	// ObserveDiscordAudio, when set, is called each time a packet of a
	// Discord user's audio has been handed to a browser's connection
	// (pion's SRTP write to the socket), with the time since the frame
	// reached the bridge (DiscordFrame.Received): the latency the bridge
	// adds on the Discord-to-browser path. It runs on the browser's writer
	// goroutine for every packet, so it must be cheap and never block.
	ObserveDiscordAudio func(sinceReceived time.Duration)
}

const (
	defaultGrace          = 30 * time.Second
	defaultICEFailTimeout = 15 * time.Second
	defaultRejoinBackoff  = time.Second
	maxRejoinBackoff      = 30 * time.Second
	linkCloseTimeout      = 5 * time.Second
)

// Manager owns all rooms and browser sessions.
type Manager struct {
	opts Options
	log  *slog.Logger
	eng  *engine

	mu          sync.Mutex
	closed      bool
	rooms       map[string]*room    // by channel id
	byPeer      map[string]*session // by Peer.ID()
	byUser      map[string]*session // by Peer.UserID()
	ended       map[string]bool     // channels whose room ended
	guildHolder string              // room holding the guild's voice link
	nextID      uint64

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewManager validates opts and builds the WebRTC engine.
func NewManager(opts Options) (*Manager, error) {
	if opts.Joiner == nil {
		return nil, fmt.Errorf("%w: Joiner is required", ErrInvalidOptions)
	}
	if !isSnowflake(opts.GuildID) {
		return nil, fmt.Errorf("%w: GuildID %q is not a Discord id", ErrInvalidOptions, opts.GuildID)
	}
	if opts.Grace < 0 || opts.ICEFailTimeout < 0 || opts.RejoinBackoff < 0 {
		return nil, fmt.Errorf("%w: durations must not be negative", ErrInvalidOptions)
	}
	if opts.Grace == 0 {
		opts.Grace = defaultGrace
	}
	if opts.ICEFailTimeout == 0 {
		opts.ICEFailTimeout = defaultICEFailTimeout
	}
	if opts.RejoinBackoff == 0 {
		opts.RejoinBackoff = defaultRejoinBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Publish == nil {
		opts.Publish = func(string, any) {}
	}
	if opts.MemberName == nil {
		opts.MemberName = func(string) string { return "" }
	}
	log := opts.Logger.With("component", "media", "guild", opts.GuildID)
	eng, err := newEngine(&opts, log)
	if err != nil {
		return nil, err
	}
	return &Manager{
		opts:   opts,
		log:    log,
		eng:    eng,
		rooms:  make(map[string]*room),
		byPeer: make(map[string]*session),
		byUser: make(map[string]*session),
		ended:  make(map[string]bool),
		stop:   make(chan struct{}),
	}, nil
}

// HandleSignal applies one signaling message from a browser. Problems are
// answered with an "error" message to that browser only.
func (m *Manager) HandleSignal(ctx context.Context, p Peer, msgType string, raw json.RawMessage) {
	msg, err := decodeClientMessage(msgType, raw)
	if err != nil {
		sendTo(p, newErrorMessage(err))
		return
	}
	if msg.Type == msgJoin {
		if err := msg.validate(); err != nil {
			sendTo(p, newErrorMessage(err))
			return
		}
		if err := m.join(ctx, p, msg.RoomID); err != nil {
			sendTo(p, newErrorMessage(err))
		}
		return
	}
	m.mu.Lock()
	s, closed := m.byPeer[p.ID()], m.closed
	m.mu.Unlock()
	switch {
	case closed:
		sendTo(p, newErrorMessage(ErrClosed))
		return
	case s == nil:
		sendTo(p, newErrorMessage(fmt.Errorf("%w: send {\"type\":\"join\",\"roomId\":...} first", ErrNotJoined)))
		return
	case msg.RoomID != "" && msg.RoomID != s.room.id:
		sendTo(p, newErrorMessage(fmt.Errorf("%w: you joined room %s, not %s", ErrWrongRoom, s.room.id, msg.RoomID)))
		return
	}
	if err := msg.validate(); err != nil {
		sendTo(p, newErrorMessage(err))
		return
	}
	switch msg.Type {
	case msgLeave:
		m.removeSession(s, nil)
	case msgMute:
		s.room.setMuted(s, *msg.Muted)
	case msgCamera:
		s.room.setCamera(s, *msg.On)
	default: // offer, answer, candidate, restart-ice
		if !s.post(msg) {
			sendTo(p, newErrorMessage(fmt.Errorf("%w: %s dropped, slow down", ErrBusy, msg.Type)))
		}
	}
}

// PeerClosed removes the browser whose socket went away.
func (m *Manager) PeerClosed(p Peer) {
	m.mu.Lock()
	s := m.byPeer[p.ID()]
	m.mu.Unlock()
	if s != nil {
		m.removeSession(s, nil)
	}
}

// RoomEnded ends the room of a deleted Discord channel: its browsers get a
// room_ended error, the bot leaves, and later joins are refused.
func (m *Manager) RoomEnded(channelID string) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.ended[channelID] = true
	r := m.rooms[channelID]
	m.mu.Unlock()
	if r == nil {
		return
	}
	for _, s := range r.sessionList() {
		m.removeSession(s, fmt.Errorf("%w: the Discord channel %s was deleted", ErrRoomEnded, channelID))
	}
	r.shutdown()
	m.dropRoomIfIdle(r)
}

// SetPrivacyCode records the privacy code of the voice connection in
// channelID (DAVE's displayable code, or "" when the call is not end-to-end
// encrypted) and, when it changed, sends {"type":"privacy"} to every browser
// of that room; browsers joining later get it in "joined". A channel with
// no room (no browsers and no voice link) has nothing to record it for. The
// room clears the code when its voice connection ends. Calls for one
// channel must come in order, from one goroutine.
func (m *Manager) SetPrivacyCode(channelID, code string) {
	m.mu.Lock()
	r := m.rooms[channelID]
	m.mu.Unlock()
	if r != nil {
		r.setPrivacy(code)
	}
}

// Close ends every session and Discord link and waits for all goroutines.
// It is idempotent; ctx bounds the wait.
func (m *Manager) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		close(m.stop)
		sessions := make([]*session, 0, len(m.byPeer))
		for _, s := range m.byPeer {
			sessions = append(sessions, s)
		}
		rooms := make([]*room, 0, len(m.rooms))
		for _, r := range m.rooms {
			rooms = append(rooms, r)
		}
		m.mu.Unlock()
		for _, s := range sessions {
			m.removeSession(s, ErrClosed)
		}
		for _, r := range rooms {
			r.shutdown()
		}
		done := make(chan struct{})
		go func() {
			m.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			m.closeErr = fmt.Errorf("media: close: %w", ctx.Err())
			return
		}
		if err := m.eng.close(); err != nil {
			m.closeErr = fmt.Errorf("media: close UDP mux: %w", err)
		}
	})
	return m.closeErr
}

// join creates a session for p in room roomID, replacing p's or the user's
// previous session.
func (m *Manager) join(ctx context.Context, p Peer, roomID string) error {
	if m.opts.RoomExists != nil && !m.opts.RoomExists(roomID) {
		m.mu.Lock()
		ended := m.ended[roomID]
		m.mu.Unlock()
		if ended {
			return fmt.Errorf("%w: the Discord channel %s was deleted", ErrRoomEnded, roomID)
		}
		return fmt.Errorf("%w: no voice channel %s in this server", ErrUnknownRoom, roomID)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if m.ended[roomID] {
		m.mu.Unlock()
		return fmt.Errorf("%w: the Discord channel %s was deleted", ErrRoomEnded, roomID)
	}
	oldPeer, oldUser := m.byPeer[p.ID()], m.byUser[p.UserID()]
	m.mu.Unlock()
	if oldPeer != nil {
		m.removeSession(oldPeer, nil)
	}
	if oldUser != nil && oldUser != oldPeer {
		m.removeSession(oldUser, fmt.Errorf("%w: you joined again from another tab or device", ErrSessionReplaced))
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.nextID++
	id := "p" + strconv.FormatUint(m.nextID, 10)
	r := m.rooms[roomID]
	if r == nil {
		r = newRoom(m, roomID)
		m.rooms[roomID] = r
	}
	r.mu.Lock()
	r.pending++
	r.mu.Unlock()
	m.mu.Unlock()

	s, err := newSession(m, r, p, id)
	if err != nil {
		r.mu.Lock()
		r.pending--
		r.mu.Unlock()
		m.dropRoomIfIdle(r)
		return fmt.Errorf("%w: %w", ErrInternal, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		r.mu.Lock()
		r.pending--
		r.mu.Unlock()
		s.close()
		return ErrClosed
	}
	m.byPeer[p.ID()] = s
	m.byUser[p.UserID()] = s
	m.mu.Unlock()
	r.addSession(s)
	return nil
}

// removeSession takes s out of its room and closes it. A non-nil reason is
// sent to the browser as an error first.
func (m *Manager) removeSession(s *session, reason error) {
	m.mu.Lock()
	if m.byPeer[s.sig.ID()] == s {
		delete(m.byPeer, s.sig.ID())
	}
	if m.byUser[s.userID] == s {
		delete(m.byUser, s.userID)
	}
	m.mu.Unlock()
	if !s.markRemoved() {
		return
	}
	if reason != nil {
		sendTo(s.sig, newErrorMessage(reason))
	}
	s.room.removeSession(s)
	s.close()
}

// removeSessionAsync removes s from a goroutine the manager owns; used by
// the session's own goroutines, which cannot wait for themselves.
func (m *Manager) removeSessionAsync(s *session, reason error) {
	m.goTracked(func() { m.removeSession(s, reason) })
}

// goTracked runs fn on a goroutine tracked by the manager's WaitGroup,
// unless the manager is closed.
func (m *Manager) goTracked(fn func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
	return true
}

// claimGuild gives room id the guild's voice link if nobody holds it.
func (m *Manager) claimGuild(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	if m.guildHolder == "" {
		m.guildHolder = id
	}
	return m.guildHolder == id
}

// releaseGuild lets go of the guild's voice link and offers it to another
// room that has browsers.
func (m *Manager) releaseGuild(id string) {
	m.mu.Lock()
	if m.guildHolder != id {
		m.mu.Unlock()
		return
	}
	m.guildHolder = ""
	var next *room
	if !m.closed {
		for _, r := range m.rooms {
			if r.id != id && r.hasSessions() {
				next = r
				break
			}
		}
	}
	m.mu.Unlock()
	if next != nil {
		next.ensureLink()
	}
}

// dropRoomIfIdle forgets r once it has no browsers and no link.
func (m *Manager) dropRoomIfIdle(r *room) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rooms[r.id] == r && r.idle() {
		delete(m.rooms, r.id)
	}
}

// sendTo sends v to p; a failing socket is the hub's to report.
func sendTo(p Peer, v any) {
	_ = p.Send(v)
}

// errIsClosed reports errors that only mean "this connection is closing".
func errIsClosed(err error) bool {
	return err != nil && (errors.Is(err, webrtc.ErrConnectionClosed))
}
