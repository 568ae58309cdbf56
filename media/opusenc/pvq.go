package opusenc

import (
	"math"
	"math/bits"
)

// Shape coding, RFC 6716 §4.3.4: each band's unit vector becomes K pulses
// on N dimensions (a PVQ codeword, §4.3.4.2), split in halves with a coded
// angle when the codeword would be too long (§4.3.4.4), after the spreading
// rotation the decoder will undo (§4.3.4.3).

// Spreading decisions (RFC 6716 §4.3.4.3), with spreadLight and
// spreadAggressive.
const (
	spreadNone   = 0
	spreadNormal = 2
)

// maxPVQ bounds the codebook tables: bands are at most 176 bins wide and
// carry at most 128 pulses, plus one for V(N, K) = U(N, K) + U(N, K+1).
const (
	maxPVQN = 176
	maxPVQK = 130
)

// pvqU[n][k] is U(n, k) of RFC 6716 §4.3.4.2's enumeration, saturated at
// the top of uint64 (only entries below 2^32 are ever used).
var pvqU = func() *[maxPVQN + 1][maxPVQK + 1]uint64 {
	var u [maxPVQN + 1][maxPVQK + 1]uint64
	for k := 1; k <= maxPVQK; k++ {
		u[1][k] = 1
	}
	for n := 2; n <= maxPVQN; n++ {
		for k := 1; k <= maxPVQK; k++ {
			s, c1 := bits.Add64(u[n-1][k], u[n][k-1], 0)
			s, c2 := bits.Add64(s, u[n-1][k-1], 0)
			if c1 != 0 || c2 != 0 {
				s = math.MaxUint64
			}
			u[n][k] = s
		}
	}
	return &u
}()

// pvqV is the number of codewords with k pulses in n dimensions.
func pvqV(n, k int) uint32 { return uint32(pvqU[n][k] + pvqU[n][k+1]) }

// pvqIndex is the codeword index of pulse vector y (icwrs).
func pvqIndex(y []int) uint32 {
	n := len(y)
	j := n - 1
	var i uint64
	if y[j] < 0 {
		i = 1
	}
	k := abs(y[j])
	for j > 0 {
		j--
		i += pvqU[n-j][k]
		k += abs(y[j])
		if y[j] < 0 {
			i += pvqU[n-j][k+1]
		}
	}
	return uint32(i)
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// pvqSearch finds the K-pulse vector iy closest in direction to x (the
// reference op_pvq_search: a projection for the bulk of the pulses, then
// one greedy pulse at a time). x is overwritten with its absolute value;
// y and neg are scratch of x's length.
func pvqSearch(x []float32, iy []int, y []float32, neg []bool, k int) {
	n := len(x)
	sum := float32(0)
	for j := range n {
		iy[j] = 0
		y[j] = 0
		neg[j] = x[j] < 0
		if neg[j] {
			x[j] = -x[j]
		}
		sum += x[j]
	}
	var xy, yy float32
	left := k
	if k > n>>1 {
		if !(sum > 1e-15 && sum < 64) {
			// Too small (or not a number): a single pulse at 0.
			x[0] = 1
			for j := 1; j < n; j++ {
				x[j] = 0
			}
			sum = 1
		}
		rcp := (float32(k) + 0.8) / sum
		for j := range n {
			iy[j] = int(math.Floor(float64(rcp * x[j])))
			fy := float32(iy[j])
			yy += fy * fy
			xy += x[j] * fy
			y[j] = 2 * fy
			left -= iy[j]
		}
	}
	if left > n+3 {
		// Only possible with a degenerate x: put the rest on the first bin.
		t := float32(left)
		yy += t*t + t*y[0]
		iy[0] += left
		left = 0
	}
	for range left {
		yy++
		best := 0
		rxy := xy + x[0]
		bestNum, bestDen := rxy*rxy, yy+y[0]
		for j := 1; j < n; j++ {
			rxy := xy + x[j]
			ryy := yy + y[j]
			if bestDen*rxy*rxy > ryy*bestNum {
				bestNum, bestDen, best = rxy*rxy, ryy, j
			}
		}
		xy += x[best]
		yy += y[best]
		y[best] += 2
		iy[best]++
	}
	for j := range n {
		if neg[j] {
			iy[j] = -iy[j]
		}
	}
}

// expRotation applies the spreading rotation of RFC 6716 §4.3.4.3 in the
// encoder's direction (the decoder applies its inverse), to each of the
// blocks x holds.
func expRotation(x []float32, k, spread, blocks int) {
	n := len(x)
	if 2*k >= n || spread == spreadNone {
		return
	}
	factor := [3]int{15, 10, 5}[spread-1]
	gain := float32(n) / float32(n+factor*k)
	theta := 0.5 * gain * gain
	c := float32(math.Cos(0.5 * math.Pi * float64(theta)))
	s := float32(math.Cos(0.5 * math.Pi * float64(1-theta)))
	stride2 := 0
	if n >= 8*blocks {
		stride2 = 1
		for (stride2*stride2+stride2)*blocks+blocks>>2 < n {
			stride2++
		}
	}
	sub := n / blocks
	for i := range blocks {
		v := x[i*sub : (i+1)*sub]
		rotate(v, 1, c, -s)
		if stride2 != 0 {
			rotate(v, stride2, s, -c)
		}
	}
}

// rotate is one pass of Givens rotations between bins stride apart, up
// the vector and back down.
func rotate(x []float32, stride int, c, s float32) {
	n := len(x)
	ms := -s
	for i := 0; i < n-stride; i++ {
		x1, x2 := x[i], x[i+stride]
		x[i+stride] = c*x2 + s*x1
		x[i] = c*x1 + ms*x2
	}
	for i := n - 2*stride - 1; i >= 0; i-- {
		x1, x2 := x[i], x[i+stride]
		x[i+stride] = c*x2 + s*x1
		x[i] = c*x1 + ms*x2
	}
}
