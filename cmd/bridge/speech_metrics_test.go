package main

// The measures of speech through the mix (TestMixE2ESpeechQuality), apart
// from the end-to-end test so they are tested themselves, under -race too.

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/voicebridge/bridge/internal/audiotest"
)

// median is the middle of xs: the level of a tone over its windows,
// unmoved by the few where the jitter buffer bridged a late frame.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// rmsActive is the RMS of pcm's active 20 ms frames.
func rmsActive(pcm []float32) float64 {
	var e float64
	frames := activeSpeech(pcm)
	for _, f := range frames {
		for _, x := range pcm[f*960 : (f+1)*960] {
			e += float64(x) * float64(x)
		}
	}
	return math.Sqrt(e / float64(len(frames)*960))
}

// The bar for speech through the mix, against libopus's own round trip
// at 64 kbit/s.
const (
	speechSNRMargin = 3.0 // dB of segmental SNR the path may lose
	speechLSDMargin = 0.5 // dB of log-spectral distance it may add
)

// alignTo finds where a whole src lies in got and returns that stretch
// of got and its lag. Only the lags at which all of src fits in got are
// candidates: a capture of two loops of a looped clip holds the clip's
// start twice, and the later start, cut short by the capture's end, may
// match a little better; choosing it left no lag to refine and measured
// got from its first sample, speech against unrelated speech.
func alignTo(src, got []float32) ([]float32, int) {
	const dec = 8
	small := func(x []float32) []float32 {
		out := make([]float32, len(x)/dec)
		for i := range out {
			for k := range dec {
				out[i] += x[i*dec+k]
			}
		}
		return out
	}
	maxLag := max(0, len(got)-len(src))
	s, g := small(src), small(got)
	win := min(len(s), 6000)
	best, bestLag := math.Inf(-1), 0
	for lag := 0; lag*dec <= maxLag && lag+win <= len(g); lag++ {
		var xy, yy float64
		for i := range win {
			xy += float64(s[i]) * float64(g[lag+i])
			yy += float64(g[lag+i]) * float64(g[lag+i])
		}
		if c := xy / math.Sqrt(yy+1e-12); c > best {
			best, bestLag = c, lag
		}
	}
	fine, fineLag := math.Inf(-1), bestLag*dec
	for lag := max(0, bestLag*dec-dec); lag <= min(bestLag*dec+dec, maxLag); lag++ {
		var xy float64
		for i := range min(len(src), len(got)-lag, 48000) {
			xy += float64(src[i]) * float64(got[lag+i])
		}
		if xy > fine {
			fine, fineLag = xy, lag
		}
	}
	end := min(len(got), fineLag+len(src))
	return got[fineLag:end], fineLag
}

// segmentMetrics lines each half second of src up with got (within 40 ms
// of where the last one was found, starting at lag) and returns the
// median over the half seconds of their segmental SNR and log-spectral
// distance: a half second the jitter buffer had to bridge on a starved
// CPU does not outweigh the rest.
func segmentMetrics(src, got []float32, lag int) (snr, dist float64) {
	const seg, slack = 24000, 1920
	var snrs, dists []float64
	for start := 0; start+seg <= len(src); start += seg {
		s := src[start : start+seg]
		if len(activeSpeech(s)) < 5 {
			continue // a pause: nothing to line up on
		}
		best, bestLag := math.Inf(-1), lag
		for l := max(0, lag-slack); l <= lag+slack && start+l+seg <= len(got); l++ {
			var xy, yy float64
			for i, x := range s {
				y := float64(got[start+l+i])
				xy += float64(x) * y
				yy += y * y
			}
			if c := xy / math.Sqrt(yy+1e-12); c > best {
				best, bestLag = c, l
			}
		}
		if start+bestLag+seg > len(got) {
			break
		}
		lag = bestLag
		test := got[start+lag : start+lag+seg]
		snrs = append(snrs, segSNR(s, test))
		dists = append(dists, lsd(s, test))
	}
	return median(snrs), median(dists)
}

// activeSpeech lists the 20 ms frames of ref within 40 dB of its loudest.
func activeSpeech(ref []float32) []int {
	n := len(ref) / 960
	e := make([]float64, n)
	loud := 0.0
	for f := range n {
		for _, x := range ref[f*960 : (f+1)*960] {
			e[f] += float64(x) * float64(x)
		}
		loud = max(loud, e[f])
	}
	var out []int
	for f := range n {
		if e[f] > loud*1e-4 {
			out = append(out, f)
		}
	}
	return out
}

