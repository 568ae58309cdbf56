package audiotest_test

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/voicebridge/bridge/internal/audiotest"
)

// sine returns seconds of a sine at freq Hz sampled at rate Hz.
func sine(freq, rate, amplitude, seconds float64) []float32 {
	out := make([]float32, int(rate*seconds))
	for i := range out {
		out[i] = float32(amplitude * math.Sin(2*math.Pi*freq*float64(i)/rate))
	}
	return out
}

func mix(a, b []float32) []float32 {
	out := make([]float32, len(a))
	for i := range out {
		out[i] = a[i] + b[i]
	}
	return out
}

func TestDominantFrequency(t *testing.T) {
	for _, tc := range []struct {
		name string
		pcm  []float32
		rate float64
		want float64
	}{
		{"440 Hz at 48 kHz", sine(440, 48000, 0.5, 1), 48000, 440},
		{"1 kHz at 48 kHz, 3 s", sine(1000, 48000, 0.5, 3), 48000, 1000},
		{"443 Hz, between scan steps", sine(443, 48000, 0.5, 1), 48000, 443},
		{"880 Hz at 16 kHz, half a second", sine(880, 16000, 0.5, 0.5), 16000, 880},
		{"lowest of the band", sine(50, 48000, 0.5, 1), 48000, 50},
		{"highest of the band", sine(4000, 48000, 0.5, 1), 48000, 4000},
		{"the louder of two tones", mix(sine(600, 48000, 0.1, 1), sine(1500, 48000, 0.4, 1)), 48000, 1500},
		{"quiet", sine(700, 48000, 0.001, 1), 48000, 700},
		{"no samples", nil, 48000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := audiotest.DominantFrequency(tc.pcm, tc.rate); got != tc.want {
				t.Fatalf("got %v Hz, want %v Hz", got, tc.want)
			}
		})
	}
}

func TestGoertzelPeaksAtTheTone(t *testing.T) {
	pcm := sine(1000, 48000, 0.5, 0.1)
	at := audiotest.Goertzel(pcm, 1000, 48000)
	// A bin of N samples of amplitude A holds (A N / 2)^2.
	if want := math.Pow(0.5*float64(len(pcm))/2, 2); math.Abs(at-want) > want*0.01 {
		t.Fatalf("power at the tone %.0f, want %.0f", at, want)
	}
	for _, f := range []float64{500, 900, 1100, 2000} {
		if p := audiotest.Goertzel(pcm, f, 48000); p > at/1000 {
			t.Fatalf("power at %v Hz is %.0f, not far below %.0f at the tone", f, p, at)
		}
	}
}

func TestTonesDecodeToTheirFrequency(t *testing.T) {
	for _, hz := range []int{440, 1000} {
		t.Run(fmt.Sprint(hz), func(t *testing.T) {
			frames := audiotest.Tone(t, hz)
			if len(frames) < 150 || len(frames) > 151 { // the encoder's pre-skip may add one
				t.Fatalf("%d frames, want 150 (3 s of 20 ms)", len(frames))
			}
			pcm := audiotest.DecodeOpus(t, frames)
			if len(pcm) != len(frames)*960 {
				t.Fatalf("%d frames of 20 ms decode to %d samples, want %d", len(frames), len(pcm), len(frames)*960)
			}
			if got := audiotest.Frequency(t, frames); got != float64(hz) {
				t.Fatalf("dominant frequency %v Hz, want %d", got, hz)
			}
			audiotest.RequireTone(t, "the tone", frames, float64(hz))
		})
	}
	if msg := failure(func(r testing.TB) { audiotest.Tone(r, 880) }); !strings.Contains(msg, "no 880 Hz test tone") {
		t.Fatalf("an 880 Hz tone: %q", msg)
	}
}

// fatalRecorder stands in for a test to see what a check fails with; like
// testing.T, Fatalf ends the goroutine.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper()                   {}
func (r *fatalRecorder) Logf(string, ...any)       {}
func (r *fatalRecorder) Fatal(args ...any)         { r.msg = fmt.Sprint(args...); runtime.Goexit() }
func (r *fatalRecorder) Fatalf(f string, a ...any) { r.msg = fmt.Sprintf(f, a...); runtime.Goexit() }

// failure runs check against a recorder and returns its failure, "" if it
// passed.
func failure(check func(t testing.TB)) string {
	r := &fatalRecorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	return r.msg
}

func TestRequireToneFails(t *testing.T) {
	tone := audiotest.Tone(t, 440)
	for _, tc := range []struct {
		name   string
		check  func(t testing.TB)
		reason string // in the failure; "" for a pass
	}{
		{"the right tone", func(r testing.TB) { audiotest.RequireTone(r, "a", tone, 440) }, ""},
		{"within 2%", func(r testing.TB) { audiotest.RequireTone(r, "a", tone, 448) }, ""},
		{"another tone", func(r testing.TB) { audiotest.RequireTone(r, "a", tone, 1000) }, "a: dominant frequency 440 Hz, want 1000 Hz"},
		{"just outside 2%", func(r testing.TB) { audiotest.RequireTone(r, "a", tone, 450) }, "want 450 Hz within 2%"},
		{"too short", func(r testing.TB) { audiotest.RequireTone(r, "b", tone[:24], 440) }, "b: 24 frames decode to 23040 samples, want at least 24000"},
		{"not Opus", func(r testing.TB) { audiotest.RequireTone(r, "c", [][]byte{{}}, 440) }, "decode Opus frame 0 (0 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := failure(tc.check)
			if tc.reason == "" && got != "" {
				t.Fatalf("failed: %s", got)
			}
			if tc.reason != "" && !strings.Contains(got, tc.reason) {
				t.Fatalf("failure %q, want it to say %q", got, tc.reason)
			}
		})
	}
}
