package main

// How browsers on other machines reach the bridge: HTTPS (certificate
// files, reloaded when they change, or ACME), the plain-HTTP redirect, and
// the trusted reverse proxies whose forwarding headers are believed.
// Browsers give the microphone only to a secure context (W3C Secure
// Contexts §3.1), so one of these is needed for anyone not on localhost.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// certFiles serves the certificate of TLS_CERT_FILE and TLS_KEY_FILE and
// loads it again when either file changed (a renewal by certbot or an
// operator), so no restart is needed. A pair that does not load (a renewal
// half-written, a key that does not match) keeps the previous certificate
// in service and is retried at the next handshake.
type certFiles struct {
	certPath, keyPath string
	log               *slog.Logger

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp [2]fileStamp
}

// fileStamp is what tells a changed file: its modification time and size.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// loadCertFiles reads the pair once; a bad pair at start is an error.
func loadCertFiles(certPath, keyPath string, log *slog.Logger) (*certFiles, error) {
	cf := &certFiles{certPath: certPath, keyPath: keyPath, log: log}
	if _, err := cf.current(); err != nil {
		return nil, err
	}
	return cf, nil
}

// current returns the certificate, reloading it if a file changed.
func (cf *certFiles) current() (*tls.Certificate, error) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	cs, err1 := stampOf(cf.certPath)
	ks, err2 := stampOf(cf.keyPath)
	if err := errors.Join(err1, err2); err != nil {
		if cf.cert != nil {
			return cf.cert, nil // mid-replacement; keep serving the old one
		}
		return nil, fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
	}
	if cf.cert != nil && cs == cf.stamp[0] && ks == cf.stamp[1] {
		return cf.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(cf.certPath, cf.keyPath)
	if err != nil {
		if cf.cert != nil {
			cf.log.Warn("changed certificate files do not load; still serving the previous certificate", "err", err)
			return cf.cert, nil
		}
		return nil, fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
	}
	if cf.cert != nil {
		cf.log.Info("certificate reloaded", "file", cf.certPath, "subject", leafSubject(&cert))
	}
	cf.cert, cf.stamp = &cert, [2]fileStamp{cs, ks}
	return cf.cert, nil
}

func (cf *certFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return cf.current()
}

func leafSubject(c *tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return ""
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return ""
	}
	return leaf.Subject.String()
}

// front is the HTTPS side of the app: the TLS configuration of LISTEN_ADDR
// (nil without TLS), the plain-HTTP redirect server and the handler that
// applies TRUSTED_PROXIES.
type front struct {
	tls  *tls.Config
	acme *autocert.Manager // nil unless TLS_DOMAIN
	log  *slog.Logger

	redirectAddr string // HTTP_REDIRECT_ADDR, empty when off
	redirect     *http.Server
	redirLn      net.Listener
	done         chan struct{}
}

// newFront builds the TLS configuration; listener starts the redirect.
func newFront(cfg *Config, log *slog.Logger) (*front, error) {
	f := &front{}
	switch {
	case cfg.TLSCertFile != "":
		cf, err := loadCertFiles(cfg.TLSCertFile, cfg.TLSKeyFile, log)
		if err != nil {
			return nil, err
		}
		f.tls = &tls.Config{GetCertificate: cf.getCertificate, NextProtos: []string{"h2", "http/1.1"}}
	case len(cfg.TLSDomains) > 0:
		client := &acme.Client{DirectoryURL: cfg.ACMEDirectoryURL}
		if cfg.ACMECARoots != "" {
			pem, err := os.ReadFile(cfg.ACMECARoots)
			if err != nil {
				return nil, fmt.Errorf("ACME_CA_ROOTS: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ACME_CA_ROOTS: %s holds no PEM certificate", cfg.ACMECARoots)
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
			client.HTTPClient = &http.Client{Transport: tr, Timeout: time.Minute}
		}
		if err := os.MkdirAll(cfg.ACMECacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("ACME_CACHE_DIR: %w", err)
		}
		f.acme = &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			Cache:      autocert.DirCache(cfg.ACMECacheDir),
			HostPolicy: autocert.HostWhitelist(cfg.TLSDomains...),
			Client:     client,
			Email:      cfg.ACMEEmail,
		}
		// TLSConfig offers acme-tls/1, so TLS-ALPN-01 works on LISTEN_ADDR;
		// HTTP-01 goes through the redirect server below.
		f.tls = f.acme.TLSConfig()
		log.Info("HTTPS certificates from ACME", "domains", strings.Join(cfg.TLSDomains, ","),
			"directory", cfg.ACMEDirectoryURL, "cache", cfg.ACMECacheDir)
	}
	f.redirectAddr, f.log = cfg.RedirectAddr, log
	return f, nil
}

