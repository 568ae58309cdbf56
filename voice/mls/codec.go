package mls

import (
	"encoding/binary"
	"fmt"
)

// This file holds the TLS presentation language codec of RFC 9420 §2.1:
// fixed-width big-endian integers and vectors prefixed by a variable-length
// integer (§2.1.2). Decoding is strict: lengths must use the shortest
// varint form, vectors must be consumed exactly, and every failure names
// the field that failed.

// maxVarint is the largest length a varint can carry (§2.1.2: 30 bits).
const maxVarint = 1<<30 - 1

// AppendVarint appends n in the variable-length integer encoding of
// RFC 9420 §2.1.2, always in the shortest form. n must be below 2^30.
func AppendVarint(b []byte, n int) []byte {
	switch {
	case n < 0 || n > maxVarint:
		// Callers only pass lengths of buffers they built; a length this
		// large cannot be represented and is clamped to the invalid prefix
		// so a peer rejects it rather than misreading it.
		return append(b, 0xff)
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, byte(n>>8)|0x40, byte(n))
	default:
		return append(b, byte(n>>24)|0x80, byte(n>>16), byte(n>>8), byte(n))
	}
}

// Writer accumulates a TLS-presentation-language encoding.
type Writer struct {
	buf []byte
}

// Bytes returns the encoding written so far.
func (w *Writer) Bytes() []byte { return w.buf }

// Uint8 writes one byte.
func (w *Writer) Uint8(v uint8) { w.buf = append(w.buf, v) }

// Uint16 writes a big-endian uint16.
func (w *Writer) Uint16(v uint16) { w.buf = binary.BigEndian.AppendUint16(w.buf, v) }

// Uint32 writes a big-endian uint32.
func (w *Writer) Uint32(v uint32) { w.buf = binary.BigEndian.AppendUint32(w.buf, v) }

// Uint64 writes a big-endian uint64.
func (w *Writer) Uint64(v uint64) { w.buf = binary.BigEndian.AppendUint64(w.buf, v) }

// Raw writes b without a length prefix.
func (w *Writer) Raw(b []byte) { w.buf = append(w.buf, b...) }

// Opaque writes b as opaque<V>: a varint length, then the bytes.
func (w *Writer) Opaque(b []byte) {
	w.buf = AppendVarint(w.buf, len(b))
	w.buf = append(w.buf, b...)
}

// Vector writes whatever fn writes as a vector<V>: the varint length of
// the content, then the content.
func (w *Writer) Vector(fn func(w *Writer)) {
	var inner Writer
	fn(&inner)
	w.Opaque(inner.buf)
}

// Optional writes the optional<T> presence byte and, when present, calls fn.
func (w *Writer) Optional(present bool, fn func(w *Writer)) {
	if !present {
		w.Uint8(0)
		return
	}
	w.Uint8(1)
	fn(w)
}

// Reader decodes a TLS-presentation-language encoding. The first error is
// sticky: later reads return zero values, and Err reports the first
// failure, naming the field being read.
type Reader struct {
	buf []byte
	off int
	err error
}

// NewReader returns a Reader over b.
func NewReader(b []byte) *Reader { return &Reader{buf: b} }

// Err returns the first decoding error, if any.
func (r *Reader) Err() error { return r.err }

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.buf) - r.off }

// Offset returns the number of bytes consumed so far.
func (r *Reader) Offset() int { return r.off }

// Fail records err (the first one wins) so callers can report semantic
// errors through the same path as decoding errors.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *Reader) failf(format string, args ...any) {
	r.Fail(fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...)))
}

func (r *Reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.Len() < n {
		r.failf("%s: need %d bytes, have %d", what, n, r.Len())
		return nil
	}
	b := r.buf[r.off : r.off+n]
	r.off += n
	return b
}

// Uint8 reads one byte.
func (r *Reader) Uint8(what string) uint8 {
	b := r.take(1, what)
	if b == nil {
		return 0
	}
	return b[0]
}

// Uint16 reads a big-endian uint16.
func (r *Reader) Uint16(what string) uint16 {
	b := r.take(2, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

// Uint32 reads a big-endian uint32.
func (r *Reader) Uint32(what string) uint32 {
	b := r.take(4, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// Uint64 reads a big-endian uint64.
func (r *Reader) Uint64(what string) uint64 {
	b := r.take(8, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Raw reads exactly n bytes. The result aliases the input.
func (r *Reader) Raw(n int, what string) []byte { return r.take(n, what) }

// Varint reads a variable-length integer (RFC 9420 §2.1.2). The prefix
// 0b11 is invalid, and so is a value not encoded in its shortest form.
func (r *Reader) Varint(what string) int {
	first := r.take(1, what+" length")
	if first == nil {
		return 0
	}
	prefix := first[0] >> 6
	if prefix == 3 {
		r.failf("%s length: invalid varint prefix 0b11", what)
		return 0
	}
	n := 1 << prefix
	v := int(first[0] & 0x3f)
	rest := r.take(n-1, what+" length")
	if r.err != nil {
		return 0
	}
	for _, c := range rest {
		v = v<<8 | int(c)
	}
	if (n == 2 && v < 1<<6) || (n == 4 && v < 1<<14) {
		r.failf("%s length: varint %d not in its shortest form", what, v)
		return 0
	}
	return v
}

// Opaque reads an opaque<V>. The result is a copy, safe to keep.
func (r *Reader) Opaque(what string) []byte {
	n := r.Varint(what)
	b := r.take(n, what)
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// Vector reads a vector<V> and hands its content to fn through a reader
// bounded to exactly that content; content fn leaves unread is an error.
func (r *Reader) Vector(what string, fn func(r *Reader)) {
	n := r.Varint(what)
	b := r.take(n, what)
	if r.err != nil {
		return
	}
	inner := &Reader{buf: b}
	fn(inner)
	if inner.err == nil && inner.Len() != 0 {
		inner.failf("%s: %d trailing bytes inside the vector", what, inner.Len())
	}
	r.Fail(inner.err)
}

// Optional reads an optional<T> presence byte and calls fn when present.
// It reports whether the value was present.
func (r *Reader) Optional(what string, fn func(r *Reader)) bool {
	switch p := r.Uint8(what + " presence"); {
	case r.err != nil:
		return false
	case p == 0:
		return false
	case p == 1:
		fn(r)
		return r.err == nil
	default:
		r.failf("%s: optional presence byte %d (want 0 or 1)", what, p)
		return false
	}
}

// Finish reports the first error, or an error if bytes remain unread.
func (r *Reader) Finish(what string) error {
	if r.err != nil {
		return r.err
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformed, what, r.Len())
	}
	return nil
}

// decodeAll runs fn over b and requires it to consume every byte.
func decodeAll(b []byte, what string, fn func(r *Reader)) error {
	r := NewReader(b)
	fn(r)
	return r.Finish(what)
}

// encode runs fn on a fresh Writer and returns the bytes.
func encode(fn func(w *Writer)) []byte {
	var w Writer
	fn(&w)
	return w.buf
}
