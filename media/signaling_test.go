package media

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// chromiumExtIDs are Chromium's default header-extension ids, per media
// kind, that the server's offers must use too.
var chromiumExtIDs = map[string]map[string]int{
	"audio": {audioLevelURI: 1, absSendTimeURI: 2, sdp.TransportCCURI: 3, sdp.SDESMidURI: 4},
	"video": {absSendTimeURI: 2, sdp.TransportCCURI: 3, sdp.SDESMidURI: 4},
}

// assertExtmapIDs checks every media section of an SDP numbers its header
// extensions as Chromium does, and uses no other extension on those ids.
func assertExtmapIDs(t *testing.T, what, raw string) {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	kinds := 0
	for _, md := range sd.MediaDescriptions {
		want, ok := chromiumExtIDs[md.MediaName.Media]
		if !ok {
			continue
		}
		kinds++
		got := map[string]int{}
		for _, a := range md.Attributes {
			if a.Key != "extmap" {
				continue
			}
			fields := strings.Fields(a.Value)
			if len(fields) < 2 {
				t.Fatalf("%s: bad extmap %q", what, a.Value)
			}
			id, err := strconv.Atoi(strings.SplitN(fields[0], "/", 2)[0])
			if err != nil {
				t.Fatalf("%s: bad extmap %q", what, a.Value)
			}
			got[fields[1]] = id
		}
		for uri, id := range want {
			if got[uri] != id {
				t.Fatalf("%s: %s section maps %s to %d, want %d\n%s", what, md.MediaName.Media, uri, got[uri], id, raw)
			}
		}
		for uri, id := range got {
			if _, mine := want[uri]; !mine && id <= 4 {
				t.Fatalf("%s: %s section puts %s on id %d, one of Chromium's\n%s", what, md.MediaName.Media, uri, id, raw)
			}
		}
	}
	if kinds == 0 {
		t.Fatalf("%s: no audio or video section\n%s", what, raw)
	}
}

// TestHeaderExtensionIDsMatchChromium: an offer from the server's engine
// numbers audio level 1, abs-send-time 2, transport-cc 3 and mid 4, as
// Chromium's own offers do.
func TestHeaderExtensionIDsMatchChromium(t *testing.T) {
	m, _ := newTestManager(t, newFakeJoiner(), nil)
	pc, err := m.eng.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(offer.SDP, "\r\n") {
		if strings.HasPrefix(line, "m=") || strings.HasPrefix(line, "a=extmap:") {
			t.Log(line)
		}
	}
	assertExtmapIDs(t, "server offer", offer.SDP)
}

// TestPrivacyCode: every browser of the room gets the voice privacy code
// when it changes (once per change), a browser joining later finds it in
// "joined", and "" (encryption off) is announced too.
func TestPrivacyCode(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil)
	a := newBrowser(t, m, "a", "201", false)
	b := newBrowser(t, m, "b", "202", false)
	a.join("300")
	aj := a.next(isType("joined"), "joined")
	if aj.PrivacyCode == nil || *aj.PrivacyCode != "" {
		t.Fatalf("first joined: %s, want \"privacyCode\":\"\"", aj.raw)
	}
	link := waitLink(t, j)
	b.join("300")
	b.next(isType("joined"), "joined")

	const code = "12345 67890 13579 24680 11223 34455"
	link.send(PrivacyCode{Code: code})
	link.send(PrivacyCode{Code: code}) // unchanged: nothing is sent
	for _, br := range []*browser{a, b} {
		p := br.next(isType("privacy"), "privacy")
		if p.RoomID != "300" || p.Code == nil || *p.Code != code {
			t.Fatalf("browser %s: %s, want code %q in room 300", br.peer.id, p.raw, code)
		}
	}

	c := newBrowser(t, m, "c", "203", false)
	c.join("300")
	cj := c.next(isType("joined"), "joined")
	if cj.PrivacyCode == nil || *cj.PrivacyCode != code {
		t.Fatalf("later joined: %s, want privacyCode %q", cj.raw, code)
	}

	link.send(PrivacyCode{Code: ""})
	for _, br := range []*browser{a, b, c} {
		p := br.next(isType("privacy"), "privacy")
		if p.Code == nil || *p.Code != "" {
			t.Fatalf("browser %s: %s, want the code cleared (sent once per change)", br.peer.id, p.raw)
		}
	}
}

// orderPeer records the types of the messages it is sent. It holds the
// "joined" message back for a while (or until an offer shows up), giving
// a session that offers too early every chance to be caught.
type orderPeer struct {
	*fakePeer
	hold  time.Duration
	offer chan struct{}
	mu    sync.Mutex
	types []string
}

func (p *orderPeer) Send(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var msg struct{ Type string }
	if err := json.Unmarshal(raw, &msg); err != nil {
		return err
	}
	if msg.Type == "joined" {
		t := time.NewTimer(p.hold)
		select {
		case <-p.offer:
		case <-t.C:
		}
		t.Stop()
	}
	p.mu.Lock()
	p.types = append(p.types, msg.Type)
	p.mu.Unlock()
	if msg.Type == "offer" {
		kick(p.offer)
	}
	return nil
}

func (p *orderPeer) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.types...)
}

// TestJoinedPrecedesFirstOffer: a browser joining a room with a track to
// receive gets "joined" before the server's offer for that track.
func TestJoinedPrecedesFirstOffer(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, nil)
	a := newBrowser(t, m, "a", "201", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	stop, done := make(chan struct{}), make(chan struct{})
	go feedDiscord(link, "400", readOggOpus(t, tone440), stop, done)
	defer func() {
		close(stop)
		<-done
	}()
	a.waitTrack("discord-400")

	p := &orderPeer{fakePeer: newFakePeer("o", "204"), hold: 300 * time.Millisecond, offer: make(chan struct{}, 1)}
	m.HandleSignal(context.Background(), p, "join", json.RawMessage(`{"type":"join","roomId":"300"}`))
	if !contains(p.seen(), "offer") {
		select {
		case <-p.offer:
		case <-time.After(waitLong):
			t.Fatalf("no offer for the Discord user's track; got %v", p.seen())
		}
	}
	got := p.seen()
	if len(got) == 0 || got[0] != "joined" {
		t.Fatalf("messages %v, want \"joined\" first", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The ICE generation of a trickled candidate: a usernameFragment wins,
// else the "ufrag" extension of the candidate line, as Chromium and pion
// write it.
func TestCandidateUfrag(t *testing.T) {
	uf := "fromField"
	for _, c := range []struct {
		in   webrtc.ICECandidateInit
		want string
	}{
		{webrtc.ICECandidateInit{Candidate: "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 10.0.0.2 rport 46154 generation 0 ufrag sXCf network-cost 999"}, "sXCf"},
		{webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host ufrag abcd"}, "abcd"},
		{webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"}, ""},
		{webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host ufrag abcd", UsernameFragment: &uf}, "fromField"},
		{webrtc.ICECandidateInit{Candidate: "garbage"}, ""},
	} {
		if got := candidateUfrag(c.in); got != c.want {
			t.Errorf("%q: ufrag %q, want %q", c.in.Candidate, got, c.want)
		}
	}
}
