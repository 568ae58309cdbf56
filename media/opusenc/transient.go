package opusenc

import "math"

// transientInverse is the reference's table of 6·64/x, which turns the
// masking energy into a harmonic mean cheaply.
var transientInverse = [128]uint8{
	255, 255, 156, 110, 86, 70, 59, 51, 45, 40, 37, 33, 31, 28, 26, 25,
	23, 22, 21, 20, 19, 18, 17, 16, 16, 15, 15, 14, 13, 13, 12, 12,
	12, 12, 11, 11, 11, 10, 10, 10, 9, 9, 9, 9, 9, 9, 8, 8,
	8, 8, 8, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6,
	6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 5, 5, 5, 5, 5, 5,
	5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3,
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2,
}

// isTransient decides, as the reference encoder does, whether the frame
// (in: the n+overlap pre-emphasised samples the MDCT sees) holds an attack
// that a long block would smear into pre-echo: it compares the frame's
// energy with the harmonic mean of its high-passed energy envelope after
// forward (6.7 dB/ms) and backward (13.9 dB/ms) masking. tmp is scratch
// of len(in).
func isTransient(in, tmp []float32) bool {
	n := len(in)
	// High-pass: (1 - 2z⁻¹ + z⁻²) / (1 - z⁻¹ + ½z⁻²).
	var mem0, mem1 float32
	for i, x := range in {
		y := mem0 + x
		mem0 = mem1 + y - 2*x
		mem1 = x - 0.5*y
		tmp[i] = y
	}
	clear(tmp[:12]) // the filter's start-up
	half := n / 2
	var mean, env float32
	for i := range half {
		x2 := tmp[2*i]*tmp[2*i] + tmp[2*i+1]*tmp[2*i+1]
		mean += x2
		env += 0.0625 * (x2 - env)
		tmp[i] = env
	}
	env = 0
	var maxE float32
	for i := half - 1; i >= 0; i-- {
		env += 0.125 * (tmp[i] - env)
		tmp[i] = env
		maxE = max(maxE, env)
	}
	// Frame energy: the geometric mean of the energy and half the peak.
	mean = float32(math.Sqrt(float64(mean) * float64(maxE) * 0.5 * float64(half)))
	norm := float32(half) / (1e-15 + mean)
	unmask := 0
	for i := 12; i < half-5; i += 4 {
		id := int(max(0, min(127, math.Floor(float64(64*norm*(tmp[i]+1e-15))))))
		unmask += int(transientInverse[id])
	}
	unmask = 64 * unmask * 4 / (6 * (half - 17))
	return unmask > 200
}
