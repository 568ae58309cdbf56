package media

import (
	"context"
	"log/slog"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/opus"

	"github.com/voicebridge/bridge/internal/audiotest"
	"github.com/voicebridge/bridge/media/opusenc"
)

// benchSpeakers are libopus tones as browsers send them (32 kbit/s),
// one per speaker, at frequencies that differ.
func benchSpeakers(b *testing.B, n int) [][][]byte {
	b.Helper()
	out := make([][][]byte, n)
	for i := range out {
		out[i] = audiotest.LibopusEncode(b, audiotest.Sine(300+float64(i)*170, 0.05, 2), 32000)
	}
	return out
}

// benchMixer is a mixer with the real decoders (pion/opus) and encoder
// (media/opusenc at 64 kbit/s) whose frames go to send.
func benchMixer(b *testing.B, send func([]byte), clock mixClock, observe func(time.Duration)) *mixer {
	b.Helper()
	cfg, err := MixOptions{NewEncoder: func(int) (Encoder, error) { return nil, nil }, ObserveLatency: observe}.validate()
	if err != nil {
		b.Fatal(err)
	}
	enc, err := opusenc.New(opusenc.Options{Bitrate: cfg.Bitrate})
	if err != nil {
		b.Fatal(err)
	}
	newDec := func() (frameDecoder, error) {
		d, err := opus.NewDecoderWithOutput(mixRate, 1)
		return decoderFunc{&d}, err
	}
	return newMixer(cfg, enc, newDec, send, clock)
}

// nopLink is a DiscordLink that takes frames and does nothing.
type nopLink struct{ sent chan struct{} }

func (nopLink) Receive(ctx context.Context) (LinkEvent, error) { <-ctx.Done(); return nil, ctx.Err() }
func (l nopLink) SendOpus([]byte) error                        { l.sent <- struct{}{}; return nil }
func (nopLink) SendVP8([]byte, bool) error                     { return nil }
func (nopLink) Close(context.Context) error                    { return nil }

// BenchmarkMixFrame is the CPU of one 20 ms mixed frame with 1, 2, 5 and
// 10 speakers: every speaker's packet decoded (pion/opus) from its jitter
// buffer, the sum limited and encoded (media/opusenc, 64 kbit/s), beside
// "forward": today's loudest-speaker path for one packet (the route read
// and the link's queue, to its writer goroutine's SendOpus).
func BenchmarkMixFrame(b *testing.B) {
	b.Run("forward", func(b *testing.B) {
		link := nopLink{sent: make(chan struct{}, 1)}
		lc := startLinkConn(link, slog.New(slog.DiscardHandler))
		defer lc.stop()
		var rp atomic.Pointer[route]
		rp.Store(&route{out: lc})
		payload := make([]byte, 120)
		b.ResetTimer()
		for range b.N {
			if rt := rp.Load(); rt.out != nil {
				rt.out.push(linkItem{opus: payload})
			}
			<-link.sent
		}
	})
	for _, n := range []int{1, 2, 5, 10} {
		b.Run("speakers-"+strconv.Itoa(n), func(b *testing.B) {
			speakers := benchSpeakers(b, n)
			sent := 0
			m := benchMixer(b, func([]byte) { sent++ }, wallClock{}, nil)
			base := time.Now()
			b.ResetTimer()
			for i := range b.N {
				now := base.Add(time.Duration(i) * frameTime)
				for s, frames := range speakers {
					m.push(mixPacket{src: strconv.Itoa(s), seq: uint16(i), ts: uint32(i * mixFrame), payload: frames[i%len(frames)], at: now})
				}
				m.tick(now)
			}
			b.StopTimer()
			if b.N > 10 && sent < b.N-5 {
				b.Fatalf("%d frames out of %d ticks", sent, b.N)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/frame")
		})
	}
}

// BenchmarkMixLatency runs the mixer on the wall clock, one 20 ms frame
// per iteration, with two speakers whose packets arrive every 20 ms at
// a phase of their own, and reports the time from a packet's arrival to
// the mixed frame that holds it leaving for the link: p50 and p99.
// Run it with -benchtime=250x (5 s).
func BenchmarkMixLatency(b *testing.B) {
	speakers := benchSpeakers(b, 2)
	var lat []time.Duration
	m := benchMixer(b, func([]byte) {}, wallClock{}, func(d time.Duration) { lat = append(lat, d) })
	m.start()
	start := time.Now()
	b.ResetTimer()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := range b.N {
		for s, frames := range speakers {
			// Speaker s's packet i arrives at start + 20 ms·i + 7 ms·s.
			at := start.Add(time.Duration(i)*frameTime + time.Duration(s)*7*time.Millisecond)
			t.Reset(time.Until(at))
			<-t.C
			m.push(mixPacket{src: strconv.Itoa(s), seq: uint16(i), ts: uint32(i * mixFrame), payload: frames[i%len(frames)], at: time.Now()})
		}
	}
	b.StopTimer()
	m.stop()
	if b.N < 50 {
		return // too short for the jitter buffers to start
	}
	if len(lat) == 0 {
		b.Fatalf("no latency observed in %d frames; %+v", b.N, m.stats)
	}
	sort.Slice(lat, func(i, k int) bool { return lat[i] < lat[k] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
