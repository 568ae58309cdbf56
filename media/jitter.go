package media

import (
	"math"
	"time"
)

// One browser's audio on its way into the mix: a jitter buffer that puts
// packets back in order, holds them for an adaptive, bounded delay, hides
// lost frames and absorbs the drift between the browser's clock and the
// bridge's. Everything here runs on the mixer's goroutine; arrival times
// are passed in, so tests drive it with a fake clock.

const (
	// mixFrame is one 20 ms frame of mono samples at 48 kHz, the unit
	// everything in the mix works in.
	mixFrame = 960
	// mixRate is the sample rate of the mix and of its RTP clock.
	mixRate = 48000
	// frameTime is one frame's duration.
	frameTime = 20 * time.Millisecond
	// jitterSlots is the reorder window, in frames: a packet this far
	// ahead of the playout point restarts the buffer (the stream jumped).
	jitterSlots = 64
	// jitterWindow is how many packets the delay estimate looks back on
	// (2 s).
	jitterWindow = 100
	// jitterQuantile of the packets must reach the buffer before the
	// tick that plays them.
	jitterQuantile = 0.95
	// tickGuard is the margin a packet must have before the tick that
	// took it for the next packets to count on that tick too: one that
	// came closer (or just after the tick's deadline, before the mixer
	// woke) might as well have missed it.
	tickGuard = 2 * time.Millisecond
	// mergeWindow is how many ticks (200 ms) the buffer's depth must
	// stay above its target before two frames are merged into one: the
	// delay a burst or a fast clock left comes off quickly.
	mergeWindow = 10
	// stretchWindow is how many ticks (1 s) the depth must stay below
	// the target before a period is repeated to make room (a slow
	// clock).
	stretchWindow = 50
	// bandWindow is how many ticks (5 s) of the delay target a merge
	// looks back on: more than the estimate's own 2 s window, so a
	// target that rises again within it takes no delay away. A stretch
	// needs the target above the depth through its whole stretchWindow:
	// a slow clock brings the packets ever closer to their tick, and the
	// second's warning the guard gives must not wait out 5 s.
	bandWindow = 250
	// crossfade is how many samples a decoded frame takes to fade in over
	// the concealed signal after a loss (5 ms).
	crossfade = 240
	// pitchMin and pitchMax bound the period that concealment repeats
	// (80 Hz to 1.2 kHz fundamental, or a multiple of a higher one);
	// pitchWindow is how many recent samples the period is matched on:
	// short, so the period is the one at the very end.
	pitchMin    = 40
	pitchMax    = 600
	pitchWindow = 240
	historyLen  = 2 * mixFrame // at least pitchMax + pitchWindow, and a whole frame
)

// concealFades are the gains at the ends of the first, second and third
// concealed frames in a row: a lost stretch fades to silence over 60 ms
// instead of stopping dead.
var concealFades = [...]float32{0.7, 0.35, 0}

// frameDecoder turns one Opus payload into mixFrame mono samples.
type frameDecoder interface {
	Decode(payload []byte, pcm []float32) (int, error)
}

// frameKind is what a jitter buffer played for one tick.
type frameKind int

const (
	// frameIdle: the input has nothing (not started, or priming its
	// delay); pcm is silence.
	frameIdle frameKind = iota
	// frameDecoded: a received frame.
	frameDecoded
	// frameConcealed: a lost or late frame, hidden.
	frameConcealed
)

// jitterBounds are a buffer's delay bounds, in frames.
type jitterBounds struct{ min, max int }

// jitterStats counts what a buffer did.
type jitterStats struct {
	played, concealed, late, merged, stretched, restarts, decodeErrors int
}

// jbPacket is one buffered packet.
type jbPacket struct {
	payload []byte
	ok      bool
}

