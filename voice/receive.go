package voice

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sync"
	"time"

	"github.com/voicebridge/bridge/voice/dave"
)

const (
	// videoReorderDepth: a video frame spans many packets, so more may
	// wait behind a missing one; the time bound stays 60 ms.
	videoReorderDepth = 16
	// pendingLimit bounds frames held for an SSRC no op 5/12 has mapped
	// to a user yet (1 s of audio).
	pendingLimit = 50
	// departedGrace is how long the state of an SSRC that no user owns
	// (its user left, op 13, or it never had one) is kept after its last
	// packet: then it goes, counters included, so a call that users join
	// and leave for days holds only the streams of those present.
	departedGrace = 10 * time.Second
)

// silenceFrame is Opus's 3-byte silence frame; DAVE leaves it
// unencrypted, so it bypasses the FrameDecryptor.
var silenceFrame = []byte{0xf8, 0xff, 0xfe}

// StreamStats counts one received SSRC.
type StreamStats struct {
	SSRC   uint32
	UserID string
	Kind   MediaKind
	ReorderStats
	// DecryptFailures counts packets failing transport authentication;
	// FrameDecryptFailures frames the frame decryptor (the DAVE session
	// or Options.Decryptor) rejected; they were dropped.
	DecryptFailures      uint64
	FrameDecryptFailures uint64
	// IncompleteFrames counts video frames abandoned for missing packets.
	IncompleteFrames uint64
	// Unattributed counts frames dropped while no user was known for the
	// SSRC.
	Unattributed uint64
}

// Stats is a snapshot of a connection's counters.
type Stats struct {
	// Streams are the received streams, by SSRC.
	Streams []StreamStats
	// RTCPReceived counts RTCP packets authenticated (and not delivered as
	// media); RTCPDecryptFailures those that failed.
	RTCPReceived, RTCPDecryptFailures uint64
	// UnknownPackets counts datagrams that were neither media nor RTCP
	// (keepalive echoes, RTX, unknown payload types, stray SSRCs whose
	// packets failed to decrypt).
	UnknownPackets uint64
	// FramesDropped counts frames lost to a slow Frames consumer.
	FramesDropped uint64
	// AudioPacketsSent includes SilenceFramesSent; SendDropped counts
	// frames paced while there was no voice session.
	AudioPacketsSent, SilenceFramesSent, VideoPacketsSent, SendDropped uint64
	// DAVE counts end-to-end encryption: per-sender results and our
	// frames dropped rather than sent unencrypted.
	DAVE DAVEStats
}

// connStats holds the counters behind Stats.
type connStats struct {
	mu                                        sync.Mutex
	streams                                   map[uint32]*StreamStats
	rtcp, rtcpFail, unknown, framesDropped    uint64
	audioSent, silenceSent, videoSent, sendDr uint64
	// DAVE: our frames dropped for want of a key or for another encrypt
	// failure, and the counters of ended DAVE sessions.
	noKey, encFail, epochs uint64
	daveTotals             map[string]dave.SenderStats
}

func (s *connStats) add(f func(s *connStats)) {
	s.mu.Lock()
	f(s)
	s.mu.Unlock()
}

// Stats returns the counters so far.
func (c *Conn) Stats() Stats {
	s := &c.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{
		RTCPReceived: s.rtcp, RTCPDecryptFailures: s.rtcpFail, UnknownPackets: s.unknown,
		FramesDropped: s.framesDropped, AudioPacketsSent: s.audioSent, SilenceFramesSent: s.silenceSent,
		VideoPacketsSent: s.videoSent, SendDropped: s.sendDr,
		DAVE: c.daveStatsLocked(),
	}
	for _, st := range s.streams {
		out.Streams = append(out.Streams, *st)
	}
	slices.SortFunc(out.Streams, func(a, b StreamStats) int { return int(int64(a.SSRC) - int64(b.SSRC)) })
	return out
}

// receiver is the receive side's state. It survives transports: the UDP
// reader of the current transport owns it, and readers run one after the
// other, never at once.
type receiver struct {
	c        *Conn
	streams  map[uint32]*stream
	plain    []byte
	gen      uint64
	lastTick time.Time
}

type stream struct {
	ssrc     uint32
	kind     MediaKind
	userID   string
	rb       *ReorderBuffer[rxPacket]
	vp8      VP8Assembler
	pending  []Frame
	abandons int
	stats    StreamStats
	last     time.Time // the last packet
}

type rxPacket struct {
	ts      uint32
	marker  bool
	payload []byte
	at      time.Time // when the UDP socket delivered the packet
}

func newReceiver(c *Conn) *receiver {
	return &receiver{c: c, streams: make(map[uint32]*stream), plain: make([]byte, 0, maxDatagram)}
}

// packet handles one datagram from the voice socket.
func (rx *receiver) packet(t *transport, b []byte, now time.Time) {
	st := &rx.c.stats
	if len(b) < rtpFixedHeaderLen || b[0]>>6 != rtpVersion {
		st.add(func(s *connStats) { s.unknown++ })
		return
	}
	if IsRTCP(b) {
		_, err := t.opener.OpenRTCP(rx.plain[:0], b)
		st.add(func(s *connStats) {
			if err != nil {
				s.rtcpFail++
			} else {
				s.rtcp++
			}
		})
		return
	}
	ssrc := binary.BigEndian.Uint32(b[8:])
	h, payload, err := t.opener.OpenRTP(rx.plain[:0], b)
	if err != nil {
		if s := rx.streams[ssrc]; s != nil {
			s.stats.DecryptFailures++
			rx.publish(s)
		} else {
			st.add(func(s *connStats) { s.unknown++ })
		}
		t.log.Debug("dropping undecryptable packet", "from_ssrc", ssrc, "err", err)
		return
	}
	var kind MediaKind
	switch h.PayloadType {
	case PayloadTypeOpus:
		kind = Audio
	case PayloadTypeVP8:
		kind = Video
	default:
		st.add(func(s *connStats) { s.unknown++ })
		return
	}
	s := rx.stream(ssrc, kind)
	s.last = now
	if s.kind != kind {
		st.add(func(s *connStats) { s.unknown++ })
		return
	}
	s.rb.Push(h.Sequence, now, rxPacket{ts: h.Timestamp, marker: h.Marker, payload: bytes.Clone(payload), at: now})
	rx.drain(s)
	rx.publish(s)
}

