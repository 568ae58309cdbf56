package media

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// sendQueueLen bounds each browser's outgoing media queue: about 0.5 s of
// audio plus video at a few hundred kbit/s. When it is full the newest
// packet is dropped (tail drop): the browser's jitter buffer conceals lost
// audio and its NACK/PLI recovers video, while the other browsers of the
// room are never held up.
const sendQueueLen = 256

// rtpWriter is where a forwarded packet finally goes: a
// TrackLocalStaticRTP in production, a recorder in benchmarks.
type rtpWriter interface {
	WriteRTP(p *rtp.Packet) error
}

// keyframeSource is something that can be asked for a keyframe: a browser's
// published video track. Calls never block.
type keyframeSource interface {
	requestKeyframe()
}

// outPacket is one RTP packet queued toward one browser. Packets are shared
// read-only between the queues of all subscribers.
type outPacket struct {
	dt  *downTrack
	pkt *rtp.Packet
	at  time.Time // when the packet entered the fanout; for Discord audio, when the bridge received it
	// observe, when set, takes the time from at to the write (the
	// fanout's, see fanout.observe).
	observe func(time.Duration)
	// shared, when set, is the pooled packet pkt points into; each queue
	// that holds p holds a reference to it (see sharedPacket).
	shared *sharedPacket
}

// sharedPacket is a packet that the queues of several subscribers hold
// until each has written it: pooled, so the queued path allocates nothing
// per packet. Its sender holds one reference while it offers the packet,
// each queue one from push to write; the last release returns it.
type sharedPacket struct {
	pkt  rtp.Packet
	buf  [receiveMTU]byte
	refs atomic.Int32
}

var sharedPackets = sync.Pool{New: func() any { return new(sharedPacket) }}

// newSharedPacket takes a packet from the pool, held once by the caller.
func newSharedPacket() *sharedPacket {
	sp := sharedPackets.Get().(*sharedPacket)
	sp.refs.Store(1)
	return sp
}

// load fills the packet from a received datagram: copied into the
// packet's own buffer, then parsed.
func (sp *sharedPacket) load(data []byte) error {
	return sp.pkt.Unmarshal(sp.buf[:copy(sp.buf[:], data)])
}

func (sp *sharedPacket) hold() { sp.refs.Add(1) }

// release drops one reference; the last returns the packet to the pool,
// keeping the header's slices for the next use.
func (sp *sharedPacket) release() {
	if n := sp.refs.Add(-1); n > 0 {
		return
	} else if n < 0 {
		panic("media: shared packet released more often than held")
	}
	h := sp.pkt.Header
	sp.pkt = rtp.Packet{Header: rtp.Header{CSRC: h.CSRC[:0], Extensions: h.Extensions[:0]}}
	sharedPackets.Put(sp)
}

// sendQueue is one browser's way out for media: a bounded queue drained
// by one writer goroutine (queued), or, while every write ends in the
// batched UDP socket and so cannot block (inline), the forwarding
// goroutine's own write. The session switches between them as its
// selected ICE candidate pair changes (setInline).
//
// The mode lives in state with the pushes under way, so the switch to
// inline neither loses nor reorders a packet: the writer makes it once the
// queue is empty and no push is under way, and every push since it looked
// changes state. Until then forwarders keep pushing (draining).
type sendQueue struct {
	ch      chan outPacket
	state   atomic.Uint64 // mode, pushes under way, pushes made (see stateMode)
	kick    chan struct{} // capacity 1: the writer should look at the mode
	dropped atomic.Uint64
	// onWrite, when set, observes each written packet (benchmarks).
	onWrite func(p outPacket)
}

// A sendQueue's modes, in the low bits of its state.
const (
	modeQueued   = 0
	modeDraining = 1 // inline asked for; the queue still holds packets
	modeInline   = 2
	stateMode    = 3
	// statePush counts one push under way (bits 2..31); stateGen counts
	// pushes made (bits 32..63), so the writer sees any push since it
	// looked even when the count is back to what it was.
	statePush    = 1 << 2
	statePushers = (1<<32 - 1) &^ stateMode
	stateGen     = 1 << 32
)

func newSendQueue(n int) *sendQueue {
	return &sendQueue{ch: make(chan outPacket, n), kick: make(chan struct{}, 1)}
}

// newInlineSendQueue is a sendQueue that starts inline; it needs no
// writer goroutine while it stays so.
func newInlineSendQueue() *sendQueue {
	q := newSendQueue(sendQueueLen)
	q.state.Store(modeInline)
	return q
}

