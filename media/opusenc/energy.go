package opusenc

import "math"

// Band energy quantisation, RFC 6716 §4.3.2: a coarse step of 6 dB
// predicted from the previous frame and the band below and coded with a
// Laplace model, then fine bits from the allocation, then the bits left at
// the end of the frame.

// Laplace model constants (RFC 6716 §4.3.2.1): every value keeps at least
// minP of probability, and the first nMin values on each side are reserved.
const (
	laplaceMinP = 1
	laplaceNMin = 16
	maxFineBits = 8
)

// laplaceEncode codes *value with the Laplace distribution whose zero
// has probability fs/32768 and whose tail decays by decay/16384 per step;
// a value beyond what the model can represent is clamped, and *value
// updated to what was coded.
func (e *rangeEncoder) laplaceEncode(value *int, fs, decay uint32) {
	var fl uint32
	v := *value
	if v != 0 {
		s := 0
		if v < 0 {
			s = -1
		}
		v = (v + s) ^ s
		fl = fs
		fs = (32768 - laplaceMinP*(2*laplaceNMin) - fs) * (16384 - decay) >> 15
		i := 1
		for ; fs > 0 && i < v; i++ {
			fs *= 2
			fl += fs + 2*laplaceMinP
			fs = fs * decay >> 15
		}
		if fs == 0 {
			maxDi := (int(32768-fl+laplaceMinP-1) - s) >> 1
			di := min(v-i, maxDi-1)
			fl += uint32((2*di + 1 + s) * laplaceMinP)
			fs = min(laplaceMinP, 32768-fl)
			*value = (i + di + s) ^ s
		} else {
			fs += laplaceMinP
			if s == 0 {
				fl += fs
			}
		}
	}
	e.encodeBin(fl, fl+fs, 15)
}

// bandLogEnergy sets logE to each band's log2 amplitude less its mean and
// normalises the band of x to unit energy.
func bandLogEnergy(x []float32, logE *[numBands]float32) {
	for b := range numBands {
		band := x[bandEdges[b]<<3 : bandEdges[b+1]<<3]
		sum := float32(1e-27)
		for _, v := range band {
			sum += v * v
		}
		amp := float32(math.Sqrt(float64(sum)))
		inv := 1 / (1e-27 + amp)
		for i := range band {
			band[i] *= inv
		}
		logE[b] = float32(math.Log2(float64(amp))) - energyMeans[b]
	}
}

// quantCoarseEnergy codes the coarse energies (RFC 6716 §4.3.2.1), updating
// oldE, the decoder's view of each band's energy, and leaving in errs what
// the fine steps must still code. budget is the frame size in bits.
func (enc *Encoder) quantCoarseEnergy(re *rangeEncoder, logE *[numBands]float32, intra bool, budget int, errs *[numBands]float32) {
	coef, beta := float32(predictionCoef), float32(predictionBeta)
	model := &laplaceModel[0]
	if intra {
		coef, beta = 0, intraBeta
		model = &laplaceModel[1]
	}
	if re.tell()+3 <= budget {
		re.bitLogP(intra, 3)
	}
	// A band may fall by at most maxDecay per frame in what is coded: a
	// sudden silence costs fewer bits and the decoder's own decay does the
	// rest.
	maxDecay := min(float32(16), 0.125*float32(budget/8))
	var prev float32
	for b := range numBands {
		x := logE[b]
		oldE := max(-9, enc.oldE[b])
		f := x - coef*oldE - prev
		qi := int(math.Floor(float64(0.5 + f)))
		decayBound := max(-28, enc.oldE[b]) - maxDecay
		if qi < 0 && x < decayBound {
			qi += int(decayBound - x)
			qi = min(qi, 0)
		}
		tell := re.tell()
		bitsLeft := budget - tell - 3*(numBands-b)
		if b != 0 && bitsLeft < 30 {
			if bitsLeft < 24 {
				qi = min(1, qi)
			}
			if bitsLeft < 16 {
				qi = max(-1, qi)
			}
		}
		switch {
		case budget-tell >= 15:
			re.laplaceEncode(&qi, uint32(model[2*b])<<7, uint32(model[2*b+1])<<6)
		case budget-tell >= 2:
			qi = max(-1, min(qi, 1))
			s := 2 * qi
			if qi < 0 {
				s = -s - 1
			}
			re.icdf(s, icdfSmallEnergy, 2)
		case budget-tell >= 1:
			qi = min(0, qi)
			re.bitLogP(qi != 0, 1)
		default:
			qi = -1
		}
		q := float32(qi)
		errs[b] = f - q
		enc.oldE[b] = coef*oldE + prev + q
		prev += q - beta*q
	}
}

// quantFineEnergy codes fine[b] raw bits of each band's remaining error
// (RFC 6716 §4.3.2.2).
func (enc *Encoder) quantFineEnergy(re *rangeEncoder, fine *[numBands]int, errs *[numBands]float32) {
	for b := range numBands {
		if fine[b] <= 0 {
			continue
		}
		frac := 1 << fine[b]
		q := int(math.Floor(float64((errs[b] + 0.5) * float32(frac))))
		q = max(0, min(q, frac-1))
		re.rawBits(uint32(q), uint(fine[b]))
		offset := (float32(q)+0.5)*float32(int(1)<<(14-fine[b]))/16384 - 0.5
		enc.oldE[b] += offset
		errs[b] -= offset
	}
}

// quantEnergyFinalise spends the bits left at the end of the frame, one
// per band, in two passes by priority (RFC 6716 §4.3.2.2).
func (enc *Encoder) quantEnergyFinalise(re *rangeEncoder, fine, priority *[numBands]int, errs *[numBands]float32, bitsLeft int) {
	for prio := range 2 {
		for b := 0; b < numBands && bitsLeft >= 1; b++ {
			if fine[b] >= maxFineBits || priority[b] != prio {
				continue
			}
			q := 0
			if errs[b] >= 0 {
				q = 1
			}
			re.rawBits(uint32(q), 1)
			offset := (float32(q) - 0.5) * float32(int(1)<<(14-fine[b]-1)) / 16384
			enc.oldE[b] += offset
			errs[b] -= offset
			bitsLeft--
		}
	}
}
