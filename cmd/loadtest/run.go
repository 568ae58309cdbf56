package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/media/mediatest"
)

// The payload a publisher sends: a tag byte (a VP8 descriptor's S bit, so
// video looks like the start of a partition), the publisher's index, the
// packet's number and its send time in nanoseconds since the run's start,
// padded to the kind's size.
const (
	payloadTag  = 0x10
	offPub      = 1
	offSeq      = 2
	offSent     = 10
	payloadHead = 18
)

// pacing is how a kind's publisher sends.
type pacing struct {
	interval time.Duration // between bursts
	burst    int           // packets per burst, the last one marked
	size     int           // payload bytes
	codec    webrtc.RTPCodecCapability
	clock    uint32 // RTP timestamp step per burst
}

var pacings = map[string]pacing{
	"audio": {20 * time.Millisecond, 1, 110, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, 960},
	"video": {33 * time.Millisecond, 4, 1100, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, 3000},
}

// stream is what one subscriber received of one publisher.
type stream struct {
	mu       sync.Mutex
	any      bool   // a packet arrived
	from, to uint64 // the measured window of packet numbers [from, to); to 0 until the window starts
	seen     []bool // by number - from
	last     uint64
	dups     int
	reorders int
	lat      []time.Duration
}

func (s *stream) record(seq uint64, lat time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.any = true
	if s.to == 0 || seq < s.from || seq >= s.to {
		return
	}
	i := seq - s.from
	switch {
	case s.seen[i]:
		s.dups++
		return
	case seq < s.last:
		s.reorders++
	}
	s.seen[i], s.last = true, seq
	s.lat = append(s.lat, lat)
}

// publisher sends one track.
type publisher struct {
	idx   int
	track *webrtc.TrackLocalStaticRTP
	mu    sync.Mutex
	next  uint64 // number of the next packet
}

func (p *publisher) sent() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// sendBurst sends one burst of the pacing.
func (p *publisher) sendBurst(pc pacing, base time.Time, seq *uint16, ts *uint32, buf []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	*ts += pc.clock
	for i := range pc.burst {
		buf[0], buf[offPub] = payloadTag, byte(p.idx)
		binary.BigEndian.PutUint64(buf[offSeq:], p.next)
		binary.BigEndian.PutUint64(buf[offSent:], uint64(time.Since(base)))
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: *seq, Timestamp: *ts, Marker: i == pc.burst-1}, Payload: buf}
		if err := p.track.WriteRTP(&pkt); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return err
		}
		*seq++
		p.next++
	}
	return nil
}

// result is one run's outcome.
type result struct {
	browsers       int
	idleCPU        time.Duration // target's CPU per second while everyone is connected and silent, less its rate before anyone connected
	busyCPU        time.Duration // target's CPU during the measured window, less the idle rate
	window         time.Duration
	expected, got  int
	dups, reorders int
	lat            []time.Duration
	pktsPerSec     float64 // sent by all publishers
}

