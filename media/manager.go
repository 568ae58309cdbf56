package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

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
	// MayJoin reports whether browser p may join a room of guildID (its
	// token allows that guild); a refused join gets error "forbidden" and
	// nothing of the room. Nil allows every join.
	MayJoin func(p Peer, guildID string) bool
	// GuildOf says which guild a room (voice channel) belongs to, for a
	// bridge that serves several guilds; nil, or "", means GuildID. Rooms,
	// links and the line for bots are kept per guild.
	GuildOf func(channelID string) string
	// Links says how many rooms of a guild may hold a Discord voice link
	// at once: one per bot of the guild, since Discord lets a bot be in
	// one voice channel per guild. Nil means 1. When it changes, call
	// LinksChanged. Rooms beyond it wait, longest waiting first.
	Links func(guildID string) int
	// RoomName names a room (its Discord channel) in the words browsers
	// read while they wait for a bot; nil or "" uses the channel id.
	RoomName func(channelID string) string

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

	// Logger receives the manager's logs; default: discarded.
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

	// Mix, when its NewEncoder is set, mixes the browsers' audio into
	// the one stream Discord hears (mix.go); otherwise the loudest
	// browser is forwarded untranscoded.
	Mix MixOptions
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
	// iceFailures counts browsers whose connection failed or stayed
	// disconnected past ICEFailTimeout (Stats).
	iceFailures atomic.Uint64
	eng         *engine
	mix         mixConfig // used when opts.Mix.NewEncoder is set

	// mu guards the registry: which rooms and sessions exist, and which
	// room holds the guild's voice link. A room's own state is its
	// goroutine's (room.go); nothing is called and nothing sent while mu
	// is held.
	mu         sync.Mutex
	closed     bool
	rooms      map[string]*room           // by channel id
	byPeer     map[string]*session        // by Peer.ID()
	byUser     map[string]*session        // by Peer.UserID()
	ended      map[string]bool            // channels whose room ended (the latest maxEndedRooms)
	endedOrder []string                   // ended's keys, oldest first
	holders    map[string]map[string]bool // by guild: rooms holding one of its voice links
	waiting    map[string][]string        // by guild: rooms waiting for a link, longest waiting first
	nextID     uint64

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
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Publish == nil {
		opts.Publish = func(string, any) {}
	}
	if opts.MemberName == nil {
		opts.MemberName = func(string) string { return "" }
	}
	var mix mixConfig
	if opts.Mix.NewEncoder != nil {
		var err error
		if mix, err = opts.Mix.validate(); err != nil {
			return nil, err
		}
	}
	log := opts.Logger.With("component", "media") // rooms add their guild_id
	eng, err := newEngine(&opts, log)
	if err != nil {
		return nil, err
	}
	return &Manager{
		opts:    opts,
		log:     log,
		eng:     eng,
		mix:     mix,
		rooms:   make(map[string]*room),
		byPeer:  make(map[string]*session),
		byUser:  make(map[string]*session),
		ended:   make(map[string]bool),
		holders: make(map[string]map[string]bool),
		waiting: make(map[string][]string),
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
		s.room.post(muteAction{s, *msg.Muted})
	case msgCamera:
		s.room.post(cameraAction{s, *msg.On})
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

// maxEndedRooms bounds how many ended channels the manager remembers to
// refuse joins with room_ended: a bridge that runs for months ends rooms
// without end, and a deleted channel's id is never reused.
const maxEndedRooms = 4096

// rememberEndedLocked marks channelID ended, forgetting the oldest beyond
// maxEndedRooms. Called with m.mu held.
func (m *Manager) rememberEndedLocked(channelID string) {
	if m.ended[channelID] {
		return
	}
	m.ended[channelID] = true
	m.endedOrder = append(m.endedOrder, channelID)
	if len(m.endedOrder) > maxEndedRooms {
		delete(m.ended, m.endedOrder[0])
		m.endedOrder = m.endedOrder[1:]
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
	m.rememberEndedLocked(channelID)
	r := m.rooms[channelID]
	var sessions []*session
	for _, s := range m.byPeer {
		if s.room == r {
			sessions = append(sessions, s)
		}
	}
	m.mu.Unlock()
	if r == nil {
		return
	}
	for _, s := range sessions {
		m.removeSession(s, fmt.Errorf("%w: the Discord channel %s was deleted", ErrRoomEnded, channelID))
	}
	if r.post(shutdownAction{}) {
		<-r.done
	}
}

// Close ends every session and Discord link and waits for all goroutines.
// It is idempotent; ctx bounds the wait.
func (m *Manager) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
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
			r.post(shutdownAction{})
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
	if g := m.guildOf(roomID); m.opts.MayJoin != nil && !m.opts.MayJoin(p, g) {
		return fmt.Errorf("%w: your token does not allow the Discord server %s of room %s: its guilds claim must list it", ErrForbidden, g, roomID)
	}
	m.mu.Lock()
	if err := m.refuseLocked(roomID); err != nil {
		m.mu.Unlock()
		return err
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
	if err := m.refuseLocked(roomID); err != nil {
		m.mu.Unlock()
		return err
	}
	m.nextID++
	id := "p" + strconv.FormatUint(m.nextID, 10)
	r := m.rooms[roomID]
	if r == nil {
		r = newRoom(m, roomID)
		m.rooms[roomID] = r
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			r.run()
		}()
	}
	r.joining++
	m.mu.Unlock()

	s, err := newSession(m, r, p, id)
	m.mu.Lock()
	r.joining--
	if err == nil {
		err = m.refuseLocked(roomID)
		if err == nil {
			m.byPeer[p.ID()] = s
			m.byUser[p.UserID()] = s
		}
	}
	m.mu.Unlock()
	if err != nil {
		r.post(wakeAction{}) // the room may be idle now
		if s != nil {
			s.close()
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrRoomEnded) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrInternal, err)
	}
	a := &joinAction{s: s, done: make(chan struct{})}
	if !r.await(context.WithoutCancel(ctx), a, a.done) || !a.ok {
		// The room shut down meanwhile: the manager closed, or the
		// channel was deleted.
		m.removeSession(s, nil)
		m.mu.Lock()
		defer m.mu.Unlock()
		if err := m.refuseLocked(roomID); err != nil {
			return err
		}
		return ErrClosed
	}
	return nil
}

