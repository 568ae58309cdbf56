package main

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// TestTrustProxies: forwarding headers are believed from trusted proxies
// only, and the client is the rightmost address that is not a proxy.
func TestTrustProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		name, remote, xff, proto, host   string
		wantRemote, wantScheme, wantHost string
	}{
		{"direct client, headers dropped", "203.0.113.9:5555", "198.51.100.1", "https", "evil.example", "203.0.113.9:5555", "http", "bridge.example.com"},
		{"one proxy", "127.0.0.1:4000", "198.51.100.7", "https", "", "198.51.100.7:0", "https", "bridge.example.com"},
		{"spoofed left entry ignored", "127.0.0.1:4000", "6.6.6.6, 198.51.100.7, 10.1.2.3", "http", "b.example.org", "198.51.100.7:0", "http", "b.example.org"},
		{"no header: the proxy itself", "127.0.0.1:4000", "", "", "", "127.0.0.1:0", "http", "bridge.example.com"},
		{"garbage stops the walk", "10.0.0.2:80", "nonsense", "gopher", "", "10.0.0.2:0", "http", "bridge.example.com"},
	}
	for _, tc := range cases {
		var got *http.Request
		h := trustProxies(trusted, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r }))
		r := httptest.NewRequest(http.MethodGet, "http://bridge.example.com/", nil)
		r.RemoteAddr = tc.remote
		for k, v := range map[string]string{"X-Forwarded-For": tc.xff, "X-Forwarded-Proto": tc.proto, "X-Forwarded-Host": tc.host} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got.RemoteAddr != tc.wantRemote || got.URL.Scheme != tc.wantScheme || got.Host != tc.wantHost {
			t.Errorf("%s: remote %q scheme %q host %q, want %q %q %q", tc.name, got.RemoteAddr, got.URL.Scheme, got.Host, tc.wantRemote, tc.wantScheme, tc.wantHost)
		}
		if tc.remote == "203.0.113.9:5555" && got.Header.Get("X-Forwarded-For") != "" {
			t.Errorf("%s: an untrusted client's X-Forwarded-For was passed on", tc.name)
		}
	}
}

// TestRedirectToHTTPS keeps host and path and names the HTTPS port.
func TestRedirectToHTTPS(t *testing.T) {
	for _, tc := range []struct{ port, host, path, want string }{
		{"443", "bridge.example.com", "/a?b=1", "https://bridge.example.com/a?b=1"},
		{"8443", "bridge.example.com:80", "/", "https://bridge.example.com:8443/"},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+tc.path, nil)
		redirectToHTTPS(tc.port).ServeHTTP(rec, r)
		if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != tc.want {
			t.Errorf("%s%s: %d %q, want 301 %q", tc.host, tc.path, rec.Code, rec.Header().Get("Location"), tc.want)
		}
	}
}

// TestWarnInsecure: plain HTTP on an address other machines reach gets a
// warning that names the fix; loopback, TLS or a proxy get none.
func TestWarnInsecure(t *testing.T) {
	public := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 8080}
	for _, tc := range []struct {
		name string
		cfg  Config
		addr net.Addr
		want bool
	}{
		{"plain on a public address", Config{}, public, true},
		{"plain on every address", Config{}, &net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}, true},
		{"plain on loopback", Config{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, false},
		{"certificate files", Config{TLSCertFile: "c.pem"}, public, false},
		{"ACME", Config{TLSDomains: []string{"b.example.com"}}, public, false},
		{"behind a proxy", Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, public, false},
	} {
		var buf bytes.Buffer
		warnInsecure(&tc.cfg, tc.addr, slog.New(slog.NewTextHandler(&buf, nil)))
		got := buf.String()
		if tc.want != (got != "") {
			t.Errorf("%s: logged %q, want a warning: %v", tc.name, got, tc.want)
		}
		if tc.want && !(strings.Contains(got, "no microphone") && strings.Contains(got, "TLS_DOMAIN") && strings.Contains(got, "TRUSTED_PROXIES")) {
			t.Errorf("%s: warning %q does not say what fails and how to fix it", tc.name, got)
		}
	}
}
