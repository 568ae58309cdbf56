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
// its default): one op encodes the ten seconds, and a one-frame file to
// measure the program's fixed cost (start, headers); cpu-ns/frame is the
// process's CPU time (user + system) per frame with that fixed cost taken
// off, so it is libopus's per-frame cost plus Ogg writing.
func BenchmarkLibopusEncode(b *testing.B) {
	bin := tool(b, "opusenc")
	frames := speechInt16(b)
	dir := b.TempDir()
	write := func(name string, frames [][]int16) string {
		var data []byte
		for _, f := range frames {
			for _, v := range f {
				data = binary.LittleEndian.AppendUint16(data, uint16(v))
			}
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			b.Fatal(err)
		}
		return path
	}
	clip, one := write("clip.s16", frames), write("one.s16", frames[:1])
	run := func(raw string) time.Duration {
		cmd := exec.Command(bin, "--quiet", "--raw", "--raw-rate", "48000", "--raw-chan", "1", "--raw-bits", "16",
			"--bitrate", "64", "--hard-cbr", "--music", "--framesize", "20", raw, filepath.Join(dir, "out.opus"))
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("opusenc: %v: %s", err, msg)
		}
		return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	var cpu, fixed time.Duration
	for b.Loop() {
		cpu += run(clip)
		fixed += run(one)
	}
	b.ReportMetric(float64((cpu-fixed).Nanoseconds())/float64(b.N*(len(frames)-1)), "cpu-ns/frame")
	b.ReportMetric(float64(fixed.Nanoseconds())/float64(b.N), "cpu-ns/start")
}

// processCPU is the CPU time, user and system, this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
