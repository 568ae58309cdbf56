package voiceemu

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/nacl/secretbox"
)

// Transport encryption modes, as named in Ready and Select Protocol
// (Discord docs, Voice Connections, "Transport Encryption Modes").
const (
	// ModeAES256GCM is AES-256-GCM with a 12-byte nonce (preferred).
	ModeAES256GCM = "aead_aes256_gcm_rtpsize"
	// ModeXChaCha20Poly1305 is XChaCha20-Poly1305 with a 24-byte nonce
	// (always offered by Discord).
	ModeXChaCha20Poly1305 = "aead_xchacha20_poly1305_rtpsize"
	// ModeXSalsa20Poly1305 is NaCl secretbox with the RTP header as nonce
	// (discontinued by Discord in November 2024).
	ModeXSalsa20Poly1305 = "xsalsa20_poly1305"
	// ModeXSalsa20Suffix is secretbox with 24 random nonce bytes appended
	// (discontinued).
	ModeXSalsa20Suffix = "xsalsa20_poly1305_suffix"
	// ModeXSalsa20Lite is secretbox with a 4-byte counter nonce appended
	// (discontinued).
	ModeXSalsa20Lite = "xsalsa20_poly1305_lite"
)

// defaultModes are the modes offered when Options.Modes is empty, in the
// order Discord lists them today.
var defaultModes = []string{ModeAES256GCM, ModeXChaCha20Poly1305}

const (
	secretKeySize = 32
	tagSize       = 16 // AES-GCM and Poly1305 tags are both 16 bytes
	counterSize   = 4  // the rtpsize and lite modes append a 32-bit nonce counter
	rtcpClearSize = 8  // RTCP header and sender SSRC stay in the clear
)

// knownMode reports whether mode is implemented here.
func knownMode(mode string) bool {
	switch mode {
	case ModeAES256GCM, ModeXChaCha20Poly1305, ModeXSalsa20Poly1305, ModeXSalsa20Suffix, ModeXSalsa20Lite:
		return true
	}
	return false
}

// transportCipher seals and opens the UDP datagrams of one session in one
// mode. open is stateless; seal takes the next value of the session's
// outbound nonce counter.
type transportCipher struct {
	mode    string
	key     [secretKeySize]byte
	aead    cipher.AEAD // rtpsize modes only
	counter atomic.Uint32
}

func newTransportCipher(mode string, key []byte) (*transportCipher, error) {
	if len(key) != secretKeySize {
		return nil, fmt.Errorf("%w: secret key is %d bytes, want %d", ErrInvalidOptions, len(key), secretKeySize)
	}
	c := &transportCipher{mode: mode}
	copy(c.key[:], key)
	switch mode {
	case ModeAES256GCM:
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		c.aead, err = cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
	case ModeXChaCha20Poly1305:
		aead, err := chacha20poly1305.NewX(key)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		c.aead = aead
	case ModeXSalsa20Poly1305, ModeXSalsa20Suffix, ModeXSalsa20Lite:
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownMode, mode)
	}
	return c, nil
}

// clearHeaderLen is the number of leading bytes of a plaintext packet that
// stay unencrypted in this mode. In the rtpsize modes it is the RTP fixed
// header, the CSRCs and, with the X bit, only the 4-byte extension preamble
// (the same split as SRTP, RFC 3711 §3.1); the legacy modes keep the fixed
// 12 bytes. RTCP keeps its first 8 bytes in every mode (see doc.go).
func (c *transportCipher) clearHeaderLen(pkt []byte) (int, error) {
	if len(pkt) < rtcpClearSize {
		return 0, fmt.Errorf("%w: %d bytes is shorter than any RTP or RTCP header", ErrBadPacket, len(pkt))
	}
	if isRTCP(pkt) {
		return rtcpClearSize, nil
	}
	if len(pkt) < rtpFixedHeaderSize {
		return 0, fmt.Errorf("%w: %d bytes is shorter than the RTP fixed header", ErrBadPacket, len(pkt))
	}
	if c.aead == nil {
		return rtpFixedHeaderSize, nil
	}
	n := rtpFixedHeaderSize + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		n += 4
	}
	if n > len(pkt) {
		return 0, fmt.Errorf("%w: RTP header of %d bytes (CSRCs, extension) runs past the %d-byte packet", ErrBadPacket, n, len(pkt))
	}
	return n, nil
}

