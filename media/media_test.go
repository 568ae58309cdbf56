package media

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
	"go.uber.org/goleak"

	"github.com/voicebridge/bridge/internal/audiotest"
	"github.com/voicebridge/bridge/media/mediatest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func waitLink(t *testing.T, j *fakeJoiner) *fakeLink {
	t.Helper()
	select {
	case l := <-j.joins:
		return l
	case <-time.After(waitLong):
		t.Fatal("the bot did not join the voice channel")
		return nil
	}
}

func waitClosed(t *testing.T, l *fakeLink) {
	t.Helper()
	select {
	case <-l.closed:
	case <-time.After(waitLong):
		t.Fatalf("link to %s was not closed", l.channel)
	}
}

// feedDiscord sends frames as Discord user userID every 20 ms until stop.
func feedDiscord(l *fakeLink, userID string, frames [][]byte, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if !l.send(DiscordFrame{UserID: userID, Kind: FrameAudio, Payload: frames[i%len(frames)]}) {
			return
		}
	}
}

// readPayloads reads n RTP payloads from a received track.
func readPayloads(t *testing.T, tr *webrtc.TrackRemote, n int) [][]byte {
	t.Helper()
	if err := tr.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(out) < n {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			t.Fatalf("read track %s: %v", tr.ID(), err)
		}
		out = append(out, pkt.Payload)
	}
	return out
}

func TestDiscordAudioReachesBrowsers(t *testing.T) {
	j := newFakeJoiner()
	m, ev := newTestManager(t, j, nil)
	frames := readOggOpus(t, tone440)
	source := frameSet(frames)

	a := newBrowser(t, m, "a", "201", false)
	b := newBrowser(t, m, "b", "202", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	a.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusConnected }, "status connected")
	b.join("300")
	joined := b.next(isType("joined"), "joined")
	if len(joined.Participants) != 1 || joined.Participants[0].UserID != "201" {
		t.Fatalf("b sees participants %+v, want a", joined.Participants)
	}

	stop, done := make(chan struct{}), make(chan struct{})
	go feedDiscord(link, "400", frames, stop, done)
	defer func() { close(stop); <-done }()

	for _, br := range []*browser{a, b} {
		tr := br.waitTrack("discord-400")
		if tr.remote.ID() != "discord-audio-400" || tr.remote.Kind() != webrtc.RTPCodecTypeAudio {
			t.Fatalf("browser %s: track %s/%s, want discord-audio-400 audio", br.peer.id, tr.remote.ID(), tr.remote.Kind())
		}
		p := br.next(func(m serverMsg) bool { return m.Type == "participant" && m.Participant.UserID == "400" }, "discord participant")
		if p.Participant.Kind != kindDiscord || p.Participant.Tracks[0].StreamID != "discord-400" {
			t.Fatalf("browser %s: discord participant %+v", br.peer.id, p.Participant)
		}
		payloads := readPayloads(t, tr.remote, 60)
		for i, pl := range payloads {
			if !source[string(pl)] {
				t.Fatalf("browser %s: payload %d is not one of the Opus frames sent", br.peer.id, i)
			}
		}
		audiotest.RequireTone(t, "discord user at browser "+br.peer.id, payloads, 440)
	}
	if !ev.has(EventParticipantJoined, "discord-400") || !ev.has(EventSpeaking, "discord-400") {
		t.Fatalf("events %v lack the discord user's join and speaking", ev.list)
	}
}

// linkFrames collects n Opus frames the bot sent to Discord.
func linkFrames(t *testing.T, l *fakeLink, n int, from map[string]bool) [][]byte {
	t.Helper()
	deadline := time.After(waitLong)
	var out [][]byte
	for len(out) < n {
		select {
		case f := <-l.opus:
			if from == nil || from[string(f)] {
				out = append(out, f)
			}
		case <-deadline:
			t.Fatalf("the link got %d of %d frames", len(out), n)
		}
	}
	return out
}

