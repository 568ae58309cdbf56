package mediatest

import (
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// CameraOptions adjust a Camera.
type CameraOptions struct {
	// KeyframesOnRequestOnly leaves the clip's own keyframes out after
	// its first pass, as an encoder with a long keyframe interval would:
	// a keyframe after the first pass is then always the answer to a
	// keyframe request.
	KeyframesOnRequestOnly bool
}

// Camera is a browser's camera: it sends a VP8 clip at 15 fps, looping,
// and answers a keyframe request (PLI, RFC 4585 §6.3.1, or FIR, RFC 5104
// §4.3.1) by jumping to the clip's next keyframe.
type Camera struct {
	requests  atomic.Int64
	firstPass chan struct{}
}

// Requests counts the keyframe requests the camera got.
func (c *Camera) Requests() int64 { return c.requests.Load() }

// FirstPass is closed once the clip was sent once.
func (c *Camera) FirstPass() <-chan struct{} { return c.firstPass }

// isKeyframe reads a VP8 frame tag (RFC 6386 §9.1: bit 0 clear).
func isKeyframe(frame []byte) bool { return len(frame) > 0 && frame[0]&1 == 0 }

// PublishVP8 adds a camera track in stream streamID to pc and sends the
// clip until stop closes; it also reads the sender's RTCP. Its two
// goroutines are counted in wg. The caller negotiates.
func PublishVP8(pc *webrtc.PeerConnection, streamID string, clip [][]byte, o CameraOptions, stop <-chan struct{}, wg *sync.WaitGroup) (*Camera, error) {
	if len(clip) == 0 || !isKeyframe(clip[0]) {
		return nil, errors.New("mediatest: a VP8 clip must begin with a keyframe")
	}
	if o.KeyframesOnRequestOnly && !slices.ContainsFunc(clip, func(f []byte) bool { return !isKeyframe(f) }) {
		return nil, errors.New("mediatest: KeyframesOnRequestOnly needs a clip with delta frames")
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", streamID)
	if err != nil {
		return nil, err
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		return nil, err
	}
	c := &Camera{firstPass: make(chan struct{})}
	want := make(chan struct{}, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					c.requests.Add(1)
					kick(want)
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / 15)
		defer tick.Stop()
		i, passed := 0, false
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if !passed && i >= len(clip) {
				passed = true
				close(c.firstPass)
			}
			select {
			case <-want:
				for !isKeyframe(clip[i%len(clip)]) {
					i++
				}
			default:
				for passed && o.KeyframesOnRequestOnly && isKeyframe(clip[i%len(clip)]) {
					i++
				}
			}
			f := clip[i%len(clip)]
			i++
			if err := track.WriteSample(media.Sample{Data: f, Duration: time.Second / 15}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
				return
			}
		}
	}()
	return c, nil
}
