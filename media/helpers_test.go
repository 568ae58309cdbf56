package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/media/mediatest"
)

const (
	testGuild = "100000000000000001"
	// otherGuild is a second guild, for the tests of several guilds.
	otherGuild = "100000000000000002"
	waitLong   = 10 * time.Second
)

// loopbackOnly keeps a test's ICE on 127.0.0.1.
func loopbackOnly(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }

// ---- fake hub client ----

// fakePeer is a hub client whose sent messages land in a channel.
type fakePeer struct {
	id, user, name string
	out            chan json.RawMessage
	// deliver, when set, takes every message instead of out (a browser).
	deliver func([]byte)
}

func newFakePeer(id, user string) *fakePeer {
	return &fakePeer{id: id, user: user, name: "user " + user, out: make(chan json.RawMessage, 4096)}
}

func (p *fakePeer) ID() string     { return p.id }
func (p *fakePeer) UserID() string { return p.user }
func (p *fakePeer) Name() string   { return p.name }
func (p *fakePeer) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if p.deliver != nil {
		p.deliver(b)
		return nil
	}
	select {
	case p.out <- b:
		return nil
	default:
		return errors.New("fake peer: outbox full")
	}
}

// serverMsg is any server-to-client message, decoded loosely.
type serverMsg struct {
	Type         string                   `json:"type"`
	RoomID       string                   `json:"roomId"`
	Self         string                   `json:"self"`
	SDP          string                   `json:"sdp"`
	Candidate    *webrtc.ICECandidateInit `json:"candidate"`
	Event        string                   `json:"event"`
	Participant  Participant              `json:"participant"`
	Participants []Participant            `json:"participants"`
	Discord      string                   `json:"discord"`
	Message      string                   `json:"message"`
	Error        *errorBody               `json:"error"`
	PrivacyCode  *string                  `json:"privacyCode"`
	Code         *string                  `json:"code"`
	raw          json.RawMessage
}

// ---- fake Discord leg ----

type fakeLink struct {
	guild   string
	channel string
	frames  chan LinkEvent
	dead    chan struct{} // closed by die: the voice connection ended
	dieOnce sync.Once
	opus    chan []byte
	vp8     chan []byte
	closed  chan struct{}
	once    sync.Once
	refuseV bool
	sent    atomic.Int64
}

