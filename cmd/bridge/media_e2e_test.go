package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator"

	"github.com/gorilla/websocket"
	"github.com/pion/interceptor"
	"github.com/pion/opus"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	bridgemedia "github.com/voicebridge/bridge/media"
	"github.com/voicebridge/bridge/media/mediatest"
)

// The end-to-end media tests: pion PeerConnections in the test process play
// the browsers. They sign in with dev auth, signal over the real /api/ws
// socket (media/signaling.go's protocol) and meet the embedded default's
// Discord emulator through the whole stack: hub, media, the voice client,
// the voice emulator's UDP relay and its simulated members.

const (
	// e2eWait bounds every wait of these tests; the waits end on events.
	e2eWait = 30 * time.Second
	// loudLevel and silentLevel are RFC 6464 audio levels (-dBov).
	loudLevel, silentLevel = 10, 127
	// opusTicks is one 20 ms Opus frame at 48 kHz.
	opusTicks = 960
)

// loopbackIP keeps ICE on loopback.
func loopbackIP(ip net.IP) bool { return ip.IsLoopback() }

// loopbackInterface keeps ICE on the loopback interface.
func loopbackInterface(name string) bool { return name == "lo" }

// mediaTuning is fastTuning with WebRTC kept on loopback and a short grace
// period for the bot's voice connection.
func mediaTuning() tuning {
	tune := fastTuning()
	tune.media = func(o *bridgemedia.Options) {
		o.IncludeLoopback = true
		o.IPFilter = loopbackIP
		o.InterfaceFilter = loopbackInterface
		o.NetworkTypes = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
		o.ICEUDPListen = "127.0.0.1:0"
		o.Grace = 300 * time.Millisecond
	}
	return tune
}

// startMediaE2E checks the test for goroutine leaks (first, so that check
// runs last), starts the app with tune and waits for the gateway; the
// context bounds the whole test.
func startMediaE2E(t *testing.T, tune tuning) (*testApp, context.Context) {
	t.Helper()
	checkLeaks(t)
	ta := startTestApp(t, tune, nil)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	t.Cleanup(cancel)
	if err := ta.gw.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return ta, ctx
}

// latencies collects media's ObserveDiscordAudio reports.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// observeDiscordAudio returns tune with media reporting to l.
func (l *latencies) observeDiscordAudio(tune tuning) tuning {
	base := tune.media
	tune.media = func(o *bridgemedia.Options) {
		if base != nil {
			base(o)
		}
		o.ObserveDiscordAudio = func(d time.Duration) {
			l.mu.Lock()
			l.d = append(l.d, d)
			l.mu.Unlock()
		}
	}
	return tune
}

// take returns what was observed since the last take.
func (l *latencies) take() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.d
	l.d = nil
	return out
}

// ---- the pion browser ----

// serverMessage is any message the bridge sends on /api/ws: signaling
// (media/signaling.go) and hub events.
type serverMessage struct {
	Type         string                   `json:"type"`
	Event        string                   `json:"event"`
	RoomID       string                   `json:"roomId"`
	Self         string                   `json:"self"`
	SDP          string                   `json:"sdp"`
	Candidate    *webrtc.ICECandidateInit `json:"candidate"`
	Error        *struct{ Code, Message string }
	Participant  *bridgemedia.Participant  `json:"participant"`
	Participants []bridgemedia.Participant `json:"participants"`
	PrivacyCode  string                    `json:"privacyCode"` // in "joined"
	Code         string                    `json:"code"`        // in "privacy"
	at           time.Time
}

// derefParticipant is *p, or the zero Participant.
func derefParticipant(p *bridgemedia.Participant) bridgemedia.Participant {
	if p == nil {
		return bridgemedia.Participant{}
	}
	return *p
}

// recvPacket is one RTP packet a browser received, and when.
type recvPacket struct {
	rtp.Header
	payload []byte
	at      time.Time
}

// recvTrack is a track a browser receives; its packets are recorded unless
// the browser has an RTP hook.
type recvTrack struct {
	remote *webrtc.TrackRemote
	pkts   []recvPacket // guarded by the browser's mu
}

// e2eBrowser is a browser made of pion/webrtc, the polite peer of the
// bridge's perfect negotiation. One goroutine owns its signaling; a reader
// feeds it from the socket; each received track has a reader.
type e2eBrowser struct {
	t    testing.TB
	name string
	ws   *websocket.Conn
	pc   *webrtc.PeerConnection
	wmu  sync.Mutex // serializes socket writes

	neg     chan struct{}      // a track was added: offer when stable
	sig     chan serverMessage // offers, answers, candidates for the loop
	onRTP   func(*recvTrack, *rtp.Packet, time.Time)
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup

	mu     sync.Mutex
	msgs   []serverMessage // everything but negotiation, in order
	tracks []*recvTrack
	wake   chan struct{} // closed and replaced on every change
}

// browserOptions adjust a pion browser.
type browserOptions struct {
	// onRTP, when set, sees every received packet instead of the record.
	onRTP func(*recvTrack, *rtp.Packet, time.Time)
}

