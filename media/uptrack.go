package media

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

const (
	// keyframeMinInterval rate-limits PLIs sent to one publisher.
	keyframeMinInterval = 100 * time.Millisecond
	// vp8MaxLate is how many packets the VP8 frame assembler waits for a
	// late packet.
	vp8MaxLate = 64
	// receiveMTU bounds a received RTP packet (pion's receive MTU is 1460).
	receiveMTU = 1500
)

// upTrack is one track a browser publishes.
type upTrack struct {
	info    TrackInfo
	pub     *session
	remote  *webrtc.TrackRemote
	codec   webrtc.RTPCodecCapability
	levelID uint8 // audio-level extension id, 0 when not negotiated
	fan     fanout
	kf      chan struct{}
	lastPLI time.Time                    // kfLoop only
	sb      *samplebuilder.SampleBuilder // readUp only
	waitKF  bool                         // readUp only
	isVideo bool
}

// newUpTrack describes a track s publishes; the room starts forwarding it.
func newUpTrack(s *session, remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) *upTrack {
	kind := remote.Kind()
	u := &upTrack{
		info:    TrackInfo{TrackID: s.nextTrackID(kind), StreamID: s.streamID(), Kind: kind.String()},
		pub:     s,
		remote:  remote,
		codec:   remote.Codec().RTPCodecCapability,
		kf:      make(chan struct{}, 1),
		isVideo: kind == webrtc.RTPCodecTypeVideo,
	}
	if !u.isVideo {
		u.levelID = audioLevelID(recv)
	}
	return u
}

// requestKeyframe asks the publisher for a keyframe without blocking.
func (u *upTrack) requestKeyframe() {
	if u.isVideo {
		kick(u.kf)
	}
}

// kfLoop sends PLIs (RFC 4585 §6.3.1) to the publisher, at most one per
// keyframeMinInterval: a request that comes sooner is sent when the
// interval is over, together with any others that came meanwhile.
func (u *upTrack) kfLoop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-u.kf:
		}
		if wait := keyframeMinInterval - time.Since(u.lastPLI); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			select { // requests that came while waiting are answered by this PLI
			case <-u.kf:
			default:
			}
		}
		u.lastPLI = time.Now()
		err := u.pub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(u.remote.SSRC())}})
		if err != nil && !errIsClosed(err) {
			u.pub.log.Debug("send PLI", "err", err)
		}
	}
}

// audioLevelID finds the negotiated id of the audio-level extension.
func audioLevelID(recv *webrtc.RTPReceiver) uint8 {
	for _, e := range recv.GetParameters().HeaderExtensions {
		if e.URI == audioLevelURI {
			return uint8(e.ID)
		}
	}
	return 0
}

// readUp forwards one published track until it ends: to the other
// browsers through the track's fanout, and, when s is the room's
// forwarded speaker, to Discord. Audio levels go to the room's speaker
// choice; a full level queue drops one.
//
// While every subscriber is written inline, one buffer and one packet
// serve every read: nothing keeps them after the fanout returns, and what
// goes to Discord is copied.
func (s *session) readUp(u *upTrack) {
	r := s.room
	defer r.post(unpublishAction{u})
	buf := make([]byte, receiveMTU)
	var scratch rtp.Packet
	for {
		n, _, err := u.remote.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		pkt := &scratch
		var sp *sharedPacket
		if u.fan.inlineOnly() {
			if err := pkt.Unmarshal(buf[:n]); err != nil {
				continue
			}
		} else {
			// Queued: the queues share the packet until written.
			sp = newSharedPacket()
			if err := sp.load(buf[:n]); err != nil {
				sp.release()
				continue
			}
			pkt = &sp.pkt
		}
		if u.isVideo {
			s.videoToDiscord(u, pkt)
		} else {
			level := uint8(127)
			if u.levelID != 0 {
				var ext rtp.AudioLevelExtension
				if b := pkt.GetExtension(u.levelID); b != nil && ext.Unmarshal(b) == nil {
					level = ext.Level
				}
			}
			select {
			case r.levels <- levelReport{s: s, level: level, at: now}:
			default:
			}
			// The read buffer is reused for the next packet: what leaves this
			// goroutine is a copy.
			if rt := r.route.Load(); rt.mix != nil {
				if !s.muted.Load() {
					rt.mix.push(mixPacket{src: u.info.TrackID, seq: pkt.SequenceNumber, ts: pkt.Timestamp, payload: append([]byte(nil), pkt.Payload...), at: now})
				}
			} else if rt.speaker == s.id && rt.out != nil {
				rt.out.push(linkItem{opus: append([]byte(nil), pkt.Payload...)})
			}
		}
		// Extension ids are per connection: subscribers get none of the
		// publisher's, their own interceptors add what they negotiated.
		pkt.Header.Extension = false
		pkt.Header.Extensions = pkt.Header.Extensions[:0]
		s.m.eng.burst(func() { u.fan.sendShared(pkt, sp, now) })
	}
}

// videoToDiscord reassembles the active speaker's VP8 frames and offers
// them to the Discord link, starting at a keyframe.
func (s *session) videoToDiscord(u *upTrack, pkt *rtp.Packet) {
	rt := s.room.route.Load()
	lc := rt.out
	if lc == nil || lc.videoRefused.Load() || rt.speaker != s.id {
		u.sb = nil
		return
	}
	if u.sb == nil {
		u.sb = samplebuilder.New(vp8MaxLate, &codecs.VP8Packet{}, u.codec.ClockRate)
		u.waitKF = true
		u.requestKeyframe()
	}
	// The samplebuilder keeps packets, and the read buffer is reused.
	cp := rtp.Packet{Header: pkt.Header, Payload: append([]byte(nil), pkt.Payload...)}
	cp.Header.Extensions = nil
	u.sb.Push(&cp)
	for sample := u.sb.Pop(); sample != nil; sample = u.sb.Pop() {
		// VP8 frame tag, RFC 6386 §9.1: bit 0 clear means keyframe.
		key := len(sample.Data) > 0 && sample.Data[0]&0x01 == 0
		if u.waitKF && !key {
			continue
		}
		u.waitKF = false
		lc.push(linkItem{vp8: sample.Data, keyframe: key})
	}
}
