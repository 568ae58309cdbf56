package media

import (
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/voicebridge/bridge/internal/audiotest"
)

// pcmEncoder "encodes" a frame as its raw int16 samples, so a test sees
// exactly what the mixer made.
type pcmEncoder struct{}

func (pcmEncoder) Encode(pcm []int16, out []byte) (int, error) {
	if len(pcm) != mixFrame {
		return 0, errors.New("not one frame")
	}
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
	}
	return 2 * len(pcm), nil
}

// pcmOf reads a pcmEncoder frame back.
func pcmOf(frame []byte) []float32 {
	out := make([]float32, len(frame)/2)
	for i := range out {
		out[i] = float32(int16(binary.LittleEndian.Uint16(frame[2*i:]))) / 32767
	}
	return out
}

// toneSource names a test input and the tone it plays.
type toneSource struct {
	src string
	dec toneDecoder
}

// newTestMixer is a mixer whose inputs decode as toneDecoders chosen by
// the order the inputs first appear.
func newTestMixer(t *testing.T, o MixOptions, sources []toneSource) (*mixer, *[][]byte) {
	t.Helper()
	o.NewEncoder = func(int) (Encoder, error) { return pcmEncoder{}, nil }
	cfg, err := o.validate()
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	next := 0
	newDec := func() (frameDecoder, error) {
		d := sources[next].dec
		next++
		return d, nil
	}
	m := newMixer(cfg, pcmEncoder{}, newDec, func(b []byte) { frames = append(frames, b) }, wallClock{})
	return m, &frames
}

// feed runs ticks of the mixer with one packet per source per tick,
// arriving 5 ms before the tick (clear of the buffer's guard, so each
// tick plays the packet that came before it); silent lists sources that
// send nothing.
func feed(m *mixer, sources []toneSource, from, ticks int, silent map[string]bool) {
	base := time.Unix(1_700_000_000, 0)
	for n := from; n < from+ticks; n++ {
		now := base.Add(time.Duration(n) * frameTime)
		for _, s := range sources {
			if !silent[s.src] {
				m.push(mixPacket{src: s.src, seq: uint16(n), ts: uint32(n * mixFrame), payload: framePayload(n), at: now.Add(-5 * time.Millisecond)})
			}
		}
		m.tick(now)
	}
}

// toneDB is the level in dB of a sine of hz in pcm (Goertzel, scaled so a
// full-scale sine is 0 dB).
func toneDB(pcm []float32, hz float64) float64 {
	p := audiotest.Goertzel(pcm, hz, mixRate)
	amp := 2 * math.Sqrt(p) / float64(len(pcm))
	return 20 * math.Log10(amp)
}

// Two and three tones at once: each is in the same frames as the others,
// at its level alone within 0.1 dB (the sum stays below the limiter).
func TestMixCarriesEveryTone(t *testing.T) {
	all := []toneSource{{"a", toneDecoder{440, 0.2}}, {"b", toneDecoder{1000, 0.2}}, {"c", toneDecoder{2500, 0.2}}}
	alone := map[float64]float64{}
	for _, s := range all {
		m, frames := newTestMixer(t, MixOptions{}, []toneSource{s})
		feed(m, []toneSource{s}, 0, 60, nil)
		pcm := pcmOf(concat((*frames)[20:60]))
		alone[s.dec.hz] = toneDB(pcm, s.dec.hz)
	}
	for _, n := range []int{2, 3} {
		srcs := all[:n]
		m, frames := newTestMixer(t, MixOptions{}, srcs)
		feed(m, srcs, 0, 60, nil)
		if len(*frames) < 55 {
			t.Fatalf("%d inputs: %d frames out of 60 ticks", n, len(*frames))
		}
		// Every frame holds every tone.
		for f := 20; f < 60; f++ {
			pcm := pcmOf((*frames)[f])
			for _, s := range srcs {
				if d := toneDB(pcm, s.dec.hz) - alone[s.dec.hz]; math.Abs(d) > 1 {
					t.Fatalf("%d inputs, frame %d: %v Hz at %.2f dB from its level alone, want within 1 dB", n, f, s.dec.hz, d)
				}
			}
		}
		pcm := pcmOf(concat((*frames)[20:60]))
		for _, s := range srcs {
			if d := toneDB(pcm, s.dec.hz) - alone[s.dec.hz]; math.Abs(d) > 0.1 {
				t.Fatalf("%d inputs: %v Hz at %.2f dB from its level alone", n, s.dec.hz, d)
			}
		}
	}
}

func concat(frames [][]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}

// Loud inputs together never clip: the limiter holds the sum under its
// ceiling, and a lone quiet input passes untouched.
func TestMixLimiterNeverClips(t *testing.T) {
	srcs := []toneSource{{"a", toneDecoder{440, 0.9}}, {"b", toneDecoder{445, 0.9}}, {"c", toneDecoder{450, 0.9}}, {"d", toneDecoder{1000, 0.9}}}
	m, frames := newTestMixer(t, MixOptions{}, srcs)
	feed(m, srcs, 0, 200, nil)
	peak := 0.0
	for _, f := range *frames {
		for _, x := range pcmOf(f) {
			peak = max(peak, math.Abs(float64(x)))
		}
	}
	if peak > limitCeiling+1e-4 {
		t.Fatalf("peak %.4f, over the ceiling %.3f", peak, limitCeiling)
	}
	if peak < 0.8 {
		t.Fatalf("peak %.4f: the limiter pulls far below its ceiling", peak)
	}
	quiet := []toneSource{{"q", toneDecoder{440, 0.3}}}
	m, frames = newTestMixer(t, MixOptions{}, quiet)
	feed(m, quiet, 0, 40, nil)
	if d := toneDB(pcmOf(concat((*frames)[10:40])), 440) - 20*math.Log10(0.3); math.Abs(d) > 0.05 {
		t.Fatalf("a lone 0.3 tone comes out %.3f dB off", d)
	}
}

