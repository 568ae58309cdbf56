package opusenc

// Bit allocation, RFC 6716 §4.3.3: the same computation as the decoder's,
// from the same inputs (frame size, band boosts, trim), so that both sides
// agree on every band's shape and fine-energy bits. The only choice left to
// the encoder is the band-skip flag, which this encoder always sets to
// "keep" at the first band that asks.

const (
	allocSteps  = 6  // interpolation steps between two table rows
	fineOffset  = 21 // bias of the fine-energy share, in 1/8 bit
	defaultTrim = 5
)

// allocation is the outcome of computeAllocation for one frame.
type allocation struct {
	pulses     [numBands]int // shape bits per band, in 1/8 bit
	fine       [numBands]int // fine energy bits per band
	priority   [numBands]int // which finalise pass a band's extra bit belongs to
	codedBands int
	balance    int
}

// bandWidth is band b's width in 2.5 ms bins.
func bandWidth(b int) int { return bandEdges[b+1] - bandEdges[b] }

// bandCap is band b's largest allocation, in 1/8 bit (init_caps).
func bandCap(b int) int {
	return (int(bandCaps[b]) + 64) * (bandWidth(b) << lm) >> 2
}

// computeAllocation splits total 1/8 bits among the bands for a mono 20 ms
// frame with the given trim and band boosts (in 1/8 bit), coding the skip
// flag into re.
func computeAllocation(re *rangeEncoder, total, trim int, boosts *[numBands]int, a *allocation) {
	const c = 1
	total = max(total, 0)
	skipReserved := 0
	if total >= 1<<bitRes {
		skipReserved = 1 << bitRes
	}
	total -= skipReserved

	var thresh, trimOffset, bits1, bits2, caps [numBands]int
	for b := range numBands {
		w := bandWidth(b)
		caps[b] = bandCap(b)
		thresh[b] = max(c<<bitRes, (3*w<<lm<<bitRes)>>4)
		trimOffset[b] = c * w * (trim - defaultTrim - lm) * (numBands - b - 1) * (1 << (lm + bitRes)) >> 6
		if w<<lm == 1 {
			trimOffset[b] -= c << bitRes
		}
	}

	// The highest table row whose allocation fits.
	lo, hi := 1, len(bandAllocation)-1
	for lo <= hi {
		mid := (lo + hi) >> 1
		psum := 0
		done := false
		for b := numBands - 1; b >= 0; b-- {
			bits := c * bandWidth(b) * int(bandAllocation[mid][b]) << lm >> 2
			if bits > 0 {
				bits = max(0, bits+trimOffset[b])
			}
			bits += boosts[b]
			if bits >= thresh[b] || done {
				done = true
				psum += min(bits, caps[b])
			} else if bits >= c<<bitRes {
				psum += c << bitRes
			}
		}
		if psum > total {
			hi = mid - 1
		} else {
			lo = mid + 1
		}
	}
	hi = lo
	lo--
	skipStart := 0
	for b := range numBands {
		w := bandWidth(b)
		b1 := c * w * int(bandAllocation[lo][b]) << lm >> 2
		b2 := caps[b]
		if hi < len(bandAllocation) {
			b2 = c * w * int(bandAllocation[hi][b]) << lm >> 2
		}
		if b1 > 0 {
			b1 = max(0, b1+trimOffset[b])
		}
		if b2 > 0 {
			b2 = max(0, b2+trimOffset[b])
		}
		if lo > 0 {
			b1 += boosts[b]
		}
		b2 += boosts[b]
		if boosts[b] > 0 {
			skipStart = b // a boosted band is never skipped
		}
		bits1[b] = b1
		bits2[b] = max(0, b2-b1)
	}
	interpolate(re, &bits1, &bits2, &thresh, &caps, total, skipReserved, skipStart, a)
}

