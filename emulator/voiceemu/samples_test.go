package voiceemu

import (
	"errors"
	"testing"
)

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
	// The tests' tones are not embedded in the binary (internal/audiotest).
	for _, name := range []string{"nope", "tone-440", "tone-1000"} {
		if _, err := LoadOpusSample(name); !errors.Is(err, ErrUnknownSample) {
			t.Fatalf("sample %q: %v, want ErrUnknownSample", name, err)
		}
	}
	if _, err := LoadVP8Sample("nope"); !errors.Is(err, ErrUnknownSample) {
		t.Fatalf("unknown sample: %v", err)
	}
}
