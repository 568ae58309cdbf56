// Package audiotest holds the audio that tests across the module share:
// test tones as Opus frames, Opus frames decoded to PCM, and the dominant
// frequency of a tone found with the Goertzel algorithm, so that a test can
// assert that the tone it sent is the tone that arrived. The bridge binary
// does not import it.
package audiotest

import (
	"embed"
	"fmt"
	"math"
	"testing"

	"github.com/pion/opus"

	"github.com/voicebridge/bridge/internal/oggopus"
)

// tones are 3 s stereo sines at 48 kHz, encoded as 20 ms Opus frames by
// scripts/make-samples.sh.
//
//go:embed tones/*.opus
var tones embed.FS

// Tone returns the 20 ms Opus frames of 3 s of a sine at hz Hz: 440
// or 1000; any other fails the test.
func Tone(t testing.TB, hz int) [][]byte {
	t.Helper()
	data, err := tones.ReadFile(fmt.Sprintf("tones/tone-%d.opus", hz))
	if err != nil {
		t.Fatalf("no %d Hz test tone (have 440 and 1000 Hz)", hz)
	}
	frames, err := oggopus.Frames(data)
	if err != nil {
		t.Fatalf("the %d Hz test tone: %v", hz, err)
	}
	return frames
}

// SampleRate is the rate, in Hz, of Discord's and WebRTC's Opus and of the
// PCM that DecodeOpus returns.
const SampleRate = 48000

// The band DominantFrequency searches, in Hz: it holds every test tone and
// leaves out hum and the top of the speech band.
const (
	lowestFrequency  = 50
	highestFrequency = 4000
)

// DecodeOpus decodes Opus frames, in order, to mono samples at SampleRate
// (a stereo stream is mixed down); a frame that does not decode fails the
// test.
func DecodeOpus(t testing.TB, frames [][]byte) []float32 {
	t.Helper()
	dec, err := opus.NewDecoderWithOutput(SampleRate, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 5760) // 120 ms, the longest Opus packet
	var pcm []float32
	for i, f := range frames {
		n, err := dec.DecodeToFloat32(f, out)
		if err != nil {
			t.Fatalf("decode Opus frame %d (%d bytes): %v", i, len(f), err)
		}
		pcm = append(pcm, out[:n]...)
	}
	return pcm
}

// Goertzel returns the power of pcm, sampled at rate Hz, at freq Hz: one
// bin of a discrete Fourier transform, computed alone.
func Goertzel(pcm []float32, freq, rate float64) float64 {
	coeff := 2 * math.Cos(2*math.Pi*freq/rate)
	var s1, s2 float64
	for _, x := range pcm {
		s1, s2 = float64(x)+coeff*s1-s2, s1
	}
	return s1*s1 + s2*s2 - coeff*s1*s2
}

// DominantFrequency returns the frequency, to 1 Hz, from 50 Hz to 4 kHz
// with the most power in pcm sampled at rate Hz. It looks at the middle
// second of pcm at most (a tone's start and end carry the codec's
// transients), scanning in 10 Hz steps and then in 1 Hz steps around the
// strongest. It returns 0 for no samples.
func DominantFrequency(pcm []float32, rate float64) float64 {
	if len(pcm) == 0 {
		return 0
	}
	if second := int(rate); len(pcm) > second {
		start := (len(pcm) - second) / 2
		pcm = pcm[start : start+second]
	}
	best, bestPower := 0.0, -1.0
	try := func(f float64) {
		if p := Goertzel(pcm, f, rate); p > bestPower {
			best, bestPower = f, p
		}
	}
	for f := float64(lowestFrequency); f <= highestFrequency; f += 10 {
		try(f)
	}
	center := best
	for f := max(center-9, lowestFrequency); f <= min(center+9, highestFrequency); f++ {
		try(f)
	}
	return best
}

// Frequency is the dominant frequency of Opus frames: DecodeOpus, then
// DominantFrequency.
func Frequency(t testing.TB, frames [][]byte) float64 {
	t.Helper()
	return DominantFrequency(DecodeOpus(t, frames), SampleRate)
}

// minToneSamples is the least audio RequireTone judges: half a second.
const minToneSamples = SampleRate / 2

// RequireTone fails the test unless frames hold at least half a second of
// Opus whose dominant frequency is want Hz within 2%; what names the audio
// in the message.
func RequireTone(t testing.TB, what string, frames [][]byte, want float64) {
	t.Helper()
	pcm := DecodeOpus(t, frames)
	if len(pcm) < minToneSamples {
		t.Fatalf("%s: %d frames decode to %d samples, want at least %d (half a second)", what, len(frames), len(pcm), minToneSamples)
	}
	got := DominantFrequency(pcm, SampleRate)
	if math.Abs(got-want) > want*0.02 {
		t.Fatalf("%s: dominant frequency %.0f Hz, want %.0f Hz within 2%%", what, got, want)
	}
	t.Logf("%s: %.0f Hz over %d frames", what, got, len(frames))
}
