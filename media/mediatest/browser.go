package mediatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// APIOptions adjust the pion API a test browser is built on.
type APIOptions struct {
	// MediaEngine is the browser's codecs and header extensions; nil:
	// pion's default codecs plus the RFC 6464 audio level, by which the
	// bridge picks the speaker it forwards to Discord.
	MediaEngine *webrtc.MediaEngine
	// Mux, when set, carries all the browser's ICE traffic (over a socket
	// a test can cut); nil: an ephemeral loopback port. The caller closes it.
	Mux ice.UDPMux
	// NetworkTypes are the candidates the browser gathers; nil: UDP4
	// only. TCP4 alone makes it reach the bridge over ICE-TCP (active
	// candidates dialing the bridge's passive ones).
	NetworkTypes []webrtc.NetworkType
}

// NewAPI builds a browser's pion API: loopback candidates only (UDP4
// unless o.NetworkTypes says otherwise), no mDNS, pion's default interceptors (NACK, RTCP reports, TWCC).
func NewAPI(o APIOptions) (*webrtc.API, error) {
	me := o.MediaEngine
	if me == nil {
		me = &webrtc.MediaEngine{}
		if err := me.RegisterDefaultCodecs(); err != nil {
			return nil, err
		}
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, err
		}
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	networks := o.NetworkTypes
	if networks == nil {
		networks = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	}
	se.SetNetworkTypes(networks)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if o.Mux != nil {
		se.SetICEUDPMux(o.Mux)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// Options configure a Browser.
type Options struct {
	// API builds the PeerConnection (NewAPI); required.
	API *webrtc.API
	// Send carries one message to the bridge; required.
	Send func(v map[string]any) error
	// Errorf reports a failure of the browser's own goroutines (t.Errorf);
	// nothing is reported once Close began.
	Errorf func(format string, args ...any)
	// Manual leaves the bridge's offers and answers to the test: they are
	// recorded and handed to the test on Offers, not applied. Candidates
	// are still applied once the test calls Applied.
	Manual bool
	// ReadTracks reads every received track and records its packets;
	// otherwise the test reads the tracks it gets.
	ReadTracks bool
	// OnRTP, with ReadTracks, sees every received packet instead of the
	// record.
	OnRTP func(*Track, *rtp.Packet, time.Time)
}

// Message is one message from the bridge, as received.
type Message struct {
	Type      string                   `json:"type"`
	SDP       string                   `json:"sdp"`
	Candidate *webrtc.ICECandidateInit `json:"candidate"`
	// Raw is the whole message, for the test to decode.
	Raw json.RawMessage `json:"-"`
	// At is when it arrived.
	At time.Time `json:"-"`
}

// Track is a track the browser receives.
type Track struct {
	Remote *webrtc.TrackRemote
	At     time.Time // when pion reported it
	pkts   []Packet  // guarded by the browser's mu
}

// Packet is one RTP packet a browser received, and when.
type Packet struct {
	rtp.Header
	Payload []byte
	At      time.Time
}

// Browser is a browser made of pion: the polite peer of the bridge's
// perfect negotiation (Negotiator). One goroutine owns its signaling;
// Deliver feeds it whatever transport carries the bridge's messages;
// everything but negotiation is recorded, in order, for the test to wait
// on.
type Browser struct {
	o    Options
	pc   *webrtc.PeerConnection
	neg  chan struct{} // renegotiate when stable
	in   chan struct{} // negotiation messages are queued
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	applied      chan struct{} // Manual: the test set a remote description
	offers       chan Message  // Manual: the bridge's offers and answers
	serverOffers atomic.Int64
	lastSDP      atomic.Pointer[string]

	mu     sync.Mutex
	queue  []Message // negotiation, for the loop
	msgs   []Message // everything else, in order
	tracks []*Track
	wake   chan struct{} // closed and replaced on every change
}

// NewBrowser makes a browser and starts its signaling goroutine.
func NewBrowser(o Options) (*Browser, error) {
	if o.API == nil || o.Send == nil {
		return nil, errors.New("mediatest: a Browser needs an API and a Send")
	}
	if o.Errorf == nil {
		o.Errorf = func(string, ...any) {}
	}
	pc, err := o.API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	b := &Browser{o: o, pc: pc, neg: make(chan struct{}, 1), in: make(chan struct{}, 1),
		stop: make(chan struct{}), applied: make(chan struct{}, 1), offers: make(chan Message, 16),
		wake: make(chan struct{})}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			_ = o.Send(map[string]any{"type": "candidate", "candidate": c.ToJSON()})
		}
	})
	pc.OnTrack(b.onTrack)
	if !o.Manual {
		pc.OnNegotiationNeeded(b.Renegotiate)
	}
	b.wg.Add(1)
	go b.loop()
	return b, nil
}

