package dave

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"
	"time"
)

// fakeClock is a settable clock for expiry tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func testRatchet(t testing.TB, seed byte) *HashRatchet {
	t.Helper()
	base := bytes.Repeat([]byte{seed}, 16)
	r, err := NewHashRatchet(base)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pair returns an encryptor and a decryptor sharing a ratchet base.
func pair(t testing.TB, clk *fakeClock) (*Encryptor, *Decryptor) {
	t.Helper()
	e := &Encryptor{}
	e.SetRatchet(testRatchet(t, 7))
	d := NewDecryptor(clk.now)
	d.TransitionToRatchet(testRatchet(t, 7), TransitionExpiry)
	return e, d
}

func opusFrame(n int) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(i*7 + 3)
	}
	f[0] = 0x78 // a plausible TOC byte (CELT FB 20 ms)
	return f
}

func vp8Frame(key bool, n int) []byte {
	f := opusFrame(n)
	f[0] = 0x10
	if !key {
		f[0] |= 0x01
	}
	return f
}

// The frame layout is exactly what libdave and davey produce: ciphertext
// the length of the plaintext, the first 8 bytes of the GCM tag under nonce
// 8x00||LE32(1), then 01 (nonce), 0C (supplemental size), FA FA.
func TestEncryptOpusLayout(t *testing.T) {
	e := &Encryptor{}
	r := testRatchet(t, 7)
	e.SetRatchet(r)
	frame := opusFrame(20)
	out, err := e.Encrypt(nil, CodecOpus, frame)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 20+8+4 {
		t.Fatalf("len %d, want 32", len(out))
	}
	if got := out[len(out)-4:]; !bytes.Equal(got, []byte{0x01, 0x0C, 0xFA, 0xFA}) {
		t.Fatalf("trailer end % x, want 01 0c fa fa", got)
	}
	key, _ := testRatchet(t, 7).Key(0)
	block, _ := aes.NewCipher(key[:])
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	nonce[8] = 1
	want := gcm.Seal(nil, nonce, frame, nil)
	if !bytes.Equal(out[:20], want[:20]) || !bytes.Equal(out[20:28], want[20:28]) {
		t.Fatalf("ciphertext/tag mismatch:\n got % x\nwant % x", out[:28], want[:28])
	}
	// The second frame uses nonce 2.
	out2, _ := e.Encrypt(nil, CodecOpus, frame)
	if out2[len(out2)-4] != 0x02 {
		t.Fatalf("second nonce byte %#x, want 2", out2[len(out2)-4])
	}
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		codec Codec
		kind  MediaKind
		frame []byte
		clear int
	}{
		{"opus", CodecOpus, Audio, opusFrame(120), 0},
		{"opus one byte", CodecOpus, Audio, []byte{0xfc}, 0},
		{"vp8 key", CodecVP8, Video, vp8Frame(true, 900), 10},
		{"vp8 delta", CodecVP8, Video, vp8Frame(false, 300), 1},
		{"vp8 short key", CodecVP8, Video, vp8Frame(true, 4), 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := newFakeClock()
			e, d := pair(t, clk)
			for i := 0; i < 3; i++ {
				enc, err := e.Encrypt(nil, c.codec, c.frame)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(enc[:c.clear], c.frame[:c.clear]) {
					t.Fatalf("clear prefix changed: % x", enc[:c.clear])
				}
				if c.clear < len(c.frame) && bytes.Equal(enc[c.clear:len(c.frame)], c.frame[c.clear:]) {
					t.Fatalf("payload not encrypted")
				}
				if c.clear > 0 {
					// The trailer carries the single range (0, clear).
					tail := enc[len(enc)-5:]
					if !bytes.Equal(tail, []byte{0x00, byte(c.clear), 14, 0xFA, 0xFA}) {
						t.Fatalf("trailer % x", tail)
					}
				}
				dec, err := d.Decrypt(nil, c.kind, enc)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(dec, c.frame) {
					t.Fatalf("decrypted % x, want % x", dec, c.frame)
				}
			}
			if s := d.Stats(); s.Decrypted != 3 || s.FailedAuth+s.FailedNoKey+s.FailedReplay+s.FailedNotEncrypted != 0 {
				t.Fatalf("stats %+v", s)
			}
			if s := e.Stats(); s.Encrypted != 3 {
				t.Fatalf("encrypt stats %+v", s)
			}
		})
	}
}

