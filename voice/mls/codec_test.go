package mls

import (
	"errors"
	"strings"
	"testing"
)

func TestVarintBoundaries(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 16383, 16384, maxVarint} {
		b := AppendVarint(nil, n)
		var want int
		switch {
		case n < 64:
			want = 1
		case n < 16384:
			want = 2
		default:
			want = 4
		}
		if len(b) != want {
			t.Errorf("%d encodes in %d bytes, want %d", n, len(b), want)
		}
		r := NewReader(b)
		if got := r.Varint("n"); got != n || r.Finish("n") != nil {
			t.Errorf("%d decodes to %d (%v)", n, got, r.Err())
		}
	}
}

func TestReaderErrorsNameTheField(t *testing.T) {
	r := NewReader([]byte{0x05, 1, 2})
	r.Opaque("Thing.payload")
	err := r.Err()
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "Thing.payload") {
		t.Fatalf("got %v", err)
	}
	// The first error sticks.
	r.Uint64("later")
	if r.Err() != err {
		t.Fatal("error was replaced")
	}

	r = NewReader([]byte{0x03, 1, 2, 3})
	r.Vector("Outer.list", func(r *Reader) { r.Uint16("Outer.item") })
	if err := r.Err(); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "trailing") {
		t.Fatalf("vector with unread content: %v", err)
	}
}

func TestWriterRoundTrip(t *testing.T) {
	var w Writer
	w.Uint8(1)
	w.Uint16(0x0203)
	w.Uint32(0x04050607)
	w.Uint64(0x08090a0b0c0d0e0f)
	w.Opaque([]byte("abc"))
	w.Vector(func(w *Writer) { w.Uint16(7); w.Uint16(8) })
	w.Optional(true, func(w *Writer) { w.Uint8(9) })
	w.Optional(false, nil)
	r := NewReader(w.Bytes())
	if r.Uint8("a") != 1 || r.Uint16("b") != 0x0203 || r.Uint32("c") != 0x04050607 || r.Uint64("d") != 0x08090a0b0c0d0e0f {
		t.Fatal("integers")
	}
	if string(r.Opaque("e")) != "abc" {
		t.Fatal("opaque")
	}
	var items []uint16
	r.Vector("f", func(r *Reader) {
		for r.Len() > 0 {
			items = append(items, r.Uint16("f"))
		}
	})
	var nine uint8
	if !r.Optional("g", func(r *Reader) { nine = r.Uint8("g") }) || nine != 9 || r.Optional("h", nil) {
		t.Fatal("optional")
	}
	if err := r.Finish("all"); err != nil || len(items) != 2 || items[1] != 8 {
		t.Fatalf("finish: %v %v", err, items)
	}
}
