package voice

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/voicebridge/bridge/voice/dave"
)

const (
	// frameDuration and samplesPerFrame: Opus at 48 kHz in 20 ms frames.
	frameDuration   = 20 * time.Millisecond
	samplesPerFrame = 960
	// silenceFrames are sent before going quiet (Discord voice docs,
	// "Voice Data Interpolation").
	silenceFrames = 5
	// sendQueue is how many frames SendOpus may run ahead of the pacer.
	sendQueue = 4
	// underrunGrace is how long past a slot the pacer waits for a late
	// frame, sending it the moment it comes, before filling the slot with
	// silence. A frame late by less is sent late rather than replaced: a
	// producer on its own clock (the mix) that a busy CPU held back for a
	// few slots loses no audio and gains no lasting delay, as its
	// backlog goes at once; Discord's jitter buffer takes the burst.
	underrunGrace = 60 * time.Millisecond
	// maxLag re-anchors the schedule when the pacer fell this far behind
	// (a stalled machine), instead of bursting to catch up.
	maxLag = 100 * time.Millisecond
	// maxOpusFrame bounds one Opus packet given to SendOpus (RFC 6716
	// §3.4: 1275 bytes per frame); the pacer's buffer leaves room for the
	// DAVE trailer (dave.MaxEncryptedOverhead) on top.
	maxOpusFrame = 1400
	// videoClock is VP8's RTP clock rate (RFC 7741 §4.1).
	videoClock = 90000
)

// sender paces outgoing audio and packetizes video. The pacer goroutine
// owns the audio sequence number and timestamp; video state is under vmu.
type sender struct {
	c     *Conn
	queue chan []byte
	free  chan []byte

	// Owned by the pacer: the audio RTP sequence number and timestamp,
	// gap (frames were dropped since the last packet, so the next one is
	// marked) and the buffer frames are encrypted into.
	seq  uint16
	ts   uint32
	gap  bool
	abuf []byte

	vmu    sync.Mutex
	vseq   uint16
	vts0   uint32
	vstart time.Time
	vp8    codecs.VP8Payloader // EnablePictureID set by newSender
	venc   []byte
}

func newSender(c *Conn) *sender {
	s := &sender{
		c:      c,
		queue:  make(chan []byte, sendQueue),
		free:   make(chan []byte, sendQueue+1),
		seq:    uint16(rand.Uint32()),
		ts:     rand.Uint32(),
		vseq:   uint16(rand.Uint32()),
		vts0:   rand.Uint32(),
		vstart: time.Now(),
		vp8:    codecs.VP8Payloader{EnablePictureID: true},
		abuf:   make([]byte, 0, maxOpusFrame+dave.MaxEncryptedOverhead),
	}
	for range cap(s.free) {
		s.free <- make([]byte, 0, maxOpusFrame)
	}
	return s
}

// SendOpus queues one 20 ms Opus frame (48 kHz stereo). It blocks while
// the pacer is sendQueue frames ahead, so a producer faster than real
// time is paced. The pacer encrypts each frame just before it goes out,
// with the DAVE session (or Options.Encryptor) in force at that moment; a
// frame that cannot be encrypted while DAVE is in force is dropped and
// counted (Stats.DAVE), never sent in clear.
func (c *Conn) SendOpus(frame []byte) error {
	if len(frame) == 0 || len(frame) > maxOpusFrame {
		return fmt.Errorf("voice: Opus frame of %d bytes (1..%d): %w", len(frame), maxOpusFrame, ErrFrameTooLarge)
	}
	s := c.sender
	var buf []byte
	select {
	case buf = <-s.free:
	case <-c.runDone:
		return ErrClosed
	case <-c.paceDone:
		return ErrClosed
	}
	if c.ended.Load() {
		s.free <- buf
		return ErrClosed
	}
	buf = append(buf[:0], frame...)
	select {
	case s.queue <- buf:
		return nil
	case <-c.paceDone:
		return ErrClosed
	}
}