// inline reports whether the forwarding goroutine writes q's packets.
func (q *sendQueue) inline() bool { return q.state.Load()&stateMode == modeInline }

// setInline asks for inline writes (on) or the queue and its writer. The
// switch to inline is the writer's, once what is queued is written; the
// switch back takes effect at once: a forwarder's inline write of a track
// ends before it pushes the track's next packet. It never blocks.
func (q *sendQueue) setInline(on bool) {
	for {
		s := q.state.Load()
		mode := s & stateMode
		want := uint64(modeQueued)
		if on {
			if mode != modeQueued {
				return
			}
			want = modeDraining
		} else if mode == modeQueued {
			return
		}
		if q.state.CompareAndSwap(s, s&^stateMode|want) {
			kick(q.kick)
			return
		}
	}
}

// offer hands p to its subscriber: written now when inline, else queued.
// It reports false when the queue was full and p dropped. lent says the
// sender reuses p's packet (inlineOnly said so, and the subscriber left
// inline since): before queuing it, offer gives p a copy of its own, for
// this queue and the next, and clears lent.
func (q *sendQueue) offer(p *outPacket, lent *bool) bool {
	for {
		s := q.state.Load()
		if s&stateMode == modeInline {
			q.write(*p)
			return true
		}
		if q.state.CompareAndSwap(s, s+statePush+stateGen) {
			break
		}
	}
	if *lent {
		p.pkt, *lent = p.pkt.Clone(), false
	}
	if p.shared != nil {
		p.shared.hold()
	}
	ok := q.push(*p)
	if !ok && p.shared != nil {
		p.shared.release()
	}
	q.state.Add(^uint64(statePush - 1)) // - statePush
	return ok
}

// push queues p without blocking; a full queue drops p.
func (q *sendQueue) push(p outPacket) bool {
	select {
	case q.ch <- p:
		return true
	default:
		q.dropped.Add(1)
		return false
	}
}

// run writes queued packets until stop is closed, and makes the switch to
// inline when asked.
func (q *sendQueue) run(stop <-chan struct{}) {
	for {
		q.tryInline()
		select {
		case <-stop:
			return
		case p := <-q.ch:
			q.write(p)
			if p.shared != nil {
				p.shared.release()
			}
		case <-q.kick:
		}
	}
}

// tryInline switches a draining queue to inline when nothing is queued and
// no push is under way; otherwise the next packet brings the writer back.
func (q *sendQueue) tryInline() {
	s := q.state.Load()
	if s&stateMode != modeDraining || s&statePushers != 0 || len(q.ch) > 0 {
		return
	}
	// A push begun since the load changed state: the swap fails, and that
	// push wakes the writer.
	q.state.CompareAndSwap(s, s&^stateMode|modeInline)
}

// write sends p to its subscriber. The goroutine that writes a track's
// packets is always the same one (the queue's writer, or the source's
// forwarding goroutine when inline), which owns the key gate.
func (q *sendQueue) write(p outPacket) {
	if p.dt.keyGate && !p.dt.passKeyGate(p.pkt) {
		return
	}
	// A write fails only when the subscriber's connection is closing; its
	// own teardown reports that.
	_ = p.dt.sink.WriteRTP(p.pkt)
	if p.observe != nil {
		p.observe(time.Since(p.at))
	}
	if q.onWrite != nil {
		q.onWrite(p)
	}
}

// downTrack is one forwarded track as one subscriber receives it. It is the
// webrtc.TrackLocal added to the subscriber's PeerConnection; it wraps a
// TrackLocalStaticRTP so that a new binding can ask the source for a
// keyframe.
type downTrack struct {
	key   string // unique within the subscriber: the track id
	local *webrtc.TrackLocalStaticRTP
	sink  rtpWriter
	q     *sendQueue
	src   keyframeSource // nil for audio sources
	sub   *session       // the subscriber; nil in benchmarks
	// keyGate holds back a video track whose source cannot be asked for
	// a keyframe (Discord video) until it is bound and a keyframe begins:
	// a decoder given delta frames first shows nothing useful anyway.
	keyGate bool
	bound   atomic.Bool
	opened  bool // the gate has opened; the goroutine that writes the track only
}

// passKeyGate reports whether a gated track may carry pkt. Called by the
// goroutine that writes the track (sendQueue.write).
func (d *downTrack) passKeyGate(pkt *rtp.Packet) bool {
	if d.opened {
		return true
	}
	if !d.bound.Load() {
		return false
	}
	var vp8 codecs.VP8Packet
	if _, err := vp8.Unmarshal(pkt.Payload); err != nil || vp8.S != 1 || vp8.PID != 0 ||
		len(vp8.Payload) == 0 || vp8.Payload[0]&1 != 0 {
		return false
	}
	d.opened = true
	return true
}

