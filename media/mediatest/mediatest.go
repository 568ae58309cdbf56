// Package mediatest is a test browser built on pion ([Browser]: the polite
// peer of the bridge's perfect negotiation, with a microphone and a
// camera), shared by the tests of package media (in-process signaling)
// and cmd/bridge's end-to-end tests (signaling over /api/ws). The
// transport is the test's: [Options.Send] carries messages to the bridge,
// [Browser.Deliver] hands the browser the bridge's.
package mediatest

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// opusFrameTicks is one 20 ms Opus frame at 48 kHz.
const opusFrameTicks = 960

// Mic is a browser's microphone: Opus frames every 20 ms, each with the
// RFC 6464 audio level the test sets, so the bridge's loudest-speaker
// choice can be steered.
type Mic struct {
	level  atomic.Uint32
	err    atomic.Pointer[error]
	paused atomic.Bool
	impair atomic.Pointer[Impairment]
}

// Impairment decides, for the i-th frame sent, whether the network loses
// it and how long it holds it back (packets held back may overtake one
// another, as on a real path).
type Impairment func(i int) (lost bool, delay time.Duration)

// SetPaused stops (true) or resumes the frames: a talker falling silent.
// Sequence numbers and timestamps go on counting meanwhile.
func (m *Mic) SetPaused(p bool) { m.paused.Store(p) }

// SetImpairment puts f between the microphone and the bridge; nil
// removes it.
func (m *Mic) SetImpairment(f Impairment) {
	if f == nil {
		m.impair.Store(nil)
		return
	}
	m.impair.Store(&f)
}

// SetLevel sets the audio level of the next frames (0 loudest, 127
// silence, as RFC 6464 counts -dBov).
func (m *Mic) SetLevel(level uint8) { m.level.Store(uint32(level)) }

// Err is the first error in adding the audio-level extension, if any.
func (m *Mic) Err() error {
	if p := m.err.Load(); p != nil {
		return *p
	}
	return nil
}

// PublishOpus adds a microphone track in stream streamID to pc and sends
// frames in a loop, every 20 ms with contiguous sequence numbers and
// timestamps, until stop closes; it also drains the sender's RTCP. Its two
// goroutines are counted in wg. The caller negotiates.
func PublishOpus(pc *webrtc.PeerConnection, streamID string, frames [][]byte, level uint8, stop <-chan struct{}, wg *sync.WaitGroup) (*Mic, error) {
	if len(frames) == 0 {
		return nil, errors.New("mediatest: no Opus frames to publish")
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", streamID)
	if err != nil {
		return nil, err
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		return nil, err
	}
	m := &Mic{}
	m.SetLevel(level)
	held := make(chan heldPacket, 64)
	wg.Add(3)
	go func() {
		defer wg.Done()
		holdBack(track, held, stop)
	}()
	go func() {
		defer wg.Done()
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * opusFrameTicks)},
				Payload: frames[i%len(frames)]}
			for _, e := range sender.GetParameters().HeaderExtensions {
				if e.URI != sdp.AudioLevelURI {
					continue
				}
				lv, _ := rtp.AudioLevelExtension{Level: uint8(m.level.Load()), Voice: true}.Marshal()
				if err := pkt.Header.SetExtension(uint8(e.ID), lv); err != nil {
					err = fmt.Errorf("mediatest: audio-level extension id %d: %w", e.ID, err)
					m.err.CompareAndSwap(nil, &err)
				}
			}
			if m.paused.Load() {
				continue
			}
			if f := m.impair.Load(); f != nil {
				lost, delay := (*f)(i)
				if lost {
					continue
				}
				if delay > 0 {
					select {
					case held <- heldPacket{pkt, time.Now().Add(delay)}:
					default: // more held back than the path holds: lost
					}
					continue
				}
			}
			if err := track.WriteRTP(pkt); err != nil && !errors.Is(err, io.ErrClosedPipe) {
				return
			}
		}
	}()
	return m, nil
}

// heldPacket is a packet an Impairment holds back until at.
type heldPacket struct {
	pkt *rtp.Packet
	at  time.Time
}

// holdBack sends held packets when their time comes, earliest first,
// until stop closes.
func holdBack(track *webrtc.TrackLocalStaticRTP, in <-chan heldPacket, stop <-chan struct{}) {
	var pending []heldPacket
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if len(pending) > 0 {
			timer.Reset(time.Until(pending[0].at))
		}
		select {
		case <-stop:
			return
		case h := <-in:
			k := len(pending)
			for k > 0 && pending[k-1].at.After(h.at) {
				k--
			}
			pending = append(pending[:k], append([]heldPacket{h}, pending[k:]...)...)
		case <-timer.C:
			now := time.Now()
			for len(pending) > 0 && !pending[0].at.After(now) {
				_ = track.WriteRTP(pending[0].pkt)
				pending = pending[1:]
			}
		}
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
	}
}