// PC is the browser's PeerConnection.
func (b *Browser) PC() *webrtc.PeerConnection { return b.pc }

// Renegotiate makes the browser offer once signaling is stable.
func (b *Browser) Renegotiate() { kick(b.neg) }

// Applied tells a Manual browser the test set a remote description, so
// candidates held for it are added.
func (b *Browser) Applied() { kick(b.applied) }

// Offers are the bridge's offers and answers of a Manual browser.
func (b *Browser) Offers() <-chan Message { return b.offers }

// ServerOffers counts the offers received from the bridge.
func (b *Browser) ServerOffers() int64 { return b.serverOffers.Load() }

// LastSDP is the last offer or answer received from the bridge.
func (b *Browser) LastSDP() string {
	if p := b.lastSDP.Load(); p != nil {
		return *p
	}
	return ""
}

// Deliver hands the browser one message from the bridge. It never blocks.
func (b *Browser) Deliver(raw []byte) {
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		b.errorf("bad message %s: %v", raw, err)
		return
	}
	m.Raw, m.At = append(json.RawMessage(nil), raw...), time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch m.Type {
	case "offer", "answer", "candidate":
		b.queue = append(b.queue, m)
		kick(b.in)
	default:
		b.msgs = append(b.msgs, m)
		b.changedLocked()
	}
}

// errorf reports a failure unless the browser is closing.
// closedUnder reports whether err only says that the peer connection was
// closed while a message for it was handled: a teardown race, not a
// fault of the bridge.
func (b *Browser) closedUnder(err error) bool {
	return errors.Is(err, webrtc.ErrConnectionClosed) || b.pc.ConnectionState() == webrtc.PeerConnectionStateClosed
}

func (b *Browser) errorf(format string, args ...any) {
	select {
	case <-b.stop:
	default:
		b.o.Errorf(format, args...)
	}
}

// changedLocked wakes everyone waiting on the browser. Called with b.mu
// held.
func (b *Browser) changedLocked() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// loop owns the PeerConnection's signaling.
func (b *Browser) loop() {
	defer b.wg.Done()
	neg := NewNegotiator(b.pc, func(typ, sdp string) {
		_ = b.o.Send(map[string]any{"type": typ, "sdp": sdp})
	})
	for {
		select {
		case <-b.stop:
			return
		case <-b.applied:
			neg.Flush()
		case <-b.neg:
			if err := neg.Offer(); err != nil {
				b.errorf("%v", err)
			}
		case <-b.in:
			b.mu.Lock()
			q := b.queue
			b.queue = nil
			b.mu.Unlock()
			for _, m := range q {
				if err := b.negotiate(neg, m); err != nil && !b.closedUnder(err) {
					b.errorf("%s: %v", m.Type, err)
				}
			}
			if neg.OfferDue() {
				b.Renegotiate()
			}
		}
	}
}

// negotiate applies one offer, answer or candidate from the bridge.
func (b *Browser) negotiate(neg *Negotiator, m Message) error {
	switch m.Type {
	case "candidate":
		if m.Candidate == nil {
			return nil
		}
		return neg.OnCandidate(*m.Candidate)
	case "offer":
		b.serverOffers.Add(1)
	}
	sdp := m.SDP
	b.lastSDP.Store(&sdp)
	switch {
	case b.o.Manual:
		select {
		case b.offers <- m:
		case <-b.stop:
		}
		return nil
	case m.Type == "offer":
		return neg.OnOffer(m.SDP)
	default:
		return neg.OnAnswer(m.SDP)
	}
}