// newE2EBrowser signs in as name over /api/ws and prepares a PeerConnection
// that gathers loopback UDP candidates only.
func newE2EBrowser(t testing.TB, ta *testApp, name string, o browserOptions) *e2eBrowser {
	t.Helper()
	token := ta.devToken(t, name)
	url := "ws" + strings.TrimPrefix(ta.base, "http") + "/api/ws"
	ws, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {ta.base}})
	if err != nil {
		t.Fatalf("browser %s: dial /api/ws: %v", name, err)
	}
	if err := ws.WriteJSON(map[string]string{"type": "auth", "token": token}); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(e2eWait))
	var ack hubEvent
	if err := ws.ReadJSON(&ack); err != nil || ack.Event != "auth.ok" {
		t.Fatalf("browser %s: auth: %+v %v", name, ack, err)
	}
	_ = ws.SetReadDeadline(time.Time{})

	var se webrtc.SettingEngine
	se.SetIPFilter(loopbackIP)
	se.SetInterfaceFilter(loopbackInterface)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	// RFC 6464: the bridge picks the speaker it forwards to Discord by it.
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &e2eBrowser{t: t, name: name, ws: ws, pc: pc, onRTP: o.onRTP,
		neg: make(chan struct{}, 1), sig: make(chan serverMessage, 64),
		stop: make(chan struct{}), wake: make(chan struct{})}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			_ = b.send(map[string]any{"type": "candidate", "candidate": c.ToJSON()})
		}
	})
	pc.OnTrack(b.onTrack)
	b.wg.Add(2)
	go b.read()
	go b.loop()
	t.Cleanup(b.close)
	return b
}

// send writes one message on the socket.
func (b *e2eBrowser) send(v any) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	_ = b.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return b.ws.WriteJSON(v)
}

// mustSend writes one message or fails the test.
func (b *e2eBrowser) mustSend(v any) {
	b.t.Helper()
	if err := b.send(v); err != nil {
		b.t.Fatalf("browser %s: send %v: %v", b.name, v, err)
	}
}

// errorf reports a failure of the browser's own goroutines while the test
// still runs.
func (b *e2eBrowser) errorf(format string, args ...any) {
	select {
	case <-b.stop:
	default:
		b.t.Errorf("browser "+b.name+": "+format, args...)
	}
}

// changedLocked wakes everyone waiting on the browser. Called with b.mu
// held.
func (b *e2eBrowser) changedLocked() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// waitFor waits until cond (called with b.mu held) holds.
func (b *e2eBrowser) waitFor(ctx context.Context, what string, cond func() bool) {
	b.t.Helper()
	for {
		b.mu.Lock()
		ok, wake := cond(), b.wake
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			b.t.Fatalf("browser %s: timed out waiting for %s", b.name, what)
		}
	}
}

// read takes messages off the socket: negotiation goes to the loop, the
// rest is recorded.
func (b *e2eBrowser) read() {
	defer b.wg.Done()
	for {
		_, raw, err := b.ws.ReadMessage()
		if err != nil {
			return
		}
		var m serverMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			b.errorf("bad message %s: %v", raw, err)
			continue
		}
		m.at = time.Now()
		switch m.Type {
		case "offer", "answer", "candidate":
			select {
			case b.sig <- m:
			case <-b.stop:
				return
			}
		default:
			b.mu.Lock()
			b.msgs = append(b.msgs, m)
			b.changedLocked()
			b.mu.Unlock()
		}
	}
}

// loop owns the PeerConnection's signaling: the polite peer of perfect
// negotiation (mediatest.Negotiator), the bridge being the impolite one.
func (b *e2eBrowser) loop() {
	defer b.wg.Done()
	neg := mediatest.NewNegotiator(b.pc, func(typ, sdp string) {
		_ = b.send(map[string]any{"type": typ, "sdp": sdp})
	})
	for {
		select {
		case <-b.stop:
			return
		case <-b.neg:
			if err := neg.Offer(); err != nil {
				b.errorf("%v", err)
			}
		case m := <-b.sig:
			switch m.Type {
			case "offer":
				if err := neg.OnOffer(m.SDP); err != nil {
					b.errorf("%v", err)
				}
			case "answer":
				if err := neg.OnAnswer(m.SDP); err != nil {
					b.errorf("%v", err)
				}
			case "candidate":
				if m.Candidate != nil {
					_ = neg.OnCandidate(*m.Candidate)
				}
			}
			if neg.OfferDue() {
				kick(b.neg)
			}
		}
	}
}

// kick signals c without blocking.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// onTrack starts a reader for a received track.
func (b *e2eBrowser) onTrack(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	rt := &recvTrack{remote: remote}
	b.mu.Lock()
	b.tracks = append(b.tracks, rt)
	b.changedLocked()
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			now := time.Now()
			if b.onRTP != nil {
				b.onRTP(rt, pkt, now)
				continue
			}
			b.mu.Lock()
			rt.pkts = append(rt.pkts, recvPacket{Header: pkt.Header, payload: pkt.Payload, at: now})
			b.changedLocked()
			b.mu.Unlock()
		}
	}()
}