func TestBrowserAudioReachesDiscordLoudestFirst(t *testing.T) {
	j := newFakeJoiner()
	m, ev := newTestManager(t, j, nil)
	f440, f1000 := readOggOpus(t, tone440), readOggOpus(t, tone1000)
	set440, set1000 := frameSet(f440), frameSet(f1000)

	a := newBrowser(t, m, "a", "201", false)
	b := newBrowser(t, m, "b", "202", false)
	a.join("300")
	self := a.next(isType("joined"), "joined").Self
	link := waitLink(t, j)
	b.join("300")
	b.next(isType("joined"), "joined")

	pa := a.publishAudio(f440, 20)
	pb := b.publishAudio(f1000, 127)

	// Only a speaks: the link carries a's tone and nothing of b.
	got := linkFrames(t, link, 50, nil)
	for i, f := range got {
		if !set440[string(f)] {
			t.Fatalf("frame %d at the link is not a's (b is silent)", i)
		}
	}
	audiotest.RequireTone(t, "a at the link", got, 440)
	if !ev.has(EventSpeaking, self) {
		t.Fatalf("no speaking event for a: %v", ev.list)
	}

	// Turn: b speaks, a goes quiet. The link switches to b and stays.
	pa.SetLevel(127)
	pb.SetLevel(20)
	linkFrames(t, link, 1, set1000)
	got = linkFrames(t, link, 50, nil)
	for i, f := range got {
		if !set1000[string(f)] {
			t.Fatalf("frame %d after the switch is not b's", i)
		}
	}
	audiotest.RequireTone(t, "b at the link", got, 1000)
	// And back to a.
	pb.SetLevel(127)
	pa.SetLevel(20)
	linkFrames(t, link, 1, set440)
	for i, f := range linkFrames(t, link, 20, nil) {
		if !set440[string(f)] {
			t.Fatalf("frame %d after switching back is not a's", i)
		}
	}
}

// assembleVP8 reads a video track and returns assembled frames as they
// complete, through ch, until the track ends.
func assembleVP8(tr *webrtc.TrackRemote, ch chan<- []byte) {
	sb := samplebuilder.New(64, &codecs.VP8Packet{}, 90000)
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			close(ch)
			return
		}
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			select {
			case ch <- s.Data:
			default:
			}
		}
	}
}

func waitVideoTrack(t *testing.T, br *browser) recvTrack {
	t.Helper()
	return br.waitTrackWhere(func(r *webrtc.TrackRemote) bool { return r.Kind() == webrtc.RTPCodecTypeVideo }, "video track")
}

func TestBrowserVideoForwardedWithFastKeyframe(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil)
	frames := readIVF(t, testIVF)
	set := frameSet(frames)

	a := newBrowser(t, m, "a", "201", false)
	b := newBrowser(t, m, "b", "202", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	waitLink(t, j)
	a.publishVideo(frames)
	b.join("300")
	b.next(isType("joined"), "joined")

	tr := waitVideoTrack(t, b)
	if !strings.HasPrefix(tr.remote.StreamID(), "browser-") {
		t.Fatalf("video stream id %q", tr.remote.StreamID())
	}
	ch := make(chan []byte, 256)
	go assembleVP8(tr.remote, ch)
	deadline := time.After(waitLong)
	for intact := 0; intact < 20; {
		select {
		case f := <-ch:
			if !set[string(f)] {
				t.Fatalf("b assembled a %d-byte frame that a never sent", len(f))
			}
			intact++
		case <-deadline:
			t.Fatal("b did not get 20 intact frames")
		}
	}

	// A newcomer gets a keyframe within 1 s of its first video packet.
	plis := a.plis()
	c := newBrowser(t, m, "c", "203", false)
	c.join("300")
	c.next(isType("joined"), "joined")
	trc := waitVideoTrack(t, c)
	chc := make(chan []byte, 256)
	go assembleVP8(trc.remote, chc)
	kfDeadline := time.After(time.Until(trc.at.Add(time.Second)))
	for got := false; !got; {
		select {
		case f := <-chc:
			got = f[0]&1 == 0 && set[string(f)]
		case <-kfDeadline:
			t.Fatal("c got no keyframe within 1 s of its first video packet")
		}
	}
	if a.plis() == plis {
		t.Fatal("the publisher got no PLI for the newcomer")
	}
}

