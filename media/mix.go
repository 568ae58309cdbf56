package media

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/pion/opus"
)

// The mix toward Discord: every browser's audio decoded, held in its own
// jitter buffer (jitter.go), the loudest speakers summed with their gains,
// limited, and encoded as one 48 kHz Opus stream in 20 ms frames on the
// bridge's own clock. The mixer has one goroutine; publishers' readers
// hand it packets through a bounded queue that drops when full.

// Encoder turns 20 ms of 48 kHz mono samples (960) into one Opus packet
// in out and returns its length. media/opusenc's Encoder is one.
type Encoder interface {
	Encode(pcm []int16, out []byte) (int, error)
}

// Decoder turns one Opus packet into 48 kHz mono samples and returns how
// many it wrote. pion/opus's Decoder (DecodeToFloat32) is one.
type Decoder interface {
	DecodeToFloat32(packet []byte, pcm []float32) (int, error)
}

// MixOptions configure the mix of the browsers toward Discord. A nil
// NewEncoder turns the mix off: the loudest browser is forwarded as is.
type MixOptions struct {
	// NewEncoder makes the encoder of one room's mix at bitrate bit/s.
	NewEncoder func(bitrate int) (Encoder, error)
	// NewDecoder makes the decoder of one browser's audio; nil uses
	// pion/opus.
	NewDecoder func() (Decoder, error)
	// Bitrate of the mix in bit/s; default 64000.
	Bitrate int
	// MaxSpeakers is how many browsers are mixed at once, loudest first;
	// default 8.
	MaxSpeakers int
	// JitterMin and JitterMax bound each browser's jitter buffer delay;
	// defaults 20 ms and 200 ms. They are rounded up to 20 ms frames.
	JitterMin, JitterMax time.Duration
	// ObserveLatency, when set, is called for each browser packet mixed,
	// with the time from its arrival to the mixed frame leaving for the
	// Discord link's queue. It runs on the mixer's goroutine.
	ObserveLatency func(time.Duration)
}

const (
	defaultMixBitrate  = 64000
	defaultMaxSpeakers = 8
	defaultJitterMin   = 20 * time.Millisecond
	defaultJitterMax   = 200 * time.Millisecond
	maxJitter          = time.Second
	// mixQueueLen bounds packets waiting for the mixer (all browsers of a
	// room together, about 200 ms of 16 speakers); when full the newest
	// is dropped and the jitter buffer conceals it.
	mixQueueLen = 512
	// mixOutBuf is the room given to each encoded frame: more than the
	// 1275 bytes of the largest Opus frame (RFC 6716 §3.4).
	mixOutBuf = 2 * mixFrame
	// activeLevel is the frame level, in dBFS, from which an input counts
	// as speaking; activeHangover keeps it speaking through the pauses
	// between words (15 frames, 300 ms).
	activeLevel    = -55.0
	activeHangover = 15
	// inputIdleAfter forgets an input that sent nothing for this long.
	inputIdleAfter = 5 * time.Second
	// limitCeiling is the limiter's ceiling (-1 dBFS); limitRelease is
	// the gain's recovery per sample once a peak has passed (to unity in
	// about 100 ms from -6 dB).
	limitCeiling = 0.891
	limitRelease = 1.0 / 9600
)

// mixConfig is MixOptions validated, with the bounds in frames.
type mixConfig struct {
	MixOptions
	bounds jitterBounds
}

// validate checks o and fills its defaults.
func (o MixOptions) validate() (mixConfig, error) {
	if o.Bitrate == 0 {
		o.Bitrate = defaultMixBitrate
	}
	if o.MaxSpeakers == 0 {
		o.MaxSpeakers = defaultMaxSpeakers
	}
	if o.JitterMin == 0 {
		o.JitterMin = defaultJitterMin
	}
	if o.JitterMax == 0 {
		o.JitterMax = defaultJitterMax
	}
	switch {
	case o.Bitrate < 6000 || o.Bitrate > 510000:
		return mixConfig{}, fmt.Errorf("%w: Mix.Bitrate %d bit/s is outside Opus's 6000 to 510000", ErrInvalidOptions, o.Bitrate)
	case o.MaxSpeakers < 1:
		return mixConfig{}, fmt.Errorf("%w: Mix.MaxSpeakers %d must be at least 1", ErrInvalidOptions, o.MaxSpeakers)
	case o.JitterMin < 0 || o.JitterMax > maxJitter || o.JitterMin > o.JitterMax:
		return mixConfig{}, fmt.Errorf("%w: Mix.JitterMin %s and JitterMax %s must satisfy 0 <= min <= max <= %s", ErrInvalidOptions, o.JitterMin, o.JitterMax, maxJitter)
	}
	frames := func(d time.Duration) int { return max(1, int((d+frameTime-1)/frameTime)) }
	return mixConfig{MixOptions: o, bounds: jitterBounds{frames(o.JitterMin), frames(o.JitterMax)}}, nil
}

// mixPacket is one browser audio packet for the mixer.
type mixPacket struct {
	src     string // the publishing session and track
	seq     uint16
	ts      uint32
	payload []byte
	at      time.Time
}

