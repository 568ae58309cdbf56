package media

import (
	"math"
	"testing"

	"github.com/pion/opus"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/internal/audiotest"
)

// opusMode names an Opus packet's mode from its TOC byte (RFC 6716 §3.1).
func opusMode(p []byte) string {
	switch c := p[0] >> 3; {
	case c < 12:
		return "silk"
	case c < 16:
		return "hybrid"
	default:
		return "celt"
	}
}

// The mix decodes browsers with pion/opus. Chromium's libopus sends SILK
// at low rates, hybrid for speech at its default 32 kbit/s and CELT for
// music or high rates: libopus encodes a speech clip in each mode, and
// pion/opus's decode of every mode matches libopus's own opusdec.
func TestPionDecodesEveryOpusMode(t *testing.T) {
	clip, err := voiceemu.LoadOpusSample("speech")
	if err != nil {
		t.Fatal(err)
	}
	speech := audiotest.LibopusDecode(t, clip)
	for _, tc := range []struct {
		bitrate int
		flags   []string
		mode    string
	}{
		{12000, []string{"--speech"}, "silk"},
		{32000, []string{"--speech"}, "hybrid"},
		{96000, []string{"--music"}, "celt"},
	} {
		frames := audiotest.LibopusEncode(t, speech, tc.bitrate, tc.flags...)
		modes := map[string]int{}
		for _, f := range frames {
			modes[opusMode(f)]++
		}
		if modes[tc.mode] < len(frames)/2 {
			t.Fatalf("%d bit/s: modes %v, want mostly %s", tc.bitrate, modes, tc.mode)
		}
		ref := audiotest.LibopusDecode(t, frames)
		dec, err := opus.NewDecoderWithOutput(mixRate, 1)
		if err != nil {
			t.Fatal(err)
		}
		var got []float32
		pcm := make([]float32, 5760)
		for i, f := range frames {
			n, err := dec.DecodeToFloat32(f, pcm)
			if err != nil {
				t.Fatalf("%s frame %d: pion/opus: %v", tc.mode, i, err)
			}
			got = append(got, pcm[:n]...)
		}
		// opusdec trims the encoder's pre-skip; line the two up by it.
		snr, lag := alignedSNR(got, ref)
		if snr < 40 {
			t.Fatalf("%s (%d bit/s, modes %v): pion/opus against opusdec %.1f dB SNR, want at least 40 dB", tc.mode, tc.bitrate, modes, snr)
		}
		t.Logf("%s (%d bit/s, modes %v): pion/opus against opusdec %.1f dB SNR at lag %d", tc.mode, tc.bitrate, modes, snr, lag)
	}
}

// alignedSNR finds the lag (0 to 960 samples) at which b best matches a
// shifted by it and returns the signal-to-difference ratio in dB there.
func alignedSNR(a, b []float32) (float64, int) {
	best, bestLag := math.Inf(-1), 0
	for lag := 0; lag <= 960; lag++ {
		n := min(len(a)-lag, len(b)) - 960
		var s, d float64
		for i := 0; i < n; i++ {
			x, y := float64(b[i]), float64(a[i+lag])
			s += x * x
			d += (x - y) * (x - y)
		}
		if snr := 10 * math.Log10(s/(d+1e-20)); snr > best {
			best, bestLag = snr, lag
		}
	}
	return best, bestLag
}
