package opusenc_test

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/voicebridge/bridge/media/opusenc"
)

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

// BenchmarkEncode is our encoder's time per 20 ms frame of speech at
// 64 kbit/s (ns/op and ns/frame are the same here).
func BenchmarkEncode(b *testing.B) {
	frames := speechInt16(b)
	enc, err := opusenc.New(opusenc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, enc.PacketSize())
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		if _, err := enc.Encode(frames[i%len(frames)], out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/frame")
}

// BenchmarkLibopusEncode is libopus's time for the same frames, through
// Debian's opusenc (CELT-only, hard CBR, 64 kbit/s, 20 ms, complexity 10,
// its default): one op encodes the ten seconds; ns/frame is the process's
// CPU time (user + system) per frame, which includes the program's start
// and Ogg writing, so it overstates libopus's per-frame cost slightly.
func BenchmarkLibopusEncode(b *testing.B) {
	bin := tool(b, "opusenc")
	frames := speechInt16(b)
	dir := b.TempDir()
	raw := filepath.Join(dir, "in.s16")
	var data []byte
	for _, f := range frames {
		for _, v := range f {
			data = binary.LittleEndian.AppendUint16(data, uint16(v))
		}
	}
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		b.Fatal(err)
	}
	var cpu time.Duration
	for b.Loop() {
		cmd := exec.Command(bin, "--quiet", "--raw", "--raw-rate", "48000", "--raw-chan", "1", "--raw-bits", "16",
			"--bitrate", "64", "--hard-cbr", "--music", "--framesize", "20", raw, filepath.Join(dir, "out.opus"))
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("opusenc: %v: %s", err, msg)
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(frames)), "ns/frame")
}
