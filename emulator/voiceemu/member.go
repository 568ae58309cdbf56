package voiceemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voicebridge/bridge/voice/dave"
)

// VideoFrame is one VP8 frame.
type VideoFrame struct {
	Data     []byte
	Keyframe bool
}

// RTPHeader is what a member saw of one relayed RTP packet's header.
type RTPHeader struct {
	Sequence  uint16
	Timestamp uint32
	SSRC      uint32
}

// MemberOptions names a simulated member and the channel it sits in.
type MemberOptions struct {
	UserID, GuildID, ChannelID string
	// DAVE is the member's DAVE engine; nil means a dave.Session of its
	// own. A test plugs in another implementation of the protocol to run
	// it against the emulator's external sender (voice/dave/interop does,
	// with davey). The member calls it from the call's event handling, its
	// sender and its receiver, so it must be safe for concurrent use.
	DAVE MemberDAVE
	// SpeakLate withholds the member's Speaking (op 5) and video (op 12),
	// which map its SSRC to its user id, until its first PlayOpus: what
	// SendOpus sends before arrives from an SSRC the clients cannot
	// attribute yet, as can happen on Discord.
	SpeakLate bool
	// Record is how many of the latest frames the member keeps per sender
	// and kind for ReceivedOpus, ReceivedOpusRTP and ReceivedVP8: a ring,
	// so a member that runs for days holds no more than this. 0 means
	// DefaultRecord; negative keeps nothing (OnOpus still sees every
	// frame), for members nobody reads, as the embedded demo's.
	Record int
}

// DefaultRecord is MemberOptions.Record's default: a minute of 20 ms
// Opus frames, and as many RTP headers and VP8 frames.
const DefaultRecord = 3000

// MemberDAVE is what a simulated member needs of a DAVE client session:
// the methods of *dave.Session it calls, with their meaning there.
type MemberDAVE interface {
	// Start begins a voice session at a DAVE protocol version (op 4's
	// dave_protocol_version) and returns the messages to send (op 26).
	Start(protocolVersion int) ([]dave.Outbound, error)
	// HandleJSON takes ops 11, 13, 21, 22 and 24.
	HandleJSON(op int, data json.RawMessage) ([]dave.Outbound, error)
	// HandleBinary takes ops 25, 27, 29 and 30.
	HandleBinary(op int, payload []byte) ([]dave.Outbound, error)
	ProtocolVersion() int
	Epoch() uint64
	// PrivacyCode is "" while the session holds no group keys.
	PrivacyCode() string
	// EncryptFrame fails with an error wrapping dave.ErrNoKey, never
	// returning plaintext, when a DAVE protocol is in force and no key is
	// ready.
	EncryptFrame(dst []byte, kind dave.MediaKind, frame []byte) ([]byte, error)
	DecryptFrame(dst []byte, userID string, kind dave.MediaKind, frame []byte) ([]byte, error)
}

// Member is a simulated participant of a voice channel, inside the
// emulator. It has its own audio and video SSRCs, is announced to clients
// like any member (ops 11, 5 and 12), sends Opus and VP8 as RTP through
// the relay and records what it receives.
//
// A member is a full DAVE participant: its dave.Session (or the
// MemberOptions.DAVE engine) takes the
// server's DAVE messages in process and answers them as a client would;
// while its channel runs DAVE it encrypts the frames it sends
// (dave.Session.EncryptFrame, before RTP packetization) and decrypts the
// frames it receives (after depacketization), so ReceivedOpus,
// ReceivedVP8 and OnOpus see plaintext.
type Member struct {
	srv                        *Server
	userID, guildID, channelID string
	ssrc, videoSSRC, rtxSSRC   uint32
	dave                       MemberDAVE
	e2ee                       e2eeGuard

	in        chan memberPacket
	stop      chan struct{}
	stopOnce  sync.Once
	ready     chan struct{} // closed once the member can send
	readyOnce sync.Once

	noKey, decryptFailures, opusSent, vp8Sent atomic.Int64

	sendMu    sync.Mutex // orders the outgoing streams
	aSeq      uint16
	aTS       uint32
	aLast     time.Time
	vSeq      uint16
	vTSBase   uint32
	vStart    time.Time
	pictureID uint16

	mu   sync.Mutex
	left bool
	// quiet: the member's last op 5 said speaking 0 (PlayOpus ended).
	quiet bool
	// late: op 5 and op 12 are withheld (MemberOptions.SpeakLate).
	late    bool
	onOpus  func(fromUserID string, frame []byte)
	opus    map[string][][]byte
	opusRTP map[string][]RTPHeader
	video   map[string][]VideoFrame
	asm     map[string]*vp8Assembler
	dropped int
	record  int // MemberOptions.Record, defaulted
}