// MaxSpeakers keeps the loudest; a speaker's gain scales it.
func TestMixLoudestAndGain(t *testing.T) {
	srcs := []toneSource{{"loud", toneDecoder{440, 0.3}}, {"mid", toneDecoder{1000, 0.2}}, {"soft", toneDecoder{2500, 0.05}}}
	m, frames := newTestMixer(t, MixOptions{MaxSpeakers: 2}, srcs)
	m.setGain("mid", 0.5)
	feed(m, srcs, 0, 60, nil)
	pcm := pcmOf(concat((*frames)[20:60]))
	if d := toneDB(pcm, 440) - 20*math.Log10(0.3); math.Abs(d) > 0.1 {
		t.Fatalf("loudest at %.2f dB off", d)
	}
	if d := toneDB(pcm, 1000) - 20*math.Log10(0.1); math.Abs(d) > 0.1 {
		t.Fatalf("gain 0.5 gives %.2f dB off -6 dB", d)
	}
	if l := toneDB(pcm, 2500); l > -70 {
		t.Fatalf("the third speaker is in a two-speaker mix at %.1f dB", l)
	}
}

// Nobody speaking: no frames after the last speech's hangover; speech
// again: frames again.
func TestMixStopsInSilence(t *testing.T) {
	srcs := []toneSource{{"a", toneDecoder{440, 0.3}}}
	m, frames := newTestMixer(t, MixOptions{}, srcs)
	feed(m, srcs, 0, 50, nil)
	before := len(*frames)
	feed(m, srcs, 50, 100, map[string]bool{"a": true})
	during := len(*frames) - before
	// Concealment fades over 3 frames, then the hangover's 15 frames,
	// and the gain's ramp to zero: then nothing.
	if during > 3+activeHangover+2 {
		t.Fatalf("%d frames sent in 2 s of silence, want the tail only", during)
	}
	mark := len(*frames)
	feed(m, srcs, 150, 50, nil)
	if got := len(*frames) - mark; got < 45 {
		t.Fatalf("speech again: %d frames in 50 ticks", got)
	}
}

// jumpClock jumps to each deadline at once, so the mixer's loop runs
// as fast as it can on simulated time.
type jumpClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *jumpClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *jumpClock) After(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// The mixer's own loop sends exactly one frame per 20 ms of its clock.
func TestMixPacedAt50PerSecond(t *testing.T) {
	cfg, err := MixOptions{NewEncoder: func(int) (Encoder, error) { return pcmEncoder{}, nil }}.validate()
	if err != nil {
		t.Fatal(err)
	}
	clock := &jumpClock{now: time.Unix(1_700_000_000, 0)}
	start := clock.now
	var sentAt []time.Time
	done := make(chan struct{})
	var m *mixer
	n := 0
	push := func() {
		m.push(mixPacket{src: "a", seq: uint16(n), ts: uint32(n * mixFrame), payload: framePayload(n), at: start.Add(time.Duration(n) * frameTime)})
		n++
	}
	dec := toneDecoder{440, 0.3}
	// The send callback runs on the mixer's goroutine: it hands over the
	// next packet, so the input never runs dry.
	m = newMixer(cfg, pcmEncoder{}, func() (frameDecoder, error) { return dec, nil }, func([]byte) {
		sentAt = append(sentAt, clock.Now())
		push()
		if len(sentAt) == 500 {
			close(done)
		}
	}, clock)
	for range 3 {
		push()
	}
	m.start()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("500 frames did not come")
	}
	m.stop()
	// One frame a tick from the first: no lead frame before the spurt.
	if sentAt[0] != sentAt[1].Add(-frameTime) {
		t.Fatalf("the second frame went %s after the first, want 20 ms", sentAt[1].Sub(sentAt[0]))
	}
	sentAt = sentAt[1:500]
	for i := 1; i < len(sentAt); i++ {
		if d := sentAt[i].Sub(sentAt[i-1]); d != frameTime {
			t.Fatalf("frame %d sent %s after the previous, want exactly 20 ms", i, d)
		}
	}
	if got := sentAt[len(sentAt)-1].Sub(sentAt[0]); got != 498*frameTime {
		t.Fatalf("499 frames over %s, want %s", got, 498*frameTime)
	}
}

func TestMixOptionsValidate(t *testing.T) {
	for _, o := range []MixOptions{{Bitrate: 1000}, {MaxSpeakers: -1}, {JitterMin: 300 * time.Millisecond, JitterMax: 100 * time.Millisecond}, {JitterMax: 2 * time.Second}} {
		if _, err := o.validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: err %v, want ErrInvalidOptions", o, err)
		}
	}
	cfg, err := MixOptions{JitterMin: 30 * time.Millisecond}.validate()
	if err != nil || cfg.bounds != (jitterBounds{2, 10}) || cfg.Bitrate != 64000 || cfg.MaxSpeakers != 8 {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}
