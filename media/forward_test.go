package media

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func TestOpusRewriter(t *testing.T) {
	tests := []struct {
		name       string
		start      uint16
		startTS    uint32
		missing    []int
		wantSeq    []uint16
		wantTS     []uint32
		wantMarker []bool
	}{
		{"contiguous", 10, 1000, []int{0, 0, 0}, []uint16{10, 11, 12}, []uint32{1000, 1960, 2920}, []bool{true, false, false}},
		{"gap of two frames", 10, 1000, []int{0, 2, 0}, []uint16{10, 11, 12}, []uint32{1000, 3880, 4840}, []bool{true, true, false}},
		{"missing before the first frame is ignored", 5, 0, []int{7, 0}, []uint16{5, 6}, []uint32{0, 960}, []bool{true, false}},
		{"negative missing counts as none", 0, 0, []int{0, -3}, []uint16{0, 1}, []uint32{0, 960}, []bool{true, false}},
		{"wraparound", 65535, 4294967000, []int{0, 0}, []uint16{65535, 0}, []uint32{4294967000, 664}, []bool{true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := opusRewriter{seq: tc.start, ts: tc.startTS}
			for i, m := range tc.missing {
				seq, ts, marker := r.next(m)
				if seq != tc.wantSeq[i] || ts != tc.wantTS[i] || marker != tc.wantMarker[i] {
					t.Fatalf("frame %d: seq %d ts %d marker %v, want %d %d %v", i, seq, ts, marker,
						tc.wantSeq[i], tc.wantTS[i], tc.wantMarker[i])
				}
			}
		})
	}
}

// blockingWriter stands for a browser that stopped reading.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) WriteRTP(*rtp.Packet) error { <-w.release; return nil }

// countingWriter counts packets and closes done at want.
type countingWriter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (w *countingWriter) WriteRTP(*rtp.Packet) error {
	if w.n.Add(1) == w.want {
		close(w.done)
	}
	return nil
}

func TestSlowBrowserDoesNotStallOthers(t *testing.T) {
	stop := make(chan struct{})
	release := make(chan struct{})
	slowQ, fastQ := newSendQueue(8), newSendQueue(1024)
	const n = 500
	fast := &countingWriter{want: n, done: make(chan struct{})}
	d := newDiscordSource("400", 0, 0, nil)
	d.fan.add(&downTrack{key: "slow", sink: blockingWriter{release}, q: slowQ})
	d.fan.add(&downTrack{key: "fast", sink: fast, q: fastQ})
	var wg sync.WaitGroup
	for _, q := range []*sendQueue{slowQ, fastQ} {
		wg.Add(1)
		go func(q *sendQueue) { defer wg.Done(); q.run(stop) }(q)
	}
	dropped := 0
	for i := 0; i < n; i++ {
		dropped += d.forward([]byte{0xf8, 0xff, 0xfe}, 0, time.Time{}, time.Now())
	}
	select {
	case <-fast.done:
	case <-time.After(waitLong):
		t.Fatalf("fast browser got %d of %d packets", fast.n.Load(), n)
	}
	if dropped == 0 || slowQ.dropped.Load() != uint64(dropped) || fastQ.dropped.Load() != 0 {
		t.Fatalf("dropped %d (slow %d, fast %d): only the slow queue should drop", dropped, slowQ.dropped.Load(), fastQ.dropped.Load())
	}
	close(release)
	close(stop)
	wg.Wait()
}

func TestFanoutAddRemove(t *testing.T) {
	var f fanout
	a, b := &downTrack{key: "a"}, &downTrack{key: "b"}
	f.add(a)
	f.add(b)
	if !f.remove(a) || f.remove(a) {
		t.Fatal("remove should report presence exactly once")
	}
	if l := f.list(); len(l) != 1 || l[0] != b {
		t.Fatalf("list %v, want [b]", l)
	}
}

func TestErrorCodes(t *testing.T) {
	for _, e := range errorCodes {
		wrapped := errors.Join(errors.New("context"), e.err)
		if ErrorCode(wrapped) != e.code {
			t.Fatalf("%v: code %s, want %s", e.err, ErrorCode(wrapped), e.code)
		}
	}
	if ErrorCode(errors.New("other")) != "internal" {
		t.Fatal("unknown errors must map to internal")
	}
}

func TestNewManagerValidates(t *testing.T) {
	cases := []Options{
		{GuildID: testGuild},
		{Joiner: newFakeJoiner(), GuildID: "guild"},
		{Joiner: newFakeJoiner(), GuildID: testGuild, Grace: -time.Second},
		{Joiner: newFakeJoiner(), GuildID: testGuild, ICEUDPListen: "not-an-address"},
	}
	for i, o := range cases {
		if _, err := NewManager(o); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("case %d: err %v, want ErrInvalidOptions", i, err)
		}
	}
}