// mixInput is one browser in the mix, owned by the mixer's goroutine.
type mixInput struct {
	src      string
	jb       *jitterBuffer
	pcm      [mixFrame]float32
	kind     frameKind
	level    float64 // this frame's level, dBFS
	hangover int     // frames left in which the input counts as speaking
	gain     float32 // the speaker's own gain, unity by default
	mixGain  float32 // the gain it was mixed with at the end of the last frame
	lastSeen time.Time
	arrivals []time.Time // arrival of the packets buffered, oldest first
	played   int         // how many of them this tick played
}

// mixClock is the time the mixer runs on; tests give a fake one.
type mixClock interface {
	Now() time.Time
	// After fires once the clock reached t.
	After(t time.Time) <-chan time.Time
}

// wallClock is the monotonic clock.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }
func (wallClock) After(t time.Time) <-chan time.Time {
	return time.After(time.Until(t))
}

// decoderFunc adapts a Decoder to the jitter buffer's frameDecoder.
type decoderFunc struct{ d Decoder }

func (f decoderFunc) Decode(p []byte, pcm []float32) (int, error) { return f.d.DecodeToFloat32(p, pcm) }

// mixStats counts what a mixer did.
type mixStats struct {
	frames, dropped, encodeErrors int
}

// mixer is one room's mix.
type mixer struct {
	cfg    mixConfig
	enc    Encoder
	newDec func() (frameDecoder, error)
	send   func(opus []byte)
	clock  mixClock
	in     chan mixPacket

	// Owned by run.
	inputs  map[string]*mixInput
	order   []*mixInput
	sum     [mixFrame]float32
	out16   [mixFrame]int16
	limGain float32
	stats   mixStats

	mu    sync.Mutex // guards gains
	gains map[string]float32

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// newMixer returns a mixer that hands each encoded frame to send; start
// runs it.
func newMixer(cfg mixConfig, enc Encoder, newDec func() (frameDecoder, error), send func([]byte), clock mixClock) *mixer {
	return &mixer{
		cfg: cfg, enc: enc, newDec: newDec, send: send, clock: clock,
		in:      make(chan mixPacket, mixQueueLen),
		inputs:  make(map[string]*mixInput),
		limGain: 1,
		gains:   make(map[string]float32),
		quit:    make(chan struct{}),
	}
}

// start runs the mixer's goroutine until stop.
func (m *mixer) start() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.run()
	}()
}

// stop ends the mixer's goroutine and waits for it; it may be called more
// than once.
func (m *mixer) stop() {
	m.once.Do(func() { close(m.quit) })
	m.wg.Wait()
}

// push hands one packet to the mixer without blocking; a full queue drops
// it.
func (m *mixer) push(p mixPacket) {
	select {
	case m.in <- p:
	default:
	}
}

// setGain sets a speaker's gain (1 is unity).
func (m *mixer) setGain(src string, gain float32) {
	m.mu.Lock()
	m.gains[src] = gain
	m.mu.Unlock()
}

// run mixes one frame per 20 ms on absolute deadlines of the mixer's
// clock, so the stream keeps exactly 50 frames a second.
func (m *mixer) run() {
	start := m.clock.Now()
	for n := int64(1); ; n++ {
		select {
		case <-m.quit:
			return
		case now := <-m.clock.After(start.Add(time.Duration(n) * frameTime)):
			m.tick(now)
		}
	}
}

// tick mixes one frame at now and sends it, unless nobody speaks.
func (m *mixer) tick(now time.Time) {
	m.drain(now)
	defer m.forgetPlayed()
	frame, ok := m.mix()
	if !ok {
		return
	}
	// Each frame goes to the link as the mix's clock makes it: the
	// link's pacer sends one that comes just after its slot at once.
	buf := make([]byte, mixOutBuf) // the link keeps it
	n, err := m.enc.Encode(frame, buf)
	if err != nil {
		m.stats.encodeErrors++
		return
	}
	m.send(buf[:n])
	m.stats.frames++
	if f := m.cfg.ObserveLatency; f != nil {
		sent := m.clock.Now()
		for _, in := range m.order {
			for _, at := range in.arrivals[:in.played] {
				f(sent.Sub(at))
			}
		}
	}
}

// forgetPlayed drops the arrival times of the packets played this tick.
func (m *mixer) forgetPlayed() {
	for _, in := range m.order {
		in.arrivals = in.arrivals[:copy(in.arrivals, in.arrivals[in.played:])]
		in.played = 0
	}
}

// drain moves the queued packets into their inputs' jitter buffers and
// forgets inputs that went quiet.
func (m *mixer) drain(now time.Time) {
	for {
		select {
		case p := <-m.in:
			in := m.inputs[p.src]
			if in == nil {
				dec, err := m.newDec()
				if err != nil {
					m.stats.dropped++
					continue
				}
				in = &mixInput{src: p.src, jb: newJitterBuffer(m.cfg.bounds, dec), gain: 1}
				m.inputs[p.src] = in
			}
			in.lastSeen = p.at
			if in.jb.push(p.seq, p.ts, p.payload, p.at, now) && len(in.arrivals) < jitterSlots {
				in.arrivals = append(in.arrivals, p.at)
			}
			continue
		default:
		}
		break
	}
	m.order = m.order[:0]
	for src, in := range m.inputs {
		if now.Sub(in.lastSeen) > inputIdleAfter {
			delete(m.inputs, src)
			continue
		}
		m.order = append(m.order, in)
	}
	m.mu.Lock()
	for _, in := range m.order {
		if g, ok := m.gains[in.src]; ok {
			in.gain = g
		}
	}
	m.mu.Unlock()
}

