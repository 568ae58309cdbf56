package voiceemu

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/voicebridge/bridge/internal/oggopus"
)

// samples are what the demo's simulated members play, made by
// scripts/make-samples.sh. The tests' tones are not here but in
// internal/audiotest: the binary carries only what it plays.
//
//go:embed samples/*.opus samples/*.ivf
var samples embed.FS

// LoadOpusSample returns the 20 ms Opus frames of an embedded Ogg Opus
// sample: "speech" (a spoken sentence, stereo).
func LoadOpusSample(name string) ([][]byte, error) {
	data, err := samples.ReadFile("samples/" + name + ".opus")
	if err != nil {
		return nil, fmt.Errorf("%w: %q (have speech)", ErrUnknownSample, name)
	}
	frames, err := oggopus.Frames(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadSample, name, err)
	}
	return frames, nil
}

// LoadVP8Sample returns the frames of an embedded IVF sample:
// "testpattern" (3 s of 320x240 at 15 fps, a key frame every second).
func LoadVP8Sample(name string) ([]VideoFrame, error) {
	data, err := samples.ReadFile("samples/" + name + ".ivf")
	if err != nil {
		return nil, fmt.Errorf("%w: %q (have testpattern)", ErrUnknownSample, name)
	}
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadSample, name, err)
	}
	if hdr.FourCC != "VP80" {
		return nil, fmt.Errorf("%w: %s: codec %q, want VP80", ErrBadSample, name, hdr.FourCC)
	}
	var frames []VideoFrame
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: frame %d: %w", ErrBadSample, name, len(frames), err)
		}
		frames = append(frames, VideoFrame{Data: frame, Keyframe: vp8IsKeyframe(frame)})
	}
	if len(frames) == 0 || !frames[0].Keyframe {
		return nil, fmt.Errorf("%w: %s: does not start with a key frame", ErrBadSample, name)
	}
	return frames, nil
}