type memberPacket struct {
	from string
	p    rtpPacket
}

const memberQueueSize = 1024

// AddMember puts a simulated member in a channel, announces it to the
// clients there and joins it to the channel's DAVE group. It returns once
// the member can send: at once in a channel without DAVE or when the member
// is alone in it; otherwise once the transition that adds it to the group
// has executed, or after twice Options.TransitionTimeout, after which the
// member stays pending until a commit adds it (until then SendOpus and
// SendVP8 return ErrNoMediaKey).
func (s *Server) AddMember(o MemberOptions) (*Member, error) {
	if !isSnowflake(o.UserID) || !isSnowflake(o.GuildID) || !isSnowflake(o.ChannelID) {
		return nil, fmt.Errorf("%w: a member needs UserID, GuildID and ChannelID that are Discord snowflakes (decimal uint64) (got %q, %q, %q)",
			ErrInvalidOptions, o.UserID, o.GuildID, o.ChannelID)
	}
	ds := o.DAVE
	if ds == nil {
		own, err := dave.NewSession(dave.SessionOptions{UserID: o.UserID, ChannelID: o.ChannelID, Logger: s.log})
		if err != nil {
			return nil, fmt.Errorf("%w: member %s: %w", ErrInvalidOptions, o.UserID, err)
		}
		ds = own
	}
	m := &Member{
		late: o.SpeakLate,
		srv:  s, userID: o.UserID, guildID: o.GuildID, channelID: o.ChannelID, dave: ds,
		in: make(chan memberPacket, memberQueueSize), stop: make(chan struct{}), ready: make(chan struct{}),
		aSeq: uint16(rand.Uint32()), aTS: rand.Uint32(), vSeq: uint16(rand.Uint32()), vTSBase: rand.Uint32(),
		pictureID: uint16(rand.Uint32()) & 0x7fff,
		opus:      map[string][][]byte{}, opusRTP: map[string][]RTPHeader{}, video: map[string][]VideoFrame{}, asm: map[string]*vp8Assembler{},
		record: o.Record,
	}
	if m.record == 0 {
		m.record = DefaultRecord
	}
	key := o.GuildID + "/" + o.UserID
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if s.members[key] != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: user %s is already a simulated member of guild %s", ErrInvalidOptions, o.UserID, o.GuildID)
	}
	for _, ss := range s.sessions {
		if ss.guildID == o.GuildID && ss.userID == o.UserID {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: user %s already has a client session in guild %s", ErrInvalidOptions, o.UserID, o.GuildID)
		}
	}
	m.ssrc, m.videoSSRC, m.rtxSSRC = s.newSSRCs()
	s.members[key] = m
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		m.run()
	}()

	peers, _ := s.channelPeers(m.guildID, m.channelID, m.userID)
	for _, p := range peers {
		p.sendJSON(opClientsConnect, map[string]any{"user_ids": []string{m.userID}})
		if !o.SpeakLate {
			p.sendJSON(opSpeaking, m.speakingPayload())
			p.sendJSON(opVideo, m.videoPayload())
		}
	}
	p := &participant{userID: m.userID, dave: true, m: m, e2ee: &m.e2ee}
	if err := s.joinCall(m.guildID, m.channelID, p, nil); err != nil {
		return nil, err
	}
	wait := time.NewTimer(2 * s.opts.TransitionTimeout)
	defer wait.Stop()
	select {
	case <-m.ready:
	case <-m.stop: // left meanwhile
	case <-wait.C:
		s.log.Warn("simulated member not in the DAVE group yet; its media is dropped until it is", "user_id", m.userID, "channel_id", m.channelID)
	case <-s.stop:
		return nil, ErrClosed
	}
	s.log.Info("simulated member added", "user_id", m.userID, "guild_id", m.guildID, "channel_id", m.channelID, "ssrc", m.ssrc,
		"dave_protocol", m.dave.ProtocolVersion(), "privacy_code", m.dave.PrivacyCode())
	return m, nil
}

// markReady lets AddMember return.
func (m *Member) markReady() {
	m.readyOnce.Do(func() { close(m.ready) })
}

