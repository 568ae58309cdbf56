package opusenc_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/voicebridge/bridge/internal/audiotest"
	"github.com/voicebridge/bridge/internal/oggopus"
	"github.com/voicebridge/bridge/media/opusenc"
)

// speech is the emulator's speech sample decoded with pion/opus: about
// three seconds of a voice, mono at 48 kHz.
func speech(t testing.TB) []float32 {
	t.Helper()
	data, err := os.ReadFile("../../emulator/voiceemu/samples/speech.opus")
	if err != nil {
		t.Fatal(err)
	}
	frames, err := oggopus.Frames(data)
	if err != nil {
		t.Fatal(err)
	}
	return audiotest.DecodeOpus(t, frames)
}

// noise is seconds of white noise of the given peak amplitude.
func noise(amplitude, seconds float64) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]float32, int(seconds*opusenc.SampleRate))
	for i := range out {
		out[i] = float32(amplitude * (2*r.Float64() - 1))
	}
	return out
}

// TestPacketsAreCELTOnly checks the framing: every packet is
// Bitrate/400 bytes and starts with the TOC of one CELT-only fullband
// 20 ms mono frame (RFC 6716 §3.1).
func TestPacketsAreCELTOnly(t *testing.T) {
	for _, rate := range []int{0, 24000, 64000, 128000, opusenc.MaxBitrate} {
		packets, _ := encodeAll(t, opusenc.Options{Bitrate: rate}, sine(1000, 0.3, 0.2))
		want := rate / 400
		if rate == 0 {
			want = opusenc.DefaultBitrate / 400
		}
		for i, p := range packets {
			if len(p) != want {
				t.Fatalf("%d bit/s: packet %d is %d bytes, want %d", rate, i, len(p), want)
			}
			config, stereo, code := p[0]>>3, p[0]>>2&1, p[0]&3
			if config != 31 || stereo != 0 || code != 0 {
				t.Fatalf("%d bit/s: packet %d TOC %#x: config %d stereo %d code %d, want 31 0 0", rate, i, p[0], config, stereo, code)
			}
			if n, err := oggopus.PacketSamples(p); err != nil || n != opusenc.FrameSize {
				t.Fatalf("packet %d: %d samples (%v), want %d", i, n, err, opusenc.FrameSize)
			}
		}
	}
}

// TestFinalRangeMatchesLibopus is the bit-exactness check of the range
// coder and of every decision the decoder re-derives (allocation, pulse
// counts, split angles): libopus's decoder, reading our packets, ends each
// one with the range coder in exactly the state our encoder ended in. One
// symbol coded with a probability the decoder does not expect, or one
// eighth of a bit of allocation disagreement, and the ranges part.
func TestFinalRangeMatchesLibopus(t *testing.T) {
	inputs := []struct {
		name string
		pcm  []float32
	}{
		{"440 Hz", sine(440, 0.5, 1)},
		{"2.5 kHz quiet", sine(2500, 0.01, 1)},
		{"white noise", noise(0.5, 1)},
		{"full scale noise", noise(1, 0.5)},
		{"speech", speech(t)},
		{"claps (short blocks)", claps(1)},
		{"silence then tone", append(make([]float32, 4800), sine(1000, 0.5, 0.5)...)},
	}
	for _, rate := range []int{opusenc.MinBitrate, 16000, 64000, 192000, opusenc.MaxBitrate} {
		for _, in := range inputs {
			packets, ours := encodeAll(t, opusenc.Options{Bitrate: rate}, in.pcm)
			_, theirs := opusdec(t, audiotest.OggOpusChannels(packets, 1))
			if len(theirs) != len(ours) {
				t.Fatalf("%s at %d bit/s: opusdec decoded %d packets, want %d", in.name, rate, len(theirs), len(ours))
			}
			for i := range ours {
				if ours[i] != theirs[i] {
					t.Fatalf("%s at %d bit/s: packet %d: final range %#x, libopus %#x", in.name, rate, i, ours[i], theirs[i])
				}
			}
		}
	}
}