// hangUp closes the socket without "leave", as a vanished browser would.
func (b *e2eBrowser) hangUp() { _ = b.ws.Close() }

// close hangs up, closes the PeerConnection and waits for every goroutine
// of the browser.
func (b *e2eBrowser) close() {
	b.stopped.Do(func() {
		close(b.stop)
		_ = b.ws.Close()
		_ = b.pc.Close()
		b.wg.Wait()
	})
}

// mark is the index of the next message to be received.
func (b *e2eBrowser) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

// waitMessage returns the first message from index from on that matches.
func (b *e2eBrowser) waitMessage(ctx context.Context, from int, what string, match func(serverMessage) bool) serverMessage {
	b.t.Helper()
	var found serverMessage
	b.waitFor(ctx, what, func() bool {
		for _, m := range b.msgs[min(from, len(b.msgs)):] {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// messages returns the messages from index from on.
func (b *e2eBrowser) messages(from int) []serverMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]serverMessage(nil), b.msgs[min(from, len(b.msgs)):]...)
}

// join joins a room and returns the browser's participant id ("self").
func (b *e2eBrowser) join(ctx context.Context, roomID string) string {
	b.t.Helper()
	from := b.mark()
	b.mustSend(map[string]string{"type": "join", "roomId": roomID})
	m := b.waitMessage(ctx, from, "joined", func(m serverMessage) bool { return m.Type == "joined" || m.Type == "error" })
	if m.Type == "error" {
		b.t.Fatalf("browser %s: join %s: %+v", b.name, roomID, m.Error)
	}
	return m.Self
}

// track waits for the track of a stream and kind.
func (b *e2eBrowser) track(ctx context.Context, streamID string, kind webrtc.RTPCodecType) *recvTrack {
	b.t.Helper()
	var found *recvTrack
	b.waitFor(ctx, kind.String()+" track of "+streamID, func() bool {
		for _, rt := range b.tracks {
			if rt.remote.StreamID() == streamID && rt.remote.Kind() == kind {
				found = rt
				return true
			}
		}
		return false
	})
	return found
}

// packets returns the packets recorded on rt from index from on.
func (b *e2eBrowser) packets(rt *recvTrack, from int) []recvPacket {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]recvPacket(nil), rt.pkts[min(from, len(rt.pkts)):]...)
}

// waitPackets waits until rt has recorded at least n packets.
func (b *e2eBrowser) waitPackets(ctx context.Context, rt *recvTrack, n int) {
	b.t.Helper()
	b.waitFor(ctx, fmt.Sprintf("%d packets of %s", n, rt.remote.ID()), func() bool { return len(rt.pkts) >= n })
}

// publishOpus adds a microphone (mediatest.PublishOpus) that loops frames
// with the RFC 6464 audio level the test sets, and negotiates it.
func (b *e2eBrowser) publishOpus(frames [][]byte, level uint8) *mediatest.Mic {
	b.t.Helper()
	mic, err := mediatest.PublishOpus(b.pc, "mic-"+b.name, frames, level, b.stop, &b.wg)
	if err != nil {
		b.t.Fatal(err)
	}
	kick(b.neg)
	b.t.Cleanup(func() {
		if err := mic.Err(); err != nil {
			b.t.Error(err)
		}
	})
	return mic
}

// vp8Publisher is a browser's camera. It sends the sample's frames at
// 15 fps and jumps to the next keyframe when asked by a picture loss
// indication; after one pass it leaves out the sample's own keyframes, as
// an encoder with a long keyframe interval would. A keyframe after the
// first pass is therefore always the answer to a PLI.
type vp8Publisher struct {
	plis      atomic.Int64
	firstPass chan struct{} // closed when the sample was sent once
}

// publishVP8 adds a camera track that sends frames until the browser closes.
func (b *e2eBrowser) publishVP8(frames []voiceemu.VideoFrame) *vp8Publisher {
	b.t.Helper()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "cam-"+b.name)
	if err != nil {
		b.t.Fatal(err)
	}
	sender, err := b.pc.AddTrack(track)
	if err != nil {
		b.t.Fatal(err)
	}
	kick(b.neg)
	p := &vp8Publisher{firstPass: make(chan struct{})}
	pli := make(chan struct{}, 1)
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pk := range pkts {
				switch pk.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					p.plis.Add(1)
					kick(pli)
				}
			}
		}
	}()
	go func() {
		defer b.wg.Done()
		tick := time.NewTicker(time.Second / 15)
		defer tick.Stop()
		i, passed := 0, false
		for {
			select {
			case <-b.stop:
				return
			case <-tick.C:
			}
			if !passed && i >= len(frames) {
				passed = true
				close(p.firstPass)
			}
			select {
			case <-pli: // a keyframe now: jump to the next one
				for !frames[i%len(frames)].Keyframe {
					i++
				}
			default:
				for passed && frames[i%len(frames)].Keyframe {
					i++
				}
			}
			f := frames[i%len(frames)]
			i++
			if err := track.WriteSample(media.Sample{Data: f.Data, Duration: time.Second / 15}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
				return
			}
		}
	}()
	return p
}