// Multi-range frames (as H.264 senders produce) decrypt too: the AAD is the
// clear ranges concatenated and the ciphertext is everything else.
func TestDecryptMultiRange(t *testing.T) {
	clk := newFakeClock()
	d := NewDecryptor(clk.now)
	d.TransitionToRatchet(testRatchet(t, 9), TransitionExpiry)
	plain := []byte("AAbbbbCCCdddddE")
	ranges := []byteRange{{0, 2}, {6, 3}, {14, 1}}
	var aad, pt []byte
	at := 0
	for _, r := range ranges {
		pt = append(pt, plain[at:r.off]...)
		aad = append(aad, plain[r.off:r.off+r.size]...)
		at = r.off + r.size
	}
	pt = append(pt, plain[at:]...)
	key, _ := testRatchet(t, 9).Key(0)
	block, _ := aes.NewCipher(key[:])
	gcm, _ := cipher.NewGCM(block)
	n := gcmNonce(5)
	sealed := gcm.Seal(nil, n[:], pt, aad)
	ct, tag := sealed[:len(pt)], sealed[len(pt):len(pt)+8]
	var frame []byte
	at, ci := 0, 0
	for _, r := range ranges {
		k := r.off - at
		frame = append(frame, ct[ci:ci+k]...)
		ci += k
		frame = append(frame, plain[r.off:r.off+r.size]...)
		at = r.off + r.size
	}
	frame = append(frame, ct[ci:]...)
	frame = append(frame, tag...)
	frame = append(frame, 5)
	var rb []byte
	for _, r := range ranges {
		rb = appendLEB128(rb, uint64(r.off))
		rb = appendLEB128(rb, uint64(r.size))
	}
	frame = append(frame, rb...)
	frame = append(frame, byte(11+1+len(rb)), 0xFA, 0xFA)
	dec, err := d.Decrypt(nil, Video, frame)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dec, plain) {
		t.Fatalf("got %q want %q", dec, plain)
	}
}

func TestTamperedFramesFail(t *testing.T) {
	clk := newFakeClock()
	e, d := pair(t, clk)
	frame := vp8Frame(true, 64)
	enc, err := e.Encrypt(nil, CodecVP8, frame)
	if err != nil {
		t.Fatal(err)
	}
	payload := len(frame)
	for _, c := range []struct {
		name string
		at   int
	}{
		{"clear range (AAD)", 3},
		{"ciphertext", 20},
		{"tag", payload + 2},
	} {
		bad := bytes.Clone(enc)
		bad[c.at] ^= 0x40
		before := d.Stats().FailedAuth
		out, err := d.Decrypt(nil, Video, bad)
		if !errors.Is(err, ErrAuth) || out != nil {
			t.Fatalf("%s: err = %v out=%x, want ErrAuth and no output", c.name, err, out)
		}
		if d.Stats().FailedAuth != before+1 {
			t.Fatalf("%s: auth failure not counted", c.name)
		}
	}
	// A failed attempt does not burn the nonce: the genuine frame still
	// decrypts.
	if dec, err := d.Decrypt(nil, Video, enc); err != nil || !bytes.Equal(dec, frame) {
		t.Fatalf("genuine frame after tampering: %v", err)
	}
	// A frame under another key fails authentication.
	other := &Encryptor{}
	other.SetRatchet(testRatchet(t, 8))
	other.nonce = 10 // a nonce the receiver has not seen
	foreign, _ := other.Encrypt(nil, CodecOpus, opusFrame(50))
	if _, err := d.Decrypt(nil, Audio, foreign); !errors.Is(err, ErrAuth) {
		t.Fatalf("foreign key: err = %v", err)
	}
}

