package voice

import (
	"testing"
)

func FuzzRTPParse(f *testing.F) {
	f.Add(hdrPlain)
	f.Add(cat(hdrExt, extPreamble, extBody, katPayload))
	f.Add(hdrCSRC)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		if err != nil {
			return
		}
		if n > len(b) || n != h.Len() {
			t.Fatalf("n=%d len=%d h.Len=%d", n, len(b), h.Len())
		}
		out, err := h.AppendTo(nil)
		if err != nil {
			t.Fatalf("parsed header does not marshal: %v", err)
		}
		if string(out) != string(b[:n]) {
			t.Fatalf("round trip %x != %x", out, b[:n])
		}
		_, _ = StripPadding(&h, b[n:])
		_ = IsRTCP(b)
	})
}

func FuzzDecrypt(f *testing.F) {
	// Seeds: a valid packet per mode, so mutations reach past the tag check.
	for i, m := range Modes() {
		c, _ := NewCipher(m, katKey())
		h := Header{PayloadType: 120, SSRC: 5, Extension: true, ExtensionProfile: 0xbede, ExtensionBody: extBody}
		pkt, _ := c.SealRTP(nil, &h, katPayload)
		f.Add(uint8(i), pkt)
		rtcp, _ := c.SealRTCP(nil, []byte{0x80, 0xc9, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8})
		f.Add(uint8(i), rtcp)
	}
	modes := Modes()
	ciphers := make([]*Cipher, len(modes))
	for i, m := range modes {
		ciphers[i], _ = NewCipher(m, katKey())
	}
	f.Fuzz(func(t *testing.T, mode uint8, pkt []byte) {
		c := ciphers[int(mode)%len(ciphers)]
		if IsRTCP(pkt) {
			_, _ = c.OpenRTCP(nil, pkt)
			return
		}
		h, payload, err := c.OpenRTP(nil, pkt)
		if err != nil {
			return
		}
		// What opens must seal back into something that opens the same.
		h2 := h
		sealed, err := c.SealRTP(nil, &h2, payload)
		if err != nil {
			if h.Padding {
				return
			}
			t.Fatalf("reseal: %v", err)
		}
		_, p2, err := c.OpenRTP(nil, sealed)
		if err != nil || string(p2) != string(payload) && !h.Padding {
			t.Fatalf("reopen: %v", err)
		}
	})
}

func FuzzIPDiscovery(f *testing.F) {
	f.Add(handDiscovery(2, 70, 1, "127.0.0.1", 5000))
	f.Add(handDiscovery(2, 70, 1, "::1", 5000))
	f.Add(AppendDiscoveryRequest(nil, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseDiscoveryResponse(b)
		if err != nil {
			return
		}
		if len(b) != 74 || !r.Addr.IsValid() || r.Addr.Port() == 0 {
			t.Fatalf("accepted %x as %+v", b, r)
		}
	})
}