// newDownTrack makes the subscriber-side track of a forwarded source.
func newDownTrack(c webrtc.RTPCodecCapability, id, streamID string, q *sendQueue, src keyframeSource) (*downTrack, error) {
	local, err := webrtc.NewTrackLocalStaticRTP(c, id, streamID)
	if err != nil {
		return nil, err
	}
	return &downTrack{key: id, local: local, sink: local, q: q, src: src}, nil
}

// Bind implements webrtc.TrackLocal. A video binding asks the publisher for
// a keyframe so the new subscriber can start decoding at once.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	params, err := d.local.Bind(ctx)
	if err == nil {
		d.bound.Store(true)
	}
	if err == nil && d.src != nil {
		d.src.requestKeyframe()
	}
	return params, err
}

// Unbind implements webrtc.TrackLocal.
func (d *downTrack) Unbind(ctx webrtc.TrackLocalContext) error { return d.local.Unbind(ctx) }

// ID implements webrtc.TrackLocal.
func (d *downTrack) ID() string { return d.local.ID() }

// RID implements webrtc.TrackLocal.
func (d *downTrack) RID() string { return d.local.RID() }

// StreamID implements webrtc.TrackLocal.
func (d *downTrack) StreamID() string { return d.local.StreamID() }

// Kind implements webrtc.TrackLocal.
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.local.Kind() }

// fanout is the set of subscribers of one source. Senders read a
// copy-on-write slice without locking; only the room's goroutine changes
// it.
type fanout struct {
	subs atomic.Pointer[[]*downTrack]
	// observe, when set, takes each packet's latency once written to a
	// subscriber: Options.ObserveDiscordAudio for Discord audio.
	observe func(time.Duration)
	// lent: inlineOnly said the sender reuses the next packet sent. The
	// forwarding goroutine only.
	lent bool
}

// add subscribes dt.
func (f *fanout) add(dt *downTrack) {
	cur := f.list()
	next := make([]*downTrack, 0, len(cur)+1)
	next = append(next, cur...)
	next = append(next, dt)
	f.subs.Store(&next)
}

// remove unsubscribes dt; it reports whether dt was subscribed.
func (f *fanout) remove(dt *downTrack) bool {
	cur := f.list()
	next := make([]*downTrack, 0, len(cur))
	found := false
	for _, d := range cur {
		if d == dt {
			found = true
			continue
		}
		next = append(next, d)
	}
	f.subs.Store(&next)
	return found
}

// inlineOnly reports whether every subscriber is written inline: then no
// queue keeps a packet after send returns, and the sender may reuse it.
// Only the forwarding goroutine calls it, right before send: a subscriber
// that switches to its queue in between gets a copy (see send).
func (f *fanout) inlineOnly() bool {
	f.lent = true
	for _, dt := range f.list() {
		if !dt.q.inline() {
			f.lent = false
			return false
		}
	}
	return true
}

// list returns the current subscribers (read-only).
func (f *fanout) list() []*downTrack {
	if p := f.subs.Load(); p != nil {
		return *p
	}
	return nil
}

// send hands pkt to every subscriber without blocking: written at once to
// an inline subscriber, queued to the others. It returns how many queues
// were full.
func (f *fanout) send(pkt *rtp.Packet, at time.Time) (dropped int) {
	return f.sendShared(pkt, nil, at)
}

// sendShared is send for a packet that is sp's (sp may be nil): each queue
// that takes it holds sp, and the caller's own reference is released once
// every subscriber has it.
func (f *fanout) sendShared(pkt *rtp.Packet, sp *sharedPacket, at time.Time) (dropped int) {
	if sp != nil {
		defer sp.release()
	}
	lent := f.lent
	f.lent = false
	p := outPacket{pkt: pkt, at: at, observe: f.observe, shared: sp}
	for _, dt := range f.list() {
		p.dt = dt
		if !dt.q.offer(&p, &lent) {
			dropped++
		}
	}
	return dropped
}

// opusRewriter gives a Discord user's Opus frames the RTP sequence numbers
// and timestamps of one continuous outgoing stream (RFC 3550 §5.1): the
// sequence number grows by one per forwarded frame, the timestamp by 960
// per 20 ms frame plus 960 for each frame the link reports missing, and the
// marker bit flags the first packet after a gap (RFC 3551 §4.1).
type opusRewriter struct {
	seq     uint16
	ts      uint32
	started bool
}