// FuzzClientMessage feeds arbitrary bytes to the signaling decoder: it must
// return a message or an error, never panic.
func FuzzClientMessage(f *testing.F) {
	f.Add("join", []byte(`{"type":"join","roomId":"300"}`))
	f.Add("offer", []byte(`{"type":"offer","sdp":"v=0\r\n"}`))
	f.Add("candidate", []byte(`{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}}`))
	f.Add("mute", []byte(`{"muted":true}`))
	f.Fuzz(func(t *testing.T, typ string, raw []byte) {
		m, err := decodeClientMessage(typ, json.RawMessage(raw))
		if err == nil {
			_ = m.validate()
		}
	})
}

// BenchmarkDiscordToBrowsers measures one Discord Opus frame through the
// rewrite and fanout into every browser's queue and out of its writer
// goroutine (into an unbound TrackLocalStaticRTP), waiting until every
// browser's copy is written. Reports per-delivery latency p50/p99.
func BenchmarkDiscordToBrowsers(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			d := newDiscordSource("400", 0, 0, nil)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var remaining atomic.Int64
			done := make(chan struct{}, 1)
			lat := make([][]time.Duration, n)
			for i := 0; i < n; i++ {
				local, err := webrtc.NewTrackLocalStaticRTP(opusCapability, "a", "s")
				if err != nil {
					b.Fatal(err)
				}
				q := newSendQueue(sendQueueLen)
				i := i
				lat[i] = make([]time.Duration, 0, b.N)
				q.onWrite = func(p outPacket) {
					lat[i] = append(lat[i], time.Since(p.at))
					if remaining.Add(-1) == 0 {
						done <- struct{}{}
					}
				}
				d.fan.add(&downTrack{key: "a", local: local, sink: local, q: q})
				wg.Add(1)
				go func() { defer wg.Done(); q.run(stop) }()
			}
			payload := make([]byte, 120)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				remaining.Store(int64(n))
				if d.forward(payload, 0, time.Time{}, time.Now()) != 0 {
					b.Fatal("a queue was full")
				}
				<-done
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2])/1e3, "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100])/1e3, "p99-µs")
			}
		})
	}
}

// seqRecorder records the sequence numbers written to it; fail makes every
// write fail, as on a closing connection.
type seqRecorder struct {
	seqs []uint16
	fail bool
}

func (w *seqRecorder) WriteRTP(p *rtp.Packet) error {
	if w.fail {
		return errors.New("closed")
	}
	w.seqs = append(w.seqs, p.SequenceNumber)
	return nil
}

// With inline queues the forwarding goroutine writes every packet to
// every subscriber itself, once and in order, and a subscriber whose
// writes fail costs the others nothing.
func TestInlineFanoutWritesEveryPacketOnceInOrder(t *testing.T) {
	const n = 300
	d := newDiscordSource("400", 65500, 0, nil) // wraps around
	subs := []*seqRecorder{{}, {fail: true}, {}}
	for i, w := range subs {
		d.fan.add(&downTrack{key: strconv.Itoa(i), sink: w, q: newInlineSendQueue()})
	}
	for range n {
		if dropped := d.forward([]byte{0xf8, 0xff, 0xfe}, 0, time.Time{}, time.Now()); dropped != 0 {
			t.Fatalf("an inline subscriber dropped %d", dropped)
		}
	}
	for i, w := range subs {
		if w.fail {
			continue
		}
		if len(w.seqs) != n {
			t.Fatalf("subscriber %d got %d packets, want %d", i, len(w.seqs), n)
		}
		for k, seq := range w.seqs {
			if seq != uint16(65500+k) {
				t.Fatalf("subscriber %d: packet %d has seq %d, want %d", i, k, seq, uint16(65500+k))
			}
		}
	}
}

// BenchmarkDiscordToBrowsersInline is one Discord Opus frame rewritten and
// written by the forwarding goroutine to every browser (inline queues,
// as with UDP candidates only), up to the track's WriteRTP; allocs/op
// must be 0. ns/op divided by the browsers is the bridge's own share per
// forwarded packet, pion's SRTP and the socket excluded.
func BenchmarkDiscordToBrowsersInline(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			d := newDiscordSource("400", 0, 0, func(time.Duration) {})
			w := &countingWriter{want: -1}
			for range n {
				d.fan.add(&downTrack{key: "a", sink: w, q: newInlineSendQueue()})
			}
			payload := make([]byte, 120)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				d.forward(payload, 0, time.Time{}, time.Now())
			}
			b.StopTimer()
			if got := w.n.Load(); got != int64(b.N*n) {
				b.Fatalf("%d writes, want %d", got, b.N*n)
			}
		})
	}
}

