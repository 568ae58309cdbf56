package dave

import (
	"bytes"
	"fmt"
	"testing"
)

// FuzzFrameTrailer parses arbitrary bytes as a DAVE trailer. Accepted
// trailers must be internally consistent and, because parsing is strict,
// re-encode to exactly the bytes they were parsed from.
func FuzzFrameTrailer(f *testing.F) {
	e := &Encryptor{}
	e.SetRatchet(testRatchet(f, 3))
	for _, fr := range [][]byte{opusFrame(60), vp8Frame(true, 30), vp8Frame(false, 20)} {
		codec := CodecOpus
		if len(fr) != 60 {
			codec = CodecVP8
		}
		enc, err := e.Encrypt(nil, codec, fr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add([]byte{1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x02, 0x01, 0x01, 16, 0xFA, 0xFA})
	f.Add([]byte{0xFA, 0xFA})
	f.Fuzz(func(t *testing.T, frame []byte) {
		var tr trailer
		if err := parseTrailer(frame, &tr); err != nil {
			return
		}
		if tr.payload < 0 || tr.payload+minSupplemental > len(frame) {
			t.Fatalf("payload %d of %d-byte frame", tr.payload, len(frame))
		}
		var re []byte
		re = append(re, tr.tag[:]...)
		re = appendLEB128(re, uint64(tr.nonce))
		end := 0
		for _, r := range tr.ranges[:tr.nranges] {
			if r.off < end || r.size < 0 || r.off+r.size > tr.payload {
				t.Fatalf("bad range %+v (end %d, payload %d)", r, end, tr.payload)
			}
			end = r.off + r.size
			re = appendLEB128(re, uint64(r.off))
			re = appendLEB128(re, uint64(r.size))
		}
		re = append(re, byte(len(re)+3), 0xFA, 0xFA)
		if !bytes.Equal(re, frame[tr.payload:]) {
			t.Fatalf("re-encoded trailer % x, parsed from % x", re, frame[tr.payload:])
		}
	})
}

// FuzzDecryptFrame feeds arbitrary frames to a decryptor holding a real
// key. Nothing may panic, and forged frames must fail: the fuzzer cannot
// guess a 64-bit tag. A frame may decrypt only if its payload, tag and
// nonce are a seed's; the range list is not authenticated (as in libdave),
// so an equivalent list, such as one range split in two, still decrypts,
// and must give the seed's plaintext.
func FuzzDecryptFrame(f *testing.F) {
	e := &Encryptor{}
	e.SetRatchet(testRatchet(f, 5))
	seeds := map[string][]byte{}
	authKey := func(frame []byte) string {
		var tr trailer
		if parseTrailer(frame, &tr) != nil {
			return ""
		}
		return fmt.Sprintf("%x|%x|%d", frame[:tr.payload], tr.tag, tr.nonce)
	}
	for _, fr := range [][]byte{opusFrame(120), vp8Frame(true, 50)} {
		codec := CodecOpus
		if len(fr) == 50 {
			codec = CodecVP8
		}
		enc, err := e.Encrypt(nil, codec, fr)
		if err != nil {
			f.Fatal(err)
		}
		seeds[authKey(enc)] = fr
		f.Add(enc, false)
	}
	f.Add([]byte{0xF8, 0xFF, 0xFE}, true)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x0C, 0xFA, 0xFA}, false)
	f.Fuzz(func(t *testing.T, frame []byte, video bool) {
		clk := newFakeClock()
		d := NewDecryptor(clk.now)
		d.TransitionToRatchet(testRatchet(t, 5), TransitionExpiry)
		kind := Audio
		if video {
			kind = Video
		}
		out, err := d.Decrypt(nil, kind, frame)
		if err != nil {
			if out != nil {
				t.Fatalf("output %x alongside error %v", out, err)
			}
			return
		}
		if kind == Audio && IsSilence(frame) {
			return
		}
		want, ok := seeds[authKey(frame)]
		if !ok {
			t.Fatalf("forged frame % x decrypted to % x", frame, out)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("seed decrypted to % x, want % x", out, want)
		}
	})
}
