package media

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func startTestTURN(t *testing.T, tune func(*TURNOptions)) (*TURNServer, *fakeClock) {
	t.Helper()
	clock := &fakeClock{now: time.Now()}
	o := TURNOptions{
		UDPListen:     "127.0.0.1:0",
		RelayIP:       net.IPv4(127, 0, 0, 1),
		RelayBind:     "127.0.0.1",
		Secret:        []byte("0123456789abcdef0123456789abcdef"),
		CredentialTTL: time.Minute,
		Now:           clock.Now,
	}
	if tune != nil {
		tune(&o)
	}
	s, err := StartTURN(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, clock
}

// turnAllocate logs in with the credential and asks for a relay.
func turnAllocate(t *testing.T, srv *TURNServer, username, password string) (net.PacketConn, error) {
	t.Helper()
	addr := strings.TrimPrefix(strings.TrimSuffix(srv.URLs()[0], "?transport=udp"), "turn:")
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: username, Password: password, Realm: turnRealm,
		RTO: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err == nil {
		t.Cleanup(func() { _ = relay.Close() })
	}
	return relay, err
}

// TestTURNCredentials: a credential relays for its user until its
// lifetime ends and is refused after it; a credential's username turned
// to another user's id is refused; one user's relays at their bound do not
// stop another's.
func TestTURNCredentials(t *testing.T) {
	srv, clock := startTestTURN(t, func(o *TURNOptions) { o.UserAllocations = 1 })
	alice := srv.ICEServer("alice")
	if alice.Username == "" || alice.Credential == "" || len(alice.URLs) != 1 {
		t.Fatalf("credential %+v: want a username, a password and the server's URL", alice)
	}
	if _, user, ok := parseTURNUsername(alice.Username); !ok || user != "alice" {
		t.Fatalf("username %q does not name its user", alice.Username)
	}
	password := alice.Credential.(string)

	relay, err := turnAllocate(t, srv, alice.Username, password)
	if err != nil {
		t.Fatalf("a fresh credential was refused: %v", err)
	}
	if !relay.LocalAddr().(*net.UDPAddr).IP.IsLoopback() {
		t.Errorf("relay address %v, want the configured 127.0.0.1", relay.LocalAddr())
	}

	// Alice's one relay is her bound: a second is refused, Bob still gets his.
	if _, err := turnAllocate(t, srv, alice.Username, password); err == nil {
		t.Error("a second relay for alice beyond UserAllocations=1 was granted")
	}
	bob := srv.ICEServer("bob")
	if _, err := turnAllocate(t, srv, bob.Username, bob.Credential.(string)); err != nil {
		t.Errorf("bob's relay refused while alice holds hers: %v", err)
	}

	// Alice's password under a username naming someone else is refused.
	expiry, _, _ := strings.Cut(alice.Username, ":")
	if _, err := turnAllocate(t, srv, expiry+":carol", password); err == nil {
		t.Error("alice's password relayed as carol")
	}
	// A made-up password for a well-formed username is refused.
	if _, err := turnAllocate(t, srv, expiry+":carol", "bm90IHRoZSByaWdodCBvbmU="); err == nil {
		t.Error("a guessed password relayed")
	}

	// Dave's credential works now and is refused once its lifetime is over.
	dave := srv.ICEServer("dave")
	clock.advance(time.Minute + time.Second)
	if _, err := turnAllocate(t, srv, dave.Username, dave.Credential.(string)); err == nil {
		t.Error("an expired credential relayed")
	}
	erin := srv.ICEServer("erin") // issued at the new time: valid
	if _, err := turnAllocate(t, srv, erin.Username, erin.Credential.(string)); err != nil {
		t.Errorf("a credential issued after the clock moved was refused: %v", err)
	}
}

// countingConn is a relay socket that counts what passes through it.
type countingConn struct {
	net.PacketConn // nil: only the methods below are used
	written        int
	queued         [][]byte // what ReadFrom returns, in order
}

func (c *countingConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	c.written++
	return len(p), nil
}

func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if len(c.queued) == 0 {
		return 0, nil, net.ErrClosed
	}
	n := copy(p, c.queued[0])
	c.queued = c.queued[1:]
	return n, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, nil
}

