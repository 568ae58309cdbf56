package voice

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/nacl/secretbox"
)

// Mode names a transport encryption mode as the voice gateway spells it in
// Ready's `modes` and Select Protocol's `mode` (Discord voice docs,
// "Transport Encryption Modes").
type Mode string

// The transport encryption modes this package implements.
const (
	// ModeAES256GCMRTPSize is AES-256-GCM over the RTP payload with the
	// rtpsize header split and a 4-byte nonce counter appended; Discord
	// prefers it when offered.
	ModeAES256GCMRTPSize Mode = "aead_aes256_gcm_rtpsize"
	// ModeXChaCha20RTPSize is XChaCha20-Poly1305 with the rtpsize split;
	// Discord always offers it.
	ModeXChaCha20RTPSize Mode = "aead_xchacha20_poly1305_rtpsize"
	// ModeXSalsa20Poly1305 is NaCl secretbox with the 12-byte RTP header,
	// zero padded, as nonce. Discontinued on Discord; legacy servers only.
	ModeXSalsa20Poly1305 Mode = "xsalsa20_poly1305"
	// ModeXSalsa20Poly1305Suffix is secretbox with 24 random nonce bytes
	// appended to the packet. Discontinued on Discord.
	ModeXSalsa20Poly1305Suffix Mode = "xsalsa20_poly1305_suffix"
	// ModeXSalsa20Poly1305Lite is secretbox with a 4-byte counter appended
	// and zero padded to the 24-byte nonce. Discontinued on Discord.
	ModeXSalsa20Poly1305Lite Mode = "xsalsa20_poly1305_lite"
)

// modePreference is the order SelectMode picks in: the two rtpsize AEADs
// Discord documents as current, then the legacy modes.
var modePreference = [...]Mode{
	ModeAES256GCMRTPSize,
	ModeXChaCha20RTPSize,
	ModeXSalsa20Poly1305Lite,
	ModeXSalsa20Poly1305Suffix,
	ModeXSalsa20Poly1305,
}

// Modes returns every implemented mode, most preferred first.
func Modes() []Mode { return append([]Mode(nil), modePreference[:]...) }

// SelectMode picks the mode to put in Select Protocol from the modes the
// server offered in Ready: aead_aes256_gcm_rtpsize if offered, else
// aead_xchacha20_poly1305_rtpsize, else the legacy modes (lite, suffix,
// plain).
func SelectMode(offered []string) (Mode, error) {
	for _, m := range modePreference {
		for _, o := range offered {
			if o == string(m) {
				return m, nil
			}
		}
	}
	return "", fmt.Errorf("voice: server offered %q: %w", offered, ErrNoCommonMode)
}

const (
	secretKeyLen   = 32
	aeadTagLen     = 16
	nonceSuffixLen = 4
	xsalsaNonceLen = 24
)

// Cipher seals and opens RTP and RTCP packets in one transport encryption
// mode with the Session Description's secret key. It keeps its AEAD,
// nonce and scratch buffers, so the steady state allocates nothing. A
// Cipher is not safe for concurrent use: use one for sending and another
// for receiving.
type Cipher struct {
	mode    Mode
	rtpsize bool
	aead    cipher.AEAD
	key     [secretKeyLen]byte
	nonce   [xsalsaNonceLen]byte
	counter uint32
	scratch []byte
}

// NewCipher returns a Cipher for mode with the 32-byte secret key.
func NewCipher(mode Mode, key []byte) (*Cipher, error) {
	if len(key) != secretKeyLen {
		return nil, fmt.Errorf("voice: key of %d bytes: %w", len(key), ErrBadKey)
	}
	c := &Cipher{mode: mode, scratch: make([]byte, 0, 1500)}
	copy(c.key[:], key)
	switch mode {
	case ModeAES256GCMRTPSize:
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("voice: AES key: %w", err)
		}
		if c.aead, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("voice: AES-GCM: %w", err)
		}
		c.rtpsize = true
	case ModeXChaCha20RTPSize:
		var err error
		if c.aead, err = chacha20poly1305.NewX(key); err != nil {
			return nil, fmt.Errorf("voice: XChaCha20-Poly1305: %w", err)
		}
		c.rtpsize = true
	case ModeXSalsa20Poly1305, ModeXSalsa20Poly1305Suffix, ModeXSalsa20Poly1305Lite:
	default:
		return nil, fmt.Errorf("voice: mode %q: %w", mode, ErrUnknownMode)
	}
	return c, nil
}