// jitterBuffer is one input's jitter buffer.
type jitterBuffer struct {
	bounds jitterBounds
	dec    frameDecoder

	slots   [jitterSlots]jbPacket
	started bool   // a first packet set the playout point
	priming bool   // waiting to hold target frames before playing
	next    uint16 // sequence number played next
	highest uint16 // highest sequence number received

	// The delay estimate, over the last jitterWindow packets: each
	// packet's transit (arrival minus media time, up to a constant), and
	// the tick that took it from the mixer's queue in the same terms
	// (that tick minus media time): the tick it could play at with the
	// least delay. Packets whose ticks fall on one 20 ms slot need one
	// frame of delay whatever the spread of their arrivals; each slot
	// further that the jitterQuantile-th packet's tick lies from the
	// earliest packet's costs a frame more. late is the tick a packet
	// that came within tickGuard of its own would count on: the next.
	transit  [jitterWindow]float64
	early    [jitterWindow]float64
	late     [jitterWindow]float64
	nTransit int
	target   int // frames held before playout, in bounds
	// close is how many packets came since the last one within
	// tickGuard of its tick: a stretch is for packets that come ever
	// closer to their tick (a slow clock), not for a target the drift
	// itself raised once the packets fell back to the next tick.
	close int

	// The least depth over the last mergeWindow ticks, the most over the
	// last stretchWindow ticks, and the ticks each has seen.
	depthLo, loTicks, depthHi, hiTicks int
	// The target at each of the last bandWindow ticks, and how many
	// ticks it holds: the drift decisions compare the depth with the
	// band the target moved in, so a target that wavers between two
	// values (a packet close to its tick now in the estimate's window,
	// now out) moves the playout point neither way.
	targets  [bandWindow]int
	nTargets int

	// Concealment: recent output, the period being repeated, where in it
	// the repetition is, the gain, and how many frames in a row were
	// concealed.
	history [historyLen]float32
	period  int
	phase   int
	gain    float32
	lost    int

	scratch [mixFrame]float32
	stats   jitterStats
}

// newJitterBuffer returns an empty buffer decoding with dec.
func newJitterBuffer(b jitterBounds, dec frameDecoder) *jitterBuffer {
	return &jitterBuffer{bounds: b, dec: dec, target: b.min}
}

// depth is how many frames, received or not, lie between the playout
// point and the highest packet received.
func (j *jitterBuffer) depth() int {
	if !j.started {
		return 0
	}
	return max(0, int(int16(j.highest-j.next))+1)
}

// push stores a packet that arrived at at and is taken from the mixer's
// queue for the tick at tick; false when it came too late to play.
func (j *jitterBuffer) push(seq uint16, ts uint32, payload []byte, at, tick time.Time) bool {
	if !j.started || int(int16(seq-j.next)) >= jitterSlots {
		if j.started {
			j.stats.restarts++
		}
		j.reset(seq)
	}
	d := int(int16(seq - j.next))
	if d < 0 {
		j.stats.late++
		return false
	}
	j.slots[seq%jitterSlots] = jbPacket{payload: payload, ok: true}
	if int16(seq-j.highest) > 0 {
		j.highest = seq
	}
	j.observeTransit(ts, at, tick)
	return true
}

// reset restarts the buffer at seq: it primes its delay again, on an
// estimate of the new stream alone. A browser that resumes after a pause
// need not keep its media clock's offset to ours (a pion one resumed 40 ms
// off in the latency benchmark), so the old packets' ticks would count a spread that is not
// there.
func (j *jitterBuffer) reset(seq uint16) {
	for i := range j.slots {
		j.slots[i] = jbPacket{}
	}
	j.started, j.priming = true, true
	j.next, j.highest = seq, seq
	j.loTicks, j.hiTicks, j.nTargets = 0, 0, 0
	j.nTransit, j.close = 0, stretchWindow
}

// observeTransit updates the delay target with one packet's transit and
// its margin before the tick that took it.
func (j *jitterBuffer) observeTransit(ts uint32, at, tick time.Time) {
	// Transit in seconds, up to a constant offset; the media clock wraps
	// every 24 h of ticks at 48 kHz, far beyond the window.
	tr := float64(at.UnixNano())/1e9 - float64(ts)/mixRate
	if j.nTransit > 0 {
		prev := j.transit[(j.nTransit-1)%jitterWindow]
		// Unwrap the 32-bit RTP timestamp.
		for tr-prev > 1<<31/mixRate {
			tr -= 1 << 32 / mixRate
		}
		for prev-tr > 1<<31/mixRate {
			tr += 1 << 32 / mixRate
		}
	}
	// The margin before the tick; a packet stamped after the tick's
	// time but queued before the mixer drained still made that tick.
	margin := max(tick.Sub(at), 0)
	i := j.nTransit % jitterWindow
	j.transit[i] = tr
	j.early[i] = tr + margin.Seconds()
	j.late[i] = j.early[i]
	j.close++
	if margin < tickGuard {
		j.late[i] += frameTime.Seconds()
		j.close = 0
	}
	j.nTransit++
	n := min(j.nTransit, jitterWindow)
	earliest := j.early[0]
	for _, e := range j.early[1:n] {
		earliest = min(earliest, e)
	}
	var sorted [jitterWindow]float64
	copy(sorted[:n], j.late[:n])
	s := sorted[:n]
	insertionSort(s)
	// The slots between the earliest tick and the quantile's, rounded:
	// the ticks of one slot differ by the mixer's wake-up delays.
	slots := math.Round((s[int(jitterQuantile*float64(n-1))] - earliest) / frameTime.Seconds())
	j.target = min(max(int(slots)+1, j.bounds.min), j.bounds.max)
}

