package opusenc

import (
	"math"
	"math/bits"
)

// bandCoder carries what the band quantiser shares across the recursion
// of one frame (the reference band_ctx).
type bandCoder struct {
	re        *rangeEncoder
	band      int
	remaining int // bits left for the frame, in 1/8 bit
	spread    int
	scratch   *pvqScratch
}

// pvqScratch is the per-encoder scratch of the PVQ search.
type pvqScratch struct {
	band [maxPVQN]float32 // a band in time order
	iy   [maxPVQN]int
	y    [maxPVQN]float32
	neg  [maxPVQN]bool
}

// quantAllBands codes the shape of every band of the normalised spectrum
// x (RFC 6716 §4.3.4), with total 1/8 bits for the whole frame. blocks is
// 1 for a long block, 8 for a transient frame's short blocks, whose
// coefficients x interleaves.
func quantAllBands(re *rangeEncoder, x []float32, a *allocation, total, spread, blocks int, scratch *pvqScratch) {
	bc := bandCoder{re: re, spread: spread, scratch: scratch}
	balance := a.balance
	for b := range numBands {
		tell := re.tellFrac()
		if b != 0 {
			balance -= tell
		}
		remaining := total - tell - 1
		bc.remaining = remaining
		bc.band = b
		bits := 0
		if b <= a.codedBands-1 {
			currBalance := balance / min(3, a.codedBands-b)
			bits = max(0, min(16383, min(remaining+1, a.pulses[b]+currBalance)))
		}
		band := x[bandEdges[b]<<lm : bandEdges[b+1]<<lm]
		if blocks > 1 {
			// In time order: block after block, so that splits divide time.
			perBlock := len(band) / blocks
			for i := range blocks {
				for j := range perBlock {
					scratch.band[i*perBlock+j] = band[j*blocks+i]
				}
			}
			band = scratch.band[:len(band)]
		}
		bc.partition(band, bits, lm, blocks)
		balance += a.pulses[b] + tell
	}
}

// partition codes one band, or a half of one, with b 1/8 bits (the
// reference quant_partition, mono); blocks is how many short blocks x
// holds, in time order.
func (bc *bandCoder) partition(x []float32, b, lmShift, blocks int) {
	n := len(x)
	blocks0 := blocks
	cache := pulseCache(bc.band, lmShift)
	if lmShift != -1 && b > int(cache[cache[0]])+12 && n > 2 {
		n >>= 1
		lmShift--
		xm, xs := x[:n], x[n:]
		blocks = (blocks + 1) >> 1
		itheta, delta, qalloc := bc.theta(xm, xs, &b, lmShift, blocks0)
		if blocks0 > 1 && itheta&0x3fff != 0 {
			// Give the quieter blocks more bits than their share.
			if itheta > 8192 {
				delta -= delta >> (4 - lmShift)
			} else {
				delta = min(0, delta+(n<<bitRes>>(5-lmShift)))
			}
		}
		mbits := max(0, min(b, (b-delta)/2))
		sbits := b - mbits
		bc.remaining -= qalloc
		rebalance := bc.remaining
		if mbits >= sbits {
			bc.partition(xm, mbits, lmShift, blocks)
			rebalance = mbits - (rebalance - bc.remaining)
			if rebalance > 3<<bitRes && itheta != 0 {
				sbits += rebalance - 3<<bitRes
			}
			bc.partition(xs, sbits, lmShift, blocks)
		} else {
			bc.partition(xs, sbits, lmShift, blocks)
			rebalance = sbits - (rebalance - bc.remaining)
			if rebalance > 3<<bitRes && itheta != 16384 {
				mbits += rebalance - 3<<bitRes
			}
			bc.partition(xm, mbits, lmShift, blocks)
		}
		return
	}
	q := bitsToPulses(bc.band, lmShift, b)
	curr := pulsesToBits(bc.band, lmShift, q)
	bc.remaining -= curr
	for bc.remaining < 0 && q > 0 {
		bc.remaining += curr
		q--
		curr = pulsesToBits(bc.band, lmShift, q)
		bc.remaining -= curr
	}
	if q == 0 {
		return // the decoder folds or fills the band with noise
	}
	k := getPulses(q)
	s := bc.scratch
	expRotation(x, k, bc.spread, blocks)
	pvqSearch(x, s.iy[:n], s.y[:n], s.neg[:n], k)
	bc.re.uniform(pvqIndex(s.iy[:n]), pvqV(n, k))
}