func TestBotJoinsAndLeavesAfterGrace(t *testing.T) {
	j := newFakeJoiner()
	m, ev := newTestManager(t, j, func(o *Options) { o.Grace = 100 * time.Millisecond })
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	if link.channel != "300" {
		t.Fatalf("bot joined %s, want 300", link.channel)
	}
	a.signal(map[string]any{"type": "leave"})
	waitClosed(t, link)

	// A new join after the grace period makes the bot join again.
	a.join("300")
	a.next(isType("joined"), "joined")
	link2 := waitLink(t, j)
	// A browser that vanishes (socket closed, no leave) is removed.
	b := newBrowser(t, m, "b", "202", false)
	b.join("300")
	bj := b.next(isType("joined"), "joined")
	m.PeerClosed(b.peer)
	left := a.next(func(m serverMsg) bool { return m.Type == "participant" && m.Event == "left" }, "participant left")
	if left.Participant.ID != bj.Self {
		t.Fatalf("left %s, want %s", left.Participant.ID, bj.Self)
	}
	if !ev.has(EventParticipantLeft, bj.Self) {
		t.Fatalf("no participant.left event for b: %v", ev.list)
	}
	m.PeerClosed(a.peer)
	waitClosed(t, link2)
}

func TestLinkFailureRejoinsAndTellsBrowsers(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil)
	j.mu.Lock()
	j.fail = 2
	j.mu.Unlock()
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	st := a.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusReconnecting }, "status reconnecting")
	if !strings.Contains(st.Message, "voice server unreachable") {
		t.Fatalf("status message %q does not say why", st.Message)
	}
	link := waitLink(t, j)
	a.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusConnected }, "status connected")
	link.die() // the voice connection dies
	waitClosed(t, link)
	a.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusReconnecting }, "status reconnecting")
	waitLink(t, j)
	a.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusConnected }, "status connected again")
}

func TestOneVoiceConnectionPerGuild(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, func(o *Options) { o.Grace = 50 * time.Millisecond })
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	c := newBrowser(t, m, "c", "203", false)
	c.join("301")
	c.next(isType("joined"), "joined")
	st := c.next(isType("status"), "status")
	if st.Discord != StatusUnavailable || !strings.Contains(st.Message, `waiting for a bot: the bot is in "300"`) || !strings.Contains(st.Message, "as soon as one frees") {
		t.Fatalf("room 301 status %+v, want unavailable, waiting for the bot in 300", st)
	}
	// Browser to browser still works in 301.
	d := newBrowser(t, m, "d", "204", false)
	d.join("301")
	dj := d.next(isType("joined"), "joined")
	d.publishAudio(readOggOpus(t, tone440), 30)
	c.waitTrack("browser-" + dj.Self)
	// When 300 lets go of the link, 301 gets it.
	a.signal(map[string]any{"type": "leave"})
	waitClosed(t, link)
	l2 := waitLink(t, j)
	if l2.channel != "301" {
		t.Fatalf("bot joined %s, want 301", l2.channel)
	}
	c.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusConnected }, "status connected")
}

