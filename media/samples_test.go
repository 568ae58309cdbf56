package media

import (
	"testing"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/internal/audiotest"
)

// The media tests play the module's one sample set: the test tones of
// internal/audiotest (3 s of 440 Hz and 1 kHz as 20 ms Opus frames) and the
// emulator's VP8 test pattern (3 s at 15 fps, a keyframe every second).
const (
	tone440  = 440
	tone1000 = 1000
	testIVF  = "testpattern"
)

// readOggOpus returns the Opus frames of a test tone (tone440 or tone1000).
func readOggOpus(t testing.TB, hz int) [][]byte {
	t.Helper()
	return audiotest.Tone(t, hz)
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
