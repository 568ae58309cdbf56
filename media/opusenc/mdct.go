package opusenc

import (
	"math"
	"math/cmplx"
)

// The forward MDCT of CELT's 20 ms long block (RFC 6716 §4.3.7 gives the
// inverse): 960 coefficients from 1920 samples of which only the middle
// 1080 are non-zero, the 120-sample overlaps shaped by the CELT window. It
// is computed as a DCT-IV of the folded input, through a 480-point complex
// FFT.

const (
	frameSize = 960 // samples per channel per 20 ms frame
	overlap   = 120 // samples shared with the neighbouring frame
	// shortBlock is the length of each of a transient frame's 8 blocks.
	shortBlock = frameSize >> lm
)

// celtWindow is the power-complementary window of RFC 6716 §4.3.7 over
// the overlap: sin(π/2 · sin²(π(i+½)/(2·overlap))).
func celtWindow() [overlap]float32 {
	var w [overlap]float32
	for i := range w {
		s := math.Sin(math.Pi * (float64(i) + 0.5) / (2 * overlap))
		w[i] = float32(math.Sin(math.Pi / 2 * s * s))
	}
	return w
}

// mdct is a planned forward transform of n coefficients (960 for the
// long block, 120 for each of a transient frame's eight short blocks); it
// keeps its scratch.
type mdct struct {
	n       int
	window  [overlap]float32
	pre     []complex64 // exp(-iπj/n) for the fold's pairs
	post    []complex64 // exp(-iπ(k+¼)/n)
	twiddle []complex64 // exp(-2πij/(n/2))
	fold    []float32
	z, tmp  []complex64
	factors []int
}

func newMDCT(n int) *mdct {
	half := n / 2
	m := &mdct{
		n: n, window: celtWindow(),
		pre: make([]complex64, half), post: make([]complex64, half), twiddle: make([]complex64, half),
		fold: make([]float32, n), z: make([]complex64, half), tmp: make([]complex64, half),
	}
	for i := range half {
		m.pre[i] = complex64(cmplx.Exp(complex(0, -math.Pi*float64(i)/float64(n))))
		m.post[i] = complex64(cmplx.Exp(complex(0, -math.Pi*(float64(i)+0.25)/float64(n))))
		m.twiddle[i] = complex64(cmplx.Exp(complex(0, -2*math.Pi*float64(i)/float64(half))))
	}
	// Radix 4 where possible, then 2, 3 and 5: 480 = 4·4·2·3·5, 60 = 4·3·5.
	for rest, p := half, 4; rest > 1; {
		if p == 4 && rest%4 != 0 {
			p = 2
		}
		if rest%p != 0 {
			p++
			if p == 4 {
				p = 5
			}
			continue
		}
		m.factors = append(m.factors, p)
		rest /= p
	}
	return m
}

// forward transforms in, n+overlap samples [previous overlap | new
// samples], into n coefficients written stride apart in out, scaled like
// the reference so that the decoder's inverse restores the input's
// amplitude.
func (m *mdct) forward(in []float32, out []float32, stride int) {
	// The 2n-sample block is (n-overlap)/2 zeros, in windowed at both
	// ends, as many zeros; as quarters a, b, c, d it folds into the DCT-IV
	// input (-c_r - d, a - b_r).
	n, half := m.n, m.n/2
	pad := (n - overlap) / 2
	block := func(i int) float32 { // sample i of the 2n-sample block
		j := i - pad
		switch {
		case j < 0 || j >= n+overlap:
			return 0
		case j < overlap:
			return in[j] * m.window[j]
		case j >= n:
			return in[j] * m.window[n+overlap-1-j]
		}
		return in[j]
	}
	for i := range half {
		m.fold[i] = -block(3*half-1-i) - block(3*half+i)
		m.fold[half+i] = block(i) - block(n-1-i)
	}
	for i := range half {
		m.z[i] = complex(m.fold[2*i], m.fold[n-1-2*i]) * m.pre[i]
	}
	m.fft(m.z, m.tmp, 1, m.factors)
	scale := 1 / float32(half)
	for k := range half {
		v := m.z[k] * m.post[k]
		out[2*k*stride] = real(v) * scale
		out[(n-1-2*k)*stride] = -imag(v) * scale
	}
}

// fft transforms x in place, a mixed-radix decimation in time over the
// factors of its length; stride is how far apart x's samples are in the
// top-level sequence (for the twiddles), tmp scratch of x's length.
func (m *mdct) fft(x, tmp []complex64, stride int, factors []int) {
	n := len(x)
	if n == 1 {
		return
	}
	p := factors[0]
	sub := n / p
	// Split into p interleaved subsequences, transform each.
	for r := range p {
		for j := range sub {
			tmp[r*sub+j] = x[j*p+r]
		}
	}
	for r := range p {
		m.fft(tmp[r*sub:(r+1)*sub], x[r*sub:(r+1)*sub], stride*p, factors[1:])
	}
	// Butterflies: X[k + q·sub] = Σ_r W_n^{rk} T_r[k] · W_p^{rq}, the
	// twiddled inputs first, then a p-point DFT.
	for k := range sub {
		var t [5]complex64
		t[0] = tmp[k]
		for r := 1; r < p; r++ {
			t[r] = tmp[r*sub+k] * m.twiddle[r*k*stride]
		}
		switch p {
		case 2:
			x[k], x[k+sub] = t[0]+t[1], t[0]-t[1]
		case 4:
			a0, a1, a2 := t[0]+t[2], t[0]-t[2], t[1]+t[3]
			d := t[1] - t[3]
			a3 := complex(imag(d), -real(d)) // -i·d
			x[k], x[k+sub], x[k+2*sub], x[k+3*sub] = a0+a2, a1+a3, a0-a2, a1-a3
		default:
			for q := range p {
				acc := t[0]
				for r := 1; r < p; r++ {
					acc += t[r] * m.twiddle[(r*q%p)*(len(m.twiddle)/p)]
				}
				x[k+q*sub] = acc
			}
		}
	}
}