// With two links for the guild, two rooms are bridged at once; the third
// and fourth wait, are told which rooms hold the bots (by name), and the
// one that waited longest gets the first bot that frees.
func TestLinksGoToTheLongestWaiting(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, func(o *Options) {
		o.Grace = 50 * time.Millisecond
		o.Links = func(guild string) int {
			if guild != testGuild {
				t.Errorf("Links asked for guild %s", guild)
			}
			return 2
		}
		o.RoomName = func(id string) string { return "Room " + id }
	})
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	linkA := waitLink(t, j)
	b := newBrowser(t, m, "b", "202", false)
	b.join("301")
	b.next(isType("joined"), "joined")
	linkB := waitLink(t, j)
	if got := []string{linkA.channel, linkB.channel}; !slices.Contains(got, "300") || !slices.Contains(got, "301") {
		t.Fatalf("links joined %v, want 300 and 301", got)
	}
	c := newBrowser(t, m, "c", "203", false)
	c.join("302")
	c.next(isType("joined"), "joined")
	st := c.next(isType("status"), "status")
	if st.Discord != StatusUnavailable || !strings.Contains(st.Message, `"Room 300", "Room 301"`) || !strings.Contains(st.Message, "as soon as one frees") {
		t.Fatalf("room 302 status %+v, want unavailable naming Room 300 and Room 301", st)
	}
	d := newBrowser(t, m, "d", "204", false)
	d.join("303")
	d.next(isType("joined"), "joined")
	d.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusUnavailable }, "status unavailable")

	b.signal(map[string]any{"type": "leave"})
	waitClosed(t, linkB)
	l := waitLink(t, j)
	if l.channel != "302" {
		t.Fatalf("the freed bot joined %s, want 302 (waiting longest)", l.channel)
	}
	c.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusConnected }, "302 connected")
	a.signal(map[string]any{"type": "leave"})
	waitClosed(t, linkA)
	if l := waitLink(t, j); l.channel != "303" {
		t.Fatalf("the next freed bot joined %s, want 303", l.channel)
	}
	d.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusConnected }, "303 connected")
}

// A room whose bot went away (the Joiner finds no free bot) waits in line,
// told which room holds the remaining bot, and is bridged once a bot is
// back (LinksChanged).
func TestRoomWaitsWhenItsBotLeaves(t *testing.T) {
	j := newFakeJoiner()
	var links atomic.Int32
	links.Store(2)
	m, _ := newTestManager(t, j, func(o *Options) { o.Links = func(string) int { return int(links.Load()) } })
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	waitLink(t, j)
	b := newBrowser(t, m, "b", "202", false)
	b.join("301")
	b.next(isType("joined"), "joined")
	linkB := waitLink(t, j)
	b.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusConnected }, "301 connected")

	// 301's bot leaves the pool: one link left, and no bot free for 301.
	links.Store(1)
	j.mu.Lock()
	j.busy = true
	j.mu.Unlock()
	linkB.die()
	waitClosed(t, linkB)
	st := b.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusUnavailable }, "301 waiting")
	if !strings.Contains(st.Message, `"300"`) {
		t.Fatalf("301 was told %q, want the room that holds the bot", st.Message)
	}

	j.mu.Lock()
	j.busy = false
	j.mu.Unlock()
	links.Store(2)
	m.LinksChanged()
	if l := waitLink(t, j); l.channel != "301" {
		t.Fatalf("the returning bot joined %s, want 301", l.channel)
	}
	b.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusConnected }, "301 connected again")
}

// Each guild has its own bots: a room of each guild is bridged at once,
// with the room's guild given to the Joiner, and a second room of the
// first guild waits for that guild's bot, named by room, not for the
// other guild's.
func TestEachGuildHasItsOwnLinks(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, func(o *Options) {
		o.GuildOf = func(id string) string {
			if strings.HasPrefix(id, "4") {
				return otherGuild
			}
			return "" // the default guild
		}
		o.Links = func(string) int { return 1 }
	})
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	if l := waitLink(t, j); l.guild != testGuild || l.channel != "300" {
		t.Fatalf("first link: guild %s channel %s", l.guild, l.channel)
	}
	c := newBrowser(t, m, "c", "203", false)
	c.join("400")
	c.next(isType("joined"), "joined")
	if l := waitLink(t, j); l.guild != otherGuild || l.channel != "400" {
		t.Fatalf("second link: guild %s channel %s, want the other guild's 400", l.guild, l.channel)
	}
	d := newBrowser(t, m, "d", "204", false)
	d.join("301")
	d.next(isType("joined"), "joined")
	st := d.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusUnavailable }, "301 waiting")
	if !strings.Contains(st.Message, `"300"`) || strings.Contains(st.Message, `"400"`) {
		t.Fatalf("301 was told %q, want the bot of its guild in 300", st.Message)
	}
}