// ---- media checks ----

// vp8Frame is one VP8 frame a browser reassembled.
type vp8Frame struct {
	data     []byte
	keyframe bool
	at       time.Time
	ts       uint32 // the RTP timestamp (90 kHz), which the bridge forwards as the publisher set it
}

// assembleVP8 rebuilds whole VP8 frames from RTP packets (RFC 7741 §4: a
// frame starts at the packet with S=1 and partition index 0 and ends at the
// marker bit). A frame with a missing packet is left out.
func assembleVP8(pkts []recvPacket) []vp8Frame {
	var out []vp8Frame
	var cur []byte
	building := false
	var last uint16
	for i, p := range pkts {
		if i > 0 && p.SequenceNumber != last+1 {
			building = false
		}
		last = p.SequenceNumber
		var d codecs.VP8Packet
		payload, err := d.Unmarshal(p.payload)
		if err != nil {
			building = false
			continue
		}
		if d.S == 1 && d.PID == 0 {
			cur, building = append([]byte(nil), payload...), true
		} else if building {
			cur = append(cur, payload...)
		}
		if p.Marker && building && len(cur) > 0 {
			// RFC 6386 §9.1: bit 0 of the frame tag is 0 for a key frame.
			out = append(out, vp8Frame{data: cur, keyframe: cur[0]&1 == 0, at: p.at, ts: p.Timestamp})
			building = false
		}
	}
	return out
}

// hasKeyframe reports whether frames hold a keyframe.
func hasKeyframe(frames []vp8Frame) bool {
	for _, f := range frames {
		if f.keyframe {
			return true
		}
	}
	return false
}

// decodeMono decodes 48 kHz Opus frames to mono samples.
func decodeMono(t testing.TB, frames [][]byte) []float32 {
	t.Helper()
	dec, err := opus.NewDecoderWithOutput(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	var pcm []float32
	buf := make([]float32, 5760)
	for i, f := range frames {
		n, err := dec.DecodeToFloat32(f, buf)
		if err != nil {
			t.Fatalf("decode Opus frame %d (%d bytes): %v", i, len(f), err)
		}
		pcm = append(pcm, buf[:n]...)
	}
	return pcm
}

// dominantFrequency finds the strongest tone from 100 Hz to 2 kHz in 1 Hz
// steps (Goertzel), over mono samples at rate.
func dominantFrequency(pcm []float32, rate float64) float64 {
	best, bestPower := 0.0, 0.0
	for f := 100.0; f <= 2000; f++ {
		coeff := 2 * math.Cos(2*math.Pi*f/rate)
		var s1, s2 float64
		for _, x := range pcm {
			s0 := float64(x) + coeff*s1 - s2
			s2, s1 = s1, s0
		}
		if p := s1*s1 + s2*s2 - coeff*s1*s2; p > bestPower {
			best, bestPower = f, p
		}
	}
	return best
}

// checkTone fails unless the frames decode to want Hz within 2%.
func checkTone(t testing.TB, who string, frames [][]byte, want float64) {
	t.Helper()
	f := dominantFrequency(decodeMono(t, frames), 48000)
	if math.Abs(f-want) > want*0.02 {
		t.Fatalf("%s hears %v Hz, want %v Hz within 2%%", who, f, want)
	}
	t.Logf("%s hears %v Hz over %d frames", who, f, len(frames))
}

// checkRTPContinuity fails unless sequence numbers advance by one and
// timestamps by at least one frame from packet to packet (media/doc.go: the
// timestamp advances 960 per frame plus 960 per frame reported missing).
func checkRTPContinuity(t testing.TB, who string, pkts []recvPacket) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		a, b := pkts[i-1], pkts[i]
		if b.SequenceNumber != a.SequenceNumber+1 {
			t.Fatalf("%s: sequence number %d follows %d", who, b.SequenceNumber, a.SequenceNumber)
		}
		if d := b.Timestamp - a.Timestamp; d == 0 || d%opusTicks != 0 || d > 1<<31 {
			t.Fatalf("%s: timestamp %d follows %d", who, b.Timestamp, a.Timestamp)
		}
	}
}

// payloads returns the packets' payloads.
func payloads(pkts []recvPacket) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = p.payload
	}
	return out
}

// ---- the emulated Discord ----

// addDiscordMember puts a simulated member into a voice channel of the
// emulated guild: a guild member with a voice state, and a voice emulator
// member that sends and hears.
func addDiscordMember(t testing.TB, ta *testApp, userID, name, channelID string) *voiceemu.Member {
	t.Helper()
	ta.demo.Discord.AddMember(userID, name)
	m, err := ta.demo.Voice.AddMember(voiceemu.MemberOptions{UserID: userID, GuildID: ta.demo.Discord.Options().GuildID, ChannelID: channelID})
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.demo.Discord.SetVoiceState(userID, channelID); err != nil {
		t.Fatal(err)
	}
	return m
}

