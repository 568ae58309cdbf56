package voiceemu

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Options configures a Server. The zero value is a Discord-like server.
type Options struct {
	// Modes are the transport encryption modes offered in Ready, in
	// order. Default: aead_aes256_gcm_rtpsize,
	// aead_xchacha20_poly1305_rtpsize. The legacy xsalsa20_poly1305,
	// xsalsa20_poly1305_suffix and xsalsa20_poly1305_lite may be offered
	// to test a client against an old server.
	Modes []string
	// RequireDAVE closes clients whose Identify has
	// max_dave_protocol_version < 1 with 4017, as Discord has done for
	// non-Stage calls since March 2026.
	RequireDAVE bool
	// DisableDAVE makes the server offer DAVE protocol version 0
	// (transport encryption only) to every client, as Discord did before
	// DAVE. By default a channel runs DAVE v1 while every participant
	// supports it (clients whose Identify has max_dave_protocol_version
	// >= 1, and all simulated members), and downgrades to version 0 while
	// a client without DAVE is in it (unless RequireDAVE keeps such
	// clients out). DisableDAVE and RequireDAVE exclude each other.
	DisableDAVE bool
	// TransitionTimeout is how long the server waits for Ready for
	// Transition (op 23) from the members of a DAVE transition before it
	// executes the transition anyway (op 22). Default 2 s, Discord's
	// figure in the DAVE whitepaper ("Member Remove").
	TransitionTimeout time.Duration
	// HeartbeatInterval is sent in Hello. Default 13750 ms.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long a connection may go without a
	// heartbeat before it is closed with 4009, and how long a session
	// without a connection stays resumable. Default 2 × HeartbeatInterval.
	HeartbeatTimeout time.Duration
	// ResumeBuffer is the number of sequenced messages kept per session
	// for a v8 resume. Default 256.
	ResumeBuffer int
	// RTCPInterval is how often each client gets RTCP sender and receiver
	// reports. Default 5 s.
	RTCPInterval time.Duration
	// Seed seeds the random faults (loss, reorder, duplication); 0 picks
	// a random seed.
	Seed uint64
	// Logger receives the server's logs. Default: discard.
	Logger *slog.Logger
}

const (
	defaultHeartbeatInterval = 13750 * time.Millisecond
	defaultResumeBuffer      = 256
	defaultRTCPInterval      = 5 * time.Second
	defaultTransitionTimeout = 2 * time.Second
	// serverSSRC is the sender SSRC of the receiver reports the server
	// sends; it is outside the range handed to sessions.
	serverSSRC = 0x5EF0_0001
)

