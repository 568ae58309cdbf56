package opusenc

import "math/bits"

// The range encoder of RFC 6716 §4.1, seen from the encoding side (§5.1):
// symbols go into the front of the buffer through the range, raw bits into
// its back, and done joins the two, so the decoder's range decoder reads
// exactly what was written.
const (
	codeBits  = 32
	symBits   = 8
	symMax    = 1<<symBits - 1
	codeShift = codeBits - symBits - 1
	codeTop   = 1 << (codeBits - 1)
	codeBot   = codeTop >> symBits
	bitRes    = 3 // allocations count in 1/8 bit
)

// rangeEncoder writes one CELT frame into buf; it never grows buf, and
// sets overflow instead of writing past it.
type rangeEncoder struct {
	buf        []byte
	offs       int // bytes written at the front
	endOffs    int // bytes written at the back
	endWindow  uint32
	endBits    int
	totalBits  int
	rng        uint32
	val        uint32
	rem        int // the last byte before a possible carry, or -1
	ext        int // 0xFF bytes waiting for a carry
	overflowed bool
}

func (e *rangeEncoder) init(buf []byte) {
	*e = rangeEncoder{buf: buf, rng: codeTop, rem: -1, totalBits: codeBits + 1}
}

func (e *rangeEncoder) writeByte(b uint32) {
	if e.offs+e.endOffs >= len(e.buf) {
		e.overflowed = true
		return
	}
	e.buf[e.offs] = byte(b)
	e.offs++
}

func (e *rangeEncoder) writeByteAtEnd(b uint32) {
	if e.offs+e.endOffs >= len(e.buf) {
		e.overflowed = true
		return
	}
	e.endOffs++
	e.buf[len(e.buf)-e.endOffs] = byte(b)
}

// carryOut emits the top byte of the range, holding back runs of 0xFF
// until it is known whether a carry propagates into them.
func (e *rangeEncoder) carryOut(c uint32) {
	if c == symMax {
		e.ext++
		return
	}
	carry := c >> symBits
	if e.rem >= 0 {
		e.writeByte(uint32(e.rem) + carry)
	}
	for ; e.ext > 0; e.ext-- {
		e.writeByte((symMax + carry) & symMax)
	}
	e.rem = int(c & symMax)
}

func (e *rangeEncoder) normalize() {
	for e.rng <= codeBot {
		e.carryOut(e.val >> codeShift)
		e.val = (e.val << symBits) & (codeTop - 1)
		e.rng <<= symBits
		e.totalBits += symBits
	}
}

// encode codes the symbol occupying [fl, fh) of a total frequency ft.
func (e *rangeEncoder) encode(fl, fh, ft uint32) {
	r := e.rng / ft
	if fl > 0 {
		e.val += e.rng - r*(ft-fl)
		e.rng = r * (fh - fl)
	} else {
		e.rng -= r * (ft - fh)
	}
	e.normalize()
}

// encodeBin is encode with ft = 1<<ftBits.
func (e *rangeEncoder) encodeBin(fl, fh uint32, ftBits uint) {
	r := e.rng >> ftBits
	if fl > 0 {
		e.val += e.rng - r*((1<<ftBits)-fl)
		e.rng = r * (fh - fl)
	} else {
		e.rng -= r * ((1 << ftBits) - fh)
	}
	e.normalize()
}

// bitLogP codes a bit whose probability of being 1 is 1/2^logp.
func (e *rangeEncoder) bitLogP(bit bool, logp uint) {
	s := e.rng >> logp
	r := e.rng - s
	if bit {
		e.val += r
		e.rng = s
	} else {
		e.rng = r
	}
	e.normalize()
}

// icdf codes symbol s of an inverse cumulative table with 2^ftBits total.
func (e *rangeEncoder) icdf(s int, icdf []uint8, ftBits uint) {
	r := e.rng >> ftBits
	if s > 0 {
		e.val += e.rng - r*uint32(icdf[s-1])
		e.rng = r * uint32(icdf[s-1]-icdf[s])
	} else {
		e.rng -= r * uint32(icdf[s])
	}
	e.normalize()
}

// uniform codes v in [0, ft): the top 8 bits through the range, the rest
// as raw bits (RFC 6716 §4.1.5).
func (e *rangeEncoder) uniform(v, ft uint32) {
	ft--
	ftBits := bits.Len32(ft)
	if ftBits > 8 {
		ftBits -= 8
		e.encode(v>>ftBits, v>>ftBits+1, ft>>ftBits+1)
		e.rawBits(v&(1<<ftBits-1), uint(ftBits))
		return
	}
	e.encode(v, v+1, ft+1)
}

// rawBits writes n raw bits at the back of the frame (RFC 6716 §4.1.4).
func (e *rangeEncoder) rawBits(v uint32, n uint) {
	window, used := e.endWindow, e.endBits
	if used+int(n) > 32 {
		for used >= symBits {
			e.writeByteAtEnd(window & symMax)
			window >>= symBits
			used -= symBits
		}
	}
	window |= v << used
	used += int(n)
	e.endWindow, e.endBits = window, used
	e.totalBits += int(n)
}

// tell is the number of whole bits used so far, rounded up (RFC 6716 §4.1.6).
func (e *rangeEncoder) tell() int {
	return e.totalBits - bits.Len32(e.rng)
}

// tellFrac is tell in 1/8 bit (RFC 6716 §4.1.6.2).
func (e *rangeEncoder) tellFrac() int {
	correction := [8]uint32{35733, 38967, 42495, 46340, 50535, 55109, 60097, 65535}
	nbits := e.totalBits << bitRes
	l := bits.Len32(e.rng)
	r := e.rng >> (l - 16)
	b := int(r>>12) - 8
	if r > correction[b] {
		b++
	}
	return nbits - (l<<3 + b)
}

// done flushes the range and the raw bits and zeroes the gap between them,
// leaving a frame of exactly len(buf) bytes.
func (e *rangeEncoder) done() {
	l := codeBits - bits.Len32(e.rng)
	mask := uint32(codeTop-1) >> l
	end := (e.val + mask) &^ mask
	if end|mask >= e.val+e.rng {
		l++
		mask >>= 1
		end = (e.val + mask) &^ mask
	}
	for l > 0 {
		e.carryOut(end >> codeShift)
		end = (end << symBits) & (codeTop - 1)
		l -= symBits
	}
	if e.rem >= 0 || e.ext > 0 {
		e.carryOut(0)
	}
	window, used := e.endWindow, e.endBits
	for used >= symBits {
		e.writeByteAtEnd(window & symMax)
		window >>= symBits
		used -= symBits
	}
	if e.overflowed {
		return
	}
	clear(e.buf[e.offs : len(e.buf)-e.endOffs])
	if used > 0 {
		if e.endOffs >= len(e.buf) {
			e.overflowed = true
			return
		}
		if e.offs+e.endOffs >= len(e.buf) && -l < used {
			window &= 1<<(-l) - 1
			e.overflowed = true
		}
		e.buf[len(e.buf)-e.endOffs-1] |= byte(window)
	}
}
