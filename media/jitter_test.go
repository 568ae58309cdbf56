package media

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// toneDecoder "decodes" a 4-byte frame number into that frame of a
// continuous sine, so a test knows exactly what every tick should play.
type toneDecoder struct{ hz, amp float64 }

func (d toneDecoder) Decode(p []byte, pcm []float32) (int, error) {
	n := int(binary.BigEndian.Uint32(p))
	for i := range mixFrame {
		pcm[i] = float32(d.amp * math.Sin(2*math.Pi*d.hz*float64(n*mixFrame+i)/mixRate))
	}
	return mixFrame, nil
}

// framePayload is the payload toneDecoder decodes as frame n.
func framePayload(n int) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(n))
}

// arrival is one packet reaching the buffer.
type arrival struct {
	n  int // frame number
	at time.Duration
}

// playout runs a buffer on ticks every 20 ms from start for ticks, with
// packets arriving as listed, and returns the output and what each tick
// played.
func playout(t *testing.T, jb *jitterBuffer, arrivals []arrival, ticks int, tickEvery time.Duration) ([]float32, []frameKind) {
	t.Helper()
	sort.SliceStable(arrivals, func(i, k int) bool { return arrivals[i].at < arrivals[k].at })
	base := time.Unix(1_700_000_000, 0)
	var out []float32
	var kinds []frameKind
	pcm := make([]float32, mixFrame)
	a := 0
	for tick := range ticks {
		now := time.Duration(tick+1) * tickEvery
		for ; a < len(arrivals) && arrivals[a].at <= now; a++ {
			n := arrivals[a].n
			jb.push(uint16(1000+n), uint32(5000+n*mixFrame), framePayload(n), base.Add(arrivals[a].at), base.Add(now))
		}
		kinds = append(kinds, jb.pop(pcm))
		out = append(out, pcm...)
	}
	return out, kinds
}

// clickLevel is the largest second-order prediction residual of a sine of
// hz Hz in pcm (x[n] - 2cos(w)x[n-1] + x[n-2], zero for a pure sine of
// any phase and amplitude), in dB relative to amp: a click, a jump or a
// phase break shows as a spike.
func clickLevel(pcm []float32, hz, amp float64) float64 {
	c := 2 * math.Cos(2*math.Pi*hz/mixRate)
	worst := 0.0
	for n := 2; n < len(pcm); n++ {
		r := math.Abs(float64(pcm[n]) - c*float64(pcm[n-1]) + float64(pcm[n-2]))
		worst = max(worst, r)
	}
	return 20 * math.Log10(worst/amp+1e-12)
}

func count(kinds []frameKind, k frameKind) int {
	n := 0
	for _, x := range kinds {
		if x == k {
			n++
		}
	}
	return n
}

// Reordered and bunched packets come out in order, each exactly once,
// with nothing concealed once the delay has adapted.
func TestJitterReorderAndBurst(t *testing.T) {
	want := toneDecoder{441.7, 0.5} // no frame repeats another
	jb := newJitterBuffer(jitterBounds{1, 10}, want)
	var arr []arrival
	for n := range 500 {
		at := time.Duration(n)*frameTime + 40*time.Millisecond
		switch {
		case n%2 == 1: // every other pair swapped by 15 ms
			at -= 5 * time.Millisecond
		case n%2 == 0 && n > 0:
			at += 10 * time.Millisecond
		}
		if n >= 200 && n < 210 { // a burst: ten frames held back, then at once
			at = 210 * frameTime
		}
		arr = append(arr, arrival{n, at})
	}
	out, kinds := playout(t, jb, arr, 520, frameTime)
	if jb.stats.late != 0 {
		t.Fatalf("%d packets came too late to play; the buffer should hold them", jb.stats.late)
	}
	// Every frame played exactly once (a merge plays two in one tick),
	// and the stream is the sine without a break.
	if got := jb.stats.played + jb.stats.merged; got != 500 {
		t.Fatalf("%d frames played (%d ticks merged two), want all 500", got, jb.stats.merged)
	}
	// Only the 200 ms hold-up is bridged (the buffer waits, then plays
	// what it held back).
	if jb.stats.concealed > 10 {
		t.Fatalf("%d frames concealed; only the burst's hold-up should be", jb.stats.concealed)
	}
	if c := clickLevel(out[count(kinds[:100], frameIdle)*mixFrame:], 441.7, 0.5); c > -30 {
		t.Fatalf("residual %.1f dB, want below -30 dB", c)
	}
	if jb.target < 2 {
		t.Fatalf("target delay %d frames after reordering; want at least 2", jb.target)
	}
	t.Logf("target %d frames; played %d, concealed %d, merged %d", jb.target, jb.stats.played, jb.stats.concealed, jb.stats.merged)
}