func (o *Options) withDefaults() (Options, error) {
	out := *o
	if len(out.Modes) == 0 {
		out.Modes = slices.Clone(defaultModes)
	}
	for _, m := range out.Modes {
		if !knownMode(m) {
			return out, fmt.Errorf("%w: transport mode %q is not one of %s, %s, %s, %s, %s",
				ErrInvalidOptions, m, ModeAES256GCM, ModeXChaCha20Poly1305, ModeXSalsa20Poly1305, ModeXSalsa20Suffix, ModeXSalsa20Lite)
		}
	}
	if out.HeartbeatInterval < 0 || out.HeartbeatTimeout < 0 || out.ResumeBuffer < 0 || out.RTCPInterval < 0 || out.TransitionTimeout < 0 {
		return out, fmt.Errorf("%w: durations and ResumeBuffer must not be negative", ErrInvalidOptions)
	}
	if out.RequireDAVE && out.DisableDAVE {
		return out, fmt.Errorf("%w: RequireDAVE and DisableDAVE exclude each other (a server that requires DAVE must offer it)", ErrInvalidOptions)
	}
	if out.TransitionTimeout == 0 {
		out.TransitionTimeout = defaultTransitionTimeout
	}
	if out.HeartbeatInterval == 0 {
		out.HeartbeatInterval = defaultHeartbeatInterval
	}
	if out.HeartbeatTimeout == 0 {
		out.HeartbeatTimeout = 2 * out.HeartbeatInterval
	}
	if out.ResumeBuffer == 0 {
		out.ResumeBuffer = defaultResumeBuffer
	}
	if out.RTCPInterval == 0 {
		out.RTCPInterval = defaultRTCPInterval
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out, nil
}

// Server is an emulated Discord voice server: a voice gateway on
// wss://127.0.0.1:PORT and a UDP media socket on 127.0.0.1.
type Server struct {
	opts      Options
	log       *slog.Logger
	clientTLS *tls.Config
	ln        net.Listener
	http      *http.Server
	udp       *net.UDPConn
	udpPort   int
	faults    faults
	ackOn     atomic.Bool
	unknown   atomic.Int64 // datagrams from no known session
	plaintext atomic.Int64 // non-DAVE Opus frames from participants bound to DAVE

	mu          sync.Mutex
	closed      bool
	allocations map[string]*allocation // by token
	released    map[string]bool        // tokens of released or replaced allocations
	sessions    map[string]*session    // by token
	bySSRC      map[uint32]*session
	ended       []SessionStats     // counters of sessions that have ended, newest last
	members     map[string]*Member // by guild/user
	calls       map[string]*call   // DAVE state by guild/channel
	conns       map[*wsConn]struct{}
	nextSSRC    uint32

	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// allocation is what Allocate hands out: the right to identify once the
// bot has the token.
type allocation struct {
	guildID, channelID, userID, sessionID, token string
	// stale: the voice session ended with 4006 or 4009, which makes it
	// invalid: an Identify with sessionID gets 4006 until the main gateway
	// gives the user a new voice session id (Renew).
	stale bool
}

// Start starts a server on 127.0.0.1 ports chosen by the system.
func Start(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cert, clientTLS, err := selfSignedCert()
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("voiceemu: udp listen: %w", err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		_ = udp.Close()
		return nil, fmt.Errorf("voiceemu: tcp listen: %w", err)
	}
	s := &Server{
		opts:        o,
		log:         o.Logger.With("component", "voiceemu"),
		clientTLS:   clientTLS,
		ln:          tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		udp:         udp,
		udpPort:     udp.LocalAddr().(*net.UDPAddr).Port,
		allocations: map[string]*allocation{},
		released:    map[string]bool{},
		sessions:    map[string]*session{},
		bySSRC:      map[uint32]*session{},
		members:     map[string]*Member{},
		calls:       map[string]*call{},
		conns:       map[*wsConn]struct{}{},
		nextSSRC:    1000,
		stop:        make(chan struct{}),
	}
	s.faults.init(o.Seed)
	s.ackOn.Store(true)
	s.http = &http.Server{
		Handler:           http.HandlerFunc(s.serveWS),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("voice gateway stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.readUDP()
	}()
	go func() {
		defer s.wg.Done()
		s.housekeeping()
	}()
	s.log.Info("voice server started", "endpoint", s.Endpoint(), "udp", s.udpPort, "modes", o.Modes)
	return s, nil
}

// Endpoint is the voice gateway's host:port without scheme, the form of
// VOICE_SERVER_UPDATE's endpoint.
func (s *Server) Endpoint() string {
	return s.ln.Addr().String()
}

// TLSConfig returns a client TLS configuration that trusts the server's
// self-signed certificate.
func (s *Server) TLSConfig() *tls.Config {
	return s.clientTLS.Clone()
}

// Close stops the server: it closes every voice websocket with 1001 (going
// away), stops the simulated members and waits for every goroutine. It is
// idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*wsConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		members := make([]*Member, 0, len(s.members))
		for _, m := range s.members {
			members = append(members, m)
		}
		s.mu.Unlock()
		close(s.stop)
		_ = s.http.Close() // closes the listener; hijacked websockets are ours
		for _, c := range conns {
			c.closeWith(websocket.CloseGoingAway)
		}
		for _, m := range members {
			m.stopOnce.Do(func() { close(m.stop) })
		}
		_ = s.udp.Close()
		s.wg.Wait()
		s.log.Info("voice server closed")
	})
}

