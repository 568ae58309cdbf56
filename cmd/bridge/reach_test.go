package main

// Tests of reaching the bridge from other machines: HTTPS from certificate
// files and from an ACME CA (Pebble), ICE over TCP, and the embedded TURN
// server, with real Chromium against the embedded default, on loopback.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/voicebridge/bridge/emulator"
	"github.com/voicebridge/bridge/media"
)

// testHost is the name the tests' browser and ACME CA resolve to 127.0.0.1.
const testHost = "bridge.test"

// testCA is a certificate authority made up for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for hosts (and 127.0.0.1) and its key as PEM
// files into dir, and returns the leaf.
func (ca *testCA) issue(t *testing.T, dir, serial string, hosts ...string) (certFile, keyFile string, leaf *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := new(big.Int).SetString(serial, 10)
	tmpl := &x509.Certificate{
		SerialNumber: n,
		Subject:      pkix.Name{CommonName: hosts[0]},
		DNSNames:     hosts,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Written beside and renamed over, as certbot and friends replace files.
	writeAtomic(t, certFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.pem...))
	writeAtomic(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile, leaf
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// spkiHash is a certificate's key as Chromium's
// --ignore-certificate-errors-spki-list takes it: base64 of SHA-256 of the
// SubjectPublicKeyInfo.
func spkiHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// servedLeaf connects to addr over TLS as testHost, trusting roots, and
// returns the certificate the server presented.
func servedLeaf(t *testing.T, addr string, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: testHost, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// loopbackMedia keeps media's candidates on loopback.
func loopbackMedia(o *media.Options) {
	o.ICEUDPListen = "127.0.0.1:0"
	o.IncludeLoopback = true
	o.IPFilter = func(ip net.IP) bool { return ip.IsLoopback() }
	o.InterfaceFilter = func(name string) bool { return name == "lo" }
	o.Grace = time.Second
}

// browserAt starts Chromium that resolves testHost to 127.0.0.1 and takes
// the certificates with the given keys as valid.
func browserAt(t *testing.T, trusted []*x509.Certificate, extra ...chromedp.ExecAllocatorOption) *page {
	t.Helper()
	var hashes []string
	for _, c := range trusted {
		hashes = append(hashes, spkiHash(c))
	}
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.Flag("host-resolver-rules", "MAP "+testHost+" 127.0.0.1"),
	}, extra...)
	if len(hashes) > 0 {
		opts = append(opts, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(hashes, ",")))
	}
	return &page{t: t, ctx: startBrowser(t, opts...), name: "remote"}
}

// hearTalker joins the Lobby and waits until the talking member's audio
// is received and played.
func (p *page) hearTalker(base string) {
	p.t.Helper()
	p.signIn(base, "remote")
	if secure := eval[bool](p, `window.isSecureContext && !!navigator.mediaDevices`); !secure {
		p.t.Fatalf("%s is not a secure context: the page gets no microphone", base)
	}
	p.join("Lobby")
	talker := "discord-" + emulator.DemoTalkerID
	b, a := p.waitGrowth("talker packets", talker, "audio", "packetsReceived", 15*time.Second)
	p.t.Logf("talker packets %v -> %v", b, a)
	b, a = p.waitGrowth("talker audio energy", talker, "audio", "totalAudioEnergy", 10*time.Second)
	p.t.Logf("talker totalAudioEnergy %.3g -> %.3g", b, a)
	// The browser's microphone is live: it sends audio.
	p.waitJS("microphone audio sent", 10*time.Second,
		`(window.__bridge.lastStats?.outbound || []).some(s => s.kind === 'audio' && s.packetsSent > 0)`)
}

// TestBrowserHTTPSFromFiles serves the page over HTTPS with a certificate
// from files: Chromium opens https://bridge.test:PORT/, gets a microphone,
// joins the Lobby and hears the talking member. Replacing the files
// switches the served certificate without a restart.
func TestBrowserHTTPSFromFiles(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	ca := newTestCA(t, "reach test CA")
	certFile, keyFile, first := ca.issue(t, dir, "100", testHost)
	st := startTestApp(t, tuning{media: loopbackMedia}, map[string]string{
		"TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile,
	})
	_, port, _ := net.SplitHostPort(st.Addr())
	base := "https://" + testHost + ":" + port
	if got := st.URL(); !strings.HasPrefix(got, "https://") {
		t.Errorf("the app's URL is %q, want https://", got)
	}

	p := browserAt(t, []*x509.Certificate{first})
	p.hearTalker(base)
	p.checkErrors()

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	got, err := servedLeaf(t, st.Addr(), roots)
	if err != nil || got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("served certificate %v (err %v), want serial %v", got.SerialNumber, err, first.SerialNumber)
	}
	_, _, second := ca.issue(t, dir, "200", testHost)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := servedLeaf(t, st.Addr(), roots)
		if err == nil && got.SerialNumber.Cmp(second.SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after replacing the files the bridge still serves %v (err %v), want serial %v", got.SerialNumber, err, second.SerialNumber)
		}
	}
	// A browser that takes only the new certificate's key opens the page.
	fresh := browserAt(t, []*x509.Certificate{second})
	fresh.do("open the page with the new certificate", 15*time.Second,
		chromedp.Navigate(base+"/"), chromedp.WaitVisible(testid("signin-name")))
}

// noUDP is Chromium's policy that forbids WebRTC UDP not through a proxy:
// what a network that blocks UDP leaves a browser.
var noUDP = chromedp.Flag("webrtc-ip-handling-policy", "disable_non_proxied_udp")

// TestBrowserICETCPWhenUDPBlocked: a browser that may not use UDP joins
// the Lobby over ICE-TCP, hears the talking member, and the page says the
// call goes over direct TCP.
func TestBrowserICETCPWhenUDPBlocked(t *testing.T) {
	checkLeaks(t)
	st := startTestApp(t, tuning{media: func(o *media.Options) {
		loopbackMedia(o)
		o.ICETCPListen = "127.0.0.1:0"
	}}, nil)
	p := browserAt(t, nil, noUDP)
	p.hearTalker(st.base)
	p.waitJS("the page names the path", 5*time.Second,
		`!document.querySelector('[data-testid=call-path]').hidden && document.querySelector('[data-testid=call-path]').textContent === 'Media: direct TCP'`)
	p.screenshot("call-over-tcp")
	p.checkErrors()
}

// TestBrowserTURNWhenUDPBlocked: with ICE-TCP off and the embedded TURN
// server on, a browser that may not use UDP reaches the bridge through a
// TURN relay over TCP, with the credential it got in "joined", and hears
// the talking member.
func TestBrowserTURNWhenUDPBlocked(t *testing.T) {
	checkLeaks(t)
	st := startTestApp(t, tuning{
		media: loopbackMedia,
		turn: func(o *media.TURNOptions) {
			o.UDPListen, o.TCPListen, o.RelayBind = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1"
		},
	}, map[string]string{"TURN_PORT": "3478", "TURN_RELAY_IP": "127.0.0.1"})
	p := browserAt(t, nil, noUDP)
	p.hearTalker(st.base)
	p.waitJS("the page names the path", 5*time.Second,
		`document.querySelector('[data-testid=call-path]').textContent === 'Media: relayed through TURN (tcp)'`)
	p.screenshot("call-over-turn")
	p.checkErrors()
}
