package dave

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// The published vector (libdave and davey agree): base secret to key 0.
func TestHashRatchetVector(t *testing.T) {
	r, err := NewHashRatchet(mustHex(t, "cedd61b1b8a1ca69046554282cf70b7b"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := r.Key(0)
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, "7530f9a9945e2d2e06d0651f7b2a864b"); !bytes.Equal(k[:], want) {
		t.Fatalf("key0 = %x, want %x", k, want)
	}
}

func TestHashRatchetForwardAndErase(t *testing.T) {
	base := mustHex(t, "cedd61b1b8a1ca69046554282cf70b7b")
	a, _ := NewHashRatchet(base)
	b, _ := NewHashRatchet(base)
	// Jumping straight to generation 3 must equal stepping through 0..3.
	k3, err := a.Key(3)
	if err != nil {
		t.Fatal(err)
	}
	var seen [][KeySize]byte
	for g := uint32(0); g <= 3; g++ {
		k, err := b.Key(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range seen {
			if s == k {
				t.Fatalf("generation %d repeats an earlier key", g)
			}
		}
		seen = append(seen, k)
	}
	if seen[3] != k3 {
		t.Fatalf("key3 differs between jump and step")
	}
	// Keys of skipped generations stay cached until erased.
	if k1, err := a.Key(1); err != nil || k1 != seen[1] {
		t.Fatalf("cached key1 = %x, %v", k1, err)
	}
	a.Erase(1)
	if _, err := a.Key(1); !errors.Is(err, ErrNoKey) {
		t.Fatalf("erased generation: err = %v, want ErrNoKey", err)
	}
	if _, err := a.Key(4 + maxRatchetStep + 1); !errors.Is(err, ErrNoKey) {
		t.Fatalf("huge step: err = %v, want ErrNoKey", err)
	}
	if _, err := NewHashRatchet(nil); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("empty base: err = %v", err)
	}
}