func TestNewRejectsBitrate(t *testing.T) {
	for _, rate := range []int{-1, opusenc.MinBitrate - 1, opusenc.MaxBitrate + 1} {
		if _, err := opusenc.New(opusenc.Options{Bitrate: rate}); !errors.Is(err, opusenc.ErrBitrate) {
			t.Fatalf("New(%d bit/s): %v, want ErrBitrate", rate, err)
		}
	}
}

func TestEncodeRejectsSizes(t *testing.T) {
	enc, err := opusenc.New(opusenc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, enc.PacketSize())
	if _, err := enc.Encode(make([]int16, 480), out); !errors.Is(err, opusenc.ErrFrameSize) {
		t.Fatalf("480 samples: %v, want ErrFrameSize", err)
	}
	if _, err := enc.EncodeFloat32(make([]float32, 961), out); !errors.Is(err, opusenc.ErrFrameSize) {
		t.Fatalf("961 samples: %v, want ErrFrameSize", err)
	}
	if _, err := enc.Encode(make([]int16, opusenc.FrameSize), out[:10]); !errors.Is(err, opusenc.ErrFrameSize) {
		t.Fatalf("10-byte buffer: %v, want ErrFrameSize", err)
	}
}

// speechInt16 is the speech clip as 16-bit frames, repeated to ten
// seconds (500 frames).
func speechInt16(t testing.TB) [][]int16 {
	t.Helper()
	src := speech(t)
	frames := make([][]int16, 500)
	for f := range frames {
		frames[f] = make([]int16, opusenc.FrameSize)
		for i := range frames[f] {
			v := src[(f*opusenc.FrameSize+i)%len(src)]
			frames[f][i] = int16(max(-32768, min(32767, math.Round(float64(v)*32768))))
		}
	}
	return frames
}

// TestEncodeDoesNotAllocate: in steady state a frame costs no allocation.
func TestEncodeDoesNotAllocate(t *testing.T) {
	frames := speechInt16(t)
	enc, err := opusenc.New(opusenc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, enc.PacketSize())
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := enc.Encode(frames[i%len(frames)], out); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per frame, want 0", allocs)
	}
}

// silenceFrame is the Opus silence frame Discord clients send when they
// stop speaking.
var silenceFrame = []byte{0xf8, 0xff, 0xfe}

// TestResetAfterSilenceFrames: a stream that stops with Discord's
// silence frames and resumes after Reset decodes its first frames at the
// level a fresh stream of the same audio has; without Reset, the
// decoder's energies, reset by the silence frames, would disagree with the
// encoder's prediction.
func TestResetAfterSilenceFrames(t *testing.T) {
	enc, err := opusenc.New(opusenc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	encodeWith := func(pcm []float32) [][]byte {
		var packets [][]byte
		for off := 0; off+opusenc.FrameSize <= len(pcm); off += opusenc.FrameSize {
			out := make([]byte, enc.PacketSize())
			n, err := enc.EncodeFloat32(pcm[off:off+opusenc.FrameSize], out)
			if err != nil {
				t.Fatal(err)
			}
			packets = append(packets, out[:n])
		}
		return packets
	}
	loud, after := sine(440, 0.8, 0.4), sine(1000, 0.05, 0.4)
	stream := encodeWith(loud)
	for range 5 {
		stream = append(stream, silenceFrame)
	}
	enc.Reset()
	resumed := encodeWith(after)
	stream = append(stream, resumed...)
	fresh, _ := encodeAll(t, opusenc.Options{}, after)

	got := audiotest.DecodeOpus(t, stream)[(len(stream)-len(resumed))*opusenc.FrameSize:]
	want := audiotest.DecodeOpus(t, fresh)
	rms := func(x []float32) float64 {
		var s float64
		for _, v := range x {
			s += float64(v) * float64(v)
		}
		return math.Sqrt(s / float64(len(x)))
	}
	for f := range 5 {
		frame := func(x []float32) []float32 { return x[f*opusenc.FrameSize : (f+1)*opusenc.FrameSize] }
		if db := 20 * math.Log10(rms(frame(got))/rms(frame(want))); math.Abs(db) > 1 {
			t.Fatalf("frame %d after the silence: %+.1f dB from a fresh stream's", f, db)
		}
	}
}
