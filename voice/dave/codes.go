package dave

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/crypto/scrypt"
)

// Lengths of the codes shown to people (DAVE whitepaper, "Displayable
// Codes" and "Verification Fingerprint").
const (
	// PrivacyCodeDigits is the length of the voice privacy code.
	PrivacyCodeDigits = 30
	// VerificationCodeDigits is the length of a pairwise verification code.
	VerificationCodeDigits = 45
	// CodeGroupSize is the digit group size of both codes.
	CodeGroupSize = 5
	// fingerprintVersion is the key fingerprint format version.
	fingerprintVersion = 0
	// PairwiseFingerprintSize is the scrypt output length.
	PairwiseFingerprintSize = 64
)

// fingerprintSalt is the fixed scrypt salt of pairwise fingerprints.
var fingerprintSalt = []byte{
	0x24, 0xca, 0xb1, 0x7a, 0x7a, 0xf8, 0xec, 0x2b,
	0x82, 0xb4, 0x12, 0xb9, 0x2d, 0xab, 0x19, 0x2e,
}

// DisplayableCode renders data as length decimal digits: for each group k
// of groupSize digits it reads groupSize bytes at k*groupSize as a
// big-endian integer, takes it mod 10^groupSize and zero-pads it (DAVE
// whitepaper, "Displayable Codes"). length must be a multiple of groupSize,
// groupSize at most 8, and data at least length bytes.
func DisplayableCode(data []byte, length, groupSize int) (string, error) {
	if groupSize <= 0 || groupSize > 8 || length <= 0 || length%groupSize != 0 {
		return "", fmt.Errorf("%w: code length %d with group size %d (want a positive multiple, groups of 1 to 8)", ErrBadArgument, length, groupSize)
	}
	if len(data) < length {
		return "", fmt.Errorf("%w: %d bytes of data for a %d-digit code", ErrBadArgument, len(data), length)
	}
	mod := uint64(1)
	for range groupSize {
		mod *= 10
	}
	var b strings.Builder
	b.Grow(length)
	for i := 0; i < length; i += groupSize {
		var v uint64
		for _, c := range data[i : i+groupSize] {
			v = v<<8 | uint64(c)
		}
		fmt.Fprintf(&b, "%0*d", groupSize, v%mod)
	}
	return b.String(), nil
}

// VoicePrivacyCode is the 30-digit code of an epoch, from its MLS
// epoch_authenticator (32 bytes in suite 2).
func VoicePrivacyCode(epochAuthenticator []byte) (string, error) {
	return DisplayableCode(epochAuthenticator, PrivacyCodeDigits, CodeGroupSize)
}

// keyFingerprint is BE16(version) | signature public key | BE64(user id).
func keyFingerprint(sigKey []byte, userID uint64) []byte {
	b := make([]byte, 0, 2+len(sigKey)+8)
	b = binary.BigEndian.AppendUint16(b, fingerprintVersion)
	b = append(b, sigKey...)
	return binary.BigEndian.AppendUint64(b, userID)
}

// PairwiseFingerprint is the 64-byte fingerprint two members compare to
// verify each other: the two key fingerprints sorted bytewise, concatenated,
// then scrypt (N=16384, r=8, p=2) with the fixed DAVE salt. It is symmetric
// in its two parties.
func PairwiseFingerprint(keyA []byte, userA uint64, keyB []byte, userB uint64) ([]byte, error) {
	if len(keyA) == 0 || len(keyB) == 0 {
		return nil, fmt.Errorf("%w: empty signature key", ErrBadArgument)
	}
	a, b := keyFingerprint(keyA, userA), keyFingerprint(keyB, userB)
	if bytes.Compare(a, b) > 0 {
		a, b = b, a
	}
	out, err := scrypt.Key(append(a, b...), fingerprintSalt, 16384, 8, 2, PairwiseFingerprintSize)
	if err != nil {
		return nil, fmt.Errorf("dave: pairwise fingerprint: %w", err)
	}
	return out, nil
}

// VerificationCode is the 45-digit code of a pairwise fingerprint.
func VerificationCode(keyA []byte, userA uint64, keyB []byte, userB uint64) (string, error) {
	fp, err := PairwiseFingerprint(keyA, userA, keyB, userB)
	if err != nil {
		return "", err
	}
	return DisplayableCode(fp, VerificationCodeDigits, CodeGroupSize)
}
