package voice

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseHeader(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		wantN   int
		check   func(t *testing.T, h Header)
		wantErr error
	}{
		{"fixed", hdrPlain, 12, func(t *testing.T, h Header) {
			if h.Marker || h.PayloadType != 120 || h.Sequence != 0x1234 || h.Timestamp != 0x01020304 || h.SSRC != 0xdeadbeef {
				t.Fatalf("%+v", h)
			}
		}, nil},
		{"marker+ext", cat(hdrExt, extPreamble, extBody, []byte{9}), 20, func(t *testing.T, h Header) {
			if !h.Marker || !h.Extension || h.ExtensionProfile != 0xbede || !bytes.Equal(h.ExtensionBody, extBody) {
				t.Fatalf("%+v", h)
			}
		}, nil},
		{"csrc", hdrCSRC, 20, func(t *testing.T, h Header) {
			if h.CSRCCount != 2 || h.CSRC[0] != 0x11111111 || h.CSRC[1] != 0x22222222 {
				t.Fatalf("%+v", h)
			}
		}, nil},
		{"short", hdrPlain[:11], 0, nil, ErrShortPacket},
		{"version1", append([]byte{0x40}, hdrPlain[1:]...), 0, nil, ErrBadRTPVersion},
		{"csrc truncated", hdrCSRC[:16], 0, nil, ErrShortPacket},
		{"ext preamble truncated", cat(hdrExt, extPreamble[:2]), 0, nil, ErrShortPacket},
		{"ext body truncated", cat(hdrExt, []byte{0xbe, 0xde, 0x00, 0x02}, extBody), 0, nil, ErrShortPacket},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, n, err := ParseHeader(c.in)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil || n != c.wantN {
				t.Fatalf("n=%d err=%v, want n=%d", n, err, c.wantN)
			}
			c.check(t, h)
			// Marshalling gives back the same bytes.
			out, err := h.AppendTo(nil)
			if err != nil || !bytes.Equal(out, c.in[:n]) {
				t.Fatalf("AppendTo %x, %v; want %x", out, err, c.in[:n])
			}
		})
	}
}

func TestPadding(t *testing.T) {
	h := Header{Padding: true}
	got, err := StripPadding(&h, []byte{1, 2, 3, 0, 0, 3})
	if err != nil || !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Fatalf("got %x, %v", got, err)
	}
	for _, bad := range [][]byte{{}, {1, 0}, {1, 5}} {
		if _, err := StripPadding(&h, bad); !errors.Is(err, ErrBadPadding) {
			t.Fatalf("%x: err %v", bad, err)
		}
	}
	// A padded packet through the cipher comes out without its padding.
	tx, _ := NewCipher(ModeAES256GCMRTPSize, katKey())
	ph := Header{Padding: true, PayloadType: 120, SSRC: 1}
	pkt, _ := tx.SealRTP(nil, &ph, []byte{0xaa, 0xbb, 0, 0, 0, 4})
	_, payload, err := tx.OpenRTP(nil, pkt)
	if err != nil || !bytes.Equal(payload, []byte{0xaa, 0xbb}) {
		t.Fatalf("padded payload %x, %v", payload, err)
	}
	// The padding bit on a payload that does not end with valid padding
	// would seal a packet that cannot open: refused (found by FuzzDecrypt).
	for _, bad := range [][]byte{{}, {0xaa, 0xbb, 0x04}, {0xaa, 0x00}} {
		if _, err := tx.SealRTP(nil, &ph, bad); !errors.Is(err, ErrBadPadding) {
			t.Fatalf("seal %x with the padding bit: err %v, want ErrBadPadding", bad, err)
		}
	}
}

func TestBuildRejects(t *testing.T) {
	h := Header{Extension: true, ExtensionBody: []byte{1, 2, 3}}
	if _, err := h.AppendTo(nil); !errors.Is(err, ErrBadExtension) {
		t.Fatalf("odd extension: %v", err)
	}
	h = Header{CSRCCount: 16}
	if _, err := h.AppendTo(nil); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("16 CSRCs: %v", err)
	}
}

func TestIsRTCP(t *testing.T) {
	for pt := 0; pt < 256; pt++ {
		want := pt >= 200 && pt <= 204 || pt >= 72 && pt <= 76
		if got := IsRTCP([]byte{0x80, byte(pt)}); got != want {
			t.Errorf("second byte %d: IsRTCP %v, want %v", pt, got, want)
		}
	}
	if IsRTCP([]byte{0x80}) {
		t.Error("one byte is not RTCP")
	}
}
