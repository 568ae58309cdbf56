package voicetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// VideoFrame is one VP8 frame.
type VideoFrame struct {
	Data     []byte
	Keyframe bool
}

// MemberOptions names a simulated member and the channel it sits in.
type MemberOptions struct {
	UserID, GuildID, ChannelID string
}

// Member is a simulated participant of a voice channel, inside the
// emulator. It has its own audio and video SSRCs, is announced to clients
// like any member (ops 11, 5 and 12), sends Opus and VP8 as RTP through
// the relay and records what it receives.
type Member struct {
	srv                        *Server
	userID, guildID, channelID string
	ssrc, videoSSRC, rtxSSRC   uint32

	in       chan memberPacket
	stop     chan struct{}
	stopOnce sync.Once

	sendMu    sync.Mutex // orders the outgoing streams
	aSeq      uint16
	aTS       uint32
	aLast     time.Time
	vSeq      uint16
	vTSBase   uint32
	vStart    time.Time
	pictureID uint16

	mu      sync.Mutex
	left    bool
	onOpus  func(fromUserID string, frame []byte)
	opus    map[string][][]byte
	video   map[string][]VideoFrame
	asm     map[string]*vp8Assembler
	dropped int
}

type memberPacket struct {
	from string
	p    rtpPacket
}

const memberQueueSize = 1024

// AddMember puts a simulated member in a channel and announces it to the
// clients there.
func (s *Server) AddMember(o MemberOptions) (*Member, error) {
	if o.UserID == "" || o.GuildID == "" || o.ChannelID == "" {
		return nil, fmt.Errorf("%w: a member needs UserID, GuildID and ChannelID (got %q, %q, %q)",
			ErrInvalidOptions, o.UserID, o.GuildID, o.ChannelID)
	}
	m := &Member{
		srv: s, userID: o.UserID, guildID: o.GuildID, channelID: o.ChannelID,
		in: make(chan memberPacket, memberQueueSize), stop: make(chan struct{}),
		aSeq: uint16(rand.Uint32()), aTS: rand.Uint32(), vSeq: uint16(rand.Uint32()), vTSBase: rand.Uint32(),
		pictureID: uint16(rand.Uint32()) & 0x7fff,
		opus:      map[string][][]byte{}, video: map[string][]VideoFrame{}, asm: map[string]*vp8Assembler{},
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
		p.sendJSON(opSpeaking, m.speakingPayload())
		p.sendJSON(opVideo, m.videoPayload())
	}
	s.log.Info("simulated member added", "user", m.userID, "guild", m.guildID, "channel", m.channelID, "ssrc", m.ssrc)
	return m, nil
}

// UserID is the member's user id.
func (m *Member) UserID() string { return m.userID }

func (m *Member) speakingPayload() map[string]any {
	return map[string]any{"user_id": m.userID, "ssrc": m.ssrc, "speaking": 1}
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
// marker bit set.
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
		payload: append([]byte(nil), frame...)}
	m.sendMu.Unlock()
	m.srv.relay(m.guildID, m.channelID, m.userID, p)
	return nil
}

// PlayOpus sends frames every 20 ms on an absolute-deadline clock (a late
// frame does not delay the rest), looping if asked, until the frames run
// out, ctx is done, the member leaves or the server closes.
func (m *Member) PlayOpus(ctx context.Context, frames [][]byte, loop bool) {
	if len(frames) == 0 {
		return
	}
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
		if m.sendOpus(frames[i%len(frames)], i > 0) != nil {
			return
		}
	}
}

// SendVP8 sends one VP8 frame as RTP (PT 105, RFC 7741, 90 kHz clock from
// the wall clock). keyframe must match the frame's own key frame flag.
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
	now := time.Now()
	if m.vStart.IsZero() {
		m.vStart = now
	}
	ts := m.vTSBase + uint32(now.Sub(m.vStart)*vp8ClockRate/time.Second)
	payloads := vp8Packetize(frame, m.pictureID)
	m.pictureID = (m.pictureID + 1) & 0x7fff
	packets := make([]rtpPacket, len(payloads))
	for i, pl := range payloads {
		m.vSeq++
		packets[i] = rtpPacket{marker: i == len(payloads)-1, payloadType: payloadTypeVP8, sequence: m.vSeq,
			timestamp: ts, ssrc: m.videoSSRC, payload: pl}
	}
	m.sendMu.Unlock()
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
// order.
func (m *Member) ReceivedOpus(fromUserID string) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][]byte, len(m.opus[fromUserID]))
	for i, f := range m.opus[fromUserID] {
		out[i] = append([]byte(nil), f...)
	}
	return out
}

// ReceivedVP8 returns the VP8 frames reassembled from a user's packets;
// frames with a missing packet are discarded.
func (m *Member) ReceivedVP8(fromUserID string) []VideoFrame {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]VideoFrame, len(m.video[fromUserID]))
	for i, f := range m.video[fromUserID] {
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
		frame := append([]byte(nil), pk.p.payload...)
		m.mu.Lock()
		m.opus[pk.from] = append(m.opus[pk.from], frame)
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
		if f, ok := a.push(pk.p); ok {
			m.video[pk.from] = append(m.video[pk.from], f)
		}
		m.mu.Unlock()
	}
}