func TestGlareResolves(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil)
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	aj := a.next(isType("joined"), "joined")
	waitLink(t, j)
	a.publishAudio(readOggOpus(t, tone440), 30)

	g := newBrowser(t, m, "g", "205", true)
	g.join("300")
	gj := g.next(isType("joined"), "joined")
	var serverOffer mediatest.Message
	select {
	case serverOffer = <-g.offers:
	case <-time.After(waitLong):
		t.Fatal("server made no offer for a's track")
	}
	// The browser offers its own track while the server's offer is
	// pending. Pion cannot roll back, so the colliding offer is made by a
	// scratch connection with the same track: to the server it is just
	// the SDP a browser sends before it rolls back.
	scratch, err := newBrowserAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer scratch.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(opusCapability, "mic", "mic-g")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scratch.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	colliding, err := scratch.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g.signal(map[string]any{"type": "offer", "sdp": colliding.SDP})
	// Polite browser: answer the server's offer, then offer again.
	if err := g.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: serverOffer.SDP}); err != nil {
		t.Fatal(err)
	}
	g.Applied()
	answer, err := g.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.pc.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	g.signal(map[string]any{"type": "answer", "sdp": answer.SDP})
	g.publishAudio(readOggOpus(t, tone1000), 30)
	offer, err := g.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	g.signal(map[string]any{"type": "offer", "sdp": offer.SDP})
	var serverAnswer mediatest.Message
	select {
	case serverAnswer = <-g.offers:
	case <-time.After(waitLong):
		t.Fatal("the server did not answer the second offer")
	}
	if serverAnswer.Type != "answer" {
		t.Fatalf("got %s, want the server's answer", serverAnswer.Raw)
	}
	if err := g.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: serverAnswer.SDP}); err != nil {
		t.Fatal(err)
	}
	g.Applied()
	// Both directions are negotiated: a learns g's track, g gets a's.
	g.waitTrack("browser-" + aj.Self)
	a.next(func(m serverMsg) bool {
		return m.Type == "participant" && m.Participant.ID == gj.Self && len(m.Participant.Tracks) == 1
	}, "g's published track")
	for _, msg := range g.drain() {
		if msg.Type == "error" {
			t.Fatalf("glare produced an error: %s", msg.raw)
		}
	}
}