func TestReplay(t *testing.T) {
	clk := newFakeClock()
	e, d := pair(t, clk)
	var frames [][]byte
	for i := 0; i < 4; i++ {
		f, err := e.Encrypt(nil, CodecOpus, opusFrame(40+i))
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	mustDecrypt := func(i int) {
		t.Helper()
		if _, err := d.Decrypt(nil, Audio, frames[i]); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	mustReplay := func(i int) {
		t.Helper()
		if _, err := d.Decrypt(nil, Audio, frames[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("frame %d again: err = %v, want ErrReplay", i, err)
		}
	}
	mustDecrypt(0)
	mustReplay(0)
	mustDecrypt(3) // 1 and 2 become "missing"
	mustDecrypt(1) // late but remembered
	mustReplay(1)
	mustReplay(3)
	mustDecrypt(2)
	mustReplay(2)
	if s := d.Stats(); s.FailedReplay != 4 || s.Decrypted != 4 {
		t.Fatalf("stats %+v", s)
	}
}

// Only the last 1000 skipped nonces are remembered.
func TestReplayWindow(t *testing.T) {
	clk := newFakeClock()
	e, d := pair(t, clk)
	first, _ := e.Encrypt(nil, CodecOpus, opusFrame(30))
	var skipped [][]byte
	for i := 0; i < 1100; i++ {
		f, _ := e.Encrypt(nil, CodecOpus, opusFrame(30))
		skipped = append(skipped, f)
	}
	last, _ := e.Encrypt(nil, CodecOpus, opusFrame(30))
	if _, err := d.Decrypt(nil, Audio, first); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decrypt(nil, Audio, last); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decrypt(nil, Audio, skipped[50]); !errors.Is(err, ErrReplay) {
		t.Fatalf("nonce outside window: err = %v", err)
	}
	if _, err := d.Decrypt(nil, Audio, skipped[1099]); err != nil {
		t.Fatalf("nonce inside window: %v", err)
	}
}

func TestGenerations(t *testing.T) {
	clk := newFakeClock()
	e, d := pair(t, clk)
	g0, _ := e.Encrypt(nil, CodecOpus, opusFrame(30))
	// Jump the sender to the last nonce of generation 0.
	e.nonce = 1<<generationShift - 2
	g0late, _ := e.Encrypt(nil, CodecOpus, opusFrame(30))
	g1, _ := e.Encrypt(nil, CodecOpus, opusFrame(30))
	if got := g1[len(g1)-7 : len(g1)-3]; !bytes.Equal(got, []byte{0x80, 0x80, 0x80, 0x08}) {
		t.Fatalf("nonce 0x01000000 encodes as % x, want 80 80 80 08", got)
	}
	if _, err := d.Decrypt(nil, Audio, g0); err != nil {
		t.Fatal(err)
	}
	// A fresh ratchet cannot be in generation 1 yet: too young.
	if _, err := d.Decrypt(nil, Audio, g1); !errors.Is(err, ErrNoKey) {
		t.Fatalf("young ratchet, generation 1: err = %v", err)
	}
	clk.advance(time.Duration((1<<generationShift)/maxFramesPerSecond+1) * time.Second)
	if _, err := d.Decrypt(nil, Audio, g1); err != nil {
		t.Fatalf("generation 1: %v", err)
	}
	// Generation 0 stays for 10 s after generation 1 decrypted...
	clk.advance(5 * time.Second)
	if _, err := d.Decrypt(nil, Audio, g0late); err != nil {
		t.Fatalf("late generation 0 within 10 s: %v", err)
	}
	// ...then is gone.
	another := bytes.Clone(g0late)
	clk.advance(6 * time.Second)
	e2, _ := pair(t, clk)
	e2.nonce = 1<<generationShift - 3
	g0b, _ := e2.Encrypt(nil, CodecOpus, opusFrame(30))
	// With generation 0 gone, oldest is 1 and a generation byte of 0 reads
	// as the wrapped generation 256, far beyond the window.
	if _, err := d.Decrypt(nil, Audio, g0b); !errors.Is(err, ErrNoKey) {
		t.Fatalf("expired generation 0: err = %v", err)
	}
	if _, err := d.Decrypt(nil, Audio, another); !errors.Is(err, ErrNoKey) {
		t.Fatalf("replayed expired generation: err = %v", err)
	}
	// More than 250 generations ahead of the newest is refused even when
	// the ratchet is old enough.
	clk.advance(1000 * 24 * time.Hour)
	e.nonce = (1+maxGenerationGap+1)<<generationShift - 1
	far, _ := e.Encrypt(nil, CodecOpus, opusFrame(30))
	if _, err := d.Decrypt(nil, Audio, far); !errors.Is(err, ErrNoKey) {
		t.Fatalf("generation gap: err = %v", err)
	}
}

func TestWrapGeneration(t *testing.T) {
	cases := []struct{ oldest, b, want uint32 }{
		{0, 0, 0}, {0, 5, 5}, {0, 255, 255},
		{250, 251, 251}, {250, 3, 259}, {256, 0, 256}, {300, 40, 296 + 256}, {300, 50, 306},
	}
	for _, c := range cases {
		if got := wrapGeneration(c.oldest, c.b); got != c.want {
			t.Errorf("wrap(%d, %d) = %d, want %d", c.oldest, c.b, got, c.want)
		}
	}
	// The sender's counter wrapping from 0xFFFFFFFF continues at 256.
	e := &Encryptor{}
	e.SetRatchet(testRatchet(t, 1))
	e.gen, e.nonce = 255, 0xFFFFFFFF
	e.ratchet.nextGen = 255 // pretend the earlier generations were used
	if _, err := e.Encrypt(nil, CodecOpus, opusFrame(10)); err != nil {
		t.Fatal(err)
	}
	if e.gen != 256 || e.nonce != 0 {
		t.Fatalf("after wrap gen=%d nonce=%d", e.gen, e.nonce)
	}
}

// After an epoch change the previous epoch's frames decrypt for 10 s,
// cannot be replayed, and then stop decrypting.
func TestEpochTransition(t *testing.T) {
	clk := newFakeClock()
	oldE, d := pair(t, clk)
	old1, _ := oldE.Encrypt(nil, CodecOpus, opusFrame(30))
	old2, _ := oldE.Encrypt(nil, CodecOpus, opusFrame(31))
	old3, _ := oldE.Encrypt(nil, CodecOpus, opusFrame(32))
	if _, err := d.Decrypt(nil, Audio, old1); err != nil {
		t.Fatal(err)
	}
	newE := &Encryptor{}
	newE.SetRatchet(testRatchet(t, 42))
	d.TransitionToRatchet(testRatchet(t, 42), TransitionExpiry)
	new1, _ := newE.Encrypt(nil, CodecOpus, opusFrame(33))
	if _, err := d.Decrypt(nil, Audio, new1); err != nil {
		t.Fatalf("new epoch: %v", err)
	}
	clk.advance(3 * time.Second)
	if _, err := d.Decrypt(nil, Audio, old2); err != nil {
		t.Fatalf("previous epoch in flight: %v", err)
	}
	if _, err := d.Decrypt(nil, Audio, old1); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay of previous epoch: err = %v, want ErrReplay", err)
	}
	clk.advance(8 * time.Second)
	if _, err := d.Decrypt(nil, Audio, old3); !errors.Is(err, ErrAuth) {
		t.Fatalf("expired epoch: err = %v, want ErrAuth from the new key", err)
	}
	if s := d.Stats(); s.FailedReplay != 1 || s.FailedAuth != 1 || s.Decrypted != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPassthroughAndSilence(t *testing.T) {
	clk := newFakeClock()
	e, d := pair(t, clk)
	plain := opusFrame(40)
	if _, err := d.Decrypt(nil, Audio, plain); !errors.Is(err, ErrPassthroughDenied) {
		t.Fatalf("plain frame, no passthrough: err = %v", err)
	}
	silence := []byte{0xF8, 0xFF, 0xFE}
	if enc, err := e.Encrypt(nil, CodecOpus, silence); err != nil || !bytes.Equal(enc, silence) {
		t.Fatalf("silence encrypt: % x %v", enc, err)
	}
	if out, err := d.Decrypt(nil, Audio, silence); err != nil || !bytes.Equal(out, silence) {
		t.Fatalf("silence decrypt: % x %v", out, err)
	}
	if _, err := d.Decrypt(nil, Video, silence); !errors.Is(err, ErrPassthroughDenied) {
		t.Fatalf("silence bytes as video are not special: %v", err)
	}
	d.TransitionToPassthrough(true, 0)
	if out, err := d.Decrypt(nil, Audio, plain); err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("passthrough: %v", err)
	}
	// Encrypted frames still decrypt while passthrough is allowed.
	enc, _ := e.Encrypt(nil, CodecOpus, plain)
	if out, err := d.Decrypt(nil, Audio, enc); err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("encrypted during passthrough: %v", err)
	}
	d.TransitionToPassthrough(false, TransitionExpiry)
	clk.advance(9 * time.Second)
	if !d.PassthroughAllowed() {
		t.Fatal("passthrough should last 10 s after upgrade")
	}
	clk.advance(2 * time.Second)
	if _, err := d.Decrypt(nil, Audio, plain); !errors.Is(err, ErrPassthroughDenied) {
		t.Fatalf("after passthrough window: err = %v", err)
	}
	s := d.Stats()
	if s.Silence != 1 || s.Passthrough != 1 || s.FailedNotEncrypted != 3 || s.Decrypted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestEncryptErrors(t *testing.T) {
	e := &Encryptor{}
	if _, err := e.Encrypt(nil, CodecOpus, opusFrame(10)); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	e.SetRatchet(testRatchet(t, 1))
	if _, err := e.Encrypt(nil, CodecOpus, nil); !errors.Is(err, ErrEmptyFrame) {
		t.Fatalf("empty: %v", err)
	}
	if _, err := e.Encrypt(nil, Codec(99), opusFrame(10)); !errors.Is(err, ErrUnknownCodec) {
		t.Fatalf("codec: %v", err)
	}
	if s := e.Stats(); s.EncryptFailures != 3 {
		t.Fatalf("stats %+v", s)
	}
	d := NewDecryptor(nil)
	enc, _ := e.Encrypt(nil, CodecOpus, opusFrame(10))
	if _, err := d.Decrypt(nil, Audio, enc); !errors.Is(err, ErrNoKey) {
		t.Fatalf("decryptor without ratchet: %v", err)
	}
}

func TestParseTrailerRejects(t *testing.T) {
	good := func() []byte {
		// 4 payload bytes, tag, nonce 1, range (0,2), size 14, marker.
		return []byte{1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x02, 14, 0xFA, 0xFA}
	}
	var tr trailer
	if err := parseTrailer(good(), &tr); err != nil || tr.nonce != 1 || tr.payload != 4 || tr.nranges != 1 || tr.ranges[0] != (byteRange{0, 2}) {
		t.Fatalf("good trailer: %v %+v", err, tr.ranges[0])
	}
	cases := map[string]func(b []byte) []byte{
		"short":               func(b []byte) []byte { return b[len(b)-10:] },
		"no marker":           func(b []byte) []byte { b[len(b)-1] = 0xFB; return b },
		"size below 11":       func(b []byte) []byte { b[len(b)-3] = 10; return b },
		"size above frame":    func(b []byte) []byte { b[len(b)-3] = 19; return b },
		"no nonce":            func(b []byte) []byte { return append(b[:4+8], 11, 0xFA, 0xFA) },
		"overlong nonce":      func(b []byte) []byte { return append(b[:4+8], 0x81, 0x00, 13, 0xFA, 0xFA) },
		"nonce over 32 bits":  func(b []byte) []byte { return append(b[:4+8], 0xff, 0xff, 0xff, 0xff, 0x1f, 16, 0xFA, 0xFA) },
		"odd range bytes":     func(b []byte) []byte { b[14] = 0x82; return b },
		"range past payload":  func(b []byte) []byte { b[14] = 5; return b },
		"range overlaps":      func(b []byte) []byte { return append(b[:4], 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 1, 16, 0xFA, 0xFA) },
		"ranges out of order": func(b []byte) []byte { return append(b[:4], 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1, 0, 1, 16, 0xFA, 0xFA) },
	}
	for name, mutate := range cases {
		if err := parseTrailer(mutate(good()), &tr); !errors.Is(err, ErrNotDAVEFrame) {
			t.Errorf("%s: err = %v, want ErrNotDAVEFrame", name, err)
		}
	}
}

// Truncated or garbage trailers of real frames are dropped without
// passthrough and never panic.
func TestDecryptTruncatedFrames(t *testing.T) {
	clk := newFakeClock()
	e, d := pair(t, clk)
	enc, _ := e.Encrypt(nil, CodecVP8, vp8Frame(true, 40))
	for n := 0; n < len(enc); n++ {
		if _, err := d.Decrypt(nil, Video, enc[:n]); err == nil {
			t.Fatalf("truncated to %d bytes decrypted", n)
		}
	}
	if _, err := d.Decrypt(nil, Video, enc); err != nil {
		t.Fatalf("full frame: %v", err)
	}
}
