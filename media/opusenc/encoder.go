package opusenc

import (
	"fmt"
	"math"
	"math/bits"
)

const (
	// SampleRate is the only input rate, in Hz.
	SampleRate = 48000
	// FrameSize is the number of mono samples each Encode call takes: 20 ms.
	FrameSize = frameSize
	// DefaultBitrate is the bitrate of a zero Options.Bitrate, in bit/s.
	DefaultBitrate = 64000
	// MinBitrate and MaxBitrate bound Options.Bitrate, in bit/s: 15 to
	// 1275 bytes per 20 ms packet.
	MinBitrate = 6000
	MaxBitrate = 510000
	// Delay is how many samples the decoded audio lags the input: the
	// transform's overlap, 2.5 ms (an Ogg Opus pre-skip, RFC 7845 §4.2).
	Delay = overlap
)

// minTransientBytes is the smallest frame, in bytes after the TOC, that
// may use short blocks: the coarse energy costs at most 15 bits a band.
const minTransientBytes = 60

// lm is log2 of the frame's length in 2.5 ms blocks: CELT's LM for 20 ms.
const lm = 3

// toc is the packet's first byte (RFC 6716 §3.1): configuration 31,
// CELT-only fullband 20 ms; mono; one frame (code 0).
const toc = 31 << 3

// preemphasis is CELT's pre-emphasis coefficient; the decoder applies the
// inverse filter.
const preemphasis = 0.85000610

// Options configure an Encoder.
type Options struct {
	// Bitrate in bit/s, constant: every packet is Bitrate/400 bytes.
	// Zero means DefaultBitrate.
	Bitrate int
}

// Encoder turns 20 ms mono frames at 48 kHz into CELT-only Opus packets
// of a constant size. It keeps the state of the stream (the transform's
// overlap, the energies the decoder has), so one Encoder serves one stream;
// it is not safe for concurrent use. Encoding a frame allocates nothing.
type Encoder struct {
	packetSize int
	mdct       *mdct
	shortMDCT  *mdct
	scratch    pvqScratch

	emphMem float32                      // the previous input sample, for pre-emphasis
	in      [frameSize + overlap]float32 // the transform's input, pitch-filtered: [overlap kept from the last frame | this frame]
	coeffs  [frameSize]float32
	oldE    [numBands]float32 // the decoder's energies after the last frame
	started bool              // a frame has been coded: inter-frame prediction is possible
	pcm     [frameSize]float32
	rng     uint32 // the range coder's final state, see FinalRange

	lsbDepth int           // the resolution of the last frame's input, in bits
	boosts   [numBands]int // this frame's band boosts

	spread        int // the last spreading decision
	spreadAverage int // its smoothed measure

	pre [maxPeriod + frameSize]float32 // pre-emphasised input before the pitch filter: history | frame
	pf  pitchFilter

	consecTransients int // how many frames in a row were transient
	scratchIn        [frameSize + overlap]float32
}

// New returns an Encoder for opts.
func New(opts Options) (*Encoder, error) {
	rate := opts.Bitrate
	if rate == 0 {
		rate = DefaultBitrate
	}
	if rate < MinBitrate || rate > MaxBitrate {
		return nil, fmt.Errorf("%w: %d bit/s, want %d to %d", ErrBitrate, rate, MinBitrate, MaxBitrate)
	}
	e := &Encoder{packetSize: rate / 400, mdct: newMDCT(frameSize), shortMDCT: newMDCT(shortBlock)}
	e.Reset()
	return e, nil
}

// Reset starts the stream afresh, for a decoder that has just decoded
// silence: after a gap filled with Discord's Opus silence frames (0xF8
// 0xFF 0xFE, which set the decoder's band energies to their floor), or
// for a new decoder. The next packet predicts nothing from the audio
// before it (intra-frame energy, an empty overlap).
func (e *Encoder) Reset() {
	clear(e.in[:])
	clear(e.pre[:])
	e.pf.period, e.pf.gain = minPeriod, 0
	e.emphMem = 0
	e.started = false
	for b := range e.oldE {
		e.oldE[b] = -28
	}
	e.spread, e.spreadAverage = spreadNormal, 256
	e.consecTransients = 0
}

// FinalRange is the range coder's state after the last packet (the
// reference's OPUS_GET_FINAL_RANGE): a decoder that read the packet exactly
// as it was written ends in the same state, which makes it a check of the
// bitstream.
func (e *Encoder) FinalRange() uint32 { return e.rng }

// PacketSize is the size, in bytes, of every packet this Encoder writes.
func (e *Encoder) PacketSize() int { return e.packetSize }

