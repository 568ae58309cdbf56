package dave

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// Receiver limits and timings (libdave common.h; DAVE whitepaper, "Key
// Rotation" and "Protocol Version Changes").
const (
	// TransitionExpiry is how long keys of a previous epoch, superseded
	// generations and receive passthrough stay usable after a change.
	TransitionExpiry = 10 * time.Second
	// maxGenerationGap is how far ahead of the newest decrypted generation
	// a frame may be.
	maxGenerationGap = 250
	// maxMissingNonces bounds the remembered not-yet-seen nonces.
	maxMissingNonces = 1000
	// maxFramesPerSecond bounds how fast a ratchet can age: 50 audio frames
	// plus two 60 fps video streams.
	maxFramesPerSecond = 50 + 2*60
	// gcmOverhead is the full tag Go's AES-GCM appends.
	gcmOverhead = 16
)

// SenderStats counts what happened to one sender's frames.
type SenderStats struct {
	// Encrypted and EncryptFailures count frames this side sent.
	Encrypted       uint64
	EncryptFailures uint64
	// Decrypted counts frames that authenticated and decrypted.
	Decrypted uint64
	// Passthrough counts non-DAVE frames accepted while passthrough was
	// allowed; Silence counts Opus silence frames (always accepted).
	Passthrough uint64
	Silence     uint64
	// Failures by reason.
	FailedNotEncrypted uint64 // non-DAVE frame while passthrough was not allowed
	FailedReplay       uint64 // nonce already used or outside the replay window
	FailedNoKey        uint64 // no ratchet or generation out of range
	FailedAuth         uint64 // tag did not verify
}

// newAEAD returns AES-128-GCM (16-byte tag; DAVE truncates it to 8) for key.
func newAEAD(key [KeySize]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("dave: aes key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("dave: gcm: %w", err)
	}
	return aead, nil
}

// Encryptor encrypts one sender's media frames with its hash ratchet
// (DAVE whitepaper, "Frame Encryption"). The zero value has no key and
// refuses to encrypt. An Encryptor is not safe for concurrent use.
type Encryptor struct {
	ratchet *HashRatchet
	gen     uint32
	nonce   uint32
	aead    cipher.AEAD
	stats   SenderStats
	// nonceBuf lives here so passing it to the AEAD does not allocate.
	nonceBuf [12]byte
}

// SetRatchet switches to a new key ratchet (a new epoch), restarting the
// nonce counter; nil removes the key.
func (e *Encryptor) SetRatchet(r *HashRatchet) {
	e.ratchet = r
	e.gen = 0
	e.nonce = 0
	e.aead = nil
}

// HasKey reports whether the encryptor has a ratchet.
func (e *Encryptor) HasKey() bool { return e.ratchet != nil }

// Stats returns the encryptor's counters.
func (e *Encryptor) Stats() SenderStats { return e.stats }

// Encrypt appends the DAVE frame for frame to dst and returns it: the frame
// with its encrypted part replaced by AES-128-GCM ciphertext, the tag
// truncated to 8 bytes, the ULEB128 nonce, the unencrypted ranges, the
// supplemental size and FA FA. The Opus silence frame is appended
// unchanged. dst must not overlap frame. With enough capacity in dst it
// allocates nothing, except once per 2^24 frames when the key generation
// advances.
func (e *Encryptor) Encrypt(dst []byte, codec Codec, frame []byte) ([]byte, error) {
	if len(frame) == 0 {
		e.stats.EncryptFailures++
		return dst, ErrEmptyFrame
	}
	if codec == CodecOpus && IsSilence(frame) {
		return append(dst, frame...), nil
	}
	clear, err := clearPrefix(codec, frame)
	if err != nil {
		e.stats.EncryptFailures++
		return dst, err
	}
	if e.ratchet == nil {
		e.stats.EncryptFailures++
		return dst, fmt.Errorf("%w: encryptor has no ratchet", ErrNoKey)
	}
	// The counter is pre-incremented, so the first frame of a ratchet
	// carries nonce 1; the top byte is the generation.
	nonce := e.nonce + 1
	gen := wrapGeneration(e.gen, nonce>>generationShift)
	if gen != e.gen || e.aead == nil {
		key, err := e.ratchet.Key(gen)
		if err != nil {
			e.stats.EncryptFailures++
			return dst, err
		}
		aead, err := newAEAD(key)
		if err != nil {
			e.stats.EncryptFailures++
			return dst, err
		}
		if gen != e.gen {
			e.ratchet.Erase(e.gen)
		}
		e.gen, e.aead = gen, aead
	}
	e.nonce = nonce
	e.nonceBuf = gcmNonce(nonce)
	out := append(dst, frame[:clear]...)
	out = e.aead.Seal(out, e.nonceBuf[:], frame[clear:], frame[:clear])
	out = out[:len(out)-(gcmOverhead-TagSize)]
	out = appendTrailer(out, nonce, clear)
	e.stats.Encrypted++
	return out, nil
}

