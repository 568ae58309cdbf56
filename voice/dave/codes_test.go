package dave

import (
	"bytes"
	"errors"
	"testing"
)

func TestDisplayableCodeVector(t *testing.T) {
	data := mustHex(t, "aabbccddee"+"bbccddeeff"+"ccddeeffaa"+"ddeeffaabb"+"eeffaabbcc"+"ffaabbccdd")
	got, err := DisplayableCode(data, 30, 5)
	if err != nil {
		t.Fatal(err)
	}
	if want := "058708105556138052119572494877"; got != want {
		t.Fatalf("code = %s, want %s", got, want)
	}
	// The privacy code of a 32-byte authenticator reads its first 30 bytes.
	auth := append(append([]byte(nil), data...), 0x01, 0x02)
	if pc, err := VoicePrivacyCode(auth); err != nil || pc != got {
		t.Fatalf("privacy code = %q, %v", pc, err)
	}
}

func TestDisplayableCodeBadArguments(t *testing.T) {
	cases := []struct {
		n, length, group int
	}{
		{30, 30, 7}, // not a multiple
		{30, 30, 0},
		{45, 45, 9}, // groups longer than 8 digits overflow 64 bits
		{29, 30, 5}, // too little data
		{30, 0, 5},
	}
	for _, c := range cases {
		if _, err := DisplayableCode(make([]byte, c.n), c.length, c.group); !errors.Is(err, ErrBadArgument) {
			t.Errorf("%+v: err = %v, want ErrBadArgument", c, err)
		}
	}
}

func TestPairwiseFingerprintVector(t *testing.T) {
	keyA, keyB := make([]byte, 33), make([]byte, 65)
	fp, err := PairwiseFingerprint(keyA, 1234, keyB, 5678)
	if err != nil {
		t.Fatal(err)
	}
	if len(fp) != 64 || !bytes.HasPrefix(fp, []byte{0x85, 0x81, 0xf1, 0x2c}) {
		t.Fatalf("fingerprint = %x, want 64 bytes starting 8581f12c", fp)
	}
	// Symmetric: either member computes the same value.
	fp2, err := PairwiseFingerprint(keyB, 5678, keyA, 1234)
	if err != nil || !bytes.Equal(fp, fp2) {
		t.Fatalf("fingerprint not symmetric: %x vs %x (%v)", fp, fp2, err)
	}
	code, err := VerificationCode(keyA, 1234, keyB, 5678)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := DisplayableCode(fp, 45, 5)
	if len(code) != 45 || code != want {
		t.Fatalf("verification code %q (want %q)", code, want)
	}
	if _, err := PairwiseFingerprint(nil, 1, keyB, 2); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("empty key: err = %v", err)
	}
}