// stream returns the state of ssrc, creating it.
func (rx *receiver) stream(ssrc uint32, kind MediaKind) *stream {
	if s := rx.streams[ssrc]; s != nil {
		return s
	}
	depth := AudioReorderDepth
	if kind == Video {
		depth = videoReorderDepth
	}
	s := &stream{ssrc: ssrc, kind: kind, rb: NewReorderBuffer[rxPacket](depth, AudioReorderDelay)}
	s.stats = StreamStats{SSRC: ssrc, Kind: kind}
	if o, ok := rx.c.ssrcOwner(ssrc); ok {
		s.userID = o.userID
	}
	rx.streams[ssrc] = s
	return s
}

// drain delivers what the reorder buffer released.
func (rx *receiver) drain(s *stream) {
	for {
		d, ok := s.rb.Pop()
		if !ok {
			return
		}
		p := d.Item
		if s.kind == Audio {
			rx.deliver(s, Frame{SSRC: s.ssrc, Kind: Audio, Seq: d.Seq, Timestamp: p.ts, Payload: p.payload, Missing: d.Missing, Received: p.at})
			continue
		}
		r, err := s.vp8.Push(d.Seq, p.ts, p.marker, d.Missing, p.payload)
		s.abandons += r.Abandoned
		s.stats.IncompleteFrames += uint64(r.Abandoned)
		if err != nil {
			rx.c.log.Debug("bad VP8 payload", "ssrc", s.ssrc, "err", err)
		}
		if r.Complete {
			rx.deliver(s, Frame{SSRC: s.ssrc, Kind: Video, Seq: d.Seq, Timestamp: p.ts,
				Payload: bytes.Clone(r.Frame), Missing: s.abandons, Keyframe: r.Keyframe, Received: p.at})
			s.abandons = 0
		}
	}
}

// deliver hands a frame on once its sender is known, holding a bounded
// number until then.
func (rx *receiver) deliver(s *stream, f Frame) {
	if s.userID == "" {
		if len(s.pending) >= pendingLimit {
			s.pending = s.pending[1:]
			s.stats.Unattributed++
		}
		s.pending = append(s.pending, f)
		return
	}
	f.UserID = s.userID
	if !(f.Kind == Audio && bytes.Equal(f.Payload, silenceFrame)) {
		out, err := rx.c.decryptFrame(f.UserID, f.Kind, f.Payload)
		if err != nil {
			s.stats.FrameDecryptFailures++
			rx.c.log.Debug("frame decrypt failed", "user_id", f.UserID, "ssrc", s.ssrc, "err", err)
			return
		}
		f.Payload = out
	}
	select {
	case rx.c.frames <- f:
	default:
		rx.c.stats.add(func(s *connStats) { s.framesDropped++ })
	}
}

// publish copies a stream's counters into the shared stats.
func (rx *receiver) publish(s *stream) {
	s.stats.ReorderStats = s.rb.Stats()
	s.stats.UserID = s.userID
	snap := s.stats
	rx.c.stats.add(func(cs *connStats) {
		if cs.streams == nil {
			cs.streams = make(map[uint32]*StreamStats)
		}
		cs.streams[s.ssrc] = &snap
	})
}

// maybeTick runs tick at most every rxTick while packets keep arriving.
func (rx *receiver) maybeTick(now time.Time) {
	if now.Sub(rx.lastTick) >= rxTick {
		rx.tick(now)
	}
}

// tick applies new SSRC-to-user mappings (flushing held frames) and
// releases packets waited on for too long.
func (rx *receiver) tick(now time.Time) {
	rx.lastTick = now
	if g := rx.c.userGen.Load(); g != rx.gen {
		rx.gen = g
		for _, s := range rx.streams {
			if o, ok := rx.c.ssrcOwner(s.ssrc); ok {
				s.userID = o.userID
			}
			if s.userID != "" && len(s.pending) > 0 {
				pending := s.pending
				s.pending = nil
				for _, f := range pending {
					rx.deliver(s, f)
				}
				rx.publish(s)
			}
		}
	}
	for _, s := range rx.streams {
		before := s.rb.Stats().Lost
		s.rb.Expire(now)
		rx.drain(s)
		if s.rb.Stats().Lost != before {
			rx.publish(s)
		}
	}
	rx.forgetDeparted(now)
}

// forgetDeparted drops the state and counters of SSRCs no user owns that
// have been silent for departedGrace.
func (rx *receiver) forgetDeparted(now time.Time) {
	for ssrc, s := range rx.streams {
		if now.Sub(s.last) < departedGrace {
			continue
		}
		if _, ok := rx.c.ssrcOwner(ssrc); ok {
			continue
		}
		delete(rx.streams, ssrc)
		rx.c.stats.add(func(cs *connStats) { delete(cs.streams, ssrc) })
	}
}