// theta codes the angle between the energies of the two halves of a band
// being split (RFC 6716 §4.3.4.4) and returns it in Q14 of a quarter turn,
// with the bit imbalance delta the decoder derives from it and the 1/8
// bits it cost, which it takes off *b.
func (bc *bandCoder) theta(xm, xs []float32, b *int, lmShift, blocks0 int) (itheta, delta, qalloc int) {
	n := len(xm)
	pulseCap := logN400[bc.band] + lmShift<<bitRes
	offset := pulseCap>>1 - 4 // QTHETA_OFFSET
	qn := computeQN(n, *b, offset, pulseCap)

	var em, es float64 = 1e-15, 1e-15
	for i := range n {
		em += float64(xm[i]) * float64(xm[i])
		es += float64(xs[i]) * float64(xs[i])
	}
	itheta = int(math.Floor(0.5 + 16384*0.63662*math.Atan2(math.Sqrt(es), math.Sqrt(em))))

	tell := bc.re.tellFrac()
	if qn != 1 {
		itheta = (itheta*qn + 8192) >> 14
		if blocks0 > 1 {
			// Splitting time: a uniform distribution.
			bc.re.uniform(uint32(itheta), uint32(qn+1))
		} else {
			bc.triangular(itheta, qn)
		}
		itheta = itheta * 16384 / qn
	} else {
		itheta = 0
	}
	qalloc = bc.re.tellFrac() - tell
	*b -= qalloc
	switch itheta {
	case 0:
		delta = -16384
	case 16384:
		delta = 16384
	default:
		imid := bitexactCos(itheta)
		iside := bitexactCos(16384 - itheta)
		delta = fracMul16((n-1)<<7, bitexactLog2Tan(iside, imid))
	}
	return itheta, delta, qalloc
}

// computeQN is the number of angle steps a split of b 1/8 bits affords.
func computeQN(n, b, offset, pulseCap int) int {
	exp2Table8 := [8]int{16384, 17866, 19483, 21247, 23170, 25267, 27554, 30048}
	n2 := 2*n - 1
	qb := (b + n2*offset) / n2
	qb = min(b-pulseCap-4<<bitRes, qb)
	qb = min(8<<bitRes, qb)
	if qb < 1<<bitRes>>1 {
		return 1
	}
	qn := exp2Table8[qb&7] >> (14 - qb>>bitRes)
	return (qn + 1) >> 1 << 1
}

// fracMul16 is the reference's Q15 multiply of two 16-bit values.
func fracMul16(a, b int) int {
	return (16384 + int(int16(a))*int(int16(b))) >> 15
}

// bitexactCos is the integer cosine both sides of the codec compute
// identically, in Q15 of a quarter turn in Q14.
func bitexactCos(x int) int {
	x2 := (4096 + x*x) >> 13
	x2 = (32767 - x2) + fracMul16(x2, -7651+fracMul16(x2, 8277+fracMul16(-626, x2)))
	return 1 + x2
}

// bitexactLog2Tan is log2(isin/icos) in Q11, computed identically on both
// sides of the codec.
func bitexactLog2Tan(isin, icos int) int {
	lc := bits.Len(uint(icos))
	ls := bits.Len(uint(isin))
	icos <<= 15 - lc
	isin <<= 15 - ls
	return (ls-lc)*(1<<11) + fracMul16(isin, fracMul16(isin, -2597)+7932) - fracMul16(icos, fracMul16(icos, -2597)+7932)
}

// triangular codes itheta in [0, qn] with a triangular distribution
// peaked at qn/2, what the decoder expects for a split in frequency.
func (bc *bandCoder) triangular(itheta, qn int) {
	half := qn >> 1
	ft := uint32((half + 1) * (half + 1))
	var fs, fl uint32
	if itheta <= half {
		fs = uint32(itheta + 1)
		fl = uint32(itheta * (itheta + 1) >> 1)
	} else {
		fs = uint32(qn + 1 - itheta)
		fl = ft - uint32((qn+1-itheta)*(qn+2-itheta)>>1)
	}
	bc.re.encode(fl, fl+fs, ft)
}
