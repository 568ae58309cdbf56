package mls

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// CipherSuite is an MLS cipher suite identifier (RFC 9420 §17.1). Only
// CipherSuiteP256 is implemented.
type CipherSuite uint16

// CipherSuiteP256 is MLS_128_DHKEMP256_AES128GCM_SHA256_P256 (value 2), the
// suite DAVE uses: DHKEM(P-256, HKDF-SHA256), AES-128-GCM, SHA-256, and
// ECDSA P-256 with SHA-256 signatures.
const CipherSuiteP256 CipherSuite = 2

// ProtocolVersion is the MLS protocol version (RFC 9420 §6); only mls10.
type ProtocolVersion uint16

// ProtocolMLS10 is MLS 1.0.
const ProtocolMLS10 ProtocolVersion = 1

// Sizes of cipher suite 2 (RFC 9420 §5.1, RFC 9180 §7).
const (
	hashSize      = 32 // KDF.Nh
	aeadKeySize   = 16 // AEAD.Nk
	aeadNonceSize = 12 // AEAD.Nn
	kemOutputSize = 65 // DHKEM(P-256) Nenc
)

func (cs CipherSuite) check() error {
	if cs != CipherSuiteP256 {
		return fmt.Errorf("%w: %d (only %d is implemented)", ErrUnsupportedCipherSuite, cs, CipherSuiteP256)
	}
	return nil
}

var (
	hpkeKEM  = hpke.DHKEM(ecdh.P256())
	hpkeKDF  = hpke.HKDFSHA256()
	hpkeAEAD = hpke.AES128GCM()
)

// labelPrefix starts every MLS label (RFC 9420 §5.1.3, §5.2, §5.1.2).
const labelPrefix = "MLS 1.0 "

func hashBytes(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// extract is KDF.Extract(salt, ikm) (RFC 5869).
func extract(salt, ikm []byte) []byte {
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		// HKDF-Extract with SHA-256 has no failure mode for any input.
		return make([]byte, hashSize)
	}
	return prk
}

// ExpandWithLabel is RFC 9420 §8: HKDF-Expand(secret, KDFLabel, length)
// with KDFLabel = {uint16 length; opaque label<V> = "MLS 1.0 " + label;
// opaque context<V>}. length must be at most 255*32.
func ExpandWithLabel(secret []byte, label string, context []byte, length int) ([]byte, error) {
	if length < 0 || length > 255*hashSize {
		return nil, fmt.Errorf("%w: ExpandWithLabel length %d out of range", ErrInvalidArgument, length)
	}
	info := encode(func(w *Writer) {
		w.Uint16(uint16(length))
		w.Opaque([]byte(labelPrefix + label))
		w.Opaque(context)
	})
	return hkdf.Expand(sha256.New, secret, string(info), length)
}

// expandWithLabel is ExpandWithLabel for the package's own fixed, small
// lengths, which cannot fail.
func expandWithLabel(secret []byte, label string, context []byte, length int) []byte {
	out, err := ExpandWithLabel(secret, label, context, length)
	if err != nil {
		return make([]byte, length)
	}
	return out
}

// DeriveSecret is RFC 9420 §8: ExpandWithLabel(secret, label, "", KDF.Nh).
func DeriveSecret(secret []byte, label string) []byte {
	return expandWithLabel(secret, label, nil, hashSize)
}

// RefHash is RFC 9420 §5.2: Hash(RefHashInput{opaque label<V>; opaque value<V>}).
func RefHash(label string, value []byte) []byte {
	return hashBytes(encode(func(w *Writer) {
		w.Opaque([]byte(label))
		w.Opaque(value)
	}))
}

// KeyPackageRef identifies a KeyPackage (RFC 9420 §5.2).
type KeyPackageRef []byte

// ProposalRef identifies a proposal by its AuthenticatedContent (§5.2).
type ProposalRef []byte

// MakeKeyPackageRef hashes a serialized KeyPackage into its reference.
func MakeKeyPackageRef(keyPackage []byte) KeyPackageRef {
	return RefHash("MLS 1.0 KeyPackage Reference", keyPackage)
}

// MakeProposalRef hashes a serialized AuthenticatedContent into its reference.
func MakeProposalRef(authenticatedContent []byte) ProposalRef {
	return RefHash("MLS 1.0 Proposal Reference", authenticatedContent)
}

// mac is the suite's MAC, HMAC-SHA256 (RFC 9420 §5.1).
func mac(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

func signContent(label string, content []byte) []byte {
	return hashBytes(encode(func(w *Writer) {
		w.Opaque([]byte(labelPrefix + label))
		w.Opaque(content)
	}))
}

// GenerateSignatureKey returns a fresh ECDSA P-256 signature key.
func GenerateSignatureKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// SignatureKeyFromBytes parses a raw 32-byte P-256 private scalar.
func SignatureKeyFromBytes(b []byte) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	if err != nil {
		return nil, fmt.Errorf("%w: signature private key: %v", ErrInvalidArgument, err)
	}
	return k, nil
}

// SignaturePublicKeyBytes encodes the public half of sig as MLS carries it:
// an uncompressed P-256 point (RFC 9420 §5.1.1).
func SignaturePublicKeyBytes(sig *ecdsa.PrivateKey) ([]byte, error) {
	if sig == nil || sig.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: signature key must be ECDSA P-256", ErrInvalidArgument)
	}
	return sig.PublicKey.Bytes()
}