// Encode codes one frame of FrameSize samples into out, which must hold
// PacketSize bytes, and returns the packet's length (PacketSize).
func (e *Encoder) Encode(pcm []int16, out []byte) (int, error) {
	if len(pcm) != FrameSize {
		return 0, fmt.Errorf("%w: %d samples, want %d", ErrFrameSize, len(pcm), FrameSize)
	}
	for i, v := range pcm {
		e.pcm[i] = float32(v) / 32768
	}
	e.lsbDepth = 16
	return e.encode(out)
}

// EncodeFloat32 is Encode for samples in [-1, 1]; beyond is clipped, and
// a sample that is not a number counts as 0.
func (e *Encoder) EncodeFloat32(pcm []float32, out []byte) (int, error) {
	if len(pcm) != FrameSize {
		return 0, fmt.Errorf("%w: %d samples, want %d", ErrFrameSize, len(pcm), FrameSize)
	}
	for i, v := range pcm {
		if v != v {
			v = 0
		}
		e.pcm[i] = max(-1, min(1, v))
	}
	e.lsbDepth = 24
	return e.encode(out)
}

func (e *Encoder) encode(out []byte) (int, error) {
	if len(out) < e.packetSize {
		return 0, fmt.Errorf("%w: output buffer of %d bytes, want %d", ErrFrameSize, len(out), e.packetSize)
	}
	out = out[:e.packetSize]
	out[0] = toc
	frame := out[1:]

	// Pre-emphasis at CELT's internal scale (the decoder divides by 32768),
	// after the history the pitch pre-filter reaches into.
	copy(e.in[:overlap], e.in[frameSize:])
	copy(e.pre[:maxPeriod], e.pre[frameSize:])
	silent := true
	for i, v := range e.pcm {
		x := v * 32768
		e.pre[maxPeriod+i] = x - preemphasis*e.emphMem
		e.emphMem = x
		if x != 0 {
			silent = false
		}
	}
	for _, v := range e.in[:overlap] {
		if v != 0 {
			silent = false
		}
	}

	var re rangeEncoder
	re.init(frame)
	budget := len(frame) * 8
	re.bitLogP(silent, 15)
	if silent {
		// The decoder reads nothing more and takes every band as -28.
		for b := range e.oldE {
			e.oldE[b] = -28
		}
		clear(e.in[overlap:])
		e.pf.gain = 0
		re.done()
		e.rng = re.rng
		return e.packetSize, nil
	}

	// The pitch pre-filter, when the frame is periodic enough and large
	// enough to carry its parameters.
	period, gainIndex, gain := minPeriod, 0, float32(0)
	if len(frame) > 12 {
		t, corr := e.pf.pitchSearch(e.pre[:])
		period, gainIndex, gain = e.pf.decide(t, corr, len(frame))
	}
	if re.tell()+16 <= budget {
		re.bitLogP(gain > 0, 1)
		if gain > 0 {
			coded := period + 1
			octave := bits.Len(uint(coded)) - 5
			re.uniform(uint32(octave), 6)
			re.rawBits(uint32(coded-16<<octave), uint(4+octave))
			re.rawBits(uint32(gainIndex), 3)
			if re.tell()+2 <= budget {
				re.icdf(0, icdfTapset, 2)
			}
		}
	} else {
		gain = 0
	}
	combFilter(e.in[overlap:], e.pre[:], maxPeriod, e.pf.period, period, e.pf.gain, gain, 0, 0, &e.mdct.window)
	e.pf.period, e.pf.gain = period, gain

	// A frame with an attack is coded as 8 short blocks, so that the
	// attack's quantisation noise stays in the 2.5 ms around it; only in
	// frames of at least minTransientBytes, where the coarse energy can
	// never crowd out the time-frequency flags that keep the blocks short.
	transient := false
	if re.tell()+3 <= budget {
		transient = len(frame) >= minTransientBytes && isTransient(e.in[:], e.scratchIn[:])
		re.bitLogP(transient, 3)
	}
	blocks := 1
	if transient {
		blocks = 1 << lm
		for b := range blocks {
			e.shortMDCT.forward(e.in[b*shortBlock:b*shortBlock+shortBlock+overlap], e.coeffs[b:], blocks)
		}
	} else {
		e.mdct.forward(e.in[:], e.coeffs[:], 1)
	}
	var logE, errs [numBands]float32
	bandLogEnergy(e.coeffs[:], &logE)
	e.quantCoarseEnergy(&re, &logE, !e.started, budget, &errs)
	e.started = true

	var spreadWeight [numBands]int
	dynallocAnalysis(&logE, len(frame), e.lsbDepth, transient, &e.boosts, &spreadWeight)
	encodeTF(&re, budget, transient)
	if re.tell()+4 <= budget {
		if transient {
			e.spread = spreadNormal
		} else {
			e.spread = spreadDecision(e.coeffs[:], &spreadWeight, &e.spreadAverage, e.spread)
		}
		re.icdf(e.spread, icdfSpread, 5)
	} else {
		e.spread = spreadNormal // what the decoder assumes
	}
	totalFrac := budget << bitRes
	boostTotal := encodeBoosts(&re, totalFrac, &e.boosts)
	trim := defaultTrim
	if re.tellFrac()+6<<bitRes <= totalFrac-boostTotal {
		trim = allocTrim(&logE, len(frame))
		re.icdf(trim, icdfTrim, 7)
	}

	var a allocation
	bits := totalFrac - re.tellFrac() - 1
	// A transient frame keeps a bit for anti-collapse (RFC 6716 §4.3.5).
	antiCollapse := 0
	if transient && bits >= (lm+2)<<bitRes {
		antiCollapse = 1 << bitRes
	}
	computeAllocation(&re, bits-antiCollapse, trim, &e.boosts, &a)
	e.quantFineEnergy(&re, &a.fine, &errs)
	quantAllBands(&re, e.coeffs[:], &a, totalFrac-antiCollapse, e.spread, blocks, &e.scratch)
	if antiCollapse > 0 {
		// Let the decoder fill short blocks left without pulses, unless
		// attacks have followed each other for a while.
		re.rawBits(uint32(boolInt(e.consecTransients < 2)), 1)
	}
	if transient {
		e.consecTransients++
	} else {
		e.consecTransients = 0
	}
	e.quantEnergyFinalise(&re, &a.fine, &a.priority, &errs, budget-re.tell())
	re.done()
	if re.overflowed {
		// Cannot happen: every symbol is bounded by the budget checks.
		return 0, fmt.Errorf("opusenc: internal error: %d-byte frame overflowed", len(frame))
	}
	e.rng = re.rng
	for b := range e.oldE {
		if math.IsNaN(float64(e.oldE[b])) {
			e.oldE[b] = -28
		}
	}
	return e.packetSize, nil
}