// run is the pacer: it sends one frame per 20 ms slot on absolute
// deadlines start+n·20ms of the monotonic clock, so timing never drifts.
// When the queue runs dry it sends five silence frames and goes quiet; the
// next talk spurt starts a new schedule, its timestamp advanced by the
// wall-clock time elapsed (in 960-sample steps) and its first packet
// marked (RFC 3551 §4.1).
func (s *sender) run(ctx context.Context) {
	defer close(s.c.paceDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var (
		talking  bool
		sentAny  bool
		start    time.Time
		n        int64
		silence  int
		lastSlot time.Time
	)
	for {
		if !talking {
			var f []byte
			select {
			case <-ctx.Done():
				return
			case f = <-s.queue:
			}
			now := time.Now()
			if sentAny {
				steps := int64((now.Sub(lastSlot) + frameDuration/2) / frameDuration)
				if steps > 1 {
					s.ts += uint32(steps-1) * samplesPerFrame
				}
			}
			talking, start, n, silence = true, now, 1, silenceFrames
			s.sendAudio(f, true, false)
			s.free <- f
			sentAny, lastSlot = true, now
			continue
		}
		slot := start.Add(time.Duration(n) * frameDuration)
		if lag := time.Since(slot); lag > maxLag {
			start = start.Add(lag)
			slot = slot.Add(lag)
		}
		if !sleepUntil(ctx, timer, slot) {
			return
		}
		var f []byte
		select {
		case f = <-s.queue:
		default:
			if silence == silenceFrames {
				// A frame late by up to underrunGrace goes the moment
				// it comes: a producer on its own 20 ms clock (the
				// mix) hands each frame over just after its slot.
				// Once the slot is filled the spurt is ending: the
				// remaining silence frames keep to their slots.
				var ok bool
				if f, ok = waitFrame(ctx, timer, s.queue, slot.Add(underrunGrace)); !ok {
					return
				}
			}
		}
		switch {
		case f != nil:
			s.sendAudio(f, false, false)
			s.free <- f
			silence = silenceFrames
		default:
			s.sendAudio(silenceFrame, false, true)
			silence--
			if silence == 0 {
				talking = false
				// Speaking 0 goes a slot after the last silence frame,
				// so that it follows the frame at Discord too (the
				// websocket and UDP race).
				if !sleepUntil(ctx, timer, slot.Add(frameDuration)) {
					return
				}
				s.endSpeaking()
			}
		}
		lastSlot = slot
		n++
	}
}

// sleepUntil waits for the monotonic deadline t; false if ctx ended.
func sleepUntil(ctx context.Context, timer *time.Timer, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer.Reset(d)
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		timer.Stop()
		return false
	}
}

// waitFrame waits for a frame from queue until the monotonic deadline t:
// the frame, or nil once t passed; false if ctx ended.
func waitFrame(ctx context.Context, timer *time.Timer, queue <-chan []byte, t time.Time) ([]byte, bool) {
	d := time.Until(t)
	if d <= 0 {
		select {
		case f := <-queue:
			return f, true
		default:
			return nil, ctx.Err() == nil
		}
	}
	timer.Reset(d)
	select {
	case f := <-queue:
		timer.Stop()
		return f, true
	case <-timer.C:
		return nil, true
	case <-ctx.Done():
		timer.Stop()
		return nil, false
	}
}

// sendAudio encrypts one Opus frame with the transport's DAVE session
// (silence stays clear, as DAVE says) and sends it, announcing Speaking
// (op 5) first on a transport that has not had it: Discord disconnects a
// client that sends audio before op 5. A frame that cannot go out
// (no transport, or no key) still takes its 20 ms of timestamp but no
// sequence number, and the next packet is marked, as after a pause.
func (s *sender) sendAudio(frame []byte, marker, silence bool) {
	c := s.c
	t := c.trPtr.Load()
	if t == nil || !s.announce(t) {
		s.skip()
		c.stats.add(func(st *connStats) { st.sendDr++ })
		return
	}
	payload := frame
	if !silence {
		out, err := c.encryptFrame(t, s.abuf[:0], Audio, frame)
		if err != nil {
			s.skip()
			c.dropUnencrypted(Audio, err)
			return
		}
		if cap(out) > cap(s.abuf) {
			s.abuf = out[:0]
		}
		payload = out
	}
	h := Header{PayloadType: PayloadTypeOpus, Marker: marker || s.gap, Sequence: s.seq, Timestamp: s.ts, SSRC: t.ssrc}
	s.seq++
	s.ts += samplesPerFrame
	s.gap = false
	if err := t.send(&h, payload); err != nil {
		c.log.Debug("audio send failed", "err", err)
		c.stats.add(func(st *connStats) { st.sendDr++ })
		return
	}
	c.stats.add(func(st *connStats) {
		st.audioSent++
		if silence {
			st.silenceSent++
		}
	})
}