// seal encrypts a plaintext RTP or RTCP packet for the wire.
func (c *transportCipher) seal(pkt []byte) ([]byte, error) {
	hlen, err := c.clearHeaderLen(pkt)
	if err != nil {
		return nil, err
	}
	header, body := pkt[:hlen], pkt[hlen:]
	out := make([]byte, hlen, len(pkt)+tagSize+24)
	copy(out, header)
	switch c.mode {
	case ModeAES256GCM, ModeXChaCha20Poly1305:
		// Packet = header | ciphertext | tag | 4-byte counter; the counter
		// goes verbatim into the start of a zeroed nonce.
		var ctr [counterSize]byte
		binary.BigEndian.PutUint32(ctr[:], c.counter.Add(1))
		nonce := make([]byte, c.aead.NonceSize())
		copy(nonce, ctr[:])
		out = c.aead.Seal(out, nonce, body, header)
		out = append(out, ctr[:]...)
	case ModeXSalsa20Poly1305:
		var nonce [24]byte
		copy(nonce[:], header)
		out = secretbox.Seal(out, body, &nonce, &c.key)
	case ModeXSalsa20Suffix:
		var nonce [24]byte
		if _, err := rand.Read(nonce[:]); err != nil {
			return nil, fmt.Errorf("voiceemu: nonce: %w", err)
		}
		out = secretbox.Seal(out, body, &nonce, &c.key)
		out = append(out, nonce[:]...)
	case ModeXSalsa20Lite:
		var nonce [24]byte
		binary.BigEndian.PutUint32(nonce[:], c.counter.Add(1))
		out = secretbox.Seal(out, body, &nonce, &c.key)
		out = append(out, nonce[:counterSize]...)
	}
	return out, nil
}

// open authenticates and decrypts a datagram, returning the plaintext
// packet: the clear header followed by the decrypted rest (for the rtpsize
// modes that rest starts with the RTP extension body, if any).
func (c *transportCipher) open(pkt []byte) ([]byte, error) {
	hlen, err := c.clearHeaderLen(pkt)
	if err != nil {
		return nil, err
	}
	header := pkt[:hlen]
	out := make([]byte, hlen, len(pkt))
	copy(out, header)
	var nonce [24]byte
	var sealed []byte
	switch c.mode {
	case ModeAES256GCM, ModeXChaCha20Poly1305:
		if len(pkt) < hlen+tagSize+counterSize {
			return nil, fmt.Errorf("%w: %d bytes cannot hold header, tag and nonce", ErrBadPacket, len(pkt))
		}
		copy(nonce[:], pkt[len(pkt)-counterSize:])
		sealed = pkt[hlen : len(pkt)-counterSize]
		out, err = c.aead.Open(out, nonce[:c.aead.NonceSize()], sealed, header)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrDecrypt, c.mode)
		}
		return out, nil
	case ModeXSalsa20Poly1305:
		copy(nonce[:], header)
		sealed = pkt[hlen:]
	case ModeXSalsa20Suffix:
		if len(pkt) < hlen+tagSize+24 {
			return nil, fmt.Errorf("%w: %d bytes cannot hold header, tag and nonce", ErrBadPacket, len(pkt))
		}
		copy(nonce[:], pkt[len(pkt)-24:])
		sealed = pkt[hlen : len(pkt)-24]
	case ModeXSalsa20Lite:
		if len(pkt) < hlen+tagSize+counterSize {
			return nil, fmt.Errorf("%w: %d bytes cannot hold header, tag and nonce", ErrBadPacket, len(pkt))
		}
		copy(nonce[:], pkt[len(pkt)-counterSize:])
		sealed = pkt[hlen : len(pkt)-counterSize]
	}
	out, ok := secretbox.Open(out, sealed, &nonce, &c.key)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrDecrypt, c.mode)
	}
	return out, nil
}

// randRead fills b from the system's secure random source.
func randRead(b []byte) (int, error) { return rand.Read(b) }