// insertionSort sorts a short slice in place without allocating.
func insertionSort(s []float64) {
	for i := 1; i < len(s); i++ {
		for k := i; k > 0 && s[k] < s[k-1]; k-- {
			s[k], s[k-1] = s[k-1], s[k]
		}
	}
}

// has reports whether the packet at seq is buffered.
func (j *jitterBuffer) has(seq uint16) bool { return j.slots[seq%jitterSlots].ok }

// take removes and returns the packet at seq, if it arrived.
func (j *jitterBuffer) take(seq uint16) ([]byte, bool) {
	p := &j.slots[seq%jitterSlots]
	if !p.ok {
		return nil, false
	}
	b := p.payload
	*p = jbPacket{}
	return b, true
}

// pop plays one 20 ms tick into pcm (mixFrame samples) and says what it
// played.
func (j *jitterBuffer) pop(pcm []float32) frameKind {
	pcm = pcm[:mixFrame]
	if !j.started {
		clear(pcm)
		return frameIdle
	}
	depth := j.depth()
	if j.priming {
		if depth < j.target {
			clear(pcm)
			return frameIdle
		}
		j.priming = false
	}
	j.trackDepth(depth)

	switch {
	case depth == 0:
		// Nothing buffered: the browser is late, or stopped. Conceal
		// without moving the playout point, which adds a frame of delay.
		if j.lost >= len(concealFades) {
			// Faded out already: wait for the stream to come back.
			j.started = false
			clear(pcm)
			return frameIdle
		}
		j.conceal(pcm, true)
		return frameConcealed
	case j.loTicks >= mergeWindow && j.depthLo > j.targetHi() && j.has(j.next) && j.has(j.next+1):
		// Fuller than needed for a while (the browser's clock is fast,
		// or a burst's delay is no longer needed): play two frames in
		// one.
		j.loTicks = 0
		if j.merge(pcm) {
			return frameDecoded
		}
		j.conceal(pcm, true)
		return frameConcealed
	case j.hiTicks >= stretchWindow && j.depthHi < j.targetLo(stretchWindow) && j.close < stretchWindow && j.lost == 0:
		// Emptier than needed for a whole second, with packets coming
		// close to their tick (the browser's clock is slow): repeat a
		// period before the buffer runs dry.
		j.hiTicks = 0
		j.stats.stretched++
		j.conceal(pcm, false)
		return frameConcealed
	}
	payload, ok := j.take(j.next)
	if !ok && depth <= j.target && j.lost == 0 {
		// The next packet may still come: conceal and wait for it.
		j.conceal(pcm, true)
		return frameConcealed
	}
	j.next++
	if !ok {
		j.conceal(pcm, true)
		return frameConcealed
	}
	if !j.decode(payload, pcm) {
		j.conceal(pcm, true)
		return frameConcealed
	}
	j.stats.played++
	j.resume(pcm)
	return frameDecoded
}

// trackDepth records the depth before a tick for the drift decisions.
func (j *jitterBuffer) trackDepth(depth int) {
	if j.loTicks >= mergeWindow {
		j.loTicks = 0
	}
	if j.loTicks == 0 || depth < j.depthLo {
		j.depthLo = depth
	}
	j.loTicks++
	if j.hiTicks >= stretchWindow {
		j.hiTicks = 0
	}
	if j.hiTicks == 0 || depth > j.depthHi {
		j.depthHi = depth
	}
	j.hiTicks++
	j.targets[j.nTargets%bandWindow] = j.target
	j.nTargets++
}

