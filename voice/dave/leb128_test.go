package dave

import (
	"errors"
	"math"
	"testing"
)

func TestLEB128RoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 0x7f, 0x80, 0x3fff, 0x4000, 0xffffffff, math.MaxUint64} {
		enc := appendLEB128(nil, v)
		if len(enc) != leb128Size(v) {
			t.Errorf("%d: size %d, leb128Size %d", v, len(enc), leb128Size(v))
		}
		got, n, err := readLEB128(enc, math.MaxUint64)
		if err != nil || got != v || n != len(enc) {
			t.Errorf("%d: decoded %d, %d bytes, err %v", v, got, n, err)
		}
	}
}

func TestLEB128Strict(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		max  uint64
	}{
		{"empty", nil, math.MaxUint64},
		{"truncated", []byte{0x80}, math.MaxUint64},
		{"overlong zero", []byte{0x80, 0x00}, math.MaxUint64},
		{"overlong one", []byte{0x81, 0x80, 0x00}, math.MaxUint64},
		{"above max", []byte{0x80, 0x01}, 0x7f},
		{"u32 overflow", []byte{0xff, 0xff, 0xff, 0xff, 0x10}, math.MaxUint32},
		{"65 bits", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, math.MaxUint64},
		{"eleven bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, math.MaxUint64},
	}
	for _, c := range cases {
		if _, _, err := readLEB128(c.in, c.max); !errors.Is(err, ErrLEB128) {
			t.Errorf("%s: err = %v, want ErrLEB128", c.name, err)
		}
	}
	// Trailing bytes after a complete value are left to the caller.
	if v, n, err := readLEB128([]byte{0x05, 0xff}, 10); err != nil || v != 5 || n != 1 {
		t.Errorf("prefix read: %d %d %v", v, n, err)
	}
}