// PrivacyCode returns the member's voice privacy code (30 digits, DAVE
// whitepaper "Displayable Codes"), the same for every member of the group
// in the same epoch; "" while it holds no keys or the channel runs
// without DAVE.
func (m *Member) PrivacyCode() string {
	if m.dave.ProtocolVersion() == 0 {
		return ""
	}
	return m.dave.PrivacyCode()
}

// ProtocolVersion returns the DAVE protocol version the member sends with:
// 1, or 0 while its channel runs without DAVE.
func (m *Member) ProtocolVersion() int { return m.dave.ProtocolVersion() }

// Epoch returns the MLS epoch of the member's DAVE group, 0 when it has
// none.
func (m *Member) Epoch() uint64 { return m.dave.Epoch() }

// MemberStats are a simulated member's media counters.
type MemberStats struct {
	// OpusSent and VP8Sent count frames sent.
	OpusSent, VP8Sent int
	// NoMediaKey counts frames not sent because the member held no DAVE
	// key (ErrNoMediaKey).
	NoMediaKey int
	// DecryptFailures counts received frames that did not decrypt (no key
	// for their sender or epoch, replay, authentication failure, or
	// plaintext while DAVE is in force); they are not recorded.
	DecryptFailures int
}

// Stats returns the member's counters.
func (m *Member) Stats() MemberStats {
	return MemberStats{
		OpusSent: int(m.opusSent.Load()), VP8Sent: int(m.vp8Sent.Load()),
		NoMediaKey: int(m.noKey.Load()), DecryptFailures: int(m.decryptFailures.Load()),
	}
}

// encrypt runs a frame through the member's DAVE session.
func (m *Member) encrypt(kind dave.MediaKind, frame []byte) ([]byte, error) {
	out, err := m.dave.EncryptFrame(nil, kind, frame)
	if err != nil {
		if errors.Is(err, dave.ErrNoKey) {
			m.noKey.Add(1)
			return nil, fmt.Errorf("member %s: %w: %w", m.userID, ErrNoMediaKey, err)
		}
		return nil, fmt.Errorf("member %s: %w", m.userID, err)
	}
	return out, nil
}

// UserID is the member's user id.
func (m *Member) UserID() string { return m.userID }

func (m *Member) speakingPayload() map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	flag := 1
	if m.quiet {
		flag = 0
	}
	return map[string]any{"user_id": m.userID, "ssrc": m.ssrc, "speaking": flag}
}

// setSpeaking tells the channel's clients the member's speaking flag
// (op 5) when it changes, as Discord's clients do when they start and
// stop talking.
func (m *Member) setSpeaking(on bool) {
	m.mu.Lock()
	late := on && m.late
	changed := m.quiet == on || late
	m.quiet = !on
	if on {
		m.late = false
	}
	m.mu.Unlock()
	if !changed || !m.active() {
		return
	}
	peers, _ := m.srv.channelPeers(m.guildID, m.channelID, m.userID)
	p := m.speakingPayload()
	for _, ss := range peers {
		ss.sendJSON(opSpeaking, p)
		if late {
			ss.sendJSON(opVideo, m.videoPayload())
		}
	}
}

// announced reports whether the member's op 5 and op 12 may go out.
func (m *Member) announced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.late
}

func (m *Member) videoPayload() map[string]any {
	return map[string]any{
		"user_id": m.userID, "audio_ssrc": m.ssrc, "video_ssrc": m.videoSSRC, "rtx_ssrc": m.rtxSSRC,
		"streams": []map[string]any{{
			"type": "video", "rid": "100", "ssrc": m.videoSSRC, "rtx_ssrc": m.rtxSSRC,
			"active": true, "quality": 100,
		}},
	}
}

// Leave takes the member out of its channel; clients get Client
// Disconnect (op 13). It is idempotent.
func (m *Member) Leave() {
	m.mu.Lock()
	if m.left {
		m.mu.Unlock()
		return
	}
	m.left = true
	m.mu.Unlock()
	s := m.srv
	s.mu.Lock()
	if s.members[m.guildID+"/"+m.userID] == m {
		delete(s.members, m.guildID+"/"+m.userID)
	}
	s.mu.Unlock()
	m.stopOnce.Do(func() { close(m.stop) })
	s.announceLeave(m.guildID, m.channelID, m.userID)
	s.leaveCall(m.guildID, m.channelID, m.userID, nil, m)
}