// A subscriber switched between its queue and inline writes while packets
// flow gets every packet once and in order: the queue is written out
// before inline writes begin, and a packet the sender reuses (inline
// only) is copied for a queue that took over since. The race detector
// checks that the writer and the forwarder never write the track at once.
func TestSendQueueSwitchKeepsEveryPacketInOrder(t *testing.T) {
	stop := make(chan struct{})
	q := newSendQueue(1 << 16) // room for everything: nothing is dropped
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); q.run(stop) }()
	defer func() { close(stop); wg.Wait() }()

	d := newDiscordSource("400", 65000, 0, nil) // wraps around
	w := &seqRecorder{}
	d.fan.add(&downTrack{key: "a", sink: w, q: q})
	sent := 0
	forward := func() {
		if dropped := d.forward([]byte{0xf8, byte(sent)}, 0, time.Time{}, time.Now()); dropped != 0 {
			t.Fatalf("packet %d dropped", sent)
		}
		sent++
	}
	deadline := time.After(waitLong)
	for phase := range 10 {
		inline := phase%2 == 1
		q.setInline(inline)
		// Packets keep coming while the writer drains the queue.
		for q.inline() != inline {
			select {
			case <-deadline:
				t.Fatalf("phase %d: the queue did not go inline", phase)
			default:
			}
			forward()
		}
		for range 100 {
			forward()
		}
	}
	// Inline again once the writer wrote what is left.
	q.setInline(true)
	for !q.inline() {
		select {
		case <-deadline:
			t.Fatal("the queue did not go inline")
		case <-time.After(time.Millisecond):
		}
	}
	if len(w.seqs) != sent {
		t.Fatalf("got %d packets, want %d", len(w.seqs), sent)
	}
	for k, seq := range w.seqs {
		if seq != uint16(65000+k) {
			t.Fatalf("packet %d has seq %d, want %d", k, seq, uint16(65000+k))
		}
	}
}

// A queued subscriber whose writes block costs an inline subscriber of the
// same source nothing: the forwarder never waits for it, and only the
// blocked one drops.
func TestBlockedQueuedSubscriberCostsInlineNothing(t *testing.T) {
	const n = 1000
	stop, release := make(chan struct{}), make(chan struct{})
	slowQ := newSendQueue(8)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); slowQ.run(stop) }()
	defer func() { close(release); close(stop); wg.Wait() }()

	fastQ := newSendQueue(8)
	fastQ.setInline(true)
	fastQ.tryInline() // no writer: make the switch it would make
	if !fastQ.inline() {
		t.Fatal("an empty queue did not go inline")
	}
	d := newDiscordSource("400", 0, 0, nil)
	fast := &seqRecorder{}
	d.fan.add(&downTrack{key: "slow", sink: blockingWriter{release}, q: slowQ})
	d.fan.add(&downTrack{key: "fast", sink: fast, q: fastQ})
	dropped := 0
	for range n {
		dropped += d.forward([]byte{0xf8}, 0, time.Time{}, time.Now())
	}
	if dropped == 0 || slowQ.dropped.Load() != uint64(dropped) || fastQ.dropped.Load() != 0 {
		t.Fatalf("dropped %d (slow %d, fast %d), want the blocked queue's only", dropped, slowQ.dropped.Load(), fastQ.dropped.Load())
	}
	if len(fast.seqs) != n {
		t.Fatalf("the inline subscriber got %d packets, want %d", len(fast.seqs), n)
	}
	for k, seq := range fast.seqs {
		if seq != uint16(k) {
			t.Fatalf("inline packet %d has seq %d", k, seq)
		}
	}
}

