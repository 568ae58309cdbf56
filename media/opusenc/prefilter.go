package opusenc

import "math"

// The pitch pre-filter (RFC 6716 §4.3.7.1 describes the decoder's
// post-filter, its inverse): a comb filter that takes the frame's pitch
// period out of the signal before the transform, so that the bands code
// less of a voice's harmonic structure, and the decoder's post-filter puts
// it back.

const (
	minPeriod = 15   // the shortest pitch period the post-filter knows
	maxPeriod = 1024 // the history the post-filter may reach into
)

// combTaps are the post-filter's three tap sets (RFC 6716 §4.3.7.1).
var combTaps = [3][3]float32{
	{0.3066406250, 0.2170410156, 0.1296386719},
	{0.4638671875, 0.2680664062, 0},
	{0.7998046875, 0.1000976562, 0},
}

// pitchFilter is the pre-filter's state: the last frame's parameters, as
// the decoder's post-filter will have them, and scratch for the search.
type pitchFilter struct {
	period int
	gain   float32
	dec4   [(maxPeriod + frameSize) / 4]float32
	scores [maxPeriod / 4]float64
}

// pitchSearch estimates the pitch period of the frame x[maxPeriod:] from
// x, which holds maxPeriod samples of history before it, and its
// normalised correlation with the signal one period earlier: a coarse
// search at a quarter of the rate, refined at the full rate.
func (p *pitchFilter) pitchSearch(x []float32) (int, float32) {
	d := p.dec4[:]
	for i := range d {
		d[i] = x[4*i] + x[4*i+1] + x[4*i+2] + x[4*i+3]
	}
	const start, end = maxPeriod / 4, (maxPeriod + frameSize) / 4
	var ex float64
	for i := start; i < end; i++ {
		ex += float64(d[i]) * float64(d[i])
	}
	if ex == 0 {
		return minPeriod, 0
	}
	var ey float64 // energy of the lagged window, kept as the lag grows
	lo := (minPeriod + 1) / 4
	for i := start - lo; i < end-lo; i++ {
		ey += float64(d[i]) * float64(d[i])
	}
	best, bestScore := 0, 0.0
	scores := p.scores[:]
	for lag := lo; lag <= (maxPeriod-2)/4; lag++ {
		c := float64(dot(d[start:end], d[start-lag:end-lag]))
		scores[lag] = 0
		if c > 0 && ey > 0 {
			scores[lag] = c * c / ey
			if scores[lag] > bestScore {
				best, bestScore = lag, scores[lag]
			}
		}
		// Slide the lagged window one step back.
		ey += float64(d[start-lag-1])*float64(d[start-lag-1]) - float64(d[end-lag-1])*float64(d[end-lag-1])
		ey = max(ey, 0)
	}
	if best == 0 {
		return minPeriod, 0
	}
	// A multiple of the period correlates about as well as the period:
	// prefer the shortest lag that does nearly as well as the best.
	for k := best / lo; k >= 2; k-- {
		sub := (best + k/2) / k
		s := 0.0
		for l := max(lo, sub-1); l <= min(best, sub+1); l++ {
			s = max(s, scores[l])
		}
		if s > 0.85*bestScore {
			for l := max(lo, sub-1); l <= min(best, sub+1); l++ {
				if scores[l] == s {
					best = l
				}
			}
			break
		}
	}
	// Refine at the full rate, within one coarse step.
	cur := x[maxPeriod:]
	var exf float64
	for _, v := range cur {
		exf += float64(v) * float64(v)
	}
	period, gain := minPeriod, float32(0)
	bestScore = 0
	for t := max(minPeriod, 4*best-4); t <= min(maxPeriod-2, 4*best+4); t++ {
		lagged := x[maxPeriod-t : maxPeriod-t+len(cur)]
		c, e := float64(dot(cur, lagged)), float64(dot(lagged, lagged))
		if c > 0 && e > 0 {
			if score := c * c / e; score > bestScore {
				bestScore = score
				period, gain = t, float32(c/math.Sqrt(exf*e))
			}
		}
	}
	return period, min(gain, 1)
}

// decide chooses this frame's post-filter parameters the way the
// reference encoder does from a pitch and gain, except that the gain is
// scaled by 0.5 where the reference scales its own estimate by 0.7 (ours,
// the correlation at the best lag over the whole frame, runs higher;
// 0.5 measured best on the tests' speech clip): a gain below a threshold
// (higher when the period jumps or the frame is small, lower when the
// filter is already on) turns the filter off; otherwise it is quantised to
// eighths of 0.75. It returns the period, the gain index (0-7) and the
// quantised gain, 0 for off.
func (p *pitchFilter) decide(period int, gain float32, frameBytes int) (int, int, float32) {
	gain *= 0.5
	threshold := float32(0.2)
	if abs(period-p.period)*10 > period {
		threshold += 0.2
	}
	if frameBytes < 25 {
		threshold += 0.1
	}
	if frameBytes < 35 {
		threshold += 0.1
	}
	if p.gain > 0.4 {
		threshold -= 0.1
	}
	if p.gain > 0.55 {
		threshold -= 0.1
	}
	threshold = max(threshold, 0.2)
	if gain < threshold {
		return period, 0, 0
	}
	if float32(math.Abs(float64(gain-p.gain))) < 0.1 {
		gain = p.gain
	}
	q := max(0, min(7, int(math.Floor(float64(0.5+gain*32/3)))-1))
	return period, q, 0.09375 * float32(q+1)
}

// combFilter writes to y the n samples of x from x[base] on, less the
// comb filter of period t0, gain g0 and taps tap0 fading over the overlap
// into period t1, gain g1 and taps tap1: the inverse of the decoder's
// post-filter with the same parameters. x holds the history the periods
// reach into before base.
func combFilter(y, x []float32, base, t0, t1 int, g0, g1 float32, tap0, tap1 int, window *[overlap]float32) {
	t0, t1 = max(t0, minPeriod), max(t1, minPeriod)
	a0, a1, a2 := -g0*combTaps[tap0][0], -g0*combTaps[tap0][1], -g0*combTaps[tap0][2]
	b0, b1, b2 := -g1*combTaps[tap1][0], -g1*combTaps[tap1][1], -g1*combTaps[tap1][2]
	fade := overlap
	if g0 == g1 && t0 == t1 && tap0 == tap1 {
		fade = 0
	}
	i := 0
	for ; i < fade; i++ {
		j := base + i
		f := window[i] * window[i]
		old := a0*x[j-t0] + a1*(x[j-t0+1]+x[j-t0-1]) + a2*(x[j-t0+2]+x[j-t0-2])
		cur := b0*x[j-t1] + b1*(x[j-t1+1]+x[j-t1-1]) + b2*(x[j-t1+2]+x[j-t1-2])
		y[i] = x[j] + (1-f)*old + f*cur
	}
	for ; i < len(y); i++ {
		j := base + i
		y[i] = x[j] + b0*x[j-t1] + b1*(x[j-t1+1]+x[j-t1-1]) + b2*(x[j-t1+2]+x[j-t1-2])
	}
}

// dot is the inner product of a and b[:len(a)], four products at a time.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}
