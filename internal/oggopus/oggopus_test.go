package oggopus_test

import (
	"errors"
	"os"
	"testing"

	"github.com/voicebridge/bridge/internal/oggopus"
)

// speech is a sample the voice emulator embeds: stereo Opus, 20 ms frames.
func speech(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("../../emulator/voiceemu/samples/speech.opus")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestFrames(t *testing.T) {
	data := speech(t)
	packets, err := oggopus.Packets(data)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := oggopus.Frames(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != len(packets)-2 || len(frames) < 100 {
		t.Fatalf("%d frames of %d packets, want all but the two headers and at least 2 s", len(frames), len(packets))
	}
	if string(packets[0][:8]) != "OpusHead" || packets[0][9] != 2 {
		t.Fatalf("first packet %q, want a stereo OpusHead", packets[0][:10])
	}
	for i, f := range frames {
		if n, err := oggopus.PacketSamples(f); err != nil || n != oggopus.FrameSamples {
			t.Fatalf("frame %d: %d samples, %v", i, n, err)
		}
	}
}

func TestMalformed(t *testing.T) {
	data := speech(t)
	flipped := append([]byte(nil), data...)
	flipped[200] ^= 0xff
	// Without its first page, which holds OpusHead alone, the file is
	// still sound Ogg but not Ogg Opus.
	nseg := int(data[26])
	first := 27 + nseg
	for _, l := range data[27 : 27+nseg] {
		first += int(l)
	}
	if _, err := oggopus.Packets(data[first:]); err != nil {
		t.Fatalf("the file without its first page: %v", err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"a flipped byte fails the page CRC", flipped},
		{"truncated", data[:len(data)-10]},
		{"not Ogg", []byte("RIFF\x00\x00\x00\x00WAVEfmt ")},
		{"a page header cut short", data[:20]},
		{"no OpusHead", data[first:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := oggopus.Frames(tc.data); !errors.Is(err, oggopus.ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestPacketSamples(t *testing.T) {
	// The TOC byte: configuration in the top five bits, frame count code
	// in the bottom two (RFC 6716 §3.1).
	toc := func(config, code byte) byte { return config<<3 | code }
	for _, tc := range []struct {
		name   string
		packet []byte
		want   int
	}{
		{"CELT 20 ms, one frame", []byte{toc(31, 0)}, 960},
		{"CELT 10 ms, two frames", []byte{toc(30, 1)}, 960},
		{"SILK 20 ms, one frame", []byte{toc(1, 0)}, 960},
		{"SILK 60 ms", []byte{toc(3, 0)}, 2880},
		{"hybrid 10 ms", []byte{toc(12, 0)}, 480},
		{"CELT 2.5 ms, code 3 with 8 frames", []byte{toc(16, 3), 8}, 960},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := oggopus.PacketSamples(tc.packet); err != nil || got != tc.want {
				t.Fatalf("got %d, %v, want %d", got, err, tc.want)
			}
		})
	}
	for _, bad := range [][]byte{nil, {toc(16, 3)}} {
		if _, err := oggopus.PacketSamples(bad); err == nil {
			t.Fatalf("%x: no error", bad)
		}
	}
}