// genCipher is the AEAD of one generation and when it expires (zero: not
// scheduled).
type genCipher struct {
	aead   cipher.AEAD
	expiry time.Time
}

// keyManager holds one sender's ratchet for one epoch on the receive side:
// per-generation ciphers, the generation window and replay state (libdave
// CryptorManager).
type keyManager struct {
	ratchet *HashRatchet
	created time.Time
	expiry  time.Time // zero: not scheduled
	oldest  uint32
	newest  uint32
	ciphers map[uint32]*genCipher

	seenAny     bool
	newestNonce uint64
	missing     nonceRing
}

func newKeyManager(r *HashRatchet, now time.Time) *keyManager {
	return &keyManager{ratchet: r, created: now, ciphers: make(map[uint32]*genCipher)}
}

func (m *keyManager) expired(now time.Time) bool {
	return !m.expiry.IsZero() && now.After(m.expiry)
}

// expireBy schedules expiry no later than t.
func (m *keyManager) expireBy(t time.Time) {
	if m.expiry.IsZero() || t.Before(m.expiry) {
		m.expiry = t
	}
}

// canProcess is the replay check: the frame's big nonce must be newer than
// any seen, or one of the remembered missing ones.
func (m *keyManager) canProcess(gen, nonce uint32) bool {
	if !m.seenAny {
		return true
	}
	b := bigNonce(gen, nonce)
	return b > m.newestNonce || m.missing.contains(b)
}

// cipher returns the AEAD for gen, or an error saying why there is none.
func (m *keyManager) cipher(gen uint32, now time.Time) (cipher.AEAD, error) {
	m.cleanup(now)
	if gen < m.oldest {
		return nil, fmt.Errorf("%w: generation %d older than oldest kept %d", ErrNoKey, gen, m.oldest)
	}
	if gen > m.newest+maxGenerationGap {
		return nil, fmt.Errorf("%w: generation %d too far ahead of %d", ErrNoKey, gen, m.newest)
	}
	ageSeconds := int64(now.Sub(m.created) / time.Second)
	if maxGen := (maxFramesPerSecond * ageSeconds) >> generationShift; int64(gen) > maxGen {
		return nil, fmt.Errorf("%w: generation %d beyond ratchet age limit %d", ErrNoKey, gen, maxGen)
	}
	if c, ok := m.ciphers[gen]; ok {
		return c.aead, nil
	}
	key, err := m.ratchet.Key(gen)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	c := &genCipher{aead: aead}
	if gen < m.newest {
		// Late frame of a superseded generation: usable only briefly.
		c.expiry = now.Add(TransitionExpiry)
	}
	m.ciphers[gen] = c
	return aead, nil
}

// cleanup drops expired generation ciphers and erases ratchet keys below
// the oldest generation still in use.
func (m *keyManager) cleanup(now time.Time) {
	for g, c := range m.ciphers {
		if !c.expiry.IsZero() && now.After(c.expiry) {
			delete(m.ciphers, g)
		}
	}
	for m.oldest < m.newest {
		if _, ok := m.ciphers[m.oldest]; ok {
			break
		}
		m.ratchet.Erase(m.oldest)
		m.oldest++
	}
}

// reportSuccess records a decrypted frame: advances the replay window,
// remembers skipped nonces, and when a newer generation decrypts, schedules
// the older generations to expire.
func (m *keyManager) reportSuccess(gen, nonce uint32, now time.Time) {
	b := bigNonce(gen, nonce)
	switch {
	case !m.seenAny:
		m.seenAny = true
		m.newestNonce = b
	case b > m.newestNonce:
		gap := min(b-m.newestNonce-1, maxMissingNonces)
		for i := b - gap; i < b; i++ {
			m.missing.push(i)
		}
		m.newestNonce = b
	default:
		m.missing.remove(b)
	}
	if gen <= m.newest {
		return
	}
	if _, ok := m.ciphers[gen]; !ok {
		return
	}
	m.newest = gen
	exp := now.Add(TransitionExpiry)
	for g, c := range m.ciphers {
		if g < gen && (c.expiry.IsZero() || exp.Before(c.expiry)) {
			c.expiry = exp
		}
	}
}

