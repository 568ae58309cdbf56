package audiotest

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/voicebridge/bridge/internal/oggopus"
)

// libopus through Debian's opus-tools (installed by .ci/run): the
// reference encoder, to make the Opus a browser would send, and the
// reference decoder, to hear what the bridge sent with a decoder we did
// not write.

// Sine returns seconds of a sine of hz Hz at amplitude amp (1 is full
// scale), mono at SampleRate.
func Sine(hz, amp, seconds float64) []float32 {
	pcm := make([]float32, int(seconds*SampleRate))
	for i := range pcm {
		pcm[i] = float32(amp * math.Sin(2*math.Pi*hz*float64(i)/SampleRate))
	}
	return pcm
}

// LibopusEncode encodes mono pcm at SampleRate with libopus's opusenc in
// 20 ms frames at bitrate bit/s; extra are further opusenc flags
// ("--hard-cbr", "--music", "--speech"). A missing opusenc fails the test.
func LibopusEncode(t testing.TB, pcm []float32, bitrate int, extra ...string) [][]byte {
	t.Helper()
	bin, err := exec.LookPath("opusenc")
	if err != nil {
		t.Fatal("opusenc (Debian's opus-tools) is not installed; .ci/run installs it")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.wav"), filepath.Join(dir, "out.opus")
	if err := os.WriteFile(in, wav(pcm), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--quiet", "--framesize", "20", "--bitrate", strconv.FormatFloat(float64(bitrate)/1000, 'f', -1, 64),
		"--padding", "0", "--discard-comments"}, extra...)
	args = append(args, in, out)
	if msg, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("opusenc: %v: %s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := oggopus.Frames(data)
	if err != nil {
		t.Fatalf("opusenc's output: %v", err)
	}
	return frames
}

// LibopusDecode decodes 20 ms Opus frames, in order, with libopus's
// opusdec to mono samples at SampleRate. A missing opusdec fails the test.
func LibopusDecode(t testing.TB, frames [][]byte) []float32 {
	t.Helper()
	bin, err := exec.LookPath("opusdec")
	if err != nil {
		t.Fatal("opusdec (Debian's opus-tools) is not installed; .ci/run installs it")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.opus"), filepath.Join(dir, "out.f32")
	if err := os.WriteFile(in, OggOpus(frames), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(bin, "--quiet", "--rate", "48000", "--force-stereo", "--float", in, out).CombinedOutput(); err != nil {
		t.Fatalf("opusdec: %v: %s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// Stereo out (a stereo packet and a mono one alike), mixed down.
	pcm := make([]float32, len(raw)/8)
	for i := range pcm {
		l := math.Float32frombits(binary.LittleEndian.Uint32(raw[8*i:]))
		r := math.Float32frombits(binary.LittleEndian.Uint32(raw[8*i+4:]))
		pcm[i] = (l + r) / 2
	}
	return pcm
}

// wav is pcm as a 16-bit mono WAV file at SampleRate.
func wav(pcm []float32) []byte {
	b := []byte("RIFF")
	b = binary.LittleEndian.AppendUint32(b, uint32(36+2*len(pcm)))
	b = append(b, "WAVEfmt "...)
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = binary.LittleEndian.AppendUint16(b, 1) // PCM
	b = binary.LittleEndian.AppendUint16(b, 1) // mono
	b = binary.LittleEndian.AppendUint32(b, SampleRate)
	b = binary.LittleEndian.AppendUint32(b, 2*SampleRate)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 16)
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(2*len(pcm)))
	for _, x := range pcm {
		v := math.Round(float64(x) * 32767)
		b = binary.LittleEndian.AppendUint16(b, uint16(int16(max(-32768, min(32767, v)))))
	}
	return b
}

// oggCRC is Ogg's CRC-32 (RFC 3533 §6): polynomial 0x04c11db7, not
// reflected, zero initial value, no final xor.
var oggCRC = func() *[256]uint32 {
	var t [256]uint32
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return &t
}()

// OggOpus wraps 20 ms Opus frames in a stereo Ogg Opus file (Discord's
// streams are stereo; a mono packet decodes in it too): OggOpusChannels
// with two channels.
func OggOpus(frames [][]byte) []byte { return OggOpusChannels(frames, 2) }

// OggOpusChannels wraps 20 ms Opus frames in an Ogg Opus file (RFC 7845):
// an OpusHead of the given channel count (1 or 2, mapping family 0)
// without pre-skip, empty OpusTags, one frame per page. The channel count
// is what a decoder such as opusdec writes out.
func OggOpusChannels(frames [][]byte, channels int) []byte {
	const serial = 0x6d1c
	head := []byte("OpusHead")
	head = append(head, 1, byte(channels))
	head = binary.LittleEndian.AppendUint16(head, 0)
	head = binary.LittleEndian.AppendUint32(head, SampleRate)
	head = binary.LittleEndian.AppendUint16(head, 0)
	head = append(head, 0)
	tags := []byte("OpusTags")
	tags = binary.LittleEndian.AppendUint32(tags, 4)
	tags = append(tags, "test"...)
	tags = binary.LittleEndian.AppendUint32(tags, 0)
	var out []byte
	seq := uint32(0)
	page := func(packet []byte, granule uint64, flags byte) {
		start := len(out)
		out = append(out, "OggS"...)
		out = append(out, 0, flags)
		out = binary.LittleEndian.AppendUint64(out, granule)
		out = binary.LittleEndian.AppendUint32(out, serial)
		out = binary.LittleEndian.AppendUint32(out, seq)
		seq++
		out = binary.LittleEndian.AppendUint32(out, 0)
		var lacing []byte
		n := len(packet)
		for n >= 255 {
			lacing = append(lacing, 255)
			n -= 255
		}
		lacing = append(lacing, byte(n))
		out = append(out, byte(len(lacing)))
		out = append(out, lacing...)
		out = append(out, packet...)
		var crc uint32
		for _, c := range out[start:] {
			crc = crc<<8 ^ oggCRC[byte(crc>>24)^c]
		}
		binary.LittleEndian.PutUint32(out[start+22:], crc)
	}
	page(head, 0, 2)
	page(tags, 0, 0)
	for i, f := range frames {
		flags := byte(0)
		if i == len(frames)-1 {
			flags = 4
		}
		page(f, uint64(i+1)*960, flags)
	}
	return out
}

// ToneDB is the level, in dB relative to a full-scale sine, of the
// component of hz Hz in pcm sampled at SampleRate.
func ToneDB(pcm []float32, hz float64) float64 {
	p := Goertzel(pcm, hz, SampleRate)
	return 20 * math.Log10(2*math.Sqrt(math.Max(p, 0))/float64(len(pcm))+1e-12)
}
