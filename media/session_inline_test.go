package media

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/media/mediatest"
)

// newTCPBrowser makes a browser that gathers TCP4 candidates only, so it
// reaches the bridge over ICE-TCP.
func newTCPBrowser(t testing.TB, m *Manager, id, user string) *browser {
	t.Helper()
	me, err := newMediaEngine()
	if err != nil {
		t.Fatal(err)
	}
	api, err := mediatest.NewAPI(mediatest.APIOptions{MediaEngine: me,
		NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeTCP4}})
	if err != nil {
		t.Fatal(err)
	}
	return newBrowserWith(t, m, id, user, false, api)
}

// withICETCP adds the ICE-TCP listener to a test manager's options, and
// TCP4 candidates to its UDP4 ones.
func withICETCP(o *Options) {
	o.ICETCPListen = "127.0.0.1:0"
	o.NetworkTypes = []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4}
}

// sessionOf is the session of the browser with peer id.
func sessionOf(t testing.TB, m *Manager, id string) *session {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.byPeer[id]
	if s == nil {
		t.Fatalf("no session for browser %s", id)
	}
	return s
}

// selectedProtocol is the protocol of the local candidate of the bridge's
// selected pair for the browser's session.
func selectedProtocol(t testing.TB, s *session) webrtc.ICEProtocol {
	t.Helper()
	pair, err := s.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("session %s: no selected candidate pair (%v)", s.id, err)
	}
	return pair.Local.Protocol
}

// readSeqs reads n RTP packets from a received track and returns their
// sequence numbers.
func readSeqs(t *testing.T, who string, tr *webrtc.TrackRemote, n int) []uint16 {
	t.Helper()
	if err := tr.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
		t.Fatal(err)
	}
	out := make([]uint16, 0, n)
	for len(out) < n {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			t.Fatalf("%s: read track %s after %d packets: %v", who, tr.ID(), len(out), err)
		}
		out = append(out, pkt.SequenceNumber)
	}
	return out
}

// requireContiguous fails unless seqs follow one another by one: no
// packet lost, doubled or out of order.
func requireContiguous(t *testing.T, who string, seqs []uint16) {
	t.Helper()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("%s: packet %d has seq %d after %d, want %d (seqs %v)", who, i, seqs[i], seqs[i-1], seqs[i-1]+1, seqs)
		}
	}
}

// waitMode waits until the session's queue is inline (or queued).
func waitMode(t *testing.T, s *session, inline bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.q.inline() != inline {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("session %s: inline %v, want %v", s.id, s.q.inline(), inline)
		}
	}
}

// TestUDPInlineTCPQueued: in one room with ICE-TCP on, the browser on UDP
// is written inline and the one on ICE-TCP through its queue; both get
// every Discord packet once and in order.
func TestUDPInlineTCPQueued(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, withICETCP)
	frames := readOggOpus(t, tone440)

	u := newBrowser(t, m, "u", "201", false)
	c := newTCPBrowser(t, m, "c", "202")
	u.join("300")
	u.next(isType("joined"), "joined")
	link := waitLink(t, j)
	c.join("300")
	c.next(isType("joined"), "joined")

	stop, done := make(chan struct{}), make(chan struct{})
	go feedDiscord(link, "400", frames, stop, done)
	defer func() { close(stop); <-done }()

	tracks := map[*browser]recvTrack{}
	for _, br := range []*browser{u, c} {
		tracks[br] = br.waitTrack("discord-400")
	}
	us, cs := sessionOf(t, m, "u"), sessionOf(t, m, "c")
	waitMode(t, us, true)
	if p := selectedProtocol(t, us); p != webrtc.ICEProtocolUDP {
		t.Fatalf("browser u's pair is %s, want udp", p)
	}
	if p := selectedProtocol(t, cs); p != webrtc.ICEProtocolTCP {
		t.Fatalf("browser c's pair is %s, want tcp", p)
	}
	if cs.q.inline() {
		t.Fatal("the ICE-TCP browser is written inline")
	}
	for _, br := range []*browser{u, c} {
		requireContiguous(t, "browser "+br.peer.id, readSeqs(t, "browser "+br.peer.id, tracks[br].remote, 50))
	}
	if cs.q.inline() {
		t.Fatal("the ICE-TCP browser went inline")
	}
}