// skip accounts for a 20 ms slot whose frame was not sent.
func (s *sender) skip() {
	s.ts += samplesPerFrame
	s.gap = true
}

// announce makes sure op 5 with speaking 1 (the microphone bit) went out
// on the current gateway connection before audio does: after every
// connect and resume, and after the end of a talk spurt, as Discord's
// clients and discord.js do (Discord voice docs, "Speaking"). Without a
// gateway connection (resuming) audio goes on only inside a talk spurt
// already announced.
func (s *sender) announce(t *transport) bool {
	g := s.c.gwPtr.Load()
	if g == nil {
		return t.speaking.Load()
	}
	if g.speaking {
		return true
	}
	delay := 0
	if err := g.send(OpSpeaking, speakingData{Speaking: 1, Delay: &delay, SSRC: t.ssrc}); err != nil {
		s.c.log.Debug("speaking announce failed", "err", err)
		return false
	}
	g.speaking = true
	t.speaking.Store(true)
	return true
}

// endSpeaking sends op 5 with speaking 0 once a talk spurt ended (after
// its five silence frames), so Discord users do not see the bot speaking
// forever.
func (s *sender) endSpeaking() {
	g, t := s.c.gwPtr.Load(), s.c.trPtr.Load()
	if t != nil {
		t.speaking.Store(false)
	}
	if g == nil || t == nil || !g.speaking {
		return
	}
	delay := 0
	if err := g.send(OpSpeaking, speakingData{Speaking: 0, Delay: &delay, SSRC: t.ssrc}); err != nil {
		s.c.log.Debug("speaking end failed", "err", err)
		return
	}
	g.speaking = false
}

// SendVP8 sends one VP8 frame at once (video is not paced): through the
// DAVE session (or Options.Encryptor; a frame that cannot be encrypted is
// dropped and counted in Stats.DAVE, never sent in clear), split into RTP packets (RFC 7741) on the video SSRC Ready
// assigned, timestamped on a 90 kHz clock. keyframe must agree with the
// frame's P bit. The first video frame of a session announces the stream
// (op 12). Real Discord does not let bots send camera video (see doc.go).
func (c *Conn) SendVP8(frame []byte, keyframe bool) error {
	if !c.opts.Video {
		return ErrVideoOff
	}
	if len(frame) == 0 {
		return fmt.Errorf("voice: empty VP8 frame: %w", ErrBadVP8)
	}
	if VP8IsKeyframe(frame) != keyframe {
		return fmt.Errorf("voice: keyframe=%v but the frame's P bit says %v: %w", keyframe, VP8IsKeyframe(frame), ErrBadVP8)
	}
	if c.ended.Load() {
		return ErrClosed
	}
	t := c.trPtr.Load()
	if t == nil {
		return ErrNotConnected
	}
	if t.videoSSRC == 0 {
		return ErrNoVideo
	}
	s := c.sender
	s.vmu.Lock()
	defer s.vmu.Unlock()
	if !t.videoAnnounced.Load() {
		g := c.gwPtr.Load()
		if g == nil {
			return ErrNotConnected
		}
		active := true
		err := g.send(OpVideo, videoData{AudioSSRC: t.ssrc, VideoSSRC: t.videoSSRC, RTXSSRC: t.rtxSSRC,
			Streams: []streamSpec{{Type: "video", RID: "100", SSRC: t.videoSSRC, RTXSSRC: t.rtxSSRC, Active: &active, Quality: 100}}})
		if err != nil {
			return err
		}
		t.videoAnnounced.Store(true)
	}
	out, err := c.encryptFrame(t, s.venc[:0], Video, frame)
	if err != nil {
		// Never sent in clear; the caller's next key frame recovers.
		c.dropUnencrypted(Video, err)
		return nil
	}
	if cap(out) > cap(s.venc) {
		s.venc = out[:0]
	}
	frame = out
	ts := s.vts0 + uint32(time.Since(s.vstart)*videoClock/time.Second)
	h := Header{PayloadType: PayloadTypeVP8, Timestamp: ts, SSRC: t.videoSSRC}
	sent := 0
	payloads := s.vp8.Payload(DefaultVP8MaxPayload, frame)
	for i, payload := range payloads {
		h.Sequence, h.Marker = s.vseq, i == len(payloads)-1
		s.vseq++
		if err = t.send(&h, payload); err != nil {
			break
		}
		sent++
	}
	c.stats.add(func(st *connStats) { st.videoSent += uint64(sent) })
	return err
}