// mix plays one tick of every input and sums the loudest speakers; it
// returns the limited frame, or false when nobody speaks.
func (m *mixer) mix() ([]int16, bool) {
	for _, in := range m.order {
		before := in.jb.next
		in.kind = in.jb.pop(in.pcm[:])
		in.level = frameLevel(in.pcm[:])
		switch {
		case in.kind != frameIdle && in.level >= activeLevel:
			in.hangover = activeHangover
		case in.hangover > 0:
			in.hangover--
		}
		// How many of the packets that arrived this tick played, for
		// the latency.
		in.played = 0
		if in.kind != frameIdle {
			in.played = min(int(in.jb.next-before), len(in.arrivals))
		}
	}
	// The loudest speakers, MaxSpeakers at most.
	sort.Slice(m.order, func(i, k int) bool {
		a, b := m.order[i], m.order[k]
		if (a.hangover > 0) != (b.hangover > 0) {
			return a.hangover > 0
		}
		if a.level != b.level {
			return a.level > b.level
		}
		return a.src < b.src
	})
	clear(m.sum[:])
	audible := false
	for i, in := range m.order {
		target := float32(0)
		if i < m.cfg.MaxSpeakers && in.hangover > 0 {
			target = in.gain
		}
		if target == 0 && in.mixGain == 0 {
			continue
		}
		audible = true
		// Ramp the gain across the frame, so a speaker entering or
		// leaving the mix fades instead of clicking.
		g, step := in.mixGain, (target-in.mixGain)/mixFrame
		for k, x := range in.pcm {
			m.sum[k] += x * (g + step*float32(k))
		}
		in.mixGain = target
	}
	if !audible {
		m.limGain = 1
		return nil, false
	}
	m.limit(m.sum[:])
	for k, x := range m.sum {
		m.out16[k] = int16(math.Round(float64(x) * 32767))
	}
	return m.out16[:], true
}

// limit keeps pcm within limitCeiling: the gain drops at once to what
// the loudest sample ahead in the frame needs, reached over the samples
// before it, and recovers slowly after.
func (m *mixer) limit(pcm []float32) {
	// need[k] is the gain sample k needs; a backward pass makes the gain
	// fall smoothly before a peak rather than at it.
	var need [mixFrame]float32
	g := float32(1)
	for k := len(pcm) - 1; k >= 0; k-- {
		n := float32(1)
		if a := float32(math.Abs(float64(pcm[k]))); a > limitCeiling {
			n = limitCeiling / a
		}
		// Fall at most to n at k, rising by 1/crossfade per sample
		// before it.
		g = min(n, g+1.0/crossfade)
		need[k] = g
	}
	gain := m.limGain
	for k, x := range pcm {
		gain = min(gain+limitRelease, 1, need[k])
		y := x * gain
		// The ceiling holds even where the fall was too steep to ramp.
		if y > limitCeiling {
			y = limitCeiling
		} else if y < -limitCeiling {
			y = -limitCeiling
		}
		pcm[k] = y
	}
	m.limGain = gain
}

// frameLevel is the RMS level of pcm in dBFS; -inf for silence.
func frameLevel(pcm []float32) float64 {
	var e float64
	for _, x := range pcm {
		e += float64(x) * float64(x)
	}
	if e == 0 {
		return math.Inf(-1)
	}
	return 10 * math.Log10(e/float64(len(pcm)))
}

// startMix starts the room's mix toward lc when the manager mixes.
func (r *room) startMix(lc *linkConn) {
	cfg := r.m.mix
	if cfg.NewEncoder == nil || r.mix != nil {
		return
	}
	enc, err := cfg.NewEncoder(cfg.Bitrate)
	if err != nil {
		r.log.Warn("mix encoder; forwarding the loudest browser instead", "err", err)
		return
	}
	newDec := func() (frameDecoder, error) {
		if cfg.NewDecoder != nil {
			d, err := cfg.NewDecoder()
			if err != nil {
				return nil, err
			}
			return decoderFunc{d}, nil
		}
		d, err := opus.NewDecoderWithOutput(mixRate, 1)
		if err != nil {
			return nil, err
		}
		return decoderFunc{&d}, nil
	}
	r.mix = newMixer(cfg, enc, newDec, func(b []byte) { lc.push(linkItem{opus: b}) }, wallClock{})
	r.mix.start()
	r.log.Info("mixing the browsers toward discord", "bitrate", cfg.Bitrate, "max_speakers", cfg.MaxSpeakers)
}

// stopMix ends the room's mix, if it runs.
func (r *room) stopMix() {
	if r.mix != nil {
		r.mix.stop()
		r.mix = nil
	}
}