func (c *countingConn) Close() error { return nil }

// TestTURNUserBandwidth: with the clock held still, a user's relays
// together pass the budget's burst and drop the rest, in both directions;
// another user's budget is their own; time moving on refills it.
func TestTURNUserBandwidth(t *testing.T) {
	const bitrate = 800_000 // 100 kB/s; burst is the 64 KiB floor
	clock := &fakeClock{now: time.Now()}
	srv := &TURNServer{opts: TURNOptions{UserBitrate: bitrate, Now: clock.Now}, users: make(map[string]*turnUser)}
	relay := func(user string) (*boundedRelay, *countingConn) {
		c := &countingConn{}
		return &boundedRelay{PacketConn: c, s: srv, user: user, share: srv.share(user)}, c
	}
	a1, c1 := relay("alice")
	a2, c2 := relay("alice") // a second relay of the same user shares her budget
	b, cb := relay("bob")
	packet := make([]byte, 1000)
	peer := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	for range 500 {
		for _, r := range []*boundedRelay{a1, a2, b} {
			if n, err := r.WriteTo(packet, peer); err != nil || n != len(packet) {
				t.Fatalf("WriteTo = %d, %v; a dropped datagram still reports sent", n, err)
			}
		}
	}
	burst := (64 << 10) / 1000
	if got := c1.written + c2.written; got != burst {
		t.Errorf("alice's two relays passed %d packets, want the burst's %d", got, burst)
	}
	if cb.written != burst {
		t.Errorf("bob's relay passed %d packets, want his own burst's %d", cb.written, burst)
	}
	clock.advance(100 * time.Millisecond) // 10 kB more
	before := cb.written
	for range 20 {
		_, _ = b.WriteTo(packet, peer)
	}
	if got := cb.written - before; got != 10 {
		t.Errorf("100 ms later bob's relay passed %d packets, want 10", got)
	}

	// From the peer: datagrams beyond the budget are read and dropped.
	in, ci := relay("carol")
	for range 100 {
		ci.queued = append(ci.queued, packet)
	}
	read := 0
	buf := make([]byte, 1500)
	for {
		if _, _, err := in.ReadFrom(buf); err != nil {
			break
		}
		read++
	}
	if read != burst {
		t.Errorf("carol's relay delivered %d packets from the peer, want the burst's %d", read, burst)
	}

	// Closing a relay gives its slot back, once.
	_ = a1.Close()
	_ = a1.Close()
	if n := srv.users["alice"].allocs; n != 1 {
		t.Errorf("alice holds %d relays after closing one of two (twice), want 1", n)
	}
}

// TestTURNOverTLS: turns: on the TLS listener, with the certificate the
// server was given, relays for a valid credential.
func TestTURNOverTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"turn.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	srv, _ := startTestTURN(t, func(o *TURNOptions) {
		o.UDPListen, o.TLSListen, o.Host = "", "127.0.0.1:0", "turn.test"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	url := srv.URLs()[0]
	if !strings.HasPrefix(url, "turns:turn.test:") || !strings.HasSuffix(url, "?transport=tcp") {
		t.Fatalf("URL %q, want turns:turn.test:PORT?transport=tcp", url)
	}
	_, port, _ := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(url, "turns:"), "?transport=tcp"))
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{ServerName: "turn.test", RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS to the TURN server: %v", err)
	}
	cred := srv.ICEServer("alice")
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: conn.RemoteAddr().String(), TURNServerAddr: conn.RemoteAddr().String(),
		Conn: turn.NewSTUNConn(conn), Username: cred.Username, Password: cred.Credential.(string), Realm: turnRealm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(); conn.Close() }()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	_ = relay.Close()
}
