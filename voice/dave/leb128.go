package dave

import "fmt"

// maxLEB128Len bounds a ULEB128 encoding of a uint64: ceil(64/7) bytes.
const maxLEB128Len = 10

// leb128Size returns how many bytes appendLEB128 writes for v.
func leb128Size(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendLEB128 appends the minimal unsigned LEB128 encoding of v, as the
// DAVE frame trailer uses for its nonce and unencrypted ranges (DAVE
// whitepaper, "Supplemental Data").
func appendLEB128(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// readLEB128 decodes one unsigned LEB128 value from the start of b, that
// must not exceed max. It returns the value and the number of bytes read.
// It is strict: truncated input, overlong encodings (a final zero byte after
// a continuation) and values above max are errors, so every value has
// exactly one accepted encoding.
func readLEB128(b []byte, max uint64) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < maxLEB128Len; i++ {
		c := b[i]
		shift := uint(7 * i)
		part := uint64(c & 0x7f)
		if i == maxLEB128Len-1 && c > 1 {
			return 0, 0, fmt.Errorf("%w: value overflows 64 bits", ErrLEB128)
		}
		v |= part << shift
		if c&0x80 == 0 {
			if i > 0 && c == 0 {
				return 0, 0, fmt.Errorf("%w: overlong encoding", ErrLEB128)
			}
			if v > max {
				return 0, 0, fmt.Errorf("%w: value %d exceeds %d", ErrLEB128, v, max)
			}
			return v, i + 1, nil
		}
	}
	if len(b) >= maxLEB128Len {
		return 0, 0, fmt.Errorf("%w: longer than %d bytes", ErrLEB128, maxLEB128Len)
	}
	return 0, 0, fmt.Errorf("%w: truncated", ErrLEB128)
}