// interpolate is interp_bits2pulses of the reference: it finds the point
// between the two rows that fits total, decides the coded bands, and
// splits each band's bits into fine energy and shape.
func interpolate(re *rangeEncoder, bits1, bits2, thresh, caps *[numBands]int, total, skipReserved, skipStart int, a *allocation) {
	const c = 1
	const allocFloor = c << bitRes
	bits := &a.pulses

	lo, hi := 0, 1<<allocSteps
	for range allocSteps {
		mid := (lo + hi) >> 1
		psum := 0
		done := false
		for b := numBands - 1; b >= 0; b-- {
			tmp := bits1[b] + (mid * bits2[b] >> allocSteps)
			if tmp >= thresh[b] || done {
				done = true
				psum += min(tmp, caps[b])
			} else if tmp >= allocFloor {
				psum += allocFloor
			}
		}
		if psum > total {
			hi = mid
		} else {
			lo = mid
		}
	}
	psum := 0
	done := false
	for b := numBands - 1; b >= 0; b-- {
		tmp := bits1[b] + (lo * bits2[b] >> allocSteps)
		if tmp < thresh[b] && !done {
			if tmp >= allocFloor {
				tmp = allocFloor
			} else {
				tmp = 0
			}
		} else {
			done = true
		}
		tmp = min(tmp, caps[b])
		bits[b] = tmp
		psum += tmp
	}

	// Drop bands from the top while they cannot pay their threshold; the
	// first one that can is offered the skip flag, which we always answer
	// with "keep".
	coded := numBands
	for {
		j := coded - 1
		if j <= skipStart {
			total += skipReserved
			break
		}
		left := total - psum
		perCoeff := left / (bandEdges[coded] - bandEdges[0])
		left -= (bandEdges[coded] - bandEdges[0]) * perCoeff
		rem := max(left-(bandEdges[j]-bandEdges[0]), 0)
		bandBits := bits[j] + perCoeff*bandWidth(j) + rem
		if bandBits >= max(thresh[j], allocFloor+(1<<bitRes)) {
			re.bitLogP(true, 1)
			break
		}
		psum -= bits[j]
		if bandBits >= allocFloor {
			psum += allocFloor
			bits[j] = allocFloor
		} else {
			bits[j] = 0
		}
		coded--
	}

	left := total - psum
	perCoeff := left / (bandEdges[coded] - bandEdges[0])
	left -= (bandEdges[coded] - bandEdges[0]) * perCoeff
	for b := range coded {
		bits[b] += perCoeff * bandWidth(b)
	}
	for b := range coded {
		tmp := min(left, bandWidth(b))
		bits[b] += tmp
		left -= tmp
	}

	balance := 0
	for b := range coded {
		n := bandWidth(b) << lm
		bits[b] += balance
		var excess int
		if n > 1 {
			excess = max(bits[b]-caps[b], 0)
			bits[b] -= excess
			den := c * n
			ncLogN := den * (logN400[b] + lm<<bitRes)
			offset := ncLogN>>1 - den*fineOffset
			if n == 2 {
				offset += den << bitRes >> 2
			}
			if bits[b]+offset < den*2<<bitRes {
				offset += ncLogN >> 2
			} else if bits[b]+offset < den*3<<bitRes {
				offset += ncLogN >> 3
			}
			fine := max(0, (bits[b]+offset+den<<(bitRes-1))/(den<<bitRes))
			if c*fine > bits[b]>>bitRes {
				fine = bits[b] >> bitRes
			}
			fine = min(fine, maxFineBits)
			a.fine[b] = fine
			a.priority[b] = boolInt(fine*(den<<bitRes) >= bits[b]+offset)
			bits[b] -= c * fine << bitRes
		} else {
			excess = max(0, bits[b]-c<<bitRes)
			bits[b] -= excess
			a.fine[b] = 0
			a.priority[b] = 1
		}
		if excess > 0 {
			extra := min(excess>>bitRes, maxFineBits-a.fine[b])
			a.fine[b] += extra
			extraBits := extra * c << bitRes
			a.priority[b] = boolInt(extraBits >= excess-balance)
			excess -= extraBits
		}
		balance = excess
	}
	a.balance = balance
	for b := coded; b < numBands; b++ {
		a.fine[b] = bits[b] >> bitRes
		bits[b] = 0
		a.priority[b] = boolInt(a.fine[b] < 1)
	}
	a.codedBands = coded
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// getPulses maps a pulse-count index of the cache to a pulse count.
func getPulses(i int) int {
	if i < 8 {
		return i
	}
	return (8 + i&7) << (i>>3 - 1)
}

// pulseCache is the cost row of band b at frame size shift lmShift.
func pulseCache(b, lmShift int) []uint8 {
	return pulseCacheBits[pulseCacheIndex[(lmShift+1)*numBands+b]:]
}

// bitsToPulses returns the pulse-count index whose cost is nearest bits
// (RFC 6716 §4.3.4.1).
func bitsToPulses(b, lmShift, bits int) int {
	cache := pulseCache(b, lmShift)
	lo, hi := 0, int(cache[0])
	bits--
	for range 6 {
		mid := (lo + hi + 1) >> 1
		if int(cache[mid]) >= bits {
			hi = mid
		} else {
			lo = mid
		}
	}
	loBits := -1
	if lo != 0 {
		loBits = int(cache[lo])
	}
	if bits-loBits <= int(cache[hi])-bits {
		return lo
	}
	return hi
}

// pulsesToBits is the cost, in 1/8 bit, of pulse-count index q.
func pulsesToBits(b, lmShift, q int) int {
	if q == 0 {
		return 0
	}
	return int(pulseCache(b, lmShift)[q]) + 1
}