// active reports whether the member may still send: it has not left and
// the server is open.
func (m *Member) active() bool {
	select {
	case <-m.srv.stop:
		return false
	default:
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.left
}

// SendOpus sends one 20 ms Opus frame now. The RTP timestamp follows the
// wall clock across pauses, and the first packet after a pause has the
// marker bit set. While the channel runs DAVE the frame is encrypted
// first; ErrNoMediaKey means the member holds no key yet and the frame was
// not sent.
func (m *Member) SendOpus(frame []byte) error {
	return m.sendOpus(frame, false)
}

// sendOpus packetizes one frame (PT 120, +960 per frame). paced callers
// have a steady 20 ms clock and advance by exactly one frame.
func (m *Member) sendOpus(frame []byte, paced bool) error {
	if !m.active() {
		return fmt.Errorf("member %s: %w", m.userID, ErrClosed)
	}
	if len(frame) == 0 {
		return fmt.Errorf("%w: empty Opus frame", ErrBadPacket)
	}
	m.sendMu.Lock()
	payload, err := m.encrypt(dave.Audio, frame)
	if err != nil {
		m.sendMu.Unlock()
		return err
	}
	now := time.Now()
	marker := false
	switch gap := now.Sub(m.aLast); {
	case m.aLast.IsZero():
		marker = true
	case paced || gap <= 2*opusFrameDuration:
		m.aTS += opusFrameSamples
	default:
		marker = true
		m.aTS += uint32(gap.Round(opusFrameDuration)/opusFrameDuration) * opusFrameSamples
	}
	m.aSeq++
	m.aLast = now
	p := rtpPacket{marker: marker, payloadType: payloadTypeOpus, sequence: m.aSeq, timestamp: m.aTS, ssrc: m.ssrc,
		payload: payload}
	m.sendMu.Unlock()
	m.opusSent.Add(1)
	if m.e2ee.leaks(now, payload) {
		m.srv.plaintext.Add(1)
	}
	m.srv.relay(m.guildID, m.channelID, m.userID, p)
	return nil
}

// PlayOpus sends frames every 20 ms on an absolute-deadline clock (a late
// frame does not delay the rest), looping if asked, until the frames run
// out, ctx is done, the member leaves or the server closes; then the
// member's op 5 says speaking 0 (and the next PlayOpus says 1 again). Frames the
// member holds no DAVE key for are skipped (and counted in Stats).
func (m *Member) PlayOpus(ctx context.Context, frames [][]byte, loop bool) {
	if len(frames) == 0 {
		return
	}
	m.setSpeaking(true)
	defer m.setSpeaking(false)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := 0; loop || i < len(frames); i++ {
		timer.Reset(time.Until(start.Add(time.Duration(i) * opusFrameDuration)))
		select {
		case <-ctx.Done():
			return
		case <-m.stop:
			return
		case <-m.srv.stop:
			return
		case <-timer.C:
		}
		if err := m.sendOpus(frames[i%len(frames)], i > 0); err != nil && !errors.Is(err, ErrNoMediaKey) {
			return
		}
	}
}

// SendVP8 sends one VP8 frame as RTP (PT 105, RFC 7741, 90 kHz clock from
// the wall clock). keyframe must match the frame's own key frame flag.
// While the channel runs DAVE the frame is encrypted first (its payload
// header stays clear) and ErrNoMediaKey means it was not sent.
func (m *Member) SendVP8(frame []byte, keyframe bool) error {
	if !m.active() {
		return fmt.Errorf("member %s: %w", m.userID, ErrClosed)
	}
	if len(frame) == 0 {
		return fmt.Errorf("%w: empty VP8 frame", ErrBadPacket)
	}
	if vp8IsKeyframe(frame) != keyframe {
		return fmt.Errorf("%w: VP8 frame's key frame flag is %v, caller said %v", ErrBadPacket, vp8IsKeyframe(frame), keyframe)
	}
	m.sendMu.Lock()
	sealed, err := m.encrypt(dave.Video, frame)
	if err != nil {
		m.sendMu.Unlock()
		return err
	}
	now := time.Now()
	if m.vStart.IsZero() {
		m.vStart = now
	}
	ts := m.vTSBase + uint32(now.Sub(m.vStart)*vp8ClockRate/time.Second)
	payloads := vp8Packetize(sealed, m.pictureID)
	m.pictureID = (m.pictureID + 1) & 0x7fff
	packets := make([]rtpPacket, len(payloads))
	for i, pl := range payloads {
		m.vSeq++
		packets[i] = rtpPacket{marker: i == len(payloads)-1, payloadType: payloadTypeVP8, sequence: m.vSeq,
			timestamp: ts, ssrc: m.videoSSRC, payload: pl}
	}
	m.sendMu.Unlock()
	m.vp8Sent.Add(1)
	for _, p := range packets {
		m.srv.relay(m.guildID, m.channelID, m.userID, p)
	}
	return nil
}

// OnOpus sets a callback for every Opus frame the member receives, called
// on the member's own goroutine (it may call SendOpus, to echo).
func (m *Member) OnOpus(f func(fromUserID string, frame []byte)) {
	m.mu.Lock()
	m.onOpus = f
	m.mu.Unlock()
}

// ReceivedOpus returns the Opus frames received from a user, in arrival
// order: the last MemberOptions.Record of them.
func (m *Member) ReceivedOpus(fromUserID string) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := latest(m.opus[fromUserID], m.record)
	out := make([][]byte, len(in))
	for i, f := range in {
		out[i] = append([]byte(nil), f...)
	}
	return out
}

