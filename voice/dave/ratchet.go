package dave

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// KeySize is the AES-128-GCM key size of DAVE media keys.
const KeySize = 16

// ratchetSecretSize is the SHA-256 output size, the size of every ratchet
// secret after the 16-byte base.
const ratchetSecretSize = 32

// maxRatchetStep bounds how far one Key call may advance a ratchet, so a
// hostile generation number cannot make a receiver spin. The decryptor's own
// limits (250 generations ahead) stay well inside it.
const maxRatchetStep = 1024

// mlsLabelPrefix prefixes every ExpandWithLabel label (RFC 9420 §5.1.3).
const mlsLabelPrefix = "MLS 1.0 "

// expandWithLabel is RFC 9420 §5.1.3 ExpandWithLabel for cipher suite 2:
// HKDF-Expand-SHA256(secret, KDFLabel{length, "MLS 1.0 "+label, context}).
// It is kept local (rather than taken from voice/mls) so the frame layer
// has no dependency on the MLS implementation.
func expandWithLabel(secret []byte, label string, context []byte, length int) ([]byte, error) {
	full := mlsLabelPrefix + label
	info := make([]byte, 0, 2+2+len(full)+2+len(context))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = appendMLSVarOpaque(info, []byte(full))
	info = appendMLSVarOpaque(info, context)
	out, err := hkdf.Expand(sha256.New, secret, string(info), length)
	if err != nil {
		return nil, fmt.Errorf("dave: expand %q: %w", label, err)
	}
	return out, nil
}

// appendMLSVarOpaque appends opaque<V>: an RFC 9420 §2.1.2 variable-length
// integer length, then the bytes.
func appendMLSVarOpaque(dst, b []byte) []byte {
	n := uint64(len(b))
	switch {
	case n < 1<<6:
		dst = append(dst, byte(n))
	case n < 1<<14:
		dst = binary.BigEndian.AppendUint16(dst, uint16(n)|0x4000)
	default:
		dst = binary.BigEndian.AppendUint32(dst, uint32(n)|0x80000000)
	}
	return append(dst, b...)
}

// HashRatchet derives the per-generation media keys of one sender from its
// base secret, as RFC 9420 §9.1's secret tree does for one leaf:
//
//	key_g      = ExpandWithLabel(s_g, "key",    BE32(g), 16)
//	s_{g+1}    = ExpandWithLabel(s_g, "secret", BE32(g), 32)
//
// with s_0 the 16-byte base secret the MLS exporter gives for the sender
// (DAVE whitepaper, "Sender Key Derivation"). Secrets behind the newest
// derived generation are forgotten; keys are cached until Erase.
// A HashRatchet is not safe for concurrent use.
type HashRatchet struct {
	secret  []byte
	nextGen uint32
	keys    map[uint32][KeySize]byte
}

// NewHashRatchet returns a ratchet starting at generation 0 from base, the
// sender's exported base secret (16 bytes in DAVE v1).
func NewHashRatchet(base []byte) (*HashRatchet, error) {
	if len(base) == 0 {
		return nil, fmt.Errorf("%w: empty ratchet base secret", ErrBadArgument)
	}
	return &HashRatchet{
		secret: append([]byte(nil), base...),
		keys:   make(map[uint32][KeySize]byte),
	}, nil
}

// Key returns the media key of generation gen, deriving forward as needed.
// Generations before the newest derived one are only available while their
// key is cached (not yet erased).
func (r *HashRatchet) Key(gen uint32) ([KeySize]byte, error) {
	if k, ok := r.keys[gen]; ok {
		return k, nil
	}
	if gen < r.nextGen {
		return [KeySize]byte{}, fmt.Errorf("%w: generation %d already erased", ErrNoKey, gen)
	}
	if gen-r.nextGen > maxRatchetStep {
		return [KeySize]byte{}, fmt.Errorf("%w: generation %d is %d steps ahead", ErrNoKey, gen, gen-r.nextGen)
	}
	for r.nextGen <= gen {
		var ctx [4]byte
		binary.BigEndian.PutUint32(ctx[:], r.nextGen)
		key, err := expandWithLabel(r.secret, "key", ctx[:], KeySize)
		if err != nil {
			return [KeySize]byte{}, err
		}
		next, err := expandWithLabel(r.secret, "secret", ctx[:], ratchetSecretSize)
		if err != nil {
			return [KeySize]byte{}, err
		}
		clear(r.secret)
		r.secret = next
		r.keys[r.nextGen] = [KeySize]byte(key)
		r.nextGen++
	}
	return r.keys[gen], nil
}

// Erase forgets the cached key of generation gen.
func (r *HashRatchet) Erase(gen uint32) {
	delete(r.keys, gen)
}