// newVoiceRoom creates a voice channel in the rooms category and waits
// until the bridge knows it as a room.
func newVoiceRoom(t testing.TB, ctx context.Context, ta *testApp, name string) string {
	t.Helper()
	c, err := ta.demo.Discord.CreateChannel(name, 2, ta.demo.Discord.Options().CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "the bridge knows room "+name, func() bool {
		for _, r := range ta.gw.Rooms() {
			if r.ChannelID == c.ID {
				return true
			}
		}
		return false
	})
	return c.ID
}

// playTone plays frames as a member, looping, until the test ends.
func playTone(t testing.TB, m *voiceemu.Member, frames [][]byte) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.PlayOpus(ctx, frames, true)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func loadOpus(t testing.TB, name string) [][]byte {
	t.Helper()
	frames, err := voiceemu.LoadOpusSample(name)
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

// ---- the tests ----

// TestMediaE2EDiscordToneReachesTwoBrowsers: a simulated Discord member in
// the Lobby plays a 440 Hz tone; through the voice emulator, the bridge's
// voice client and media, two pion browsers that joined the Lobby over
// /api/ws each get a track labeled with that member, with contiguous RTP,
// whose Opus decodes to 440 Hz, and show the call's privacy code.
func TestMediaE2EDiscordToneReachesTwoBrowsers(t *testing.T) {
	// Every Discord audio packet handed to a browser reports the time since
	// the voice client's UDP read of it.
	var lat latencies
	ta, ctx := startMediaE2E(t, lat.observeDiscordAudio(mediaTuning()))
	const uid = "450000000000000001"
	member := addDiscordMember(t, ta, uid, "Tone", ta.demo.Lobby.ID)
	playTone(t, member, loadOpus(t, "tone-440"))

	browsers := []*e2eBrowser{newE2EBrowser(t, ta, "ann", browserOptions{}), newE2EBrowser(t, ta, "ben", browserOptions{})}
	for _, b := range browsers {
		b.join(ctx, ta.demo.Lobby.ID)
	}
	for _, b := range browsers {
		// The member is in "joined" if the bridge heard it first, else in
		// a "participant" message after it.
		var p bridgemedia.Participant
		b.waitMessage(ctx, 0, "the member as a participant", func(m serverMessage) bool {
			for _, q := range append(m.Participants, derefParticipant(m.Participant)) {
				if q.UserID == uid {
					p = q
					return true
				}
			}
			return false
		})
		if p.Kind != "discord" || p.Name != "Tone" || p.ID != "discord-"+uid {
			t.Fatalf("browser %s: the member is announced as %+v, want kind discord, name Tone, id discord-%s", b.name, p, uid)
		}
		tr := b.track(ctx, "discord-"+uid, webrtc.RTPCodecTypeAudio)
		if tr.remote.ID() != "discord-audio-"+uid {
			t.Fatalf("browser %s: track %q, want discord-audio-%s", b.name, tr.remote.ID(), uid)
		}
		b.waitPackets(ctx, tr, 50) // one second
		pkts := b.packets(tr, 0)
		checkRTPContinuity(t, "browser "+b.name, pkts)
		checkTone(t, "browser "+b.name, payloads(pkts), 440)

		// The call is end-to-end encrypted (DAVE): the browser shows the
		// privacy code the Discord member's client shows.
		b.waitFor(ctx, "the member's privacy code", func() bool {
			code := ""
			for _, m := range b.msgs {
				switch m.Type {
				case "joined":
					code = m.PrivacyCode
				case "privacy":
					code = m.Code
				}
			}
			return code != "" && code == member.PrivacyCode()
		})
	}

	// The member leaves the channel: both browsers are told, and the
	// member's track goes.
	from := make([]int, len(browsers))
	for i, b := range browsers {
		from[i] = b.mark()
	}
	member.Leave()
	for i, b := range browsers {
		b.waitMessage(ctx, from[i], "the member leaving", func(m serverMessage) bool {
			return m.Type == "participant" && m.Event == "left" && m.Participant != nil && m.Participant.ID == "discord-"+uid
		})
	}

	// Each packet the browsers got was observed once written, with a
	// latency measured from a real arrival time (a frame without one
	// would measure from the zero time, centuries ago).
	received := 0
	for _, b := range browsers {
		received += len(b.packets(b.track(ctx, "discord-"+uid, webrtc.RTPCodecTypeAudio), 0))
	}
	observed := lat.take()
	if len(observed) < received {
		t.Fatalf("%d Discord audio packets observed as written, the browsers received %d", len(observed), received)
	}
	for i, d := range observed {
		if d <= 0 || d > e2eWait {
			t.Fatalf("observation %d: %v since the frame reached the bridge", i, d)
		}
	}
}

// TestMediaE2EBrowsersSpeakToDiscordInTurn: two pion browsers in a room
// publish tones, 1 kHz and 440 Hz, with swapped RFC 6464 levels; the
// simulated Discord member in that voice channel hears the loud one from
// the bot, untranscoded and in order: first only 1 kHz, then, after the
// levels swap, only 440 Hz.
func TestMediaE2EBrowsersSpeakToDiscordInTurn(t *testing.T) {
	ta, ctx := startMediaE2E(t, mediaTuning())
	room := newVoiceRoom(t, ctx, ta, "tone-room")
	listener := addDiscordMember(t, ta, "460000000000000001", "Listener", room)
	high, low := loadOpus(t, "tone-1000"), loadOpus(t, "tone-440")

	// Which tone a frame the member hears belongs to, and where in it.
	type origin struct {
		tone  int // 0: 1 kHz, 1: 440 Hz
		index int
	}
	where := map[string][]origin{}
	for tone, frames := range [][][]byte{high, low} {
		for i, f := range frames {
			where[string(f)] = append(where[string(f)], origin{tone, i})
		}
	}

	ann := newE2EBrowser(t, ta, "ann", browserOptions{})
	ben := newE2EBrowser(t, ta, "ben", browserOptions{})
	ann.join(ctx, room)
	ben.join(ctx, room)
	annMic := ann.publishOpus(high, loudLevel)
	benMic := ben.publishOpus(low, silentLevel)

	bot := ta.gw.Status().BotUserID
	heardTone := func(tone, from int) [][]byte {
		var out [][]byte
		for _, f := range listener.ReceivedOpus(bot)[from:] {
			if o := where[string(f)]; len(o) == 1 && o[0].tone == tone {
				out = append(out, f)
			}
		}
		return out
	}
	waitUntil(t, ctx, "the member hears one second of 1 kHz from the bot", func() bool { return len(heardTone(0, 0)) >= 50 })
	checkTone(t, "the Discord member (ann speaking)", heardTone(0, 0), 1000)

	swap := len(listener.ReceivedOpus(bot))
	annMic.SetLevel(silentLevel)
	benMic.SetLevel(loudLevel)
	waitUntil(t, ctx, "the member hears one second of 440 Hz from the bot", func() bool { return len(heardTone(1, swap)) >= 50 })
	checkTone(t, "the Discord member (ben speaking)", heardTone(1, swap), 440)

	// Every frame is one a browser sent, the speakers do not interleave,
	// and each speaker's frames keep their order.
	heard := listener.ReceivedOpus(bot)
	last := []int{-1, -1}
	gaps, switched := 0, false
	for i, f := range heard {
		o := where[string(f)]
		if len(o) == 0 {
			if len(f) == 3 && f[0] == 0xF8 { // Opus silence between speakers
				continue
			}
			t.Fatalf("frame %d the member heard (%d bytes) is no frame a browser sent: transcoded or damaged", i, len(f))
		}
		if len(o) > 1 {
			continue // the same bytes occur more than once in the samples
		}
		if o[0].tone == 1 {
			switched = true
		} else if switched {
			t.Fatalf("frame %d: ann's 1 kHz again after ben took over", i)
		}
		n := len([][][]byte{high, low}[o[0].tone])
		if p := last[o[0].tone]; p >= 0 {
			step := (o[0].index - p + n) % n
			if step == 0 || step > n/2 {
				t.Fatalf("frame %d: tone %d frame %d after frame %d: reordered or repeated", i, o[0].tone, o[0].index, p)
			}
			gaps += step - 1
		}
		last[o[0].tone] = o[0].index
	}
	t.Logf("the member heard %d frames from the bot; %d frames lost in order", len(heard), gaps)

	// On the wire Discord sees one stream across both speakers: one SSRC,
	// sequence numbers without a gap, timestamps that only move forward.
	hdrs := listener.ReceivedOpusRTP(bot)
	if len(hdrs) < len(heard) {
		t.Fatalf("%d RTP headers for %d frames heard", len(hdrs), len(heard))
	}
	for i := 1; i < len(hdrs); i++ {
		a, b := hdrs[i-1], hdrs[i]
		if b.SSRC != a.SSRC {
			t.Fatalf("packet %d: SSRC %d follows %d: the bot's audio is not one stream", i, b.SSRC, a.SSRC)
		}
		if b.Sequence != a.Sequence+1 {
			t.Fatalf("packet %d: sequence number %d follows %d", i, b.Sequence, a.Sequence)
		}
		if d := b.Timestamp - a.Timestamp; d == 0 || d > 1<<31 {
			t.Fatalf("packet %d: timestamp %d follows %d: not monotonic", i, b.Timestamp, a.Timestamp)
		}
	}
	t.Logf("%d packets on the wire: one SSRC, contiguous sequence numbers, rising timestamps", len(hdrs))
}

// TestMediaE2EVideoBetweenBrowsers: a pion browser publishes the VP8 test
// pattern; the other browser of the room reassembles every frame byte for
// byte; a browser that joins later gets a keyframe, which the publisher
// only sends when the bridge relays a picture loss indication.
func TestMediaE2EVideoBetweenBrowsers(t *testing.T) {
	ta, ctx := startMediaE2E(t, mediaTuning())
	room := newVoiceRoom(t, ctx, ta, "video-room")
	pattern, err := voiceemu.LoadVP8Sample("testpattern")
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]bool{}
	for _, f := range pattern {
		sent[string(f.Data)] = true
	}
	checkFrames := func(who string, frames []vp8Frame) {
		t.Helper()
		for i, f := range frames {
			if !sent[string(f.data)] {
				t.Fatalf("%s: frame %d (%d bytes, keyframe %v) is no frame the publisher sent", who, i, len(f.data), f.keyframe)
			}
		}
	}

	ann := newE2EBrowser(t, ta, "ann", browserOptions{})
	ben := newE2EBrowser(t, ta, "ben", browserOptions{})
	annID := ann.join(ctx, room)
	ben.join(ctx, room)
	cam := ann.publishVP8(pattern)

	benTrack := ben.track(ctx, "browser-"+annID, webrtc.RTPCodecTypeVideo)
	ben.waitFor(ctx, "30 whole frames and a keyframe", func() bool {
		f := assembleVP8(benTrack.pkts)
		return len(f) >= 30 && hasKeyframe(f)
	})
	frames := assembleVP8(ben.packets(benTrack, 0))
	checkFrames("ben", frames)
	if !hasKeyframe(frames) {
		t.Fatalf("ben got %d frames and no keyframe", len(frames))
	}

	select {
	case <-cam.firstPass:
	case <-ctx.Done():
		t.Fatal("the camera did not send the sample once")
	}
	plis := cam.plis.Load()
	cat := newE2EBrowser(t, ta, "cat", browserOptions{})
	joinedAt := time.Now()
	cat.join(ctx, room)
	// Where the video stood when cat had joined, by the publisher's own
	// clock: the RTP timestamp of the last frame ben has (ben hears the
	// camera on loopback, a few milliseconds behind it).
	benNow := assembleVP8(ben.packets(benTrack, 0))
	joinTS := benNow[len(benNow)-1].ts
	catTrack := cat.track(ctx, "browser-"+annID, webrtc.RTPCodecTypeVideo)
	cat.waitFor(ctx, "a keyframe", func() bool { return hasKeyframe(assembleVP8(catTrack.pkts)) })
	catFrames := assembleVP8(cat.packets(catTrack, 0))
	checkFrames("cat", catFrames)
	if cam.plis.Load() == plis {
		t.Fatal("cat got a keyframe but the publisher saw no picture loss indication")
	}
	for i, f := range catFrames {
		if !f.keyframe {
			continue
		}
		// In video time, not wall time: the keyframe is at most one
		// second of the camera's 15 fps (15 frames of 6000 ticks) after
		// the frame that was current when cat joined.
		if d := f.ts - joinTS; d > 90000 {
			t.Fatalf("cat's first keyframe is %d frames of video after its join, want at most 15 (1 s at 15 fps)", d/6000)
		}
		t.Logf("cat's first keyframe: %d frames of video (%v of wall time) after its join, %d delta frames before it",
			(f.ts-joinTS)/6000, f.at.Sub(joinedAt).Round(time.Millisecond), i)
		break
	}
	// ben keeps receiving whole frames after cat's keyframe request.
	n := len(ben.packets(benTrack, 0))
	ben.waitFor(ctx, "more frames", func() bool { return len(assembleVP8(benTrack.pkts[n:])) >= 5 })
	checkFrames("ben", assembleVP8(ben.packets(benTrack, 0)))
}