func newFakeLink(channel string) *fakeLink {
	return &fakeLink{channel: channel, frames: make(chan LinkEvent, 64), dead: make(chan struct{}),
		opus: make(chan []byte, 8192), vp8: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (l *fakeLink) SendOpus(f []byte) error {
	l.sent.Add(1)
	select {
	case l.opus <- f:
	default:
	}
	return nil
}

func (l *fakeLink) SendVP8(f []byte, key bool) error {
	if l.refuseV {
		return errors.New("bots cannot send video")
	}
	select {
	case l.vp8 <- f:
	default:
	}
	return nil
}

func (l *fakeLink) Receive(ctx context.Context) (LinkEvent, error) {
	select {
	case ev := <-l.frames:
		return ev, nil
	case <-l.dead:
		return nil, ErrLinkEnded
	case <-l.closed:
		return nil, ErrLinkEnded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (l *fakeLink) Close(context.Context) error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// die ends the voice connection as a failure would.
func (l *fakeLink) die() { l.dieOnce.Do(func() { close(l.dead) }) }

// send delivers a frame, a departure or a privacy code from Discord
// unless the link was closed.
func (l *fakeLink) send(f LinkEvent) bool {
	select {
	case l.frames <- f:
		return true
	case <-l.closed:
		return false
	}
}

type fakeJoiner struct {
	mu    sync.Mutex
	fail  int  // next Join calls that fail
	busy  bool // Join calls fail with ErrNoFreeBot
	joins chan *fakeLink
}

func newFakeJoiner() *fakeJoiner { return &fakeJoiner{joins: make(chan *fakeLink, 16)} }

func (j *fakeJoiner) Join(ctx context.Context, guild, channel string) (DiscordLink, error) {
	if guild != testGuild && guild != otherGuild {
		return nil, fmt.Errorf("wrong guild %s", guild)
	}
	j.mu.Lock()
	fail := j.fail > 0
	if fail {
		j.fail--
	}
	busy := j.busy
	j.mu.Unlock()
	if busy {
		return nil, fmt.Errorf("%w: every bot is in another room", ErrNoFreeBot)
	}
	if fail {
		return nil, errors.New("voice server unreachable")
	}
	l := newFakeLink(channel)
	l.guild = guild
	j.joins <- l
	return l, nil
}

// ---- manager under test ----

type events struct {
	mu   sync.Mutex
	list []string
	wake chan struct{} // closed and replaced on every event
}

func (e *events) publish(name string, payload any) {
	pe, _ := payload.(ParticipantEvent)
	e.mu.Lock()
	e.list = append(e.list, name+":"+pe.Participant.ID)
	if e.wake != nil {
		close(e.wake)
	}
	e.wake = make(chan struct{})
	e.mu.Unlock()
}

// wait waits until event name about participant id was published.
func (e *events) wait(t testing.TB, name, id string) {
	t.Helper()
	deadline := time.After(waitLong)
	for {
		e.mu.Lock()
		if e.wake == nil {
			e.wake = make(chan struct{})
		}
		wake := e.wake
		e.mu.Unlock()
		if e.has(name, id) {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no %s event for %s within %s", name, id, waitLong)
		}
	}
}

func (e *events) has(name, id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.list {
		if s == name+":"+id {
			return true
		}
	}
	return false
}

func newTestManager(t testing.TB, j *fakeJoiner, mod func(*Options)) (*Manager, *events) {
	t.Helper()
	ev := &events{}
	opts := Options{
		Joiner:          j,
		GuildID:         testGuild,
		ICEUDPListen:    "127.0.0.1:0",
		IPFilter:        loopbackOnly,
		NetworkTypes:    []webrtc.NetworkType{webrtc.NetworkTypeUDP4},
		IncludeLoopback: true,
		Grace:           time.Minute,
		RejoinBackoff:   20 * time.Millisecond,
		Publish:         ev.publish,
		Logger:          testLogger(t),
		RoomExists:      func(id string) bool { return id != "999" },
	}
	if mod != nil {
		mod(&opts)
	}
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	return m, ev
}

// testLogger sends the manager's logs to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// ---- browser stand-in: mediatest.Browser over in-process signaling ----

type recvTrack struct {
	remote *webrtc.TrackRemote
	at     time.Time
}

// browser is a mediatest.Browser whose signaling goes straight to the
// manager (HandleSignal) and back through its fakePeer.
type browser struct {
	*mediatest.Browser
	t    testing.TB
	m    *Manager
	peer *fakePeer
	pc   *webrtc.PeerConnection
	room string
	cam  *mediatest.Camera
	// offers are the server's offers and answers of a manual browser
	// (glare test), which the test applies itself.
	offers <-chan mediatest.Message

	msgFrom   int // next and drain consume messages from here
	trackFrom int // waitTrack consumes tracks from here
}

// cutConn is a UDP socket the test can cut: afterwards nothing is sent or
// received, as when a browser's network vanishes without a goodbye.
type cutConn struct {
	net.PacketConn
	cut atomic.Bool
}

func (c *cutConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.cut.Load() {
			return n, addr, err
		}
	}
}

func (c *cutConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.cut.Load() {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

func newBrowserAPI(t testing.TB) *webrtc.API {
	t.Helper()
	return newBrowserAPIWith(t, nil)
}

// newBrowserAPIWith builds a browser's API with the bridge's own codecs
// and header extensions; a non-nil conn carries all its ICE traffic.
func newBrowserAPIWith(t testing.TB, conn net.PacketConn) *webrtc.API {
	t.Helper()
	me, err := newMediaEngine()
	if err != nil {
		t.Fatal(err)
	}
	o := mediatest.APIOptions{MediaEngine: me}
	if conn != nil {
		mux := webrtc.NewICEUDPMux(nil, conn)
		t.Cleanup(func() { _ = mux.Close() })
		o.Mux = mux
	}
	api, err := mediatest.NewAPI(o)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func newBrowser(t testing.TB, m *Manager, id, user string, manual bool) *browser {
	t.Helper()
	return newBrowserOn(t, m, id, user, manual, nil)
}

func newBrowserOn(t testing.TB, m *Manager, id, user string, manual bool, conn net.PacketConn) *browser {
	t.Helper()
	return newBrowserWith(t, m, id, user, manual, newBrowserAPIWith(t, conn))
}

// newBrowserWith makes a browser on the given API.
func newBrowserWith(t testing.TB, m *Manager, id, user string, manual bool, api *webrtc.API) *browser {
	t.Helper()
	b := &browser{t: t, m: m, peer: newFakePeer(id, user)}
	mb, err := mediatest.NewBrowser(mediatest.Options{
		API:    api,
		Send:   func(v map[string]any) error { b.signal(v); return nil },
		Errorf: func(format string, args ...any) { t.Errorf("browser "+id+": "+format, args...) },
		Manual: manual,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Browser, b.pc, b.offers = mb, mb.PC(), mb.Offers()
	b.peer.deliver = mb.Deliver
	t.Cleanup(b.Close)
	return b
}

func (b *browser) signal(v map[string]any) {
	raw, err := json.Marshal(v)
	if err != nil {
		b.t.Errorf("marshal: %v", err)
		return
	}
	b.m.HandleSignal(context.Background(), b.peer, v["type"].(string), raw)
}

func (b *browser) join(room string) {
	b.room = room
	b.signal(map[string]any{"type": "join", "roomId": room})
}

// decode turns a recorded message into a serverMsg.
func (b *browser) decode(m mediatest.Message) serverMsg {
	var msg serverMsg
	if err := json.Unmarshal(m.Raw, &msg); err != nil {
		b.t.Errorf("bad server message %s: %v", m.Raw, err)
	}
	msg.raw = m.Raw
	return msg
}

// next waits for the next non-negotiation message matching pred; the
// messages before it are passed over.
func (b *browser) next(pred func(serverMsg) bool, what string) serverMsg {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	m, at, err := b.WaitMessage(ctx, b.msgFrom, func(m mediatest.Message) bool { return pred(b.decode(m)) })
	if err != nil {
		b.t.Fatalf("browser %s: no %s within %s", b.peer.id, what, waitLong)
	}
	b.msgFrom = at + 1
	return b.decode(m)
}

func isType(typ string) func(serverMsg) bool {
	return func(m serverMsg) bool { return m.Type == typ }
}

func isError(code string) func(serverMsg) bool {
	return func(m serverMsg) bool { return m.Type == "error" && m.Error != nil && m.Error.Code == code }
}

// drain returns the messages received and not yet passed over.
func (b *browser) drain() []serverMsg {
	var out []serverMsg
	for _, m := range b.Messages(b.msgFrom) {
		out = append(out, b.decode(m))
		b.msgFrom++
	}
	return out
}

// waitTrack waits for a received track with the given stream id; the
// tracks before it are passed over.
func (b *browser) waitTrack(streamID string) recvTrack {
	b.t.Helper()
	return b.waitTrackWhere(func(r *webrtc.TrackRemote) bool { return r.StreamID() == streamID },
		"track of stream "+streamID)
}

// waitTrackWhere waits for the next received track that matches.
func (b *browser) waitTrackWhere(match func(*webrtc.TrackRemote) bool, what string) recvTrack {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	tr, at, err := b.WaitTrack(ctx, b.trackFrom, func(tr *mediatest.Track) bool { return match(tr.Remote) })
	if err != nil {
		b.t.Fatalf("browser %s: no %s within %s", b.peer.id, what, waitLong)
	}
	b.trackFrom = at + 1
	return recvTrack{remote: tr.Remote, at: tr.At}
}

// ---- publishing helpers ----

// publishAudio adds a microphone (mediatest.PublishOpus) that loops
// frames with the RFC 6464 audio level the test sets.
func (b *browser) publishAudio(frames [][]byte, level uint8) *mediatest.Mic {
	b.t.Helper()
	mic, err := b.PublishOpus("mic-"+b.peer.id, frames, level)
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

// publishVideo sends the IVF's VP8 frames at 15 fps, looping
// (mediatest.PublishVP8); a keyframe request makes the camera jump to the
// next keyframe.
func (b *browser) publishVideo(frames [][]byte) {
	b.t.Helper()
	cam, err := b.PublishVP8("cam-"+b.peer.id, frames, mediatest.CameraOptions{})
	if err != nil {
		b.t.Fatal(err)
	}
	b.cam = cam
}

// plis counts the keyframe requests the camera got.
func (b *browser) plis() int64 { return b.cam.Requests() }

// ---- test media ----

func frameSet(frames [][]byte) map[string]bool {
	set := make(map[string]bool, len(frames))
	for _, f := range frames {
		set[string(f)] = true
	}
	return set
}