// 10 % loss and up to 40 ms of jitter: every tick plays a frame (decoded
// or concealed, never nothing), and the concealed stretches fade instead
// of clicking: the sine's prediction residual stays below -30 dB.
func TestJitterLossConcealmentDoesNotClick(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, hz := range []float64{440, 1000} {
		jb := newJitterBuffer(jitterBounds{1, 10}, toneDecoder{hz, 0.5})
		var arr []arrival
		for n := range 1500 {
			if n > 20 && rng.Float64() < 0.10 {
				continue
			}
			arr = append(arr, arrival{n, time.Duration(n)*frameTime + time.Duration(rng.Int64N(int64(40*time.Millisecond)))})
		}
		out, kinds := playout(t, jb, arr, 1500, frameTime)
		start := 0
		for kinds[start] == frameIdle {
			start++
		}
		for i := start; i < 1480; i++ {
			if kinds[i] == frameIdle {
				t.Fatalf("%v Hz: tick %d played nothing after the stream started", hz, i)
			}
		}
		if jb.stats.concealed < 100 {
			t.Fatalf("%v Hz: %d frames concealed of 10%% lost; the loss did not reach the buffer", hz, jb.stats.concealed)
		}
		click := clickLevel(out[start*mixFrame:1480*mixFrame], hz, 0.5)
		if click > -30 {
			t.Fatalf("%v Hz: click at %.1f dB re the tone, want below -30 dB", hz, click)
		}
		if jb.target > 4 {
			t.Fatalf("%v Hz: target delay %d frames for 40 ms of jitter; want at most 4", hz, jb.target)
		}
		t.Logf("%v Hz: worst residual %.1f dB, concealed %d, late %d, target %d frames", hz, click, jb.stats.concealed, jb.stats.late, jb.target)
	}
}

// A browser whose clock runs 0.1 % fast (or slow) for 5 minutes: the
// buffer's depth stays bounded, frames are merged (or stretched) to make
// up the difference, and no tick goes empty.
func TestJitterDriftStaysBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ratio float64 // the browser's frame period over the bridge's
	}{{"fast", 1 / 1.001}, {"slow", 1.001}} {
		t.Run(tc.name, func(t *testing.T) {
			jb := newJitterBuffer(jitterBounds{1, 10}, toneDecoder{440, 0.5})
			ticks := int(5 * time.Minute / frameTime)
			var arr []arrival
			for n := range ticks + 400 {
				arr = append(arr, arrival{n, time.Duration(float64(n) * float64(frameTime) * tc.ratio)})
			}
			sort.Slice(arr, func(i, k int) bool { return arr[i].at < arr[k].at })
			base := time.Unix(1_700_000_000, 0)
			pcm := make([]float32, mixFrame)
			a, maxDepth, idle := 0, 0, 0
			for tick := range ticks {
				now := time.Duration(tick+1) * frameTime
				for ; a < len(arr) && arr[a].at <= now; a++ {
					n := arr[a].n
					jb.push(uint16(n), uint32(n*mixFrame), framePayload(n), base.Add(arr[a].at), base.Add(now))
				}
				maxDepth = max(maxDepth, jb.depth())
				if jb.pop(pcm) == frameIdle && tick > 10 {
					idle++
				}
			}
			if maxDepth > jb.target+3 {
				t.Fatalf("depth reached %d frames with a target of %d: the buffer grows with drift", maxDepth, jb.target)
			}
			if idle > 0 {
				t.Fatalf("%d ticks played nothing", idle)
			}
			// 0.1 % of 15000 frames is 15 to make up.
			adjusted := jb.stats.merged + jb.stats.stretched
			if adjusted < 10 || adjusted > 25 {
				t.Fatalf("%d frames merged, %d stretched over 5 min at 0.1%%; want about 15", jb.stats.merged, jb.stats.stretched)
			}
			t.Logf("max depth %d, target %d, merged %d, stretched %d, concealed %d", maxDepth, jb.target, jb.stats.merged, jb.stats.stretched, jb.stats.concealed)
		})
	}
}