// allocTrim chooses the allocation trim (RFC 6716 §4.3.3), which tilts
// the allocation toward low (above 5) or high (below 5) bands, as the
// reference encoder does for a long block: from the bitrate, then against
// the spectrum's tilt, so a voice whose energy falls with frequency keeps
// more bits where its energy is.
func allocTrim(logE *[numBands]float32, frameBytes int) int {
	rate := frameBytes * 8 * 50 // the reference's equivalent rate at 20 ms
	trim := float32(5)
	switch {
	case rate < 64000:
		trim = 4
	case rate < 80000:
		trim = 4 + float32((rate-64000)>>10)/16
	}
	var tilt float32
	for b, e := range logE {
		tilt += e * float32(2+2*b-numBands)
	}
	tilt /= numBands - 1
	trim -= max(-2, min(2, (tilt+1)/6))
	return max(0, min(10, int(math.Floor(float64(0.5+trim)))))
}

// encodeTF codes the time-frequency resolution of every band (RFC 6716
// §4.3.1): unchanged, for a long block; for short blocks, the short
// blocks' own time resolution (tf_change 0, which a transient frame codes
// as a 1 and tf_select 0). With long blocks only, trading frequency for
// time resolution would need an analysis this encoder does not make.
func encodeTF(re *rangeEncoder, budget int, transient bool) {
	logp := uint(4)
	if transient {
		logp = 2
	}
	reserve := re.tell()+int(logp)+1 <= budget
	if reserve {
		budget--
	}
	want, curr, changed := boolInt(transient), 0, 0
	for range numBands {
		if re.tell()+int(logp) <= budget {
			re.bitLogP(want != curr, logp)
			curr = want
			changed |= curr
		}
		logp = 5
		if transient {
			logp = 4
		}
	}
	// tf_select (RFC 6716 Table 62, LM 3), coded only when it matters.
	selectTable := [8]int{0, -2, 0, -3, 3, 0, 1, -1}
	t := 4 * boolInt(transient)
	if reserve && selectTable[t+changed] != selectTable[t+2+changed] {
		re.bitLogP(false, 1)
	}
}

// encodeBoosts codes each band's boost (RFC 6716 §4.3.3), as many of
// the band's quanta as boosts asks for while the frame and the band's cap
// allow, and replaces boosts with what was coded, in 1/8 bit; it returns
// their total.
func encodeBoosts(re *rangeEncoder, totalFrac int, boosts *[numBands]int) int {
	logp := uint(6)
	total := 0
	for b := range numBands {
		width := bandWidth(b) << lm
		quanta := min(width<<bitRes, max(6<<bitRes, width))
		loopLogp := logp
		boost, j := 0, 0
		for ; re.tellFrac()+int(loopLogp)<<bitRes < totalFrac-total && boost < bandCap(b); j++ {
			more := j < boosts[b]
			re.bitLogP(more, loopLogp)
			if !more {
				break
			}
			boost += quanta
			total += quanta
			loopLogp = 1
		}
		if j > 0 {
			logp = max(2, logp-1) // boosts get likelier once one band has one
		}
		boosts[b] = boost
	}
	return total
}