// Allocate reserves a voice session for a user joining a channel, as
// Discord does before sending VOICE_SERVER_UPDATE. The endpoint and token
// go into that event; sessionID is the user's voice session_id from
// VOICE_STATE_UPDATE. A new allocation for the same guild and user
// replaces the previous one, whose token then fails with 4006, and closes
// the user's live session with 4014, as Discord does when it moves a user
// to another voice server (a VOICE_SERVER_UPDATE follows).
func (s *Server) Allocate(guildID, channelID, userID, sessionID string) (endpoint, token string, err error) {
	if !isSnowflake(guildID) || !isSnowflake(channelID) || !isSnowflake(userID) || sessionID == "" {
		return "", "", fmt.Errorf("%w: Allocate needs guild, channel and user ids that are Discord snowflakes (decimal uint64) and a session id (got %q, %q, %q, %q)",
			ErrInvalidOptions, guildID, channelID, userID, sessionID)
	}
	token, err = randomHex(16)
	if err != nil {
		return "", "", err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", "", ErrClosed
	}
	for t, a := range s.allocations {
		if a.guildID == guildID && a.userID == userID {
			delete(s.allocations, t)
			s.released[t] = true
		}
	}
	s.allocations[token] = &allocation{guildID: guildID, channelID: channelID, userID: userID, sessionID: sessionID, token: token}
	var moved []*session
	for _, ss := range s.sessions {
		if ss.guildID == guildID && ss.userID == userID {
			moved = append(moved, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range moved {
		s.endSession(ss, 4014)
	}
	return s.Endpoint(), token, nil
}

// Renew gives a user's allocation in a guild a new voice session id, as
// the main gateway does when the user repeats a join (op 4) for the
// channel it is in: Discord then sends only VOICE_STATE_UPDATE, with the
// new id, and no VOICE_SERVER_UPDATE, so the token stays. A session made
// stale by 4006 or 4009 becomes usable again under the new id.
func (s *Server) Renew(guildID, userID, sessionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.allocations {
		if a.guildID == guildID && a.userID == userID {
			a.sessionID, a.stale = sessionID, false
		}
	}
	for _, ss := range s.sessions {
		if ss.guildID == guildID && ss.userID == userID {
			ss.sessionID = sessionID
		}
	}
}

// invalidate ends a session with 4006 or 4009 and makes its voice
// session id unusable (see allocation.stale).
func (s *Server) invalidate(ss *session, code int) {
	s.mu.Lock()
	if a := s.allocations[ss.token]; a != nil && a.sessionID == ss.sessionID {
		a.stale = true
	}
	s.mu.Unlock()
	s.endSession(ss, code)
}

// Release ends a user's voice allocation in a guild (the user left voice):
// a live session is closed with 4014 and the others in the channel get
// Client Disconnect (op 13).
func (s *Server) Release(guildID, userID string) {
	s.mu.Lock()
	var ended []*session
	for t, a := range s.allocations {
		if a.guildID == guildID && a.userID == userID {
			delete(s.allocations, t)
			s.released[t] = true
		}
	}
	for _, ss := range s.sessions {
		if ss.guildID == guildID && ss.userID == userID {
			ended = append(ended, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range ended {
		s.endSession(ss, 4014)
	}
}

// MemberVoiceState tells the voice server where a user's voice state now
// points (channelID "" for none). A live session of that user in another
// channel of the guild is disconnected with 4014, as when Discord moves or
// disconnects a member.
func (s *Server) MemberVoiceState(guildID, userID, channelID string) {
	s.mu.Lock()
	var ended []*session
	for _, ss := range s.sessions {
		if ss.guildID == guildID && ss.userID == userID && ss.channelID != channelID {
			ended = append(ended, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range ended {
		s.endSession(ss, 4014)
	}
}

// DropSockets closes the TCP connection under every voice websocket
// without a close frame. Sessions stay and can be resumed.
func (s *Server) DropSockets() {
	s.mu.Lock()
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.abort()
	}
}

// Blackhole makes the voice websocket of every session of a user a real
// zombie: nothing the server sends arrives, nothing the client sends gets
// through (heartbeats go unacknowledged, its close frame is lost), and the
// TCP connection stays open until the client drops it. The session stays
// and buffers its messages, so a client that notices by its heartbeat
// resumes and gets them by replay.
func (s *Server) Blackhole(userID string) {
	s.mu.Lock()
	var conns []*wsConn
	for _, ss := range s.sessions {
		if ss.userID != userID {
			continue
		}
		ss.mu.Lock()
		if ss.conn != nil {
			conns = append(conns, ss.conn)
		}
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.blackholed.Store(true)
	}
}

// SetHeartbeatACK turns Heartbeat ACK (op 6) on or off, to make a client
// see a zombie connection.
func (s *Server) SetHeartbeatACK(enabled bool) {
	s.ackOn.Store(enabled)
}

// CloseSession closes the voice websocket of every session of a user with
// code. After a resumable code (4015, or a code below 4000) the session
// stays and can be resumed; after any other code it ends, and 4006 or 4009
// also invalidate the voice session id (see Renew).
func (s *Server) CloseSession(userID string, code int) {
	s.mu.Lock()
	var found []*session
	for _, ss := range s.sessions {
		if ss.userID == userID {
			found = append(found, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range found {
		if closeCodeResumable(code) {
			if c := ss.detach(nil); c != nil {
				c.closeWith(code)
			}
			continue
		}
		if code == 4006 || code == 4009 {
			s.invalidate(ss, code)
			continue
		}
		s.endSession(ss, code)
	}
}

// SessionInfo describes one participant of the server.
type SessionInfo struct {
	UserID, GuildID, ChannelID string
	// Mode is the selected transport mode; "" before Select Protocol and
	// for simulated members.
	Mode      string
	SSRC      uint32
	VideoSSRC uint32
	// Connected reports a live websocket (always true for simulated
	// members).
	Connected bool
	// Simulated marks members added with AddMember.
	Simulated bool
}

// Sessions lists the identified sessions and the simulated members.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	var out []SessionInfo
	for _, m := range s.members {
		out = append(out, SessionInfo{UserID: m.userID, GuildID: m.guildID, ChannelID: m.channelID,
			SSRC: m.ssrc, VideoSSRC: m.videoSSRC, Connected: true, Simulated: true})
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.mu.Lock()
		out = append(out, SessionInfo{UserID: ss.userID, GuildID: ss.guildID, ChannelID: ss.channelID,
			Mode: ss.mode, SSRC: ss.ssrc, VideoSSRC: ss.videoSSRC, Connected: ss.conn != nil})
		ss.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return strings.Compare(a.GuildID+"/"+a.UserID, b.GuildID+"/"+b.UserID) })
	return out
}

// SessionStats are the counters of one client session.
type SessionStats struct {
	UserID, GuildID, ChannelID string
	// Ended marks a session that no longer exists.
	Ended bool
	// PacketsIn counts datagrams from the client of every kind.
	PacketsIn int
	// PacketsOut counts datagrams written to the client: relayed media
	// (duplicates included), RTCP, IP discovery and keepalive replies.
	PacketsOut int
	// MediaIn counts RTP packets from the client that decrypted.
	MediaIn int
	// RTCPIn and RTCPOut count RTCP packets from and to the client.
	RTCPIn, RTCPOut int
	// KeepalivesIn counts datagrams too short for RTP (UDP keepalives).
	KeepalivesIn int
	// Discoveries counts IP discovery requests.
	Discoveries int
	// DecryptFailures counts packets that did not authenticate, or
	// arrived before Select Protocol.
	DecryptFailures int
	// BadPackets counts packets that decrypted but did not parse as RTP.
	BadPackets int
	// Relayed counts media packets relayed towards this client, before
	// faults.
	Relayed int
	// Dropped, Reordered and Duplicated count faults applied to those.
	Dropped, Reordered, Duplicated int
	// PlaintextOpusSeen counts Opus payloads from this client that are
	// neither DAVE frames (docs/dave.md, "Frame format": the receiver's
	// frame check) nor the silence frame, sent while the client was bound
	// to DAVE (see Stats.PlaintextOpusSeen).
	PlaintextOpusSeen int
	// KeyPackagesRefused counts DAVE key packages (op 26) that failed
	// validation: unparsable, a bad signature, or a credential that is not
	// the session's user id.
	KeyPackagesRefused int
	// MediaBeforeSpeaking counts Opus packets that came from the client
	// while its current connection had sent no Speaking (op 5). Discord
	// disconnects such a client "with an invalid SSRC error"; the emulator
	// lets such audio pass for speakingGrace (op 5 on the websocket and the
	// first packets on UDP race), then closes with 4002.
	MediaBeforeSpeaking int
	// Speaking lists the flags of every op 5 the client sent, in order.
	Speaking []int
	// SpeakingAt is every op 5 the client sent, in order, with where it
	// came in the client's Opus stream: how many Opus packets had arrived
	// before it, and how many of the last of those in a row were the
	// silence frame. Discord's rule, the client's too: speaking 1 before
	// a talk spurt's first packet, speaking 0 after its five silence
	// frames.
	SpeakingAt []SpeakingEvent
	// OpusIn counts the Opus packets from the client that were relayed
	// (as SpeakingEvent.OpusBefore counts them).
	OpusIn int
	// UndeclaredPayloadType counts RTP packets refused because Select
	// Protocol did not declare their payload type (video is declared in
	// its codecs; Opus always may be sent).
	UndeclaredPayloadType int
}

// SpeakingEvent is one Speaking (op 5) from a client and where it came
// in the client's audio.
type SpeakingEvent struct {
	// Speaking is the op's flags (1 is the microphone, 0 silent).
	Speaking int
	// OpusBefore is how many of the client's Opus packets had been
	// relayed when the op arrived.
	OpusBefore int
	// SilenceBefore is how many of the last of those in a row were the
	// silence frame.
	SilenceBefore int
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Sessions has one entry per client session, live or ended.
	Sessions []SessionStats
	// UnknownSource counts datagrams that matched no session.
	UnknownSource int
	// PlaintextOpusSeen counts Opus frames the relay could read: frames
	// from a client or simulated member bound to DAVE that are neither
	// DAVE frames nor the silence frame. A participant is bound to DAVE
	// from its Session Description with protocol version 1, or from one
	// second after the execute (op 22) of an upgrade that included it,
	// until a downgrade (op 21 to version 0). It stays 0 while end-to-end
	// encryption works.
	PlaintextOpusSeen int
}

// Session returns the counters of the newest session of a user.
func (st Stats) Session(userID string) (SessionStats, bool) {
	for i := len(st.Sessions) - 1; i >= 0; i-- {
		if st.Sessions[i].UserID == userID {
			return st.Sessions[i], true
		}
	}
	return SessionStats{}, false
}

// Stats returns a snapshot of the counters: ended sessions first, then
// live ones.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	out := Stats{Sessions: slices.Clone(s.ended), UnknownSource: int(s.unknown.Load()), PlaintextOpusSeen: int(s.plaintext.Load())}
	for _, ss := range s.sessions {
		out.Sessions = append(out.Sessions, ss.snapshot(false))
	}
	s.mu.Unlock()
	return out
}

// newSSRCs hands out an audio, video and RTX SSRC. Caller holds s.mu.
func (s *Server) newSSRCs() (audio, video, rtx uint32) {
	a := s.nextSSRC
	s.nextSSRC += 3
	return a, a + 1, a + 2
}

// channelPeers lists the sessions and simulated members in a channel,
// except the user given. Caller must not hold s.mu.
func (s *Server) channelPeers(guildID, channelID, exceptUser string) ([]*session, []*Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ss []*session
	var ms []*Member
	for _, x := range s.sessions {
		if x.guildID == guildID && x.channelID == channelID && x.userID != exceptUser {
			ss = append(ss, x)
		}
	}
	for _, m := range s.members {
		if m.guildID == guildID && m.channelID == channelID && m.userID != exceptUser {
			ms = append(ms, m)
		}
	}
	return ss, ms
}

// endSession removes a session, closes its websocket with code and tells
// the rest of the channel that the user left.
func (s *Server) endSession(ss *session, code int) {
	s.mu.Lock()
	if s.sessions[ss.token] != ss {
		s.mu.Unlock()
		return
	}
	delete(s.sessions, ss.token)
	for _, id := range []uint32{ss.ssrc, ss.videoSSRC, ss.rtxSSRC} {
		if s.bySSRC[id] == ss {
			delete(s.bySSRC, id)
		}
	}
	s.ended = append(s.ended, ss.snapshot(true))
	if len(s.ended) > 64 {
		s.ended = s.ended[len(s.ended)-64:]
	}
	s.mu.Unlock()
	if c := ss.detach(nil); c != nil {
		c.closeWith(code)
	}
	s.log.Info("voice session ended", "user_id", ss.userID, "guild_id", ss.guildID, "code", code)
	s.announceLeave(ss.guildID, ss.channelID, ss.userID)
	s.leaveCall(ss.guildID, ss.channelID, ss.userID, ss, nil)
}

// announceLeave sends Client Disconnect (op 13) to the sessions left in a
// channel.
func (s *Server) announceLeave(guildID, channelID, userID string) {
	peers, _ := s.channelPeers(guildID, channelID, userID)
	for _, p := range peers {
		p.sendJSON(opClientDisconnect, map[string]any{"user_id": userID})
	}
}

// housekeeping enforces heartbeat timeouts, sends RTCP reports and
// releases packets held back by the reorder fault.
func (s *Server) housekeeping() {
	tick := min(max(s.opts.HeartbeatInterval/4, 10*time.Millisecond), 250*time.Millisecond)
	tick = min(tick, max(s.opts.RTCPInterval/2, 10*time.Millisecond))
	tick = min(tick, max(s.opts.TransitionTimeout/4, 10*time.Millisecond))
	t := time.NewTicker(tick)
	defer t.Stop()
	lastRTCP := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.expire(now)
			s.flushHeld(now, 2*tick)
			s.expireTransitions(now)
			if now.Sub(lastRTCP) >= s.opts.RTCPInterval {
				lastRTCP = now
				s.sendReports(now)
			}
		}
	}
}

// expire closes connections that stopped heartbeating (4009) and ends
// sessions whose client has been gone longer than the heartbeat timeout.
func (s *Server) expire(now time.Time) {
	s.mu.Lock()
	var conns []*wsConn
	for c := range s.conns {
		conns = append(conns, c)
	}
	var sessions []*session
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, c := range conns {
		if !c.blackholed.Load() && now.Sub(c.lastBeat()) > s.opts.HeartbeatTimeout {
			s.log.Info("heartbeat timeout", "remote", c.remote)
			if ss := c.session(); ss != nil {
				s.invalidate(ss, 4009)
			}
			c.closeWith(4009)
		}
	}
	for _, ss := range sessions {
		ss.mu.Lock()
		stale := ss.conn == nil && now.Sub(ss.lastBeat) > s.opts.HeartbeatTimeout
		ss.mu.Unlock()
		if stale {
			s.invalidate(ss, 4009)
		}
	}
}

// writeUDP sends one datagram; UDP writes on loopback do not block.
func (s *Server) writeUDP(b []byte, to netip.AddrPort) bool {
	_, err := s.udp.WriteToUDPAddrPort(b, to)
	if err != nil {
		s.log.Debug("udp write", "to", to, "err", err)
		return false
	}
	return true
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("voiceemu: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