// A subscriber that leaves inline between inlineOnly and send gets a copy
// of the packet the sender reuses, not the packet itself.
func TestSendCopiesLentPacketForQueue(t *testing.T) {
	q := newInlineSendQueue()
	var f fanout
	f.add(&downTrack{key: "a", sink: &seqRecorder{}, q: q})
	if !f.inlineOnly() {
		t.Fatal("an inline subscriber is not inline")
	}
	q.setInline(false)
	scratch := rtp.Packet{Header: rtp.Header{SequenceNumber: 7}, Payload: []byte{1, 2}}
	if dropped := f.send(&scratch, time.Now()); dropped != 0 {
		t.Fatalf("dropped %d", dropped)
	}
	got := <-q.ch
	if got.pkt == &scratch || &got.pkt.Payload[0] == &scratch.Payload[0] {
		t.Fatal("the queue shares the packet the sender reuses")
	}
	if got.pkt.SequenceNumber != 7 || string(got.pkt.Payload) != "\x01\x02" {
		t.Fatalf("queued %+v, want a copy of the packet", got.pkt)
	}
	// Not lent: the packet itself is queued.
	own := &rtp.Packet{Header: rtp.Header{SequenceNumber: 8}}
	f.send(own, time.Now())
	if got := <-q.ch; got.pkt != own {
		t.Fatal("a packet the sender gave away was copied")
	}
}

// payloadRecorder checks that each packet written to it still carries
// the payload it was sent with (its first two bytes are its sequence
// number); gate, when set, holds each write until it is closed.
type payloadRecorder struct {
	gate  chan struct{}
	mu    sync.Mutex
	seqs  []uint16
	wrong int
}

func (w *payloadRecorder) WriteRTP(p *rtp.Packet) error {
	if w.gate != nil {
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(p.Payload) < 2 || binary.BigEndian.Uint16(p.Payload) != p.SequenceNumber {
		w.wrong++
	}
	w.seqs = append(w.seqs, p.SequenceNumber)
	return nil
}

func (w *payloadRecorder) written() (seqs []uint16, wrong int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seqs), w.wrong
}

// Queued subscribers share one pooled packet per forwarded packet: none
// goes back to the pool while a queue still holds it, so every subscriber
// writes what was sent, once and in order, and one whose queue is full
// (its writes held back) drops only its own copies. Both senders: a
// browser's read loop (the datagram copied into the pooled packet from a
// reused read buffer) and the Discord link's reader (the header rewritten
// into it).
func TestQueuedFanoutNeverReusesAHeldPacket(t *testing.T) {
	const n = 3000
	for _, from := range []string{"browser", "discord"} {
		t.Run(from, func(t *testing.T) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			defer func() { close(stop); wg.Wait() }()
			fast := []*payloadRecorder{{}, {}}
			slow := &payloadRecorder{gate: make(chan struct{})}
			d := newDiscordSource("400", 64000, 0, nil) // wraps around
			for i, w := range []*payloadRecorder{fast[0], fast[1], slow} {
				q := newSendQueue(n) // the fast ones never drop
				if w == slow {
					q = newSendQueue(8)
				}
				d.fan.add(&downTrack{key: strconv.Itoa(i), sink: w, q: q})
				wg.Add(1)
				go func() { defer wg.Done(); q.run(stop) }()
			}
			buf := make([]byte, receiveMTU) // reused, as readUp's is
			dropped := 0
			for k := range n {
				seq := uint16(64000 + k)
				if from == "discord" {
					payload := binary.BigEndian.AppendUint16(nil, seq)
					dropped += d.forward(payload, 0, time.Time{}, time.Now())
					continue
				}
				raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: opusPayloadType, SequenceNumber: seq},
					Payload: binary.BigEndian.AppendUint16(nil, seq)}).Marshal()
				if err != nil {
					t.Fatal(err)
				}
				sp := newSharedPacket()
				if err := sp.load(buf[:copy(buf, raw)]); err != nil {
					t.Fatal(err)
				}
				clear(buf)
				dropped += d.fan.sendShared(&sp.pkt, sp, time.Now())
			}
			close(slow.gate)
			waitUntilT(t, "the fast subscribers wrote everything", func() bool {
				a, _ := fast[0].written()
				b, _ := fast[1].written()
				return len(a) == n && len(b) == n
			})
			waitUntilT(t, "the held-back subscriber wrote what it kept", func() bool {
				s, _ := slow.written()
				return len(s)+dropped == n
			})
			for i, w := range []*payloadRecorder{fast[0], fast[1], slow} {
				seqs, wrong := w.written()
				if wrong != 0 {
					t.Errorf("subscriber %d wrote %d packets whose payload was not the one sent with them", i, wrong)
				}
				for k := 1; k < len(seqs); k++ {
					if int16(seqs[k]-seqs[k-1]) <= 0 {
						t.Fatalf("subscriber %d: seq %d after %d", i, seqs[k], seqs[k-1])
					}
				}
			}
			if dropped == 0 {
				t.Error("the held-back subscriber dropped nothing: its queue never filled")
			}
		})
	}
}

// waitUntilT polls cond until it holds, failing the test after 10 s.
func waitUntilT(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