// A concealed run fades out along concealFades and stops; the stream
// coming back fades in.
func TestJitterFadesOutAndBack(t *testing.T) {
	jb := newJitterBuffer(jitterBounds{1, 10}, toneDecoder{1000, 0.5})
	var arr []arrival
	for n := range 200 {
		if n >= 50 && n < 60 {
			continue // 200 ms gone
		}
		arr = append(arr, arrival{n, time.Duration(n) * frameTime})
	}
	out, kinds := playout(t, jb, arr, 200, frameTime)
	peak := func(tick int) float64 {
		p := 0.0
		for _, x := range out[tick*mixFrame : (tick+1)*mixFrame] {
			p = max(p, math.Abs(float64(x)))
		}
		return p
	}
	lossAt := -1
	for i, k := range kinds {
		if k == frameConcealed {
			lossAt = i
			break
		}
	}
	if lossAt < 0 {
		t.Fatal("nothing concealed")
	}
	if p := peak(lossAt); p < 0.3 || p > 0.51 {
		t.Fatalf("first concealed frame peaks at %.2f, want it close to the tone's 0.5", p)
	}
	if p := peak(lossAt + 3); p != 0 {
		t.Fatalf("the fourth lost frame peaks at %.3f, want silence", p)
	}
	if c := clickLevel(out, 1000, 0.5); c > -30 {
		t.Fatalf("residual %.1f dB across the fade out and back, want below -30 dB", c)
	}
	if p := peak(len(kinds) - 5); p < 0.49 {
		t.Fatalf("the stream did not come back: peak %.2f", p)
	}
}

// TestJitterSteadyWhenTargetWavers: packets every 20 ms, about one in
// eighteen 2 ms late, so the delay target wavers between one frame and
// two as the late ones come and go from its 2 s window. Every merge or
// stretch shifts the speech by 20 ms; the buffer must not answer each
// wave of the target with one (it did: a merge when the target fell to
// one, a stretch a second after it rose to two, over and over, which
// cost the speech through the mix a half second of quality each time).
func TestJitterSteadyWhenTargetWavers(t *testing.T) {
	jb := newJitterBuffer(jitterBounds{1, 10}, toneDecoder{440, 0.3})
	rng := rand.New(rand.NewPCG(5, 6))
	const frames = 3000 // a minute
	var arrivals []arrival
	for n := range frames {
		at := time.Duration(n)*frameTime + 5*time.Millisecond
		if rng.Float64() < 0.055 {
			at += 2 * time.Millisecond
		}
		arrivals = append(arrivals, arrival{n, at})
	}
	_, kinds := playout(t, jb, arrivals, frames, frameTime)
	if c := count(kinds, frameConcealed) - jb.stats.stretched; c > 0 {
		t.Fatalf("%d frames concealed with no packet lost", c)
	}
	shifts := jb.stats.merged + jb.stats.stretched
	t.Logf("a minute: %d merges, %d stretches, target now %d", jb.stats.merged, jb.stats.stretched, jb.target)
	if shifts > 2 {
		t.Fatalf("%d merges and %d stretches in a minute of packets that only waver by 2 ms; want at most the one stretch that settles the depth", jb.stats.merged, jb.stats.stretched)
	}
}

// The delay target counts each packet's margin before the tick that takes
// it, not the spread of the arrivals: packets that spread over 3 ms but
// all land well before their tick cost one frame, and each plays at the
// first tick after it came; packets that spread as little across the
// tick, or that come within the guard before it, cost two, and then
// none is concealed.
func TestJitterTargetCountsMarginBeforeTick(t *testing.T) {
	for _, tc := range []struct {
		name           string
		offset, spread time.Duration // arrival after the media time, and its random spread
		want           int
	}{
		// Ticks at 20 ms, 40 ms, ...: arrivals 5-8 ms after a tick,
		// 12-15 ms before the next.
		{"spread well before the tick", 5 * time.Millisecond, 3 * time.Millisecond, 1},
		{"small spread well before the tick", 10 * time.Millisecond, time.Millisecond, 1},
		// 2 ms before to 2 ms after a tick.
		{"straddling the tick", 18 * time.Millisecond, 4 * time.Millisecond, 2},
		// Within the guard before the tick, every one.
		{"just before the tick", 19*time.Millisecond + 200*time.Microsecond, 500 * time.Microsecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 8))
			jb := newJitterBuffer(jitterBounds{1, 10}, toneDecoder{440, 0.3})
			const frames = 1000
			var arr []arrival
			for n := range frames {
				at := time.Duration(n)*frameTime + tc.offset + time.Duration(rng.Int64N(int64(tc.spread)))
				arr = append(arr, arrival{n, at})
			}
			_, kinds := playout(t, jb, arr, frames, frameTime)
			if jb.target != tc.want {
				t.Fatalf("target %d frames, want %d", jb.target, tc.want)
			}
			if c := count(kinds, frameConcealed); c != 0 {
				t.Fatalf("%d frames concealed with no packet lost", c)
			}
			if jb.stats.late != 0 || jb.stats.merged != 0 || jb.stats.stretched != 0 {
				t.Fatalf("late %d, merged %d, stretched %d; want none", jb.stats.late, jb.stats.merged, jb.stats.stretched)
			}
			// One frame of delay: every packet plays at the tick right
			// after it came, so no tick waits; two: one tick primes.
			if idle := count(kinds, frameIdle); idle != tc.want-1 {
				t.Fatalf("%d ticks idle before the first frame, want %d", idle, tc.want-1)
			}
		})
	}
}