// ReceivedOpusRTP returns the RTP headers of every Opus packet the relay
// delivered from a user, in arrival order, whether or not its frame
// decrypted: the stream as it was on the wire (the last
// MemberOptions.Record headers).
func (m *Member) ReceivedOpusRTP(fromUserID string) []RTPHeader {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]RTPHeader(nil), latest(m.opusRTP[fromUserID], m.record)...)
}

// ReceivedVP8 returns the VP8 frames reassembled from a user's packets;
// frames with a missing packet are discarded. It holds the last
// MemberOptions.Record frames.
func (m *Member) ReceivedVP8(fromUserID string) []VideoFrame {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := latest(m.video[fromUserID], m.record)
	out := make([]VideoFrame, len(in))
	for i, f := range in {
		out[i] = VideoFrame{Data: append([]byte(nil), f.Data...), Keyframe: f.Keyframe}
	}
	return out
}

// deliver queues a relayed packet without blocking; a full queue drops it.
func (m *Member) deliver(from string, p rtpPacket) {
	select {
	case m.in <- memberPacket{from: from, p: p}:
	default:
		m.mu.Lock()
		m.dropped++
		m.mu.Unlock()
	}
}

// run is the member's receive goroutine, owned by the server.
func (m *Member) run() {
	for {
		select {
		case <-m.stop:
			return
		case <-m.srv.stop:
			return
		case pk := <-m.in:
			m.receive(pk)
		}
	}
}

func (m *Member) receive(pk memberPacket) {
	switch pk.p.payloadType {
	case payloadTypeOpus:
		m.mu.Lock()
		m.opusRTP[pk.from] = keep(m.opusRTP[pk.from], RTPHeader{Sequence: pk.p.sequence, Timestamp: pk.p.timestamp, SSRC: pk.p.ssrc}, m.record)
		m.mu.Unlock()
		frame, err := m.dave.DecryptFrame(nil, pk.from, dave.Audio, pk.p.payload)
		if err != nil {
			m.decryptFailures.Add(1)
			return
		}
		m.mu.Lock()
		m.opus[pk.from] = keep(m.opus[pk.from], frame, m.record)
		cb := m.onOpus
		m.mu.Unlock()
		if cb != nil {
			cb(pk.from, append([]byte(nil), frame...))
		}
	case payloadTypeVP8:
		m.mu.Lock()
		a := m.asm[pk.from]
		if a == nil {
			a = &vp8Assembler{}
			m.asm[pk.from] = a
		}
		f, ok := a.push(pk.p)
		m.mu.Unlock()
		if !ok {
			return
		}
		plain, err := m.dave.DecryptFrame(nil, pk.from, dave.Video, f.Data)
		if err != nil {
			m.decryptFailures.Add(1)
			return
		}
		m.mu.Lock()
		m.video[pk.from] = keep(m.video[pk.from], VideoFrame{Data: plain, Keyframe: vp8IsKeyframe(plain)}, m.record)
		m.mu.Unlock()
	}
}

// keep appends v to a record that holds the last limit entries (none for
// a negative limit). The slice may hold up to twice limit: when it fills,
// the last limit entries move to the front, so appending stays amortized
// O(1) and memory stays bounded. latest returns the record's view.
func keep[T any](s []T, v T, limit int) []T {
	if limit < 0 {
		return nil
	}
	if len(s) >= 2*limit {
		n := copy(s, s[len(s)-limit+1:])
		clear(s[n:])
		s = s[:n]
	}
	return append(s, v)
}

// latest is the last limit entries of a record kept by keep.
func latest[T any](s []T, limit int) []T {
	if limit >= 0 && len(s) > limit {
		return s[len(s)-limit:]
	}
	return s
}
