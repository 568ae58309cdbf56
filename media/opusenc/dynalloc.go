package opusenc

// dynallocAnalysis chooses each band's allocation boost, in quanta
// (RFC 6716 §4.3.3's band boosts), the way the reference encoder does for
// a long block in CBR: bands that stand above a smoothed follower of the
// spectrum (tonal peaks, a voice's formants) get extra bits, within two
// thirds of the frame. lsbDepth is the input's resolution in bits. It
// also weighs each band for the spreading decision by how far it stands
// above a simple masking curve (a masked band's shape does not matter).
func dynallocAnalysis(logE *[numBands]float32, frameBytes, lsbDepth int, transient bool, boosts, spreadWeight *[numBands]int) {
	*boosts = [numBands]int{}
	var noiseFloor, follower, mask [numBands]float32
	maxDepth := float32(-31.9)
	for b := range numBands {
		// The depth, width and mean of the band, and the pre-emphasis
		// (about the square of the band's index).
		noiseFloor[b] = 0.0625*float32(logN400[b]) + 0.5 + float32(9-lsbDepth) - energyMeans[b] + 0.0062*float32((b+5)*(b+5))
		maxDepth = max(maxDepth, logE[b]-noiseFloor[b])
		mask[b] = logE[b] - noiseFloor[b]
	}
	for b := 1; b < numBands; b++ {
		mask[b] = max(mask[b], mask[b-1]-2)
	}
	for b := numBands - 2; b >= 0; b-- {
		mask[b] = max(mask[b], mask[b+1]-3)
	}
	for b := range numBands {
		// The mask is never more than 72 dB below the peak.
		smr := logE[b] - noiseFloor[b] - max(0, maxDepth-12, mask[b])
		spreadWeight[b] = 32 >> min(5, max(0, -int(smr)))
	}
	if frameBytes <= 50 {
		return
	}
	last := 0
	follower[0] = logE[0]
	for b := 1; b < numBands; b++ {
		// Only up to the last band at least 3 dB above the one below,
		// or band-limited signals would boost their empty top.
		if logE[b] > logE[b-1]+0.5 {
			last = b
		}
		follower[b] = min(follower[b-1]+1.5, logE[b])
	}
	for b := last - 1; b >= 0; b-- {
		follower[b] = min(follower[b], follower[b+1]+2, logE[b])
	}
	// A median filter keeps the boosts for what stands out.
	const offset = 1
	for b := 2; b < numBands-2; b++ {
		follower[b] = max(follower[b], median(logE[b-2:b+3])-offset)
	}
	low := median(logE[0:3]) - offset
	follower[0], follower[1] = max(follower[0], low), max(follower[1], low)
	high := median(logE[numBands-3:]) - offset
	follower[numBands-2], follower[numBands-1] = max(follower[numBands-2], high), max(follower[numBands-1], high)

	totalBoost := 0
	for b := range numBands {
		f := max(follower[b], noiseFloor[b])
		f = max(0, logE[b]-f)
		if !transient {
			f /= 2 // a long block in CBR: half the boost
		}
		switch {
		case b < 8:
			f *= 2
		case b >= 12:
			f /= 2
		}
		f = min(f, 4)
		width := bandWidth(b) << lm
		var boost, boostBits int
		switch {
		case width < 6:
			boost = int(f)
			boostBits = boost * width << bitRes
		case width > 48:
			boost = int(f * 8)
			boostBits = (boost * width << bitRes) / 8
		default:
			boost = int(f * float32(width) / 6)
			boostBits = boost * 6 << bitRes
		}
		if (totalBoost+boostBits)>>bitRes>>3 > 2*frameBytes/3 {
			limit := (2 * frameBytes / 3) << bitRes << 3
			boosts[b] = limit - totalBoost
			break
		}
		boosts[b] = boost
		totalBoost += boostBits
	}
}

// median is the median of 3 or 5 values.
func median(v []float32) float32 {
	var s [5]float32
	n := copy(s[:], v)
	for i := 1; i < n; i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[n/2]
}

// Spreading decisions beyond none and normal (RFC 6716 §4.3.4.3).
const (
	spreadLight      = 1
	spreadAggressive = 3
)

// spreadDecision chooses the spreading rotation for the frame from its
// normalised spectrum x, as the reference encoder does: the more of a
// band's energy sits in few bins (tonal), the less spreading. average
// carries the smoothed measure between frames, last the previous decision.
func spreadDecision(x []float32, weight *[numBands]int, average *int, last int) int {
	sum, total := 0, 0
	for b := range numBands {
		band := x[bandEdges[b]<<lm : bandEdges[b+1]<<lm]
		n := len(band)
		if n <= 8 {
			continue
		}
		var count [3]int
		for _, v := range band {
			x2n := v * v * float32(n)
			if x2n < 0.25 {
				count[0]++
			}
			if x2n < 0.0625 {
				count[1]++
			}
			if x2n < 0.015625 {
				count[2]++
			}
		}
		tmp := boolInt(2*count[2] >= n) + boolInt(2*count[1] >= n) + boolInt(2*count[0] >= n)
		sum += tmp * weight[b]
		total += weight[b]
	}
	sum = (sum << 8) / total
	sum = (sum + *average) >> 1
	*average = sum
	// Hysteresis toward the last decision.
	sum = (3*sum + ((3-last)<<7 + 64) + 2) >> 2
	switch {
	case sum < 80:
		return spreadAggressive
	case sum < 256:
		return spreadNormal
	case sum < 384:
		return spreadLight
	}
	return spreadNone
}