// segSNR is the mean over ref's active frames of the frame's
// signal-to-error ratio, clamped to [-10, 35] dB.
func segSNR(ref, test []float32) float64 {
	frames := activeSpeech(ref[:min(len(ref), len(test))])
	sum := 0.0
	for _, f := range frames {
		var s, e float64
		for i := f * 960; i < (f+1)*960; i++ {
			d := float64(ref[i] - test[i])
			s += float64(ref[i]) * float64(ref[i])
			e += d * d
		}
		sum += max(-10, min(35, 10*math.Log10(s/(e+1e-20))))
	}
	return sum / float64(len(frames))
}

// lsd is the mean over ref's active frames of the RMS difference, in dB,
// of the Hann-windowed power spectra (50 Hz to 20 kHz, 100 bins of a
// direct DFT), floored 60 dB below the frame's peak.
func lsd(ref, test []float32) float64 {
	frames := activeSpeech(ref[:min(len(ref), len(test))])
	const bins = 100
	spectrum := func(x []float32) []float64 {
		out := make([]float64, bins)
		for k := range out {
			hz := 50 + (20000-50)*float64(k)/(bins-1)
			var re, im float64
			for i, v := range x {
				w := float64(v) * (0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(len(x))))
				a := 2 * math.Pi * hz * float64(i) / audiotest.SampleRate
				re += w * math.Cos(a)
				im -= w * math.Sin(a)
			}
			out[k] = re*re + im*im
		}
		return out
	}
	sum := 0.0
	for _, f := range frames {
		pr, pt := spectrum(ref[f*960:(f+1)*960]), spectrum(test[f*960:(f+1)*960])
		peak := 0.0
		for _, p := range pr {
			peak = max(peak, p)
		}
		var d float64
		for k := range pr {
			diff := 10 * math.Log10((pr[k]+peak*1e-6)/(pt[k]+peak*1e-6))
			d += diff * diff
		}
		sum += math.Sqrt(d / bins)
	}
	return sum / float64(len(frames))
}

// speechLike is seconds of a deterministic stand-in for speech: voiced
// syllables (a 120 to 200 Hz buzz with harmonics) and noise bursts
// under a syllable-rate envelope, with short pauses.
func speechLike(seconds float64, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]float32, int(seconds*audiotest.SampleRate))
	const syllable = 9600 // 200 ms
	var f0, noise, amp float64
	for i := range out {
		if i%syllable == 0 {
			f0 = 120 + 80*rng.Float64()
			noise = rng.Float64() * 0.5
			amp = 0.05 + 0.2*rng.Float64()
			if rng.IntN(5) == 0 {
				amp = 0 // a pause
			}
		}
		env := math.Sin(math.Pi * float64(i%syllable) / syllable)
		t := float64(i) / audiotest.SampleRate
		var v float64
		for h := 1; h <= 8; h++ {
			v += math.Sin(2*math.Pi*f0*float64(h)*t) / float64(h)
		}
		v = v*(1-noise) + noise*(rng.Float64()*2-1)
		out[i] = float32(amp * env * v)
	}
	return out
}

// TestAlignToTakesAWholeLoop: a capture of a looped clip that holds the
// clip's start twice, the second time cut short and a little cleaner
// (the first loop carries noise 20 dB down). alignTo lines src up with
// the whole loop, and the segmental SNR is the noise's, not that of
// speech against other speech.
func TestAlignToTakesAWholeLoop(t *testing.T) {
	src := speechLike(1.6, 7)
	n := len(src)
	head, tail := n/3, n*3/4 // the capture starts inside a loop and ends inside the third
	var got []float32
	got = append(got, src[n-head:]...)
	got = append(got, src...)
	got = append(got, src[:tail]...)
	rng := rand.New(rand.NewPCG(9, 9))
	noise := rmsActive(src) * 0.1 * math.Sqrt(3) // uniform noise 20 dB below the speech
	for i := range got[:head+n] {
		got[i] += float32(noise * (rng.Float64()*2 - 1))
	}
	stretch, lag := alignTo(src, got)
	if lag != head || len(stretch) != n {
		t.Fatalf("alignTo: lag %d and %d samples, want the whole loop at lag %d (%d samples)", lag, len(stretch), head, n)
	}
	snr, dist := segmentMetrics(src, got, lag)
	if snr < 15 {
		t.Fatalf("the aligned loop measures segmental SNR %.1f dB; want about 20 dB, the noise's", snr)
	}
	t.Logf("the whole loop at lag %d: segmental SNR %.1f dB, log-spectral distance %.1f dB", lag, snr, dist)
}
