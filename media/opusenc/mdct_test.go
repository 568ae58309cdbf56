package opusenc

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMDCTMatchesDefinition compares the FFT-based transform with the
// MDCT's definition, X[k] = Σ x[n]·cos(π/N·(n + ½ + N/2)·(k + ½)) over the
// windowed 2N-sample block, scaled by 1/(N/2).
func TestMDCTMatchesDefinition(t *testing.T) {
	for _, n := range []int{frameSize, shortBlock} {
		testMDCT(t, n)
	}
}

func testMDCT(t *testing.T, n int) {
	m := newMDCT(n)
	r := rand.New(rand.NewPCG(5, 6))
	in := make([]float32, n+overlap)
	for i := range in {
		in[i] = float32(r.Float64()*2 - 1)
	}
	const stride = 3
	out := make([]float32, n*stride)
	m.forward(in, out, stride)

	block := make([]float64, 2*n)
	w := celtWindow()
	pad := (n - overlap) / 2
	for j, v := range in {
		g := 1.0
		if j < overlap {
			g = float64(w[j])
		} else if j >= n {
			g = float64(w[n+overlap-1-j])
		}
		block[pad+j] = float64(v) * g
	}
	var worst, peak float64
	for k := range n {
		var x float64
		for i, v := range block {
			x += v * math.Cos(math.Pi/float64(n)*(float64(i)+0.5+float64(n/2))*(float64(k)+0.5))
		}
		x /= float64(n / 2)
		worst = max(worst, math.Abs(x-float64(out[k*stride])))
		peak = max(peak, math.Abs(x))
	}
	if worst > peak*1e-5 {
		t.Fatalf("%d coefficients: largest difference from the definition %g, peak coefficient %g", n, worst, peak)
	}
}

// TestWindowIsPowerComplementary: w[i]² + w[overlap-1-i]² = 1, the
// condition for the overlapping halves to add back to the input.
func TestWindowIsPowerComplementary(t *testing.T) {
	w := celtWindow()
	for i := range w {
		if s := w[i]*w[i] + w[overlap-1-i]*w[overlap-1-i]; math.Abs(float64(s)-1) > 1e-6 {
			t.Fatalf("w[%d]² + w[%d]² = %v", i, overlap-1-i, s)
		}
	}
}

// BenchmarkMDCT is the forward transform of one 20 ms frame.
func BenchmarkMDCT(b *testing.B) {
	m := newMDCT(frameSize)
	in := make([]float32, frameSize+overlap)
	for i := range in {
		in[i] = float32(math.Sin(float64(i)))
	}
	out := make([]float32, frameSize)
	for b.Loop() {
		m.forward(in, out, 1)
	}
}
