package opusenc_test

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/pion/opus"

	"github.com/voicebridge/bridge/media/opusenc"
)

// FuzzEncode feeds arbitrary PCM, as 16-bit samples and as floats, to the
// encoder at a bitrate the input picks: it must never fail, and every
// packet must have the configured size and decode with pion/opus (and,
// in the seed corpus run, end libopus's decoder in our final range:
// TestFinalRangeMatchesLibopus covers that for the hard inputs).
func FuzzEncode(f *testing.F) {
	f.Add(uint16(640), make([]byte, 4*opusenc.FrameSize))
	loud := make([]byte, 4*opusenc.FrameSize)
	for i := range loud {
		loud[i] = byte(0x7f + i%2*0x81)
	}
	f.Add(uint16(0), loud)
	f.Add(uint16(15), []byte("a short burst of bytes"))
	f.Add(uint16(5100), []byte{0xff, 0xff, 0x00, 0x80, 0x01, 0x00, 0xc0, 0x7f})
	f.Fuzz(func(t *testing.T, rate uint16, data []byte) {
		bitrate := opusenc.MinBitrate + int(rate)*100%(opusenc.MaxBitrate-opusenc.MinBitrate+1)
		enc, err := opusenc.New(opusenc.Options{Bitrate: bitrate})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := opus.NewDecoderWithOutput(opusenc.SampleRate, 1)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, enc.PacketSize())
		pcm := make([]int16, opusenc.FrameSize)
		floats := make([]float32, opusenc.FrameSize)
		decoded := make([]float32, opusenc.FrameSize)
		check := func(n int, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%d bit/s: %v", bitrate, err)
			}
			if n != enc.PacketSize() {
				t.Fatalf("%d bit/s: %d-byte packet, want %d", bitrate, n, enc.PacketSize())
			}
			if got, err := dec.DecodeToFloat32(out[:n], decoded); err != nil || got != opusenc.FrameSize {
				t.Fatalf("%d bit/s: pion/opus decoded %d samples: %v", bitrate, got, err)
			}
		}
		// Two frames of each kind, the bytes repeated to fill them, so that
		// inter-frame prediction sees the input too.
		for frame := range 2 {
			for i := range pcm {
				if len(data) >= 2 {
					j := (2*(i+frame*opusenc.FrameSize) + frame) % (len(data) - 1)
					pcm[i] = int16(binary.LittleEndian.Uint16(data[j:]))
				}
			}
			check(enc.Encode(pcm, out))
		}
		for frame := range 2 {
			for i := range floats {
				if len(data) >= 4 {
					j := (4*i + frame) % (len(data) - 3)
					floats[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[j:]))
				}
			}
			check(enc.EncodeFloat32(floats, out))
		}
	})
}
