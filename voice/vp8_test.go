package voice

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp/codecs"
)

func TestVP8DescriptorLayouts(t *testing.T) {
	cases := []struct {
		name string
		in   []byte // hand-built per RFC 7741 §4.2
		want VP8Descriptor
	}{
		{"minimal start", []byte{0x10}, VP8Descriptor{Start: true}},
		{"pid 3 non-ref", []byte{0x23}, VP8Descriptor{NonReference: true, PartitionID: 3}},
		{"7-bit picture id", []byte{0x90, 0x80, 0x15}, VP8Descriptor{Start: true, HasPictureID: true, PictureID: 0x15}},
		{"15-bit picture id", []byte{0x90, 0x80, 0x81, 0x02}, VP8Descriptor{Start: true, HasPictureID: true, LongPictureID: true, PictureID: 0x102}},
		{"all fields", []byte{0x90, 0xf0, 0xff, 0xff, 0x33, 0xa5},
			VP8Descriptor{Start: true, HasPictureID: true, LongPictureID: true, PictureID: 0x7fff,
				HasTL0PICIDX: true, TL0PICIDX: 0x33, HasTID: true, TID: 2, LayerSync: true, HasKeyIdx: true, KeyIdx: 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			payload := append(append([]byte(nil), c.in...), 0x9d, 0x01)
			d, n, err := ParseVP8Descriptor(payload)
			if err != nil || n != len(c.in) || d != c.want {
				t.Fatalf("got %+v n=%d err=%v; want %+v n=%d", d, n, err, c.want, len(c.in))
			}
			if out := d.AppendTo(nil); !bytes.Equal(out, c.in) {
				t.Fatalf("AppendTo %x, want %x", out, c.in)
			}
		})
	}
	for _, bad := range [][]byte{{}, {0x80}, {0x80, 0x80}, {0x80, 0x80, 0x80}, {0x80, 0x40}, {0x80, 0x20}} {
		if _, _, err := ParseVP8Descriptor(bad); !errors.Is(err, ErrBadVP8) {
			t.Errorf("%x: err %v", bad, err)
		}
	}
}

type vp8pkt struct {
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
}

func packetizeFrames(t *testing.T, frames [][]byte) []vp8pkt {
	t.Helper()
	p := codecs.VP8Payloader{EnablePictureID: true}
	var out []vp8pkt
	seq := uint16(65530) // crosses the wrap
	for i, f := range frames {
		ts := uint32(i) * 3000
		payloads := p.Payload(DefaultVP8MaxPayload, f)
		for j, payload := range payloads {
			if len(payload) > DefaultVP8MaxPayload {
				t.Fatalf("payload %d > %d", len(payload), DefaultVP8MaxPayload)
			}
			out = append(out, vp8pkt{seq, ts, j == len(payloads)-1, payload})
			seq++
		}
	}
	return out
}

func testFrames() [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	var frames [][]byte
	for i, n := range []int{5000, 300, 1096, 1097, 2500} {
		f := make([]byte, n)
		for j := range f {
			f[j] = byte(r.Uint32())
		}
		if i == 0 || i == 3 {
			f[0] &^= 1 // P=0: key frame
		} else {
			f[0] |= 1
		}
		frames = append(frames, f)
	}
	return frames
}

func TestVP8RoundTrip(t *testing.T) {
	frames := testFrames()
	var a VP8Assembler
	i := 0
	for _, p := range packetizeFrames(t, frames) {
		r, err := a.Push(p.seq, p.ts, p.marker, 0, p.payload)
		if err != nil || r.Abandoned != 0 {
			t.Fatalf("push: %v abandoned %d", err, r.Abandoned)
		}
		if r.Complete {
			if !bytes.Equal(r.Frame, frames[i]) {
				t.Fatalf("frame %d differs", i)
			}
			if r.Keyframe != (i == 0 || i == 3) {
				t.Fatalf("frame %d keyframe %v", i, r.Keyframe)
			}
			i++
		}
	}
	if i != len(frames) {
		t.Fatalf("assembled %d of %d frames", i, len(frames))
	}
}

func TestVP8IncompleteFrames(t *testing.T) {
	frames := testFrames()
	pkts := packetizeFrames(t, frames)
	// Frame 0 is 5 packets (seq 65530..65534); drop its third. Frame 4
	// (3 packets) loses its first.
	var a VP8Assembler
	var complete, abandoned int
	for i, p := range pkts {
		if i == 2 || i == len(pkts)-3 {
			continue
		}
		missing := 0
		if i == 3 || i == len(pkts)-2 {
			missing = 1
		}
		r, err := a.Push(p.seq, p.ts, p.marker, missing, p.payload)
		if err != nil {
			t.Fatal(err)
		}
		abandoned += r.Abandoned
		if r.Complete {
			complete++
		}
	}
	if complete != 3 || abandoned != 2 {
		t.Fatalf("complete %d abandoned %d, want 3 and 2", complete, abandoned)
	}
}