// Mode reports the cipher's mode.
func (c *Cipher) Mode() Mode { return c.mode }

// Overhead is how many bytes sealing adds to a packet: tag plus any
// appended nonce.
func (c *Cipher) Overhead() int {
	switch c.mode {
	case ModeXSalsa20Poly1305:
		return secretbox.Overhead
	case ModeXSalsa20Poly1305Suffix:
		return secretbox.Overhead + xsalsaNonceLen
	default:
		return aeadTagLen + nonceSuffixLen
	}
}

// nextCounterNonce advances the 32-bit nonce counter and writes it,
// big-endian, at the start of a zeroed nonce. Receivers copy the
// appended bytes verbatim, so the byte order is the sender's choice.
func (c *Cipher) nextCounterNonce() uint32 {
	c.counter++
	clear(c.nonce[:])
	binary.BigEndian.PutUint32(c.nonce[:], c.counter)
	return c.counter
}

// trailerLen is the number of nonce bytes appended after the tag.
func (c *Cipher) trailerLen() int {
	switch c.mode {
	case ModeXSalsa20Poly1305:
		return 0
	case ModeXSalsa20Poly1305Suffix:
		return xsalsaNonceLen
	default:
		return nonceSuffixLen
	}
}

// loadNonce fills c.nonce for opening from the packet: the trailing
// counter (rtpsize, lite), the trailing 24 bytes (suffix) or the clear
// header (plain xsalsa20_poly1305).
func (c *Cipher) loadNonce(packet []byte, clearHdr []byte) {
	clear(c.nonce[:])
	switch c.mode {
	case ModeXSalsa20Poly1305:
		copy(c.nonce[:], clearHdr)
	case ModeXSalsa20Poly1305Suffix:
		copy(c.nonce[:], packet[len(packet)-xsalsaNonceLen:])
	default:
		copy(c.nonce[:], packet[len(packet)-nonceSuffixLen:])
	}
}

// seal encrypts plain (which must not alias dst) after the clear bytes
// already in dst[:clearLen] and appends the mode's nonce trailer.
func (c *Cipher) seal(dst []byte, clearLen int, plain []byte) []byte {
	switch c.mode {
	case ModeAES256GCMRTPSize, ModeXChaCha20RTPSize:
		ctr := c.nextCounterNonce()
		dst = c.aead.Seal(dst, c.nonce[:c.aead.NonceSize()], plain, dst[:clearLen])
		return binary.BigEndian.AppendUint32(dst, ctr)
	case ModeXSalsa20Poly1305:
		clear(c.nonce[:])
		copy(c.nonce[:], dst[:clearLen])
		return secretbox.Seal(dst, plain, &c.nonce, &c.key)
	case ModeXSalsa20Poly1305Suffix:
		// crypto/rand.Read never fails (Go 1.24+).
		_, _ = rand.Read(c.nonce[:])
		dst = secretbox.Seal(dst, plain, &c.nonce, &c.key)
		return append(dst, c.nonce[:]...)
	default: // lite
		ctr := c.nextCounterNonce()
		dst = secretbox.Seal(dst, plain, &c.nonce, &c.key)
		return binary.BigEndian.AppendUint32(dst, ctr)
	}
}

// open authenticates and decrypts packet, whose first clearLen bytes are
// in the clear, and returns dst holding those clear bytes followed by the
// plaintext.
func (c *Cipher) open(dst, packet []byte, clearLen int) ([]byte, error) {
	trailer := c.trailerLen()
	if len(packet) < clearLen+aeadTagLen+trailer {
		return nil, fmt.Errorf("voice: encrypted packet of %d bytes, %s needs at least %d: %w",
			len(packet), c.mode, clearLen+aeadTagLen+trailer, ErrShortPacket)
	}
	c.loadNonce(packet, packet[:clearLen])
	body := packet[clearLen : len(packet)-trailer]
	dst = append(dst[:0], packet[:clearLen]...)
	if c.rtpsize {
		out, err := c.aead.Open(dst, c.nonce[:c.aead.NonceSize()], body, packet[:clearLen])
		if err != nil {
			return nil, fmt.Errorf("voice: %s: %w", c.mode, ErrDecrypt)
		}
		return out, nil
	}
	out, ok := secretbox.Open(dst, body, &c.nonce, &c.key)
	if !ok {
		return nil, fmt.Errorf("voice: %s: %w", c.mode, ErrDecrypt)
	}
	return out, nil
}