func TestSignalingErrorsDisturbNothing(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil)
	a := newBrowser(t, m, "a", "201", false)
	b := newBrowser(t, m, "b", "202", false)
	a.join("300")
	aj := a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	b.join("300")
	b.next(isType("joined"), "joined")
	a.next(func(m serverMsg) bool { return m.Type == "participant" && m.Event == "joined" }, "b joined")
	b.drain()

	x := newBrowser(t, m, "x", "209", false)
	cases := []struct {
		name string
		who  *browser
		msg  map[string]any
		code string
	}{
		{"unknown room", x, map[string]any{"type": "join", "roomId": "999"}, "unknown_room"},
		{"room id not a snowflake", x, map[string]any{"type": "join", "roomId": "lobby"}, "bad_message"},
		{"offer before join", x, map[string]any{"type": "offer", "sdp": "v=0"}, "not_joined"},
		{"signaling for another room", a, map[string]any{"type": "mute", "muted": true, "roomId": "301"}, "wrong_room"},
		{"malformed SDP", a, map[string]any{"type": "offer", "sdp": "this is not SDP"}, "bad_sdp"},
		{"answer without offer", a, map[string]any{"type": "answer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"}, "unexpected_answer"},
		{"unknown type", a, map[string]any{"type": "dance"}, "unknown_type"},
		{"mute without value", a, map[string]any{"type": "mute"}, "bad_message"},
	}
	for _, tc := range cases {
		tc.who.signal(tc.msg)
		msg := tc.who.next(isType("error"), tc.name+" error")
		if msg.Error.Code != tc.code || msg.Error.Message == "" {
			t.Fatalf("%s: error %+v, want code %s with a message", tc.name, msg.Error, tc.code)
		}
	}
	// b saw none of it, and a's session still works.
	for _, msg := range b.drain() {
		if msg.Type == "error" || msg.Type == "participant" {
			t.Fatalf("b was disturbed: %s", msg.raw)
		}
	}
	a.signal(map[string]any{"type": "mute", "muted": true})
	up := b.next(isType("participant"), "a muted")
	if up.Participant.ID != aj.Self || !up.Participant.Muted {
		t.Fatalf("mute update %+v", up.Participant)
	}

	// A second join of the same user replaces the first session.
	a2 := newBrowser(t, m, "a2", "201", false)
	a2.join("300")
	a2.next(isType("joined"), "joined")
	a.next(isError("session_replaced"), "session_replaced")
	left := b.next(func(m serverMsg) bool { return m.Type == "participant" && m.Event == "left" }, "a left")
	if left.Participant.ID != aj.Self {
		t.Fatalf("left %s, want %s", left.Participant.ID, aj.Self)
	}
	b.next(func(m serverMsg) bool {
		return m.Type == "participant" && m.Event == "joined" && m.Participant.UserID == "201"
	}, "a2 joined")
	a.signal(map[string]any{"type": "leave"})
	a.next(isError("not_joined"), "not_joined after replacement")

	// The channel is deleted: everyone is told, the bot leaves, joins fail.
	m.RoomEnded("300")
	b.next(isError("room_ended"), "room_ended")
	a2.next(isError("room_ended"), "room_ended")
	waitClosed(t, link)
	x.join("300")
	x.next(isError("room_ended"), "room_ended on join")
}

func TestMalformedJSONIsRejected(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil)
	p := newFakePeer("z", "210")
	m.HandleSignal(context.Background(), p, "join", json.RawMessage(`{"roomId":`))
	var msg serverMsg
	if err := json.Unmarshal(<-p.out, &msg); err != nil || msg.Error == nil || msg.Error.Code != "bad_message" {
		t.Fatalf("got %+v (%v), want bad_message", msg, err)
	}
}

func TestICEDisconnectRemovesBrowser(t *testing.T) {
	j := newFakeJoiner()
	m, ev := newTestManager(t, j, func(o *Options) { o.ICEFailTimeout = 400 * time.Millisecond })
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	waitLink(t, j)
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn := &cutConn{PacketConn: udp}
	b := newBrowserOn(t, m, "b", "202", false, conn)
	b.join("300")
	bj := b.next(isType("joined"), "joined")
	b.publishAudio(readOggOpus(t, tone440), 30)
	a.waitTrack("browser-" + bj.Self)
	conn.cut.Store(true) // b's network is gone; its socket stays open
	a.next(func(m serverMsg) bool {
		return m.Type == "participant" && m.Event == "left" && m.Participant.ID == bj.Self
	}, "b removed after ICEFailTimeout")
	if !ev.has(EventParticipantLeft, bj.Self) {
		t.Fatalf("no participant.left for b: %v", ev.list)
	}
	if n := m.Stats().ICEFailures; n != 1 {
		t.Fatalf("ICE failures %d, want 1 (b)", n)
	}
}