// listener wraps the app's listener in TLS when it is on, and starts the
// plain-HTTP server that redirects to ln's port and answers HTTP-01
// challenges. On error ln is closed.
func (f *front) listener(ln net.Listener) (net.Listener, error) {
	if f.tls == nil {
		return ln, nil
	}
	if f.redirectAddr != "" {
		_, httpsPort, _ := net.SplitHostPort(ln.Addr().String())
		var h http.Handler = redirectToHTTPS(httpsPort)
		if f.acme != nil {
			h = hostWithoutPort(f.acme.HTTPHandler(h))
		}
		rln, err := net.Listen("tcp", f.redirectAddr)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("HTTP_REDIRECT_ADDR %s: %w (set HTTP_REDIRECT_ADDR=off if another server owns it)", f.redirectAddr, err)
		}
		f.redirLn, f.done = rln, make(chan struct{})
		f.redirect = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(f.log.Handler(), slog.LevelWarn)}
		go func() {
			defer close(f.done)
			_ = f.redirect.Serve(rln)
		}()
		f.log.Info("plain HTTP redirects to HTTPS", "addr", rln.Addr().String())
	}
	return tls.NewListener(ln, f.tls), nil
}

// close stops the redirect server.
func (f *front) close(ctx context.Context) error {
	if f.redirect == nil {
		return nil
	}
	err := f.redirect.Shutdown(ctx)
	<-f.done
	return err
}

// redirectToHTTPS answers plain HTTP with a permanent redirect to the same
// host and path over HTTPS on httpsPort.
func redirectToHTTPS(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			http.Error(w, "this server needs HTTPS; no Host header to redirect to", http.StatusBadRequest)
			return
		}
		if httpsPort != "443" {
			host = net.JoinHostPort(host, httpsPort)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
}

// hostWithoutPort strips the port from the Host header: autocert checks
// the Host of an HTTP-01 request against TLS_DOMAIN as it is. Public CAs
// come to port 80 with a bare host, but a CA validating on another port (a
// private CA, Pebble) sends host:port.
func hostWithoutPort(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			r.Host = h
		}
		next.ServeHTTP(w, r)
	})
}

// trustProxies believes X-Forwarded-For, X-Forwarded-Proto and
// X-Forwarded-Host on requests whose peer is one of the trusted proxies:
// the client's address becomes r.RemoteAddr (what per-address limits and
// logs see), and the forwarded scheme and host become r.URL.Scheme and
// r.Host (what the page's own URLs and the same-origin check use). Headers
// from anyone else are dropped, so a browser cannot spoof its address.
func trustProxies(trusted []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, ok := addrOf(r.RemoteAddr)
		if !ok || !inPrefixes(trusted, peer) {
			r.Header.Del("X-Forwarded-For")
			r.Header.Del("X-Forwarded-Proto")
			r.Header.Del("X-Forwarded-Host")
			next.ServeHTTP(w, r)
			return
		}
		// The rightmost address that is not a trusted proxy is the client
		// (each proxy appends the address it got the request from).
		client := peer
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			client = a.Unmap()
			if !inPrefixes(trusted, client) {
				break
			}
		}
		r.RemoteAddr = netip.AddrPortFrom(client, 0).String()
		if p := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); p == "https" || p == "http" {
			r.URL.Scheme = p
		}
		if h := strings.TrimSpace(r.Header.Get("X-Forwarded-Host")); h != "" {
			r.Host = h
		}
		next.ServeHTTP(w, r)
	})
}

func addrOf(remote string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// warnInsecure says plainly, on a listen address other machines can
// reach, that without HTTPS their browsers will not give the page a
// microphone, and how to fix it.
func warnInsecure(cfg *Config, addr net.Addr, log *slog.Logger) {
	if cfg.TLSCertFile != "" || len(cfg.TLSDomains) > 0 || len(cfg.TrustedProxies) > 0 {
		return
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return
	}
	log.Warn("no HTTPS: browsers on other machines will get no microphone or camera (they allow them only on https:// or localhost). " +
		"Fix: set TLS_DOMAIN=your.host.name for automatic certificates, or TLS_CERT_FILE and TLS_KEY_FILE, " +
		"or put a TLS-terminating reverse proxy in front and list it in TRUSTED_PROXIES (README: Reaching the bridge from other machines)")
}
