package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// TestACMEFromPebble: the bridge gets a certificate for bridge.test from
// Pebble, Let's Encrypt's test CA, run here on loopback. Pebble really
// validates, once with TLS-ALPN-01 against the bridge's HTTPS port and once
// with HTTP-01 against its redirect port, resolving bridge.test through the
// test's DNS server.
// A second start with the same cache serves the cached certificate while
// the CA is gone.
func TestACMEFromPebble(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	pebbleBin := buildPebble(t, dir)
	dns := startTestDNS(t, testHost, net.IPv4(127, 0, 0, 1))

	// Pebble's own HTTPS certificate, from a CA the bridge is told to trust.
	ca := newTestCA(t, "pebble front CA")
	pebbleDir := filepath.Join(dir, "pebble")
	if err := os.MkdirAll(pebbleDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pebbleCert, pebbleKey, _ := ca.issue(t, pebbleDir, "7", "localhost")
	rootsFile := filepath.Join(dir, "acme-roots.pem")
	if err := os.WriteFile(rootsFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, challenge := range []string{"tls-alpn-01", "http-01"} {
		t.Run(challenge, func(t *testing.T) {
			pebbleAddr := freeTCPAddr(t)
			cacheDir := filepath.Join(t.TempDir(), "acme-cache")
			env := map[string]string{
				"TLS_DOMAIN":         testHost,
				"ACME_DIRECTORY_URL": "https://" + pebbleAddr + "/dir",
				"ACME_CA_ROOTS":      rootsFile,
				"ACME_CACHE_DIR":     cacheDir,
				"HTTP_REDIRECT_ADDR": "127.0.0.1:0",
			}
			first := startTestApp(t, tuning{}, env)
			_, httpsPort, _ := net.SplitHostPort(first.Addr())
			_, httpPort, _ := net.SplitHostPort(first.front.redirLn.Addr().String())

			// Pebble validates on one port only: the other challenge's port is
			// closed, so the certificate proves the one under test works.
			_, closed, _ := net.SplitHostPort(freeTCPAddr(t))
			vaHTTP, vaTLS := closed, httpsPort
			if challenge == "http-01" {
				vaHTTP, vaTLS = httpPort, closed
			}
			pebble := startPebble(t, pebbleBin, pebbleDir, pebbleCert, pebbleKey, pebbleAddr, vaHTTP, vaTLS, dns)
			leaf, err := acmeLeaf(first.Addr(), 2*time.Minute)
			if err != nil {
				t.Fatalf("the bridge served no certificate from Pebble: %v\npebble log:\n%s", err, pebble.log())
			}
			if !strings.Contains(leaf.Issuer.CommonName, "Pebble") || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != testHost {
				t.Fatalf("served certificate for %v issued by %q, want Pebble's for %s", leaf.DNSNames, leaf.Issuer.CommonName, testHost)
			}
			t.Logf("%s: certificate for %v from %q, serial %v", challenge, leaf.DNSNames, leaf.Issuer.CommonName, leaf.SerialNumber)

			// The plain-HTTP port redirects to HTTPS.
			conn, err := net.DialTimeout("tcp", first.front.redirLn.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET /rooms?x=1 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", testHost)
			var resp bytes.Buffer
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = resp.ReadFrom(conn)
			conn.Close()
			if want := "Location: https://" + testHost + ":" + httpsPort + "/rooms?x=1"; !strings.Contains(resp.String(), "301") || !strings.Contains(resp.String(), want) {
				t.Errorf("plain HTTP answered %q, want a 301 with %q", resp.String(), want)
			}

			// Second start: the CA is gone; the cached certificate is served.
			pebble.stop(t)
			shutdown(t, first)
			second := startTestApp(t, tuning{}, env)
			again, err := acmeLeaf(second.Addr(), 30*time.Second)
			if err != nil {
				t.Fatalf("second start with the CA gone: %v", err)
			}
			if again.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				t.Fatalf("second start serves serial %v, want the cached %v", again.SerialNumber, leaf.SerialNumber)
			}
		})
	}
}

// shutdown stops an app before the test ends (its cleanup then finds it
// stopped).
func shutdown(t *testing.T, ta *testApp) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ta.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// acmeLeaf connects as bridge.test and returns the served certificate; the
// first handshake waits while the bridge gets it from the CA.
func acmeLeaf(addr string, timeout time.Duration) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: testHost, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// freeTCPAddr is a loopback address with a port free a moment ago, for a
// child process that needs its address in a file before it starts.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// buildPebble builds Pebble from the module's tool dependency (go.mod's
// tool line), so it comes from the module cache that scripts/test.sh
// fills before the suite leaves the network.
func buildPebble(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building Pebble needs the go command on PATH: %v", err)
	}
	bin := filepath.Join(dir, "pebble-bin")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/letsencrypt/pebble/v2/cmd/pebble")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pebble (go.mod tool dependency): %v\n%s", err, out)
	}
	return bin
}

// pebbleProc is a running Pebble and its output.
type pebbleProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	once sync.Once
}

func (p *pebbleProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *pebbleProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *pebbleProc) stop(t *testing.T) {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

// startPebble runs Pebble on addr with validation against the bridge's
// ports, and waits until it listens.
func startPebble(t *testing.T, bin, dir, cert, key, addr, httpPort, tlsPort, dnsAddr string) *pebbleProc {
	t.Helper()
	var cfg struct {
		Pebble map[string]any `json:"pebble"`
	}
	atoi := func(s string) int { var n int; fmt.Sscan(s, &n); return n }
	cfg.Pebble = map[string]any{
		"listenAddress": addr,
		"certificate":   cert,
		"privateKey":    key,
		"httpPort":      atoi(httpPort),
		"tlsPort":       atoi(tlsPort),
		"keyAlgorithm":  "ecdsa",
		"retryAfter":    map[string]int{"authz": 1, "order": 1},
	}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pebbleProc{done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsAddr)
	// No random sleep before validating, no nonces refused on purpose.
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("pebble exited: %s", p.log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble does not listen on %s: %v\n%s", addr, err, p.log())
		}
	}
}

// startTestDNS answers A queries for name with ip (and every other query
// with no records) on a loopback port, over UDP and TCP (Pebble asks over
// TCP), and returns its address.
func startTestDNS(t *testing.T, name string, ip net.IP) string {
	t.Helper()
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 { // a UDP port whose TCP twin is free too
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no port free for both UDP and TCP: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply, err := dnsAnswer(buf[:n], name, ip); err == nil {
				_, _ = pc.WriteTo(reply, from)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// RFC 1035 §4.2.2: each message prefixed by its length.
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				for {
					var n [2]byte
					if _, err := io.ReadFull(c, n[:]); err != nil {
						return
					}
					q := make([]byte, int(n[0])<<8|int(n[1]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					reply, err := dnsAnswer(q, name, ip)
					if err != nil {
						return
					}
					if _, err := c.Write(append([]byte{byte(len(reply) >> 8), byte(len(reply))}, reply...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { pc.Close(); ln.Close(); wg.Wait() })
	return pc.LocalAddr().String()
}

func dnsAnswer(query []byte, name string, ip net.IP) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if q.Type == dnsmessage.TypeA && strings.EqualFold(strings.TrimSuffix(q.Name.String(), "."), name) {
		var a dnsmessage.AResource
		copy(a.A[:], ip.To4())
		if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, a); err != nil {
			return nil, err
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil, errors.Join(errors.New("dns answer"), err)
	}
	return out, nil
}