func TestRejoinWithinGraceKeepsLink(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil) // Grace: one minute
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	// The room learns of the link after the joiner returned it.
	a.next(func(m serverMsg) bool { return m.Type == "status" && m.Discord == StatusConnected }, "status connected")
	a.signal(map[string]any{"type": "leave"})
	b := newBrowser(t, m, "b", "202", false)
	b.join("300")
	b.next(isType("joined"), "joined")
	st := b.next(isType("status"), "status")
	if st.Discord != StatusConnected {
		t.Fatalf("status %+v, want connected on the kept link", st)
	}
	// The kept link still carries a Discord user to b.
	stop, done := make(chan struct{}), make(chan struct{})
	go feedDiscord(link, "400", readOggOpus(t, tone440), stop, done)
	defer func() { close(stop); <-done }()
	b.waitTrack("discord-400")
	select {
	case <-link.closed:
		t.Fatal("the link was closed although a browser came back within the grace period")
	case l := <-j.joins:
		t.Fatalf("the bot joined again (%s) instead of keeping its link", l.channel)
	default:
	}
}

func TestBrowserClosingConnectionIsRemoved(t *testing.T) {
	j := newFakeJoiner()
	m, ev := newTestManager(t, j, func(o *Options) { o.ICEFailTimeout = 400 * time.Millisecond })
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	waitLink(t, j)
	b := newBrowser(t, m, "b", "202", false)
	b.join("300")
	bj := b.next(isType("joined"), "joined")
	b.publishAudio(readOggOpus(t, tone440), 30)
	a.waitTrack("browser-" + bj.Self)
	b.Close() // the browser vanishes: no leave, socket still "open"
	a.next(func(m serverMsg) bool {
		return m.Type == "participant" && m.Event == "left" && m.Participant.ID == bj.Self
	}, "b removed")
	if !ev.has(EventParticipantLeft, bj.Self) {
		t.Fatalf("no participant.left for b: %v", ev.list)
	}
}

func TestSpeakerVideoReachesDiscord(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil)
	frames := readIVF(t, testIVF)
	set := frameSet(frames)
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	a.publishAudio(readOggOpus(t, tone440), 20)
	a.publishVideo(frames)
	deadline := time.After(waitLong)
	for i := 0; i < 10; i++ {
		select {
		case f := <-link.vp8:
			if !set[string(f)] {
				t.Fatalf("VP8 frame %d at the link is not one a sent", i)
			}
			if i == 0 && f[0]&1 != 0 {
				t.Fatal("video to Discord did not start with a keyframe")
			}
		case <-deadline:
			t.Fatalf("the link got %d of 10 VP8 frames", i)
		}
	}
}

func TestRestartICE(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil)
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	a.publishAudio(readOggOpus(t, tone440), 20)
	linkFrames(t, link, 5, nil)
	before := a.ServerOffers()
	prev := a.LastSDP()
	if ufrag(prev) == "" {
		t.Fatal("no server description with ICE credentials yet")
	}
	a.signal(map[string]any{"type": "restart-ice"})
	// Wait for the offer, draining what the link receives meanwhile (the
	// media may pause while ICE restarts).
	deadline := time.After(waitLong)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for a.ServerOffers() == before {
		select {
		case <-link.opus:
		case <-poll.C:
		case <-deadline:
			t.Fatal("no ICE-restart offer from the server")
		}
	}
	if ufrag(a.LastSDP()) == ufrag(prev) {
		t.Fatal("the restart offer kept the old ICE credentials")
	}
	// Media still flows after the restart.
	for len(link.opus) > 0 {
		<-link.opus
	}
	linkFrames(t, link, 25, nil)
}

func ufrag(sdp string) string {
	for _, line := range strings.Split(sdp, "\r\n") {
		if strings.HasPrefix(line, "a=ice-ufrag:") {
			return line
		}
	}
	return ""
}