// next returns the header fields of the next frame, given how many frames
// were missing before it.
func (r *opusRewriter) next(missing int) (seq uint16, ts uint32, marker bool) {
	if missing < 0 {
		missing = 0
	}
	if !r.started {
		r.started = true
		return r.seq, r.ts, true
	}
	r.seq++
	r.ts += uint32(opusFrameTicks) * uint32(1+missing)
	return r.seq, r.ts, missing > 0
}

// discordSource is one Discord user's audio, forwarded to every browser of
// the room.
type discordSource struct {
	userID string
	fan    fanout
	// video is the user's VP8 stream, nil until its first keyframe. The
	// room's goroutine sets it while the link's reader waits; the reader
	// forwards it.
	video *discordVideo

	// The link's reader only.
	scratch  rtp.Packet // the packet forward reuses when no queue keeps it
	rw       opusRewriter
	lastSeen time.Time
	heard    bool // the reader told the room the user speaks

	// The room's goroutine only.
	speaking bool
}

// newDiscordSource starts the user's stream at the given random-looking
// sequence number and timestamp (RFC 3550 §5.1 recommends random starts);
// observe (may be nil) takes each packet's latency from its arrival at the
// bridge to its write toward a browser.
func newDiscordSource(userID string, seq uint16, ts uint32, observe func(time.Duration)) *discordSource {
	return &discordSource{userID: userID, rw: opusRewriter{seq: seq, ts: ts}, fan: fanout{observe: observe}}
}

// forward rewrites one Opus frame into an RTP packet and queues it to every
// subscriber; it returns how many subscriber queues were full. received is
// when the frame reached the bridge, now when media took it.
func (d *discordSource) forward(payload []byte, missing int, received, now time.Time) int {
	seq, ts, marker := d.rw.next(missing)
	pkt := &d.scratch
	var sp *sharedPacket
	if !d.fan.inlineOnly() {
		// Queued: shared by the queues until written.
		sp = newSharedPacket()
		pkt = &sp.pkt
	}
	*pkt = rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			PayloadType:    opusPayloadType,
			SequenceNumber: seq,
			Timestamp:      ts,
			Marker:         marker,
		},
		Payload: payload,
	}
	d.lastSeen = now
	if received.IsZero() {
		received = now
	}
	return d.fan.sendShared(pkt, sp, received)
}

// discordStreamID and discordTrackID name a Discord user's audio in
// browsers; discordVideoTrackID names the video in the same stream, so a
// browser shows them together.
func discordStreamID(userID string) string     { return "discord-" + userID }
func discordTrackID(userID string) string      { return "discord-audio-" + userID }
func discordVideoTrackID(userID string) string { return "discord-video-" + userID }

// videoMTU bounds the RTP payload of forwarded Discord video.
const videoMTU = 1200

// discordVideo is one Discord user's VP8 video, repacketized for browsers
// (RFC 7741) from the assembled frames the voice client delivers.
//
// A browser's keyframe request (PLI or FIR, RFC 4585 §6.3.1, RFC 5104
// §4.3.1) cannot reach a Discord sender, and media sends none upstream.
// Instead each subscriber's track is held back (downTrack.keyGate) until
// the sender's next keyframe begins, so a new browser's decoder starts on
// a keyframe; a browser that lost the picture recovers at that keyframe
// too. How long that takes is the sender's keyframe interval.
type discordVideo struct {
	fan       fanout
	payloader codecs.VP8Payloader
	seq       uint16
	tsBase    uint32
	start     time.Time // arrival of the first frame: the 90 kHz clock's zero
}

func newDiscordVideo(seq uint16, tsBase uint32, start time.Time) *discordVideo {
	return &discordVideo{seq: seq, tsBase: tsBase, start: start,
		payloader: codecs.VP8Payloader{EnablePictureID: true}}
}

// forward packetizes one VP8 frame and queues its packets to every
// subscriber, with a timestamp from the frame's arrival time.
func (v *discordVideo) forward(frame []byte, now time.Time) {
	ts := v.tsBase + uint32(now.Sub(v.start)*90/time.Millisecond) // 90 kHz
	payloads := v.payloader.Payload(videoMTU, frame)
	for i, p := range payloads {
		pkt := &rtp.Packet{
			Header: rtp.Header{
				Version:        2,
				PayloadType:    vp8PayloadType,
				SequenceNumber: v.seq,
				Timestamp:      ts,
				Marker:         i == len(payloads)-1,
			},
			Payload: p,
		}
		v.seq++
		v.fan.send(pkt, now)
	}
}
