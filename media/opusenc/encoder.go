package opusenc

import (
	"fmt"
	"math"
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
// it is not safe for concurrent use.
type Encoder struct {
	packetSize int
	mdct       *mdct
	scratch    pvqScratch

	emphMem float32                      // the previous input sample, for pre-emphasis
	in      [frameSize + overlap]float32 // [overlap kept from the last frame | this frame]
	coeffs  [frameSize]float32
	oldE    [numBands]float32 // the decoder's energies after the last frame
	started bool              // a frame has been coded: inter-frame prediction is possible
	pcm     [frameSize]float32
	rng     uint32 // the range coder's final state, see FinalRange
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
	return &Encoder{packetSize: rate / 400, mdct: newMDCT()}, nil
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
	return e.encode(out)
}

func (e *Encoder) encode(out []byte) (int, error) {
	if len(out) < e.packetSize {
		return 0, fmt.Errorf("%w: output buffer of %d bytes, want %d", ErrFrameSize, len(out), e.packetSize)
	}
	out = out[:e.packetSize]
	out[0] = toc
	frame := out[1:]

	// Pre-emphasis at CELT's internal scale (the decoder divides by 32768).
	copy(e.in[:overlap], e.in[frameSize:])
	silent := true
	for i, v := range e.pcm {
		x := v * 32768
		e.in[overlap+i] = x - preemphasis*e.emphMem
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
		re.done()
		e.rng = re.rng
		return e.packetSize, nil
	}
	if re.tell()+16 <= budget {
		re.bitLogP(false, 1) // no pitch post-filter
	}
	if re.tell()+3 <= budget {
		re.bitLogP(false, 3) // long blocks: no transient
	}

	e.mdct.forward(e.in[:], e.coeffs[:])
	var logE, errs [numBands]float32
	bandLogEnergy(e.coeffs[:], &logE)
	e.quantCoarseEnergy(&re, &logE, !e.started, budget, &errs)
	e.started = true

	encodeTF(&re, budget)
	if re.tell()+4 <= budget {
		re.icdf(spreadNormal, icdfSpread, 5)
	}
	totalFrac := budget << bitRes
	encodeNoBoosts(&re, totalFrac)
	if re.tellFrac()+6<<bitRes <= totalFrac {
		re.icdf(defaultTrim, icdfTrim, 7)
	}

	var a allocation
	computeAllocation(&re, totalFrac-re.tellFrac()-1, defaultTrim, &a)
	e.quantFineEnergy(&re, &a.fine, &errs)
	quantAllBands(&re, e.coeffs[:], &a, totalFrac, spreadNormal, &e.scratch)
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

// encodeTF codes "no time-frequency change" for every band (RFC 6716
// §4.3.1): with long blocks only, a change would trade frequency for time
// resolution the encoder has not analysed.
func encodeTF(re *rangeEncoder, budget int) {
	logp := uint(4)
	tell := re.tell()
	if tell+int(logp)+1 <= budget {
		budget-- // room for tf_select, which is not coded: both choices agree for all-zero changes
	}
	for range numBands {
		if re.tell()+int(logp) <= budget {
			re.bitLogP(false, logp)
		}
		logp = 5
	}
}

// encodeNoBoosts codes a zero dynamic allocation boost for every band
// (RFC 6716 §4.3.3).
func encodeNoBoosts(re *rangeEncoder, totalFrac int) {
	const logp = 6
	for b := range numBands {
		if re.tellFrac()+logp<<bitRes < totalFrac && 0 < bandCap(b) {
			re.bitLogP(false, logp)
		}
	}
}