// targetLo is the least target over the last ticks ticks (those since
// the buffer started, if fewer); targetHi the most over the last
// bandWindow.
func (j *jitterBuffer) targetLo(ticks int) int {
	lo := j.target
	for i := range min(j.nTargets, ticks, bandWindow) {
		lo = min(lo, j.targets[(j.nTargets-1-i)%bandWindow])
	}
	return lo
}

func (j *jitterBuffer) targetHi() int {
	hi := j.target
	for _, t := range j.targets[:min(j.nTargets, bandWindow)] {
		hi = max(hi, t)
	}
	return hi
}

// decode decodes payload into pcm; false when it does not decode.
func (j *jitterBuffer) decode(payload []byte, pcm []float32) bool {
	n, err := j.dec.Decode(payload, pcm)
	if err != nil || n != mixFrame {
		j.stats.decodeErrors++
		return false
	}
	return true
}

// merge plays the next two frames in one tick, crossfading from the
// first into the second across the frame, so the output starts where the
// last frame ended and ends where the frame after the second begins.
func (j *jitterBuffer) merge(pcm []float32) bool {
	a, okA := j.take(j.next)
	b, okB := j.take(j.next + 1)
	j.next += 2
	j.stats.merged++
	second := j.scratch[:]
	if !okA || !okB || !j.decode(a, pcm) || !j.decode(b, second) {
		return false
	}
	for i := range pcm {
		w := float32(i) / mixFrame
		pcm[i] = pcm[i]*(1-w) + second[i]*w
	}
	j.stats.played++
	j.resume(pcm)
	return true
}

// conceal fills pcm by repeating the last period of the recent output.
// With fade, the gain steps down along concealFades (a loss); without,
// it stays (a stretch to absorb drift).
func (j *jitterBuffer) conceal(pcm []float32, fade bool) {
	if j.lost == 0 {
		j.period = findPeriod(j.history[:])
		j.phase = 0
		j.gain = 1
	}
	g0, g1 := j.gain, j.gain
	if fade {
		j.stats.concealed++
		g1 = concealFades[min(j.lost, len(concealFades)-1)]
		if g1 > g0 {
			g1 = g0
		}
	}
	j.continuation(pcm, g0, g1)
	j.gain = g1
	j.lost++
	j.remember(pcm)
}

// continuation writes the repeated period into pcm with a gain ramping
// from g0 to g1.
func (j *jitterBuffer) continuation(pcm []float32, g0, g1 float32) {
	p := j.period
	base := historyLen - p
	step := (g1 - g0) / float32(len(pcm))
	for i := range pcm {
		pcm[i] = j.history[base+(j.phase+i)%p] * (g0 + step*float32(i))
	}
	j.phase = (j.phase + len(pcm)) % p
}

// resume fades a decoded frame in over the concealed signal when it
// follows concealment, then records it.
func (j *jitterBuffer) resume(pcm []float32) {
	if j.lost > 0 {
		var c [crossfade]float32
		j.continuation(c[:], j.gain, j.gain)
		for i := range c {
			w := float32(i) / crossfade
			pcm[i] = c[i]*(1-w) + pcm[i]*w
		}
		j.lost = 0
	}
	j.remember(pcm)
}

// remember appends pcm to the history concealment repeats from. While
// concealing, the history keeps the audio from before the loss.
func (j *jitterBuffer) remember(pcm []float32) {
	if j.lost > 0 {
		return
	}
	copy(j.history[:], j.history[len(pcm):])
	copy(j.history[historyLen-len(pcm):], pcm)
}

// findPeriod returns the lag, from pitchMin to pitchMax samples, at
// which the last pitchWindow samples of h best match themselves: the
// period of a tone or of voiced speech. Silence gives pitchMax.
func findPeriod(h []float32) int {
	n := len(h)
	w := h[n-pitchWindow:]
	var ew float64
	for _, x := range w {
		ew += float64(x) * float64(x)
	}
	if ew == 0 {
		return pitchMax
	}
	best, bestScore := pitchMax, math.Inf(-1)
	for p := pitchMin; p <= pitchMax; p++ {
		lag := h[n-pitchWindow-p : n-p]
		var xy, yy float64
		for i, x := range w {
			y := float64(lag[i])
			xy += float64(x) * y
			yy += y * y
		}
		if yy == 0 {
			continue
		}
		if s := xy / math.Sqrt(ew*yy); s > bestScore+1e-6 {
			best, bestScore = p, s
		}
	}
	return best
}