// TestMediaE2ELifecycleAndErrors: the bot joins the Lobby with the first
// browser; bad signaling is answered with an error and disturbs nothing; a
// second join by the same user replaces the first session; a browser that
// vanishes without "leave" is removed (participant.left reaches a hub
// client); the bot leaves after the grace period once the last browser
// left.
func TestMediaE2ELifecycleAndErrors(t *testing.T) {
	ta, ctx := startMediaE2E(t, mediaTuning())
	lobby := ta.demo.Lobby.ID
	bot := ta.gw.Status().BotUserID
	watcher := ta.dialHub(t, ta.devToken(t, "watcher"))
	botIn := func(channel string) bool { return ta.demo.Discord.VoiceStates()[bot] == channel }
	hasVoice := func(event, channel string) func() bool {
		return func() bool {
			for _, e := range watcher.voiceEvents(t) {
				if e == (voiceEvent{event, channel, bot}) {
					return true
				}
			}
			return false
		}
	}
	if botIn(lobby) {
		t.Fatal("the bot is in the Lobby before any browser joined")
	}

	ann := newE2EBrowser(t, ta, "ann", browserOptions{})
	ann.join(ctx, lobby)
	if err := watcher.waitFor(ctx, hasVoice("voice.joined", lobby)); err != nil {
		t.Fatalf("no voice.joined of the bot in the Lobby: %v (events %v)", err, watcher.voiceEvents(t))
	}
	if !botIn(lobby) {
		t.Fatalf("voice states %v: the bot is not in the Lobby", ta.demo.Discord.VoiceStates())
	}
	ben := newE2EBrowser(t, ta, "ben", browserOptions{})
	ben.join(ctx, lobby)
	talk := "discord-" + emulator.DemoTalkerID
	annTalk := ann.track(ctx, talk, webrtc.RTPCodecTypeAudio)
	benTalk := ben.track(ctx, talk, webrtc.RTPCodecTypeAudio)
	ben.waitPackets(ctx, benTalk, 5)

	// Bad signaling: an error to the sender, nothing else changes.
	const offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n"
	for _, c := range []struct {
		msg      map[string]any
		code     string
		mentions string
	}{
		{map[string]any{"type": "offer", "roomId": "123456789012345678", "sdp": offer}, "wrong_room", lobby},
		{map[string]any{"type": "offer", "sdp": "v=0\r\nthis is not SDP\r\n"}, "bad_sdp", "offer"},
		{map[string]any{"type": "join", "roomId": "999999999999999999"}, "unknown_room", "999999999999999999"},
		{map[string]any{"type": "join", "roomId": "lobby"}, "bad_message", "roomId"},
	} {
		if c.code == "bad_message" {
			sendInvalidOnPurpose(c.msg)
		}
		from := ann.mark()
		ann.mustSend(c.msg)
		m := ann.waitMessage(ctx, from, "an error for "+c.code, func(m serverMessage) bool { return m.Type == "error" })
		if m.Error == nil || m.Error.Code != c.code || !strings.Contains(m.Error.Message, c.mentions) {
			t.Fatalf("%v answered %+v, want code %s and a message that mentions %q", c.msg, m.Error, c.code, c.mentions)
		}
		t.Logf("%v -> %s: %s", c.msg["type"], m.Error.Code, m.Error.Message)
	}
	// Both browsers still hear the talker, and no one left.
	for _, b := range []struct {
		b  *e2eBrowser
		rt *recvTrack
	}{{ann, annTalk}, {ben, benTalk}} {
		n := len(b.b.packets(b.rt, 0))
		b.b.waitPackets(ctx, b.rt, n+25)
	}
	for _, m := range ben.messages(0) {
		if m.Type == "participant" && m.Event == "left" {
			t.Fatalf("ben was told %s left after ann's bad signaling", m.Participant.Name)
		}
	}

	// ann signs in again elsewhere: the old session is told it was
	// replaced, ben keeps hearing the talker.
	from := ann.mark()
	ann2 := newE2EBrowser(t, ta, "ann", browserOptions{})
	ann2ID := ann2.join(ctx, lobby)
	m := ann.waitMessage(ctx, from, "session_replaced", func(m serverMessage) bool { return m.Type == "error" })
	if m.Error == nil || m.Error.Code != "session_replaced" || m.Error.Message == "" {
		t.Fatalf("the replaced session got %+v, want code session_replaced", m.Error)
	}
	n := len(ben.packets(benTalk, 0))
	ben.waitPackets(ctx, benTalk, n+25)

	// ann2 vanishes without "leave".
	ann2.hangUp()
	if err := watcher.waitFor(ctx, func() bool { return watcherSawLeft(watcher, ann2ID) }); err != nil {
		t.Fatalf("no participant.left for the vanished browser %s: %v (events %v)", ann2ID, err, watcher.eventNames())
	}
	ben.waitMessage(ctx, 0, "ann2 left", func(m serverMessage) bool {
		return m.Type == "participant" && m.Event == "left" && m.Participant != nil && m.Participant.ID == ann2ID
	})
	n = len(ben.packets(benTalk, 0))
	ben.waitPackets(ctx, benTalk, n+25)
	checkRTPContinuity(t, "ben", ben.packets(benTalk, 0))
	if !botIn(lobby) || hasVoice("voice.left", lobby)() {
		t.Fatal("the bot left the Lobby while ben is still in it")
	}

	// The last browser leaves: the bot goes after the grace period.
	ben.mustSend(map[string]string{"type": "leave"})
	if err := watcher.waitFor(ctx, hasVoice("voice.left", lobby)); err != nil {
		t.Fatalf("the bot did not leave the Lobby: %v (events %v)", err, watcher.voiceEvents(t))
	}
	if botIn(lobby) {
		t.Fatalf("voice states %v: the bot is still in the Lobby", ta.demo.Discord.VoiceStates())
	}
}

// watcherSawLeft reports a participant.left event for participant id.
func watcherSawLeft(c *hubClient, id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.Event != bridgemedia.EventParticipantLeft {
			continue
		}
		var p bridgemedia.ParticipantEvent
		if json.Unmarshal(e.Payload, &p) == nil && p.Participant.ID == id {
			return true
		}
	}
	return false
}