// nonceRing is a FIFO of at most maxMissingNonces big nonces, oldest first.
type nonceRing struct {
	buf  []uint64
	head int
	n    int
}

func (r *nonceRing) at(i int) int { return (r.head + i) % len(r.buf) }

// push appends v, dropping the oldest entry when full.
func (r *nonceRing) push(v uint64) {
	if r.buf == nil {
		r.buf = make([]uint64, maxMissingNonces)
	}
	if r.n == len(r.buf) {
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	r.buf[r.at(r.n)] = v
	r.n++
}

func (r *nonceRing) contains(v uint64) bool {
	for i := r.n - 1; i >= 0; i-- {
		if r.buf[r.at(i)] == v {
			return true
		}
	}
	return false
}

func (r *nonceRing) remove(v uint64) {
	for i := 0; i < r.n; i++ {
		if r.buf[r.at(i)] != v {
			continue
		}
		for j := i; j < r.n-1; j++ {
			r.buf[r.at(j)] = r.buf[r.at(j+1)]
		}
		r.n--
		return
	}
}

// Decryptor decrypts one sender's DAVE frames (libdave Decryptor). It
// keeps one key manager per epoch ratchet, tries the newest first, and
// passes non-DAVE frames through only while allowed. A Decryptor is not
// safe for concurrent use.
//
// Go's AES-GCM only verifies tags of 12 to 16 bytes, and DAVE carries 8.
// The decryptor therefore derives the keystream by sealing zeros under the
// frame's nonce, XORs it into the ciphertext, seals the resulting plaintext
// again with the frame's AAD to recompute the full tag, and compares its
// first 8 bytes with the frame's in constant time. This uses only the
// standard library's (hardware-accelerated) AES-GCM, at the cost of a
// second pass over the frame; plaintext is wiped when the tag does not
// match and never returned.
type Decryptor struct {
	now      func() time.Time
	managers []*keyManager // oldest first

	passForever bool
	passUntil   time.Time

	stats SenderStats
	tr    trailer
	// aad and ct view the current frame (or the gather buffers); the rest
	// are scratch buffers reused across frames.
	aad, ct             []byte
	gatherAAD, gatherCT []byte
	pt, ks, seal, zero  []byte
	nonceBuf            [12]byte
}

// NewDecryptor returns a decryptor with no ratchet and passthrough not
// allowed. now is the clock (nil: time.Now); tests inject their own.
func NewDecryptor(now func() time.Time) *Decryptor {
	if now == nil {
		now = time.Now
	}
	return &Decryptor{now: now}
}

// TransitionToRatchet makes r the newest ratchet; the ratchets of earlier
// epochs stay usable for expiry more (libdave uses TransitionExpiry). A nil
// r only schedules the earlier ratchets to expire.
func (d *Decryptor) TransitionToRatchet(r *HashRatchet, expiry time.Duration) {
	now := d.now()
	for _, m := range d.managers {
		m.expireBy(now.Add(expiry))
	}
	if r != nil {
		d.managers = append(d.managers, newKeyManager(r, now))
	}
}

// TransitionToPassthrough allows receiving non-DAVE frames indefinitely
// (allowed) or, when not allowed, for at most expiry more.
func (d *Decryptor) TransitionToPassthrough(allowed bool, expiry time.Duration) {
	if allowed {
		d.passForever = true
		return
	}
	until := d.now().Add(expiry)
	if d.passForever || until.Before(d.passUntil) {
		d.passUntil = until
	}
	d.passForever = false
}

// PassthroughAllowed reports whether non-DAVE frames are accepted now.
func (d *Decryptor) PassthroughAllowed() bool {
	return d.passForever || d.now().Before(d.passUntil)
}

// Stats returns the decryptor's counters.
func (d *Decryptor) Stats() SenderStats { return d.stats }

// Decrypt appends the plaintext of frame to dst and returns it. Opus
// silence always passes; non-DAVE frames pass only while passthrough is
// allowed. Failures are counted by reason and returned as errors wrapping
// ErrPassthroughDenied, ErrReplay, ErrNoKey or ErrAuth; dst is then
// returned unchanged. dst must not overlap frame. In steady state it
// allocates nothing.
func (d *Decryptor) Decrypt(dst []byte, kind MediaKind, frame []byte) ([]byte, error) {
	if kind == Audio && IsSilence(frame) {
		d.stats.Silence++
		return append(dst, frame...), nil
	}
	now := d.now()
	for len(d.managers) > 0 && d.managers[0].expired(now) {
		d.managers[0] = nil
		d.managers = d.managers[1:]
	}
	if err := parseTrailer(frame, &d.tr); err != nil {
		if d.passForever || now.Before(d.passUntil) {
			d.stats.Passthrough++
			return append(dst, frame...), nil
		}
		d.stats.FailedNotEncrypted++
		return dst, fmt.Errorf("%w (%w)", ErrPassthroughDenied, err)
	}
	d.split(frame)

	var err error
	rank := 0
	for i := len(d.managers) - 1; i >= 0; i-- {
		e := d.tryManager(d.managers[i], now)
		if e == nil {
			d.stats.Decrypted++
			return d.reconstruct(dst, frame), nil
		}
		// Report the most telling reason: a replay beats a tag mismatch
		// (an older epoch's key), which beats a missing key.
		if r := failureRank(e); r > rank {
			err, rank = e, r
		}
	}
	if err == nil {
		err = fmt.Errorf("%w: no key ratchet", ErrNoKey)
	}
	switch rank {
	case 3:
		d.stats.FailedReplay++
	case 2:
		d.stats.FailedAuth++
	default:
		d.stats.FailedNoKey++
	}
	return dst, err
}

func failureRank(err error) int {
	switch {
	case errors.Is(err, ErrReplay):
		return 3
	case errors.Is(err, ErrAuth):
		return 2
	}
	return 1
}

// split points d.aad and d.ct at the frame's authenticated (clear) and
// encrypted bytes, gathering into owned buffers only when the ranges are
// not a single leading one.
func (d *Decryptor) split(frame []byte) {
	t := &d.tr
	payload := frame[:t.payload]
	switch {
	case t.nranges == 0:
		d.aad, d.ct = payload[:0], payload
		return
	case t.nranges == 1 && t.ranges[0].off == 0:
		d.aad, d.ct = payload[:t.ranges[0].size], payload[t.ranges[0].size:]
		return
	}
	aad, ct := d.gatherAAD[:0], d.gatherCT[:0]
	at := 0
	for _, r := range t.ranges[:t.nranges] {
		ct = append(ct, payload[at:r.off]...)
		aad = append(aad, payload[r.off:r.off+r.size]...)
		at = r.off + r.size
	}
	ct = append(ct, payload[at:]...)
	d.gatherAAD, d.gatherCT = aad, ct
	d.aad, d.ct = aad, ct
}

// tryManager attempts the parsed frame with one epoch's key manager,
// leaving the plaintext in d.pt on success.
func (d *Decryptor) tryManager(m *keyManager, now time.Time) error {
	nonce := d.tr.nonce
	gen := wrapGeneration(m.oldest, nonce>>generationShift)
	if !m.canProcess(gen, nonce) {
		return fmt.Errorf("%w: nonce %#x of generation %d", ErrReplay, nonce, gen)
	}
	aead, err := m.cipher(gen, now)
	if err != nil {
		return err
	}
	if !d.open(aead, nonce) {
		return fmt.Errorf("%w: generation %d nonce %#x", ErrAuth, gen, nonce)
	}
	m.reportSuccess(gen, nonce, now)
	return nil
}

// open decrypts d.ct into d.pt and verifies the truncated tag over d.aad
// (see the Decryptor comment for why it seals twice).
func (d *Decryptor) open(aead cipher.AEAD, truncated uint32) bool {
	n := len(d.ct)
	d.nonceBuf = gcmNonce(truncated)
	if cap(d.zero) < n {
		d.zero = make([]byte, n)
	}
	d.ks = aead.Seal(d.ks[:0], d.nonceBuf[:], d.zero[:n], nil)
	d.pt = append(d.pt[:0], d.ct...)
	subtle.XORBytes(d.pt, d.pt, d.ks[:n])
	d.seal = aead.Seal(d.seal[:0], d.nonceBuf[:], d.pt, d.aad)
	if subtle.ConstantTimeCompare(d.seal[n:n+TagSize], d.tr.tag[:]) != 1 {
		clear(d.pt)
		return false
	}
	return true
}

// reconstruct appends the decrypted frame: clear ranges from frame,
// everything else from d.pt.
func (d *Decryptor) reconstruct(dst, frame []byte) []byte {
	t := &d.tr
	pt := d.pt
	at := 0
	for _, r := range t.ranges[:t.nranges] {
		k := r.off - at
		dst = append(dst, pt[:k]...)
		pt = pt[k:]
		dst = append(dst, frame[r.off:r.off+r.size]...)
		at = r.off + r.size
	}
	return append(dst, pt...)
}
