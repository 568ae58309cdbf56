package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// BenchmarkMediaE2EDiscordToBrowsers measures the whole Discord-to-browser
// audio path of the embedded default: a simulated Discord member sends
// Opus frames every 20 ms through the voice emulator's UDP relay; the
// bridge's voice client decrypts them and media fans them out, over SRTP,
// to rooms of 1, 10 and 50 pion browsers in the same process.
//
// Metrics per sub-benchmark:
//   - p50-µs, p99-µs: from the member handing a frame to its UDP socket to
//     a browser's ReadRTP returning it; the delay the bridge adds, plus the
//     emulator's relay, two loopback hops and the browser's SRTP decrypt.
//   - relay-p50-µs: the same for a second simulated member of the voice
//     channel, which hears the frames straight from the emulator's relay;
//     p50-µs minus this is about what the bridge and the browser's receive
//     path add.
//   - bridge-p50-µs, bridge-p99-µs: the bridge alone, from the voice
//     client's UDP read of a frame's packet to pion's SRTP write of a
//     browser's copy (media.Options.ObserveDiscordAudio), over all copies.
//   - lost-%: frames some browser never got.
//   - cpu-µs/pkt and cpu-µs/fwd: the process's CPU time (user + system)
//     during the run, less the same room's idle CPU rate, per Discord frame
//     and per frame delivered to one browser. The process holds the
//     emulator and the browsers too, so these are upper bounds for the
//     bridge alone.
//
// ns/op is the 20 ms pacing and means nothing. See BENCHMARKS.md (Media).
func BenchmarkMediaE2EDiscordToBrowsers(b *testing.B) {
	// The bridge's own share: UDP read to the browser-bound write.
	var bridgeLat latencies
	ta := startTestApp(b, bridgeLat.observeDiscordAudio(mediaTuning()), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := ta.gw.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	room := newVoiceRoom(b, ctx, ta, "bench-room")
	const uid = "470000000000000001"
	member := addDiscordMember(b, ta, uid, "Bench", room)
	rec := &latencyRecorder{stream: "discord-" + uid, wake: make(chan struct{})}
	// A second member hears the same frames straight from the emulator's
	// relay: the part of the latency that is not the bridge's.
	relay := &latencyRecorder{stream: "relay", wake: make(chan struct{})}
	relay.addBrowser()
	listener := addDiscordMember(b, ta, "470000000000000002", "Bench listener", room)
	listener.OnOpus(func(from string, frame []byte) {
		if from == uid {
			relay.hook(0)(nil, &rtp.Packet{Payload: frame}, time.Now())
		}
	})
	var next uint64 // id of the next frame the member sends
	send := func() error {
		rec.sending(next)
		relay.sending(next)
		if err := member.SendOpus(benchFrame(next)); err != nil {
			return fmt.Errorf("member: send frame %d: %w", next, err)
		}
		next++
		return nil
	}

	var browsers []*e2eBrowser
	for _, size := range []int{1, 10, 50} {
		for len(browsers) < size {
			k := rec.addBrowser()
			nb := newE2EBrowser(b, ta, fmt.Sprintf("bench-%d", k), browserOptions{onRTP: rec.hook(k)})
			nb.join(ctx, room)
			browsers = append(browsers, nb)
		}
		// Warm up: every browser has its track and receives.
		first := next
		tick := time.NewTicker(20 * time.Millisecond)
		for !rec.allSince(first) {
			select {
			case <-ctx.Done():
				b.Fatalf("%d browsers: not every browser receives the member", size)
			case <-tick.C:
				if err := send(); err != nil {
					b.Fatal(err)
				}
			}
		}
		tick.Stop()

		b.Run(fmt.Sprintf("browsers=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			idle := cpuRate(b, time.Second)
			rec.start(next, b.N)
			relay.start(next, b.N)
			bridgeLat.take()
			cpu0 := cpuTime(b)
			start := time.Now()
			b.ResetTimer()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for range b.N {
				<-tick.C
				if err := send(); err != nil {
					b.Fatal(err)
				}
			}
			rec.waitDone(ctx, 2*time.Second)
			b.StopTimer()
			busy := cpuTime(b) - cpu0 - time.Duration(float64(time.Since(start))*idle)
			lat, lost := rec.result()
			if len(lat) == 0 {
				b.Fatal("no frame reached a browser")
			}
			b.ReportMetric(float64(percentile(lat, 50).Microseconds()), "p50-µs")
			if rl, _ := relay.result(); len(rl) > 0 {
				b.ReportMetric(float64(percentile(rl, 50).Microseconds()), "relay-p50-µs")
			}
			b.ReportMetric(float64(percentile(lat, 99).Microseconds()), "p99-µs")
			if bl := bridgeLat.take(); len(bl) > 0 {
				b.ReportMetric(float64(percentile(bl, 50).Microseconds()), "bridge-p50-µs")
				b.ReportMetric(float64(percentile(bl, 99).Microseconds()), "bridge-p99-µs")
			}
			b.ReportMetric(100*float64(lost)/float64(b.N*size), "lost-%")
			b.ReportMetric(float64(busy.Microseconds())/float64(b.N), "cpu-µs/pkt")
			b.ReportMetric(float64(busy.Microseconds())/float64(len(lat)), "cpu-µs/fwd")
		})
	}
}

// latencyRecorder matches the frames browsers receive with the time the
// member sent them.
type latencyRecorder struct {
	stream string // the member's stream id

	mu     sync.Mutex
	base   uint64      // first frame id of the run
	sentAt []time.Time // by id-base; zero until sent
	lat    []time.Duration
	got    []int    // per browser: frames of the run received
	newest []uint64 // per browser: newest frame id + 1 received
	wake   chan struct{}
}

// addBrowser makes room for one more browser and returns its index.
func (r *latencyRecorder) addBrowser() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, 0)
	r.newest = append(r.newest, 0)
	return len(r.got) - 1
}

