//go:build unix

package opusenc_test

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/voicebridge/bridge/media/opusenc"
)

// BenchmarkEncode is our encoder's time per 20 ms frame of speech at
// 64 kbit/s: ns/op is wall time; cpu-ns/frame the process's CPU time per
// frame, the measure BenchmarkLibopusEncode can also give, so the two
// compare on a loaded machine.
func BenchmarkEncode(b *testing.B) {
	frames := speechInt16(b)
	enc, err := opusenc.New(opusenc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, enc.PacketSize())
	b.ReportAllocs()
	start := processCPU(b)
	for i := 0; b.Loop(); i++ {
		if _, err := enc.Encode(frames[i%len(frames)], out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/frame")
}

// BenchmarkLibopusEncode is libopus's time for the same frames, through
// Debian's opusenc (CELT-only, hard CBR, 64 kbit/s, 20 ms, complexity 10,
// its default): one op encodes the ten seconds; cpu-ns/frame is the
// process's CPU time (user + system) per frame, which includes the
// program's start and Ogg writing, so it overstates libopus's per-frame
// cost slightly.
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
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(frames)), "cpu-ns/frame")
}

// processCPU is the CPU time, user and system, this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