// refuseLocked says why no one may join roomID now, if so. Called with
// m.mu held.
func (m *Manager) refuseLocked(roomID string) error {
	switch {
	case m.closed:
		return ErrClosed
	case m.ended[roomID]:
		return fmt.Errorf("%w: the Discord channel %s was deleted", ErrRoomEnded, roomID)
	}
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
	a := &leaveAction{s: s, reason: reason, done: make(chan struct{})}
	s.room.await(context.Background(), a, a.done)
	s.close()
}

// removeSessionAsync removes s from a goroutine the manager owns; used by
// the session's own goroutines, which cannot wait for themselves.
func (m *Manager) removeSessionAsync(s *session, reason error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return // Close removes it
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.removeSession(s, reason)
	}()
}

// guildOf is the guild of room (channel) id.
func (m *Manager) guildOf(id string) string {
	if m.opts.GuildOf != nil {
		if g := m.opts.GuildOf(id); g != "" {
			return g
		}
	}
	return m.opts.GuildID
}

// linkCapacity is how many rooms of guild may hold a voice link now.
func (m *Manager) linkCapacity(guild string) int {
	if m.opts.Links == nil {
		return 1
	}
	return m.opts.Links(guild)
}

// claimGuild gives room id one of its guild's voice links if one is free
// and no room of the guild has waited longer; otherwise id waits in line,
// and the second result names the rooms that hold the guild's links.
func (m *Manager) claimGuild(guild, id string) (bool, []string) {
	capacity := m.linkCapacity(guild)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, nil
	}
	held := m.holders[guild]
	if held[id] {
		return true, nil
	}
	line := m.waiting[guild]
	at := slices.Index(line, id)
	if at < 0 {
		line = append(line, id)
		at = len(line) - 1
	}
	if at < capacity-len(held) {
		m.waiting[guild] = slices.Delete(line, at, at+1)
		if held == nil {
			held = make(map[string]bool)
			m.holders[guild] = held
		}
		held[id] = true
		return true, nil
	}
	m.waiting[guild] = line
	busy := make([]string, 0, len(held))
	for h := range held {
		busy = append(busy, h)
	}
	slices.Sort(busy)
	return false, busy
}

// releaseGuild lets go of room id's voice link, or its place in line, and
// offers the free links to the waiting rooms; the longest waiting take
// them.
func (m *Manager) releaseGuild(guild, id string) {
	m.mu.Lock()
	held := m.holders[guild][id]
	delete(m.holders[guild], id)
	if at := slices.Index(m.waiting[guild], id); at >= 0 {
		m.waiting[guild] = slices.Delete(m.waiting[guild], at, at+1)
	}
	m.mu.Unlock()
	if held {
		m.LinksChanged()
	}
}

// Stats are a Manager's counters since NewManager.
type Stats struct {
	// ICEFailures counts browsers removed because their connection
	// failed (ICE or DTLS) or stayed disconnected past ICEFailTimeout.
	ICEFailures uint64
}

// Stats returns the manager's counters.
func (m *Manager) Stats() Stats { return Stats{ICEFailures: m.iceFailures.Load()} }

// LinksChanged tells the rooms waiting for a voice link that one may be
// free: a room let go of one, or Options.Links grew (a bot became ready).
func (m *Manager) LinksChanged() {
	m.mu.Lock()
	var waiting []*room
	if !m.closed {
		for _, line := range m.waiting {
			for _, id := range line {
				if r := m.rooms[id]; r != nil {
					waiting = append(waiting, r)
				}
			}
		}
	}
	m.mu.Unlock()
	for _, r := range waiting {
		r.post(tryLinkAction{})
	}
}

// retireRoom forgets r, which has no browsers and no link, unless a join
// is on its way to it; it reports whether r is forgotten (its goroutine
// then ends). Called by r's goroutine.
func (m *Manager) retireRoom(r *room) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.joining > 0 || !r.box.closeIfEmpty() {
		return false
	}
	if m.rooms[r.id] == r {
		delete(m.rooms, r.id)
	}
	return true
}

// forgetRoom forgets r, which was shut down. Called by r's goroutine.
func (m *Manager) forgetRoom(r *room) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.box.close()
	if m.rooms[r.id] == r {
		delete(m.rooms, r.id)
	}
}

// errIsClosed reports errors that only mean "this connection is closing".
func errIsClosed(err error) bool {
	return err != nil && (errors.Is(err, webrtc.ErrConnectionClosed))
}
