package opusenc_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/voicebridge/bridge/media/opusenc"
)

// tool returns the path of a program from Debian's opus-tools; without it
// the test is skipped, except under CI=true (where .ci/run installs it),
// where it fails.
func tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (opus-tools) is not installed: %v", name, err)
		}
		t.Skipf("%s (opus-tools) is not installed", name)
	}
	return path
}

// sine is seconds of a sine at hz Hz of the given peak amplitude.
func sine(hz, amplitude, seconds float64) []float32 {
	out := make([]float32, int(seconds*opusenc.SampleRate))
	for i := range out {
		out[i] = float32(amplitude * math.Sin(2*math.Pi*hz*float64(i)/opusenc.SampleRate))
	}
	return out
}

// encodeAll encodes pcm, padded with silence to whole frames, and returns
// the packets and the encoder's final range after each.
func encodeAll(t testing.TB, opts opusenc.Options, pcm []float32) ([][]byte, []uint32) {
	t.Helper()
	enc, err := opusenc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var packets [][]byte
	var ranges []uint32
	frame := make([]float32, opusenc.FrameSize)
	for off := 0; off < len(pcm); off += opusenc.FrameSize {
		clear(frame)
		copy(frame, pcm[off:])
		out := make([]byte, enc.PacketSize())
		n, err := enc.EncodeFloat32(frame, out)
		if err != nil {
			t.Fatal(err)
		}
		if n != enc.PacketSize() {
			t.Fatalf("frame %d: %d bytes, want %d", len(packets), n, enc.PacketSize())
		}
		packets = append(packets, out[:n])
		ranges = append(ranges, enc.FinalRange())
	}
	return packets, ranges
}

// opusdec decodes an Ogg Opus file with libopus's opusdec to float PCM at
// 48 kHz, and returns it with the decoder's final range after each packet
// (its --save-range check values).
func opusdec(t testing.TB, ogg []byte) ([]float32, []uint32) {
	t.Helper()
	bin := tool(t, "opusdec")
	dir := t.TempDir()
	in, out, rng := filepath.Join(dir, "in.opus"), filepath.Join(dir, "out.f32"), filepath.Join(dir, "range.txt")
	if err := os.WriteFile(in, ogg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--quiet", "--rate", "48000", "--float", "--save-range", rng, in, out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opusdec: %v: %s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]float32, len(raw)/4)
	for i := range pcm {
		pcm[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	text, err := os.ReadFile(rng)
	if err != nil {
		t.Fatal(err)
	}
	var ranges []uint32
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ",")
		v, err := strconv.ParseUint(strings.Trim(fields[len(fields)-1], " ]"), 10, 32)
		if err != nil {
			t.Fatalf("opusdec range line %q: %v", sc.Text(), err)
		}
		ranges = append(ranges, uint32(v))
	}
	return pcm, ranges
}

// clapOnsets are where claps starts: every 150 ms from 62.5 ms.
func clapOnsets(seconds float64) []int {
	var out []int
	for start := 3000; start+4800 < int(seconds*opusenc.SampleRate); start += 7200 {
		out = append(out, start)
	}
	return out
}

// claps is seconds of faint noise with a clap at each of clapOnsets: a
// noise burst with a sharp attack decaying over 12.5 ms, the kind of
// sound a long transform smears into pre-echo.
func claps(seconds float64) []float32 {
	r := rand.New(rand.NewPCG(9, 9))
	out := make([]float32, int(seconds*opusenc.SampleRate))
	for i := range out {
		out[i] = float32(0.01 * (2*r.Float64() - 1))
	}
	for _, start := range clapOnsets(seconds) {
		for i := range 4800 {
			out[start+i] += float32(0.7 * math.Exp(-float64(i)/600) * (2*r.Float64() - 1))
		}
	}
	return out
}