func (r result) print(w io.Writer, c config) {
	perFwd := time.Duration(0)
	if r.got > 0 {
		perFwd = r.busyCPU / time.Duration(r.got)
	}
	idlePer := float64(r.idleCPU) / float64(time.Millisecond) / float64(r.browsers)
	loss := 100 * float64(r.expected-r.got) / float64(max(r.expected, 1))
	slices.Sort(r.lat)
	p50, p99 := pct(r.lat, 50), pct(r.lat, 99)
	fmt.Fprintf(w, "kind=%s publishers=%d subscribers=%d: %d packets/s sent, %d forwarded in %v\n",
		c.kind, c.publishers, c.subscribers, int(r.pktsPerSec), r.got, r.window.Round(time.Millisecond))
	fmt.Fprintf(w, "  CPU per forwarded packet %.2f µs (idle-corrected); idle %.3f ms/s per browser\n", us(perFwd), idlePer)
	fmt.Fprintf(w, "  loss %.3f %% (%d of %d), duplicates %d, reordered %d\n", loss, r.expected-r.got, r.expected, r.dups, r.reorders)
	fmt.Fprintf(w, "  latency p50 %.2f ms, p99 %.2f ms\n", ms(p50), ms(p99))
	fmt.Fprintf(w, "RESULT kind=%s n=%d cpu_us_per_fwd=%.3f idle_ms_per_browser=%.4f loss_pct=%.4f dups=%d reorders=%d p50_ms=%.3f p99_ms=%.3f\n",
		c.kind, c.subscribers, us(perFwd), idlePer, loss, r.dups, r.reorders, ms(p50), ms(p99))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// run connects everyone, measures idle and then forwarding, and hangs up.
func run(ctx context.Context, c config) (result, error) {
	var r result
	t := target{base: c.url}
	pc := pacings[c.kind]
	base := time.Now()
	api, err := mediatest.NewAPI(mediatest.APIOptions{})
	if err != nil {
		return r, err
	}
	token := func(i int, name string) (string, error) {
		if len(c.tokens) > 0 {
			return c.tokens[i%len(c.tokens)], nil
		}
		return t.devToken(ctx, name)
	}
	room := c.room
	if room == "" {
		tk, err := token(0, "loadtest")
		if err != nil {
			return r, err
		}
		var created struct {
			ChannelID string `json:"channelId"`
		}
		name := fmt.Sprintf("loadtest-%d", time.Now().Unix())
		if err := t.call(ctx, http.MethodPost, "/api/create-room", tk, map[string]string{"name": name}, &created); err != nil {
			return r, fmt.Errorf("create a room (or give -room): %w", err)
		}
		room = created.ChannelID
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = t.call(ctx, http.MethodDelete, "/api/end-room/"+room, tk, nil, nil)
		}()
	}

	// The target's own idle rate, before anyone connects: what a
	// connected browser costs is measured above it.
	baseRate, err := cpuRate(ctx, c.pid, c.idle)
	if err != nil {
		return r, err
	}

	// streams[sub][pub]
	streams := make([][]*stream, c.subscribers)
	peers := make([]*peer, c.subscribers+c.publishers)
	defer func() {
		var wg sync.WaitGroup
		for _, p := range peers {
			if p != nil {
				wg.Go(p.close)
			}
		}
		wg.Wait()
	}()
	connect := func(i int) error {
		tk, err := token(1+i, fmt.Sprintf("loadtest-sub-%d", i))
		if err != nil {
			return err
		}
		p, err := dialPeer(ctx, t, api, tk, func(_ *mediatest.Track, b []byte, at time.Time) {
			if len(b) < payloadHead || b[0] != payloadTag || int(b[offPub]) >= c.publishers {
				return
			}
			sent := time.Duration(binary.BigEndian.Uint64(b[offSent:]))
			streams[i][b[offPub]].record(binary.BigEndian.Uint64(b[offSeq:]), at.Sub(base)-sent)
		})
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		peers[i] = p
		return p.join(ctx, room)
	}
	// Eight browsers connect at a time.
	sem := make(chan struct{}, 8)
	var gwg sync.WaitGroup
	var gmu sync.Mutex
	var gerr error
	for i := range c.subscribers {
		streams[i] = make([]*stream, c.publishers)
		for j := range streams[i] {
			streams[i][j] = &stream{}
		}
		sem <- struct{}{}
		gwg.Go(func() {
			defer func() { <-sem }()
			if err := connect(i); err != nil {
				gmu.Lock()
				gerr = errors.Join(gerr, err)
				gmu.Unlock()
			}
		})
	}
	gwg.Wait()
	if gerr != nil {
		return r, gerr
	}
	pubs := make([]*publisher, c.publishers)
	for j := range pubs {
		tk, err := token(1+c.subscribers+j, fmt.Sprintf("loadtest-pub-%d", j))
		if err != nil {
			return r, err
		}
		p, err := dialPeer(ctx, t, api, tk, nil)
		if err != nil {
			return r, fmt.Errorf("publisher %d: %w", j, err)
		}
		peers[c.subscribers+j] = p
		if err := p.join(ctx, room); err != nil {
			return r, fmt.Errorf("publisher %d: %w", j, err)
		}
		track, err := webrtc.NewTrackLocalStaticRTP(pc.codec, fmt.Sprintf("load-%d", j), fmt.Sprintf("loadtest-%d", j))
		if err != nil {
			return r, err
		}
		if _, err := p.PC().AddTrack(track); err != nil {
			return r, err
		}
		p.Renegotiate()
		pubs[j] = &publisher{idx: j, track: track}
	}

	// The publishers send from here to the end; only the measured window
	// counts.
	sending := make(chan bool, 1)
	sending <- true
	sendErr := make(chan error, 1)
	sctx, stopSend := context.WithCancel(ctx)
	var sendWG sync.WaitGroup
	defer func() { stopSend(); sendWG.Wait() }()
	for _, p := range pubs {
		sendWG.Go(func() {
			buf := make([]byte, pc.size)
			var seq uint16
			var ts uint32
			tick := time.NewTicker(pc.interval)
			defer tick.Stop()
			on := true
			for {
				select {
				case <-sctx.Done():
					return
				case <-tick.C:
				}
				select {
				case on = <-sending:
					sending <- on // every publisher sees it
				default:
				}
				if !on {
					continue
				}
				if err := p.sendBurst(pc, base, &seq, &ts, buf); err != nil {
					select {
					case sendErr <- err:
					default:
					}
					return
				}
			}
		})
	}
	setSending := func(on bool) { <-sending; sending <- on }

	// Warm up until every subscriber receives every publisher.
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	for {
		all := true
		for _, ss := range streams {
			for _, s := range ss {
				s.mu.Lock()
				all = all && s.any
				s.mu.Unlock()
			}
		}
		if all {
			break
		}
		select {
		case err := <-sendErr:
			return r, err
		case <-wctx.Done():
			return r, errors.New("warm-up: not every subscriber receives every publisher after 120 s")
		case <-time.After(100 * time.Millisecond):
		}
	}

	// Idle: everyone connected, nobody sends.
	setSending(false)
	if err := sleep(ctx, time.Second); err != nil {
		return r, err
	}
	r.browsers = c.subscribers + c.publishers
	idleRate, err := cpuRate(ctx, c.pid, c.idle)
	if err != nil {
		return r, err
	}
	r.idleCPU = time.Duration(max(0, idleRate-baseRate) * float64(time.Second))

	// Measured: the window of packet numbers each publisher sends within
	// the duration, plus a second for the last of them to arrive.
	froms := make([]uint64, len(pubs))
	for j, p := range pubs {
		froms[j] = p.sent()
	}
	perPub := int(c.duration/pc.interval+2) * pc.burst
	for _, ss := range streams {
		for j, s := range ss {
			s.mu.Lock()
			s.from, s.to, s.seen, s.last = froms[j], froms[j]+uint64(perPub), make([]bool, perPub), froms[j]
			s.mu.Unlock()
		}
	}
	cpu0, err := procCPU(c.pid)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	setSending(true)
	if err := sleep(ctx, c.duration); err != nil {
		return r, err
	}
	setSending(false)
	sentTo := make([]uint64, len(pubs))
	for j, p := range pubs {
		sentTo[j] = p.sent()
	}
	if err := sleep(ctx, time.Second); err != nil {
		return r, err
	}
	cpu1, err := procCPU(c.pid)
	if err != nil {
		return r, err
	}
	r.window = time.Since(t0)
	select {
	case err := <-sendErr:
		return r, err
	default:
	}
	r.busyCPU = cpu1 - cpu0 - time.Duration(idleRate*float64(r.window))
	var sent uint64
	for j := range pubs {
		sent += sentTo[j] - froms[j]
	}
	r.pktsPerSec = float64(sent) / c.duration.Seconds()
	for _, ss := range streams {
		for j, s := range ss {
			s.mu.Lock()
			n := sentTo[j] - froms[j]
			r.expected += int(n)
			for _, ok := range s.seen[:min(int(n), len(s.seen))] {
				if ok {
					r.got++
				}
			}
			r.dups += s.dups
			r.reorders += s.reorders
			r.lat = append(r.lat, s.lat...)
			s.mu.Unlock()
		}
	}
	return r, nil
}

// cpuRate is the CPU the process pid uses per second of wall time over d.
func cpuRate(ctx context.Context, pid int, d time.Duration) (float64, error) {
	cpu0, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := sleep(ctx, d); err != nil {
		return 0, err
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	return float64(cpu1-cpu0) / float64(time.Since(t0)), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
