package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/internal/audiotest"
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
	Discord      string                    `json:"discord"`     // in "status"
	Status       string                    `json:"message"`     // in "status": the words
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
type recvPacket = mediatest.Packet

// recvTrack is a track a browser receives; its packets are recorded unless
// the browser has an RTP hook.
type recvTrack = mediatest.Track

// e2eBrowser is a mediatest.Browser signaling over the bridge's /api/ws:
// a reader goroutine feeds it from the socket.
type e2eBrowser struct {
	*mediatest.Browser
	t    testing.TB
	name string
	ws   *websocket.Conn
	pc   *webrtc.PeerConnection
	wmu  sync.Mutex    // serializes socket writes
	read chan struct{} // closed when the reader ends
	once sync.Once
}

// browserOptions adjust a pion browser.
type browserOptions struct {
	// onRTP, when set, sees every received packet instead of the record.
	onRTP func(*recvTrack, *rtp.Packet, time.Time)
	// guilds, when set, is the token's guilds claim.
	guilds []string
}

// newE2EBrowser signs in as name over /api/ws and prepares a PeerConnection
// that gathers loopback UDP candidates only.
func newE2EBrowser(t testing.TB, ta *testApp, name string, o browserOptions) *e2eBrowser {
	t.Helper()
	token := ta.devTokenFor(t, name, o.guilds)
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

	api, err := mediatest.NewAPI(mediatest.APIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := &e2eBrowser{t: t, name: name, ws: ws, read: make(chan struct{})}
	mb, err := mediatest.NewBrowser(mediatest.Options{
		API:        api,
		Send:       func(v map[string]any) error { return b.send(v) },
		Errorf:     func(format string, args ...any) { t.Errorf("browser "+name+": "+format, args...) },
		ReadTracks: true,
		OnRTP:      o.onRTP,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Browser, b.pc = mb, mb.PC()
	go func() {
		defer close(b.read)
		for {
			_, raw, err := ws.ReadMessage()
			if err != nil {
				return
			}
			mb.Deliver(raw)
		}
	}()
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

// waitFor waits until cond holds, looking again at every message and
// packet the browser receives.
func (b *e2eBrowser) waitFor(ctx context.Context, what string, cond func() bool) {
	b.t.Helper()
	if err := b.WaitFor(ctx, cond); err != nil {
		b.t.Fatalf("browser %s: timed out waiting for %s", b.name, what)
	}
}

// hangUp closes the socket without "leave", as a vanished browser would.
func (b *e2eBrowser) hangUp() { _ = b.ws.Close() }

// close hangs up, closes the PeerConnection and waits for every goroutine
// of the browser.
func (b *e2eBrowser) close() {
	b.once.Do(func() {
		_ = b.ws.Close()
		<-b.read
		b.Close()
	})
}

// decode turns a recorded message into a serverMessage.
func (b *e2eBrowser) decode(m mediatest.Message) serverMessage {
	var sm serverMessage
	if err := json.Unmarshal(m.Raw, &sm); err != nil {
		b.t.Errorf("browser %s: bad message %s: %v", b.name, m.Raw, err)
	}
	sm.at = m.At
	return sm
}

// mark is the index of the next message to be received.
func (b *e2eBrowser) mark() int { return b.Mark() }

// waitMessage returns the first message from index from on that matches.
func (b *e2eBrowser) waitMessage(ctx context.Context, from int, what string, match func(serverMessage) bool) serverMessage {
	b.t.Helper()
	m, _, err := b.WaitMessage(ctx, from, func(m mediatest.Message) bool { return match(b.decode(m)) })
	if err != nil {
		b.t.Fatalf("browser %s: timed out waiting for %s", b.name, what)
	}
	return b.decode(m)
}

// messages returns the messages from index from on.
func (b *e2eBrowser) messages(from int) []serverMessage {
	var out []serverMessage
	for _, m := range b.Messages(from) {
		out = append(out, b.decode(m))
	}
	return out
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
	rt, _, err := b.WaitTrack(ctx, 0, func(rt *recvTrack) bool {
		return rt.Remote.StreamID() == streamID && rt.Remote.Kind() == kind
	})
	if err != nil {
		b.t.Fatalf("browser %s: timed out waiting for %s track of %s", b.name, kind, streamID)
	}
	return rt
}

// packets returns the packets recorded on rt from index from on.
func (b *e2eBrowser) packets(rt *recvTrack, from int) []recvPacket { return b.Packets(rt, from) }

// waitPackets waits until rt has recorded at least n packets.
func (b *e2eBrowser) waitPackets(ctx context.Context, rt *recvTrack, n int) {
	b.t.Helper()
	if err := b.WaitPackets(ctx, rt, n); err != nil {
		b.t.Fatalf("browser %s: %v", b.name, err)
	}
}

// publishOpus adds a microphone (mediatest.PublishOpus) that loops frames
// with the RFC 6464 audio level the test sets, and negotiates it.
func (b *e2eBrowser) publishOpus(frames [][]byte, level uint8) *mediatest.Mic {
	b.t.Helper()
	mic, err := b.PublishOpus("mic-"+b.name, frames, level)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() {
		if err := mic.Err(); err != nil {
			b.t.Error(err)
		}
	})
	return mic
}

// publishVP8 adds a camera (mediatest.PublishVP8) that sends the sample at
// 15 fps until the browser closes and jumps to the next keyframe when
// asked; after one pass it leaves out the sample's own keyframes, so a
// keyframe after the first pass is always the answer to a keyframe
// request.
func (b *e2eBrowser) publishVP8(frames []voiceemu.VideoFrame) *mediatest.Camera {
	b.t.Helper()
	clip := make([][]byte, len(frames))
	for i, f := range frames {
		clip[i] = f.Data
	}
	cam, err := b.PublishVP8("cam-"+b.name, clip, mediatest.CameraOptions{KeyframesOnRequestOnly: true})
	if err != nil {
		b.t.Fatal(err)
	}
	return cam
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
		payload, err := d.Unmarshal(p.Payload)
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
			out = append(out, vp8Frame{data: cur, keyframe: cur[0]&1 == 0, at: p.At, ts: p.Timestamp})
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
		out[i] = p.Payload
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
	playTone(t, member, audiotest.Tone(t, 440))

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
		if tr.Remote.ID() != "discord-audio-"+uid {
			t.Fatalf("browser %s: track %q, want discord-audio-%s", b.name, tr.Remote.ID(), uid)
		}
		b.waitPackets(ctx, tr, 50) // one second
		pkts := b.packets(tr, 0)
		checkRTPContinuity(t, "browser "+b.name, pkts)
		audiotest.RequireTone(t, "browser "+b.name, payloads(pkts), 440)

		// The call is end-to-end encrypted (DAVE): the browser shows the
		// privacy code the Discord member's client shows.
		b.waitFor(ctx, "the member's privacy code", func() bool {
			code := ""
			for _, m := range b.messages(0) {
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
	// The loudest speaker forwarded untranscoded: the mix is off.
	tune := mediaTuning()
	base := tune.media
	tune.media = func(o *bridgemedia.Options) {
		base(o)
		o.Mix = bridgemedia.MixOptions{}
	}
	ta, ctx := startMediaE2E(t, tune)
	room := newVoiceRoom(t, ctx, ta, "tone-room")
	listener := addDiscordMember(t, ta, "460000000000000001", "Listener", room)
	high, low := audiotest.Tone(t, 1000), audiotest.Tone(t, 440)

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
	audiotest.RequireTone(t, "the Discord member (ann speaking)", heardTone(0, 0), 1000)

	swap := len(listener.ReceivedOpus(bot))
	annMic.SetLevel(silentLevel)
	benMic.SetLevel(loudLevel)
	waitUntil(t, ctx, "the member hears one second of 440 Hz from the bot", func() bool { return len(heardTone(1, swap)) >= 50 })
	audiotest.RequireTone(t, "the Discord member (ben speaking)", heardTone(1, swap), 440)

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
		f := assembleVP8(ben.packets(benTrack, 0))
		return len(f) >= 30 && hasKeyframe(f)
	})
	frames := assembleVP8(ben.packets(benTrack, 0))
	checkFrames("ben", frames)
	if !hasKeyframe(frames) {
		t.Fatalf("ben got %d frames and no keyframe", len(frames))
	}

	select {
	case <-cam.FirstPass():
	case <-ctx.Done():
		t.Fatal("the camera did not send the sample once")
	}
	plis := cam.Requests()
	cat := newE2EBrowser(t, ta, "cat", browserOptions{})
	joinedAt := time.Now()
	cat.join(ctx, room)
	// Where the video stood when cat had joined, by the publisher's own
	// clock: the RTP timestamp of the last frame ben has (ben hears the
	// camera on loopback, a few milliseconds behind it).
	benNow := assembleVP8(ben.packets(benTrack, 0))
	joinTS := benNow[len(benNow)-1].ts
	catTrack := cat.track(ctx, "browser-"+annID, webrtc.RTPCodecTypeVideo)
	cat.waitFor(ctx, "a keyframe", func() bool { return hasKeyframe(assembleVP8(cat.packets(catTrack, 0))) })
	catFrames := assembleVP8(cat.packets(catTrack, 0))
	checkFrames("cat", catFrames)
	if cam.Requests() == plis {
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
	ben.waitFor(ctx, "more frames", func() bool { return len(assembleVP8(ben.packets(benTrack, n))) >= 5 })
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