// SealRTP builds the RTP packet for h and payload and encrypts it into
// dst[:0]. rtpsize modes leave the fixed header, CSRCs and extension
// preamble in the clear and authenticate them, encrypting extension body
// and payload; legacy modes leave only the 12-byte fixed header in the
// clear (Discord voice docs, "Transport Encryption Modes"). dst must not
// alias payload. With h.Padding set, payload must end with its padding
// (RFC 3550 §5.1: the last octet counts the padding octets), else the
// packet would not open again and SealRTP refuses it.
func (c *Cipher) SealRTP(dst []byte, h *Header, payload []byte) ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	if _, err := StripPadding(h, payload); err != nil {
		return nil, fmt.Errorf("voice: seal with the padding bit set: %w", err)
	}
	if c.rtpsize {
		dst = h.appendClear(dst[:0])
		plain := c.scratch[:0]
		if h.Extension {
			plain = append(plain, h.ExtensionBody...)
		}
		plain = append(plain, payload...)
		c.scratch = plain
		return c.seal(dst, len(dst), plain), nil
	}
	full := h.appendClear(c.scratch[:0])
	if h.Extension {
		full = append(full, h.ExtensionBody...)
	}
	full = append(full, payload...)
	c.scratch = full
	dst = append(dst[:0], full[:rtpFixedHeaderLen]...)
	return c.seal(dst, rtpFixedHeaderLen, full[rtpFixedHeaderLen:]), nil
}

// OpenRTP authenticates and decrypts an RTP packet into dst[:0] and
// returns its header and payload, both aliasing dst. The extension body
// is taken out of the payload (it is in h.ExtensionBody) and padding is
// removed.
func (c *Cipher) OpenRTP(dst, packet []byte) (Header, []byte, error) {
	if len(packet) < rtpFixedHeaderLen {
		return Header{}, nil, fmt.Errorf("voice: RTP packet of %d bytes: %w", len(packet), ErrShortPacket)
	}
	if packet[0]>>6 != rtpVersion {
		return Header{}, nil, fmt.Errorf("voice: RTP version %d: %w", packet[0]>>6, ErrBadRTPVersion)
	}
	clearLen := rtpFixedHeaderLen
	if c.rtpsize {
		clearLen += 4 * int(packet[0]&0x0f)
		if packet[0]&0x10 != 0 {
			clearLen += 4
		}
	}
	plain, err := c.open(dst, packet, clearLen)
	if err != nil {
		return Header{}, nil, err
	}
	h, n, err := ParseHeader(plain)
	if err != nil {
		return Header{}, nil, err
	}
	payload, err := StripPadding(&h, plain[n:])
	if err != nil {
		return Header{}, nil, err
	}
	return h, payload, nil
}

// SealRTCP encrypts an RTCP packet into dst[:0]: its 8-byte header (RFC
// 3550 §6.4.1: V/P/RC, PT, length, sender SSRC) stays in the clear and,
// in rtpsize modes, is authenticated. For plain xsalsa20_poly1305 the
// nonce is those 8 bytes zero padded. dst must not alias packet.
func (c *Cipher) SealRTCP(dst, packet []byte) ([]byte, error) {
	if len(packet) < rtcpHeaderLen {
		return nil, fmt.Errorf("voice: RTCP packet of %d bytes: %w", len(packet), ErrShortPacket)
	}
	dst = append(dst[:0], packet[:rtcpHeaderLen]...)
	return c.seal(dst, rtcpHeaderLen, packet[rtcpHeaderLen:]), nil
}

// OpenRTCP authenticates and decrypts an RTCP packet into dst[:0] and
// returns the 8-byte header followed by the plaintext body.
func (c *Cipher) OpenRTCP(dst, packet []byte) ([]byte, error) {
	if len(packet) < rtcpHeaderLen {
		return nil, fmt.Errorf("voice: RTCP packet of %d bytes: %w", len(packet), ErrShortPacket)
	}
	return c.open(dst, packet, rtcpHeaderLen)
}
