package voiceemu

import (
	"errors"
	"math"
	"testing"

	"github.com/voicebridge/bridge/internal/audiotest"
)

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
			if got := audiotest.Frequency(t, frames); math.Abs(got-tc.freq) > 5 {
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
