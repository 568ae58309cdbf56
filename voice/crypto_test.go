package voice

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"reflect"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/nacl/secretbox"
)

func katKey() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i*7 + 3)
	}
	return k
}

var katPayload = []byte{0xfc, 0xff, 0xfe, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a}

// handAEAD builds the reference AEAD straight from the standard library
// and x/crypto, independent of Cipher.
func handAEAD(t testing.TB, mode Mode) cipher.AEAD {
	t.Helper()
	switch mode {
	case ModeAES256GCMRTPSize:
		b, err := aes.NewCipher(katKey())
		if err != nil {
			t.Fatal(err)
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		return g
	case ModeXChaCha20RTPSize:
		a, err := chacha20poly1305.NewX(katKey())
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	t.Fatalf("no AEAD for %s", mode)
	return nil
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Hand-written header bytes (RFC 3550 §5.1): V=2, PT 120, seq 0x1234,
// ts 0x01020304, SSRC 0xdeadbeef.
var (
	hdrPlain = []byte{0x80, 0x78, 0x12, 0x34, 0x01, 0x02, 0x03, 0x04, 0xde, 0xad, 0xbe, 0xef}
	// X bit set, marker set; RFC 8285 one-byte extension: profile 0xBEDE,
	// 1 word; element id 1, len 1 (L=0), data 0xAA, two padding zeros.
	hdrExt      = []byte{0x90, 0xf8, 0x12, 0x34, 0x01, 0x02, 0x03, 0x04, 0xde, 0xad, 0xbe, 0xef}
	extPreamble = []byte{0xbe, 0xde, 0x00, 0x01}
	extBody     = []byte{0x10, 0xaa, 0x00, 0x00}
	// CC=2 with CSRCs 0x11111111 and 0x22222222.
	hdrCSRC = []byte{0x82, 0x78, 0x12, 0x34, 0x01, 0x02, 0x03, 0x04, 0xde, 0xad, 0xbe, 0xef,
		0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22}
)

type katCase struct {
	name  string
	mode  Mode
	clear []byte // bytes left in the clear
	plain []byte // bytes encrypted
	// nonceTrail is what is appended after the tag; nonce is the full
	// nonce the reference sealed with.
	nonceTrail []byte
	nonce      []byte
	wantHdr    Header
	wantExt    []byte
}

func pad(b []byte, n int) []byte { return append(append([]byte(nil), b...), make([]byte, n-len(b))...) }

func katCases() []katCase {
	base := Header{PayloadType: 120, Sequence: 0x1234, Timestamp: 0x01020304, SSRC: 0xdeadbeef}
	withExt := base
	withExt.Marker, withExt.Extension, withExt.ExtensionProfile = true, true, 0xbede
	withCSRC := base
	withCSRC.CSRCCount = 2
	withCSRC.CSRC[0], withCSRC.CSRC[1] = 0x11111111, 0x22222222
	ctr1 := []byte{0, 0, 0, 1}
	suffix := make([]byte, 24)
	for i := range suffix {
		suffix[i] = byte(0xa0 + i)
	}
	var cs []katCase
	for _, m := range []Mode{ModeAES256GCMRTPSize, ModeXChaCha20RTPSize} {
		ns := 12
		if m == ModeXChaCha20RTPSize {
			ns = 24
		}
		cs = append(cs,
			katCase{"plain", m, hdrPlain, katPayload, ctr1, pad(ctr1, ns), base, nil},
			// rtpsize: only the extension preamble is in the clear; the
			// body is encrypted with the payload.
			katCase{"extension", m, cat(hdrExt, extPreamble), cat(extBody, katPayload), ctr1, pad(ctr1, ns), withExt, extBody},
			katCase{"csrc", m, hdrCSRC, katPayload, ctr1, pad(ctr1, ns), withCSRC, nil},
			// A little-endian counter from another sender is used verbatim.
			katCase{"counter-le", m, hdrPlain, katPayload, []byte{7, 0, 0, 0}, pad([]byte{7, 0, 0, 0}, ns), base, nil},
		)
	}
	for _, m := range []Mode{ModeXSalsa20Poly1305, ModeXSalsa20Poly1305Suffix, ModeXSalsa20Poly1305Lite} {
		trail := map[Mode][]byte{ModeXSalsa20Poly1305: nil, ModeXSalsa20Poly1305Suffix: suffix, ModeXSalsa20Poly1305Lite: ctr1}[m]
		nonce := map[Mode][]byte{ModeXSalsa20Poly1305: pad(hdrPlain, 24), ModeXSalsa20Poly1305Suffix: suffix, ModeXSalsa20Poly1305Lite: pad(ctr1, 24)}[m]
		nonceExt := nonce
		nonceCSRC := nonce
		if m == ModeXSalsa20Poly1305 {
			nonceExt, nonceCSRC = pad(hdrExt, 24), pad(hdrCSRC[:12], 24)
		}
		cs = append(cs,
			katCase{"plain", m, hdrPlain, katPayload, trail, nonce, base, nil},
			// Legacy modes keep only the 12-byte fixed header clear.
			katCase{"extension", m, hdrExt, cat(extPreamble, extBody, katPayload), trail, nonceExt, withExt, extBody},
			katCase{"csrc", m, hdrCSRC[:12], cat(hdrCSRC[12:], katPayload), trail, nonceCSRC, withCSRC, nil},
		)
	}
	return cs
}

// handSeal builds the packet byte by byte from the documented layout.
func handSeal(t testing.TB, c katCase) []byte {
	t.Helper()
	switch c.mode {
	case ModeAES256GCMRTPSize, ModeXChaCha20RTPSize:
		a := handAEAD(t, c.mode)
		sealed := a.Seal(nil, c.nonce, c.plain, c.clear)
		return cat(c.clear, sealed, c.nonceTrail)
	default:
		var n [24]byte
		var k [32]byte
		copy(n[:], c.nonce)
		copy(k[:], katKey())
		return cat(c.clear, secretbox.Seal(nil, c.plain, &n, &k), c.nonceTrail)
	}
}

func TestKnownAnswerOpenRTP(t *testing.T) {
	for _, c := range katCases() {
		t.Run(string(c.mode)+"/"+c.name, func(t *testing.T) {
			packet := handSeal(t, c)
			ci, err := NewCipher(c.mode, katKey())
			if err != nil {
				t.Fatal(err)
			}
			h, payload, err := ci.OpenRTP(nil, packet)
			if err != nil {
				t.Fatalf("OpenRTP: %v", err)
			}
			if !bytes.Equal(payload, katPayload) {
				t.Fatalf("payload %x, want %x", payload, katPayload)
			}
			if !bytes.Equal(h.ExtensionBody, c.wantExt) {
				t.Fatalf("extension body %x, want %x", h.ExtensionBody, c.wantExt)
			}
			h.ExtensionBody = nil
			if !reflect.DeepEqual(h, c.wantHdr) {
				t.Fatalf("header %+v, want %+v", h, c.wantHdr)
			}
			// A flipped bit in ciphertext or tag fails authentication, and so
			// does one in the clear header where the mode authenticates it
			// (rtpsize: AAD; plain xsalsa20: the header is the nonce). The
			// suffix and lite modes leave the header unauthenticated.
			flips := []int{len(c.clear) + 2, len(packet) - len(c.nonceTrail) - 1}
			if c.mode != ModeXSalsa20Poly1305Suffix && c.mode != ModeXSalsa20Poly1305Lite {
				flips = append(flips, 1)
			}
			for _, i := range flips {
				bad := append([]byte(nil), packet...)
				bad[i] ^= 0x04
				if _, _, err := ci.OpenRTP(nil, bad); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("flip at %d: err %v, want ErrDecrypt", i, err)
				}
			}
		})
	}
}

func TestKnownAnswerSealRTP(t *testing.T) {
	for _, c := range katCases() {
		if c.name == "counter-le" {
			continue
		}
		t.Run(string(c.mode)+"/"+c.name, func(t *testing.T) {
			ci, err := NewCipher(c.mode, katKey())
			if err != nil {
				t.Fatal(err)
			}
			h := c.wantHdr
			h.ExtensionBody = c.wantExt
			got, err := ci.SealRTP(nil, &h, katPayload)
			if err != nil {
				t.Fatal(err)
			}
			if c.mode == ModeXSalsa20Poly1305Suffix {
				// Random nonce: open by hand with the appended 24 bytes.
				var n [24]byte
				var k [32]byte
				copy(n[:], got[len(got)-24:])
				copy(k[:], katKey())
				if !bytes.Equal(got[:len(c.clear)], c.clear) {
					t.Fatalf("clear part %x, want %x", got[:len(c.clear)], c.clear)
				}
				plain, ok := secretbox.Open(nil, got[len(c.clear):len(got)-24], &n, &k)
				if !ok || !bytes.Equal(plain, c.plain) {
					t.Fatalf("hand open: ok=%v plain %x want %x", ok, plain, c.plain)
				}
				return
			}
			// Our first packet uses counter 1, as the hand-built one does.
			if want := handSeal(t, c); !bytes.Equal(got, want) {
				t.Fatalf("sealed\n %x\nwant\n %x", got, want)
			}
		})
	}
}

func TestCounterAdvancesAndRoundTrips(t *testing.T) {
	for _, m := range Modes() {
		t.Run(string(m), func(t *testing.T) {
			tx, _ := NewCipher(m, katKey())
			rx, _ := NewCipher(m, katKey())
			var prev []byte
			for i := 0; i < 3; i++ {
				h := Header{PayloadType: 120, Sequence: uint16(i), SSRC: 9}
				pkt, err := tx.SealRTP(nil, &h, katPayload)
				if err != nil {
					t.Fatal(err)
				}
				if len(pkt) != 12+len(katPayload)+tx.Overhead() {
					t.Fatalf("length %d, want %d", len(pkt), 12+len(katPayload)+tx.Overhead())
				}
				if m == ModeAES256GCMRTPSize || m == ModeXChaCha20RTPSize || m == ModeXSalsa20Poly1305Lite {
					if want := []byte{0, 0, 0, byte(i + 1)}; !bytes.Equal(pkt[len(pkt)-4:], want) {
						t.Fatalf("counter %x, want %x", pkt[len(pkt)-4:], want)
					}
				}
				if bytes.Equal(pkt, prev) {
					t.Fatal("two packets identical")
				}
				prev = pkt
				got, payload, err := rx.OpenRTP(nil, pkt)
				if err != nil || got.Sequence != uint16(i) || !bytes.Equal(payload, katPayload) {
					t.Fatalf("open: %v seq %d payload %x", err, got.Sequence, payload)
				}
			}
		})
	}
}

func TestKnownAnswerRTCP(t *testing.T) {
	// RTCP receiver report header by hand: V=2, RC=0, PT=201, length 1
	// (two words after the first), sender SSRC 0x01020304; body 4 bytes.
	rtcpHdr := []byte{0x80, 0xc9, 0x00, 0x01, 0x01, 0x02, 0x03, 0x04}
	body := []byte{0xca, 0xfe, 0xba, 0xbe}
	for _, m := range []Mode{ModeAES256GCMRTPSize, ModeXChaCha20RTPSize} {
		t.Run(string(m), func(t *testing.T) {
			a := handAEAD(t, m)
			nonce := make([]byte, a.NonceSize())
			copy(nonce, []byte{0, 0, 0, 5})
			pkt := cat(rtcpHdr, a.Seal(nil, nonce, body, rtcpHdr), []byte{0, 0, 0, 5})
			if !IsRTCP(pkt) {
				t.Fatal("IsRTCP false for PT 201")
			}
			ci, _ := NewCipher(m, katKey())
			got, err := ci.OpenRTCP(nil, pkt)
			if err != nil || !bytes.Equal(got, cat(rtcpHdr, body)) {
				t.Fatalf("OpenRTCP %x, %v", got, err)
			}
			sealed, err := ci.SealRTCP(nil, cat(rtcpHdr, body))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := a.Open(nil, pad(sealed[len(sealed)-4:], a.NonceSize()), sealed[8:len(sealed)-4], rtcpHdr)
			if err != nil || !bytes.Equal(plain, body) {
				t.Fatalf("hand open of SealRTCP: %v", err)
			}
		})
	}
}

func TestKnownAnswerRTCPLegacy(t *testing.T) {
	rtcpHdr := []byte{0x80, 0xc8, 0x00, 0x01, 0x0a, 0x0b, 0x0c, 0x0d}
	body := []byte{1, 2, 3, 4}
	var k [32]byte
	copy(k[:], katKey())
	suffix := make([]byte, 24)
	for i := range suffix {
		suffix[i] = byte(i)
	}
	cases := []struct {
		mode  Mode
		nonce []byte
		trail []byte
	}{
		// Plain mode: the 8 clear bytes, zero padded, are the nonce.
		{ModeXSalsa20Poly1305, pad(rtcpHdr, 24), nil},
		{ModeXSalsa20Poly1305Suffix, suffix, suffix},
		{ModeXSalsa20Poly1305Lite, pad([]byte{0, 0, 0, 9}, 24), []byte{0, 0, 0, 9}},
	}
	for _, c := range cases {
		var n [24]byte
		copy(n[:], c.nonce)
		pkt := cat(rtcpHdr, secretbox.Seal(nil, body, &n, &k), c.trail)
		ci, _ := NewCipher(c.mode, katKey())
		got, err := ci.OpenRTCP(nil, pkt)
		if err != nil || !bytes.Equal(got, cat(rtcpHdr, body)) {
			t.Errorf("%s: OpenRTCP %x, %v", c.mode, got, err)
		}
	}
}

func TestSelectMode(t *testing.T) {
	cases := []struct {
		offered []string
		want    Mode
	}{
		{[]string{"aead_xchacha20_poly1305_rtpsize", "aead_aes256_gcm_rtpsize", "xsalsa20_poly1305_lite_rtpsize"}, ModeAES256GCMRTPSize},
		{[]string{"xsalsa20_poly1305", "aead_xchacha20_poly1305_rtpsize"}, ModeXChaCha20RTPSize},
		{[]string{"xsalsa20_poly1305", "xsalsa20_poly1305_suffix", "xsalsa20_poly1305_lite"}, ModeXSalsa20Poly1305Lite},
		{[]string{"xsalsa20_poly1305", "xsalsa20_poly1305_suffix"}, ModeXSalsa20Poly1305Suffix},
		{[]string{"xsalsa20_poly1305"}, ModeXSalsa20Poly1305},
	}
	for _, c := range cases {
		got, err := SelectMode(c.offered)
		if err != nil || got != c.want {
			t.Errorf("SelectMode(%q) = %q, %v; want %q", c.offered, got, err, c.want)
		}
	}
	if _, err := SelectMode([]string{"aead_aes256_gcm", "xsalsa20_poly1305_lite_rtpsize"}); !errors.Is(err, ErrNoCommonMode) {
		t.Fatalf("no common mode: err %v", err)
	}
	if _, err := NewCipher("rot13", katKey()); !errors.Is(err, ErrUnknownMode) {
		t.Fatalf("unknown mode: %v", err)
	}
	if _, err := NewCipher(ModeAES256GCMRTPSize, katKey()[:16]); !errors.Is(err, ErrBadKey) {
		t.Fatalf("short key: %v", err)
	}
}

func TestOpenRejectsShortPackets(t *testing.T) {
	for _, m := range Modes() {
		ci, _ := NewCipher(m, katKey())
		for _, n := range []int{0, 5, 12, 12 + 15} {
			if _, _, err := ci.OpenRTP(nil, append([]byte{0x80, 0x78}, make([]byte, max(0, n-2))...)); err == nil {
				t.Errorf("%s: %d-byte packet accepted", m, n)
			}
		}
	}
}
