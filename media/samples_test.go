package media

import (
	"testing"

	"github.com/voicebridge/bridge/emulator/voiceemu"
)

// The media tests play the emulator's samples (emulator/voiceemu/samples,
// made by scripts/make-samples.sh), the one sample set of the module's
// tests: 3 s tones of 440 Hz and 1 kHz as 20 ms Opus frames, and 3 s of a
// VP8 test pattern at 15 fps with a keyframe every second.
const (
	tone440  = "tone-440"
	tone1000 = "tone-1000"
	testIVF  = "testpattern"
)

// readOggOpus returns the Opus frames of a sample (tone440 or tone1000).
func readOggOpus(t testing.TB, sample string) [][]byte {
	t.Helper()
	frames, err := voiceemu.LoadOpusSample(sample)
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

// readIVF returns the VP8 frames of a sample (testIVF); the first is a
// keyframe.
func readIVF(t testing.TB, sample string) [][]byte {
	t.Helper()
	frames, err := voiceemu.LoadVP8Sample(sample)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(frames))
	for i, f := range frames {
		out[i] = f.Data
	}
	return out
}