// onTrack records a received track and, with ReadTracks, reads it.
func (b *Browser) onTrack(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	rt := &Track{Remote: remote, At: time.Now()}
	b.mu.Lock()
	b.tracks = append(b.tracks, rt)
	b.changedLocked()
	b.mu.Unlock()
	if !b.o.ReadTracks {
		return
	}
	b.Go(func() {
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			now := time.Now()
			if b.o.OnRTP != nil {
				b.o.OnRTP(rt, pkt, now)
				continue
			}
			b.mu.Lock()
			rt.pkts = append(rt.pkts, Packet{Header: pkt.Header, Payload: pkt.Payload, At: now})
			b.changedLocked()
			b.mu.Unlock()
		}
	})
}

// Go runs fn on a goroutine Close waits for; fn ends when Done is closed.
func (b *Browser) Go(fn func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

// Done is closed when Close begins.
func (b *Browser) Done() <-chan struct{} { return b.stop }

// Close closes the PeerConnection and waits for every goroutine of the
// browser. It is idempotent.
func (b *Browser) Close() {
	b.once.Do(func() {
		close(b.stop)
		_ = b.pc.Close()
		b.wg.Wait()
	})
}

// WaitFor waits until cond holds; cond is called without the browser's
// lock (it may call Messages, Tracks, Packets) each time something was
// received.
func (b *Browser) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		b.mu.Lock()
		wake := b.wake
		b.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Mark is the index of the next message to be received.
func (b *Browser) Mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

// Messages returns the messages from index from on.
func (b *Browser) Messages(from int) []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.msgs[min(from, len(b.msgs)):]...)
}

// WaitMessage returns the first message from index from on that matches,
// and its index.
func (b *Browser) WaitMessage(ctx context.Context, from int, match func(Message) bool) (Message, int, error) {
	var found Message
	at := -1
	err := b.WaitFor(ctx, func() bool {
		for i, m := range b.Messages(from) {
			if match(m) {
				found, at = m, from+i
				return true
			}
		}
		return false
	})
	return found, at, err
}

// Tracks returns the received tracks from index from on.
func (b *Browser) Tracks(from int) []*Track {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Track(nil), b.tracks[min(from, len(b.tracks)):]...)
}

// WaitTrack returns the first received track from index from on that
// matches, and its index.
func (b *Browser) WaitTrack(ctx context.Context, from int, match func(*Track) bool) (*Track, int, error) {
	var found *Track
	at := -1
	err := b.WaitFor(ctx, func() bool {
		for i, t := range b.Tracks(from) {
			if match(t) {
				found, at = t, from+i
				return true
			}
		}
		return false
	})
	return found, at, err
}

// Packets returns the packets recorded on t from index from on.
func (b *Browser) Packets(t *Track, from int) []Packet {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Packet(nil), t.pkts[min(from, len(t.pkts)):]...)
}

// WaitPackets waits until t recorded at least n packets.
func (b *Browser) WaitPackets(ctx context.Context, t *Track, n int) error {
	err := b.WaitFor(ctx, func() bool { return len(b.Packets(t, 0)) >= n })
	if err != nil {
		return fmt.Errorf("%d packets of %s: %w", n, t.Remote.ID(), err)
	}
	return nil
}

// kick signals c without blocking.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// PublishOpus adds a microphone (PublishOpus) in stream streamID and,
// unless Manual, renegotiates.
func (b *Browser) PublishOpus(streamID string, frames [][]byte, level uint8) (*Mic, error) {
	mic, err := PublishOpus(b.pc, streamID, frames, level, b.stop, &b.wg)
	if err == nil && !b.o.Manual {
		b.Renegotiate()
	}
	return mic, err
}

// PublishVP8 adds a camera (PublishVP8) in stream streamID and, unless
// Manual, renegotiates.
func (b *Browser) PublishVP8(streamID string, clip [][]byte, o CameraOptions) (*Camera, error) {
	cam, err := PublishVP8(b.pc, streamID, clip, o, b.stop, &b.wg)
	if err == nil && !b.o.Manual {
		b.Renegotiate()
	}
	return cam, err
}