// hook is browser k's RTP hook; a nil track is the relay listener.
func (r *latencyRecorder) hook(k int) func(*recvTrack, *rtp.Packet, time.Time) {
	return func(rt *recvTrack, p *rtp.Packet, at time.Time) {
		if rt != nil && rt.Remote.StreamID() != r.stream {
			return
		}
		id, err := benchFrameID(p.Payload)
		if err != nil {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.newest[k] = max(r.newest[k], id+1)
		if id >= r.base && id-r.base < uint64(len(r.sentAt)) && !r.sentAt[id-r.base].IsZero() {
			r.lat = append(r.lat, at.Sub(r.sentAt[id-r.base]))
			r.got[k]++
		}
		close(r.wake)
		r.wake = make(chan struct{})
	}
}

// sending records that frame id is about to leave the member.
func (r *latencyRecorder) sending(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id >= r.base && id-r.base < uint64(len(r.sentAt)) {
		r.sentAt[id-r.base] = time.Now()
	}
}

// start begins a run of n frames from id base.
func (r *latencyRecorder) start(base uint64, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.base, r.sentAt, r.lat = base, make([]time.Time, n), make([]time.Duration, 0, n*len(r.got))
	clear(r.got)
}

// allSince reports whether every browser received a frame from id on.
func (r *latencyRecorder) allSince(id uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.newest {
		if n <= id {
			return false
		}
	}
	return true
}

// waitDone waits until every browser got every frame of the run, or for
// linger after the last frame stopped arriving (lost frames).
func (r *latencyRecorder) waitDone(ctx context.Context, linger time.Duration) {
	t := time.NewTimer(linger)
	defer t.Stop()
	for {
		r.mu.Lock()
		done := true
		for _, n := range r.got {
			done = done && n == len(r.sentAt)
		}
		wake := r.wake
		r.mu.Unlock()
		if done {
			return
		}
		select {
		case <-wake:
			t.Reset(linger)
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// result returns the latencies of the run and how many frames browsers
// missed.
func (r *latencyRecorder) result() ([]time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lost := 0
	for _, n := range r.got {
		lost += len(r.sentAt) - n
	}
	return slices.Clone(r.lat), lost
}

// percentile returns the p-th percentile (nearest rank) of d.
func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// cpuTime is the CPU time (user + system) the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuRate measures the process's idle CPU use (CPU seconds per second)
// over window: keepalives, ICE checks, RTCP, the demo members.
func cpuRate(b *testing.B, window time.Duration) float64 {
	c0, t0 := cpuTime(b), time.Now()
	timer := time.NewTimer(window)
	<-timer.C
	return float64(cpuTime(b)-c0) / float64(time.Since(t0))
}

// errNotBenchFrame marks a packet that is not a benchFrame.
var errNotBenchFrame = errors.New("not a benchmark frame")

// benchFrame is an Opus frame (TOC 0xFC: CELT fullband 20 ms, stereo, one
// frame; RFC 6716 §3.1) whose body carries an id, so a browser can tell
// which Discord frame it got. The bridge forwards Opus untouched.
func benchFrame(id uint64) []byte {
	f := make([]byte, 9)
	f[0] = 0xFC
	for i := range 8 {
		f[1+i] = byte(id >> (8 * i))
	}
	return f
}

// benchFrameID reads the id of a benchFrame.
func benchFrameID(f []byte) (uint64, error) {
	if len(f) != 9 || f[0] != 0xFC {
		return 0, errNotBenchFrame
	}
	var id uint64
	for i := range 8 {
		id |= uint64(f[1+i]) << (8 * i)
	}
	return id, nil
}