// SignWithLabel is RFC 9420 §5.1.2: an ECDSA-SHA256 signature (DER) over
// SignContent{opaque label<V> = "MLS 1.0 " + label; opaque content<V>}.
func SignWithLabel(sig *ecdsa.PrivateKey, label string, content []byte) ([]byte, error) {
	if sig == nil {
		return nil, fmt.Errorf("%w: nil signature key", ErrInvalidArgument)
	}
	return ecdsa.SignASN1(rand.Reader, sig, signContent(label, content))
}

// VerifyWithLabel checks a SignWithLabel signature against an uncompressed
// P-256 public key; failure wraps ErrBadSignature.
func VerifyWithLabel(pub []byte, label string, content, signature []byte) error {
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub)
	if err != nil {
		return fmt.Errorf("%w: %s: signature public key does not parse: %v", ErrBadSignature, label, err)
	}
	if !ecdsa.VerifyASN1(key, signContent(label, content), signature) {
		return fmt.Errorf("%w: %s", ErrBadSignature, label)
	}
	return nil
}

func encryptContext(label string, context []byte) []byte {
	return encode(func(w *Writer) {
		w.Opaque([]byte(labelPrefix + label))
		w.Opaque(context)
	})
}

// EncryptWithLabel is RFC 9420 §5.1.3: HPKE base mode SealBase to pub with
// info = EncryptContext{label, context} and empty aad. It returns the KEM
// output and the ciphertext.
func EncryptWithLabel(pub []byte, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	pk, err := hpkeKEM.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: HPKE public key for %s: %v", ErrInvalidArgument, label, err)
	}
	out, err := hpke.Seal(pk, hpkeKDF, hpkeAEAD, encryptContext(label, context), plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: HPKE seal for %s: %v", ErrInvalidArgument, label, err)
	}
	return out[:kemOutputSize:kemOutputSize], out[kemOutputSize:], nil
}

// DecryptWithLabel reverses EncryptWithLabel with a serialized HPKE
// private key; failure wraps ErrDecrypt.
func DecryptWithLabel(priv []byte, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	k, err := hpkeKEM.NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: HPKE private key for %s: %v", ErrDecrypt, label, err)
	}
	return decryptWithKey(k, label, context, kemOutput, ciphertext)
}

func decryptWithKey(k hpke.PrivateKey, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	if len(kemOutput) != kemOutputSize {
		return nil, fmt.Errorf("%w: %s: kem_output is %d bytes, want %d", ErrDecrypt, label, len(kemOutput), kemOutputSize)
	}
	in := make([]byte, 0, len(kemOutput)+len(ciphertext))
	in = append(append(in, kemOutput...), ciphertext...)
	pt, err := hpke.Open(k, hpkeKDF, hpkeAEAD, encryptContext(label, context), in)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDecrypt, label, err)
	}
	return pt, nil
}

// hpkeKeyPair is a node or init key pair: the private key and the
// serialized public key.
type hpkeKeyPair struct {
	priv hpke.PrivateKey
	pub  []byte
}

// deriveKeyPair is DeriveKeyPair(node_secret) of RFC 9180 §7.1.3, used for
// path secrets (RFC 9420 §7.4).
func deriveKeyPair(secret []byte) (hpkeKeyPair, error) {
	k, err := hpkeKEM.DeriveKeyPair(secret)
	if err != nil {
		return hpkeKeyPair{}, fmt.Errorf("%w: DeriveKeyPair: %v", ErrInvalidArgument, err)
	}
	return hpkeKeyPair{priv: k, pub: k.PublicKey().Bytes()}, nil
}

func generateKeyPair() (hpkeKeyPair, error) {
	k, err := hpkeKEM.GenerateKey()
	if err != nil {
		return hpkeKeyPair{}, err
	}
	return hpkeKeyPair{priv: k, pub: k.PublicKey().Bytes()}, nil
}

func keyPairFromPrivate(priv []byte) (hpkeKeyPair, error) {
	k, err := hpkeKEM.NewPrivateKey(priv)
	if err != nil {
		return hpkeKeyPair{}, fmt.Errorf("%w: HPKE private key: %v", ErrInvalidArgument, err)
	}
	return hpkeKeyPair{priv: k, pub: k.PublicKey().Bytes()}, nil
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// aeadSeal and aeadOpen are AES-128-GCM as used for the Welcome's GroupInfo
// (RFC 9420 §12.4.3.1).
func aeadSeal(key, nonce, aad, plaintext []byte) ([]byte, error) {
	a, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return a.Seal(nil, nonce, plaintext, aad), nil
}

func aeadOpen(key, nonce, aad, ciphertext []byte) ([]byte, error) {
	a, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	pt, err := a.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: AEAD open: %v", ErrDecrypt, err)
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: AES key: %v", ErrInvalidArgument, err)
	}
	return cipher.NewGCM(b)
}

func zeros(n int) []byte { return make([]byte, n) }

func equal(a, b []byte) bool { return bytes.Equal(a, b) }

func macEqual(a, b []byte) bool { return hmac.Equal(a, b) }
