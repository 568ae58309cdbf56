package media

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"sync"
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

// stallProxy stands between a browser and the bridge's ICE-TCP listener;
// stall stops it reading what the bridge sends, as with a browser that
// stopped reading: the bridge's writes toward it back up.
type stallProxy struct {
	ln      net.Listener
	to      string
	stalled chan struct{} // closed: reading stops
	done    chan struct{} // closed by close
	once    sync.Once
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func newStallProxy(t *testing.T, to string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, to: to, stalled: make(chan struct{}), done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p
}

func (p *stallProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp4", p.to)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(out, in) }()
		go func() { defer p.wg.Done(); p.copyUntilStalled(in, out) }()
	}
}

// copyUntilStalled copies from the bridge to the browser until stall.
func (p *stallProxy) copyUntilStalled(in, out net.Conn) {
	buf := make([]byte, 2048)
	for {
		select {
		case <-p.stalled:
			<-p.done
			return
		default:
		}
		n, err := out.Read(buf)
		if err != nil {
			return
		}
		if _, err := in.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *stallProxy) stall() { close(p.stalled) }

// close ends every connection (the bridge's blocked writes fail) and
// waits for the proxy's goroutines.
func (p *stallProxy) close() {
	p.once.Do(func() {
		close(p.done)
		_ = p.ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}

// throughProxy makes the browser reach the bridge's ICE-TCP candidates at
// the proxy instead: it rewrites the passive candidates' port in what the
// bridge sends.
func throughProxy(b *browser, bridgePort, proxyPort int) {
	from := []byte(" " + strconv.Itoa(bridgePort) + " typ host tcptype passive")
	to := []byte(" " + strconv.Itoa(proxyPort) + " typ host tcptype passive")
	deliver := b.peer.deliver
	b.peer.deliver = func(raw []byte) { deliver(bytes.ReplaceAll(raw, from, to)) }
}

// TestStalledTCPBrowserCostsUDPBrowserNothing: while a browser on ICE-TCP
// stops reading, the browser on UDP gets every packet once and in order.
func TestStalledTCPBrowserCostsUDPBrowserNothing(t *testing.T) {
	j := newFakeJoiner()
	m, _ := newTestManager(t, j, withICETCP)
	frames := readOggOpus(t, tone440)
	bridgePort := m.eng.tcpMux.(interface{ LocalAddr() net.Addr }).LocalAddr().(*net.TCPAddr).Port
	proxy := newStallProxy(t, "127.0.0.1:"+strconv.Itoa(bridgePort))
	t.Cleanup(proxy.close) // before the manager closes: its blocked writes end

	u := newBrowser(t, m, "u", "201", false)
	c := newTCPBrowser(t, m, "c", "202")
	throughProxy(c, bridgePort, proxy.port())
	u.join("300")
	u.next(isType("joined"), "joined")
	link := waitLink(t, j)
	c.join("300")
	c.next(isType("joined"), "joined")

	// Large frames ten times as fast as real time: the stalled
	// connection backs up within the test.
	big := make([][]byte, len(frames))
	for i, f := range frames {
		big[i] = bytes.Repeat(f, 1000/len(f)+1)[:1000]
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if !link.send(DiscordFrame{UserID: "400", Kind: FrameAudio, Payload: big[i%len(big)]}) {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()

	ut, ct := u.waitTrack("discord-400"), c.waitTrack("discord-400")
	us, cs := sessionOf(t, m, "u"), sessionOf(t, m, "c")
	waitMode(t, us, true)
	if p := selectedProtocol(t, cs); p != webrtc.ICEProtocolTCP {
		t.Fatalf("browser c's pair is %s, want tcp", p)
	}
	readSeqs(t, "browser c", ct.remote, 10) // media flows over TCP
	proxy.stall()
	requireContiguous(t, "browser u", readSeqs(t, "browser u", ut.remote, 1000))
	if cs.q.inline() || !us.q.inline() {
		t.Fatalf("inline: TCP browser %v, UDP browser %v; want false, true", cs.q.inline(), us.q.inline())
	}
	if n := us.q.dropped.Load(); n != 0 {
		t.Fatalf("browser u dropped %d packets", n)
	}
}
