package voiceemu

import (
	"errors"
	"math"
	"testing"

	"github.com/pion/opus"
)

// dominantFrequency decodes Opus frames (48 kHz stereo) and returns the
// frequency, in 5 Hz steps from 100 to 4000 Hz, with the most energy in
// the left channel, by the Goertzel algorithm over the middle second.
func dominantFrequency(t *testing.T, frames [][]byte) float64 {
	t.Helper()
	dec, err := opus.NewDecoderWithOutput(48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	var left []float64
	out := make([]float32, 2*5760)
	for i, f := range frames {
		n, err := dec.DecodeToFloat32(f, out)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if n != opusFrameSamples {
			t.Fatalf("frame %d decoded to %d samples, want %d", i, n, opusFrameSamples)
		}
		for j := 0; j < n; j++ {
			left = append(left, float64(out[2*j]))
		}
	}
	if len(left) < 2*48000 {
		t.Fatalf("only %d samples", len(left))
	}
	window := left[len(left)/2-24000 : len(left)/2+24000]
	best, bestPower := 0.0, 0.0
	for f := 100.0; f <= 4000; f += 5 {
		coeff := 2 * math.Cos(2*math.Pi*f/48000)
		var s1, s2 float64
		for _, x := range window {
			s1, s2 = x+coeff*s1-s2, s1
		}
		if p := s1*s1 + s2*s2 - coeff*s1*s2; p > bestPower {
			best, bestPower = f, p
		}
	}
	return best
}

func TestToneSamplesDecodeToTheirFrequency(t *testing.T) {
	for _, tc := range []struct {
		name string
		freq float64
	}{{"tone-1000", 1000}, {"tone-440", 440}} {
		t.Run(tc.name, func(t *testing.T) {
			frames, err := LoadOpusSample(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) < 149 || len(frames) > 151 {
				t.Fatalf("%d frames, want 150 (3 s of 20 ms)", len(frames))
			}
			if got := dominantFrequency(t, frames); math.Abs(got-tc.freq) > 5 {
				t.Fatalf("dominant frequency %.0f Hz, want %.0f", got, tc.freq)
			}
		})
	}
}

func TestSpeechAndVideoSamples(t *testing.T) {
	speech, err := LoadOpusSample("speech")
	if err != nil {
		t.Fatal(err)
	}
	if len(speech) < 100 { // at least 2 s of 20 ms frames
		t.Fatalf("speech has %d frames", len(speech))
	}
	video, err := LoadVP8Sample("testpattern")
	if err != nil {
		t.Fatal(err)
	}
	if len(video) != 45 {
		t.Fatalf("%d frames, want 45 (3 s at 15 fps)", len(video))
	}
	for i, f := range video {
		if want := i%15 == 0; f.Keyframe != want {
			t.Fatalf("frame %d keyframe %v, want %v (a key frame every 15)", i, f.Keyframe, want)
		}
	}
	if _, err := LoadOpusSample("nope"); !errors.Is(err, ErrUnknownSample) {
		t.Fatalf("unknown sample: %v", err)
	}
	if _, err := LoadVP8Sample("nope"); !errors.Is(err, ErrUnknownSample) {
		t.Fatalf("unknown sample: %v", err)
	}
}

func TestOggParserRejectsDamage(t *testing.T) {
	data, err := samples.ReadFile("samples/tone-440.opus")
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), data...)
	bad[200] ^= 0xff
	if _, err := oggPackets(bad); err == nil {
		t.Fatal("a flipped byte passed the page CRC")
	}
	if _, err := oggPackets(data[:len(data)-10]); err == nil {
		t.Fatal("a truncated file parsed")
	}
}
