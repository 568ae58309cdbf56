package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// contentTypes maps the extensions the UI uses to their media types. A file
// with another extension is not served: the test in this package makes sure
// every embedded file is covered.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".json":        "application/json",
	".webmanifest": "application/manifest+json",
	".txt":         "text/plain; charset=utf-8",
	".ts":          "text/plain; charset=utf-8", // TypeScript declarations, for reading
	".md":          "text/markdown; charset=utf-8",
}

// file is one embedded file, read once.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// handler serves the embedded files.
type handler struct {
	files   map[string]file // by URL path, "/" being index.html
	loadErr error
	modTime time.Time
}

// Handler serves the UI: "/" is index.html and every other embedded file is
// served at its own path ("/app.js", "/style.css", ...). Each response
// carries the file's content type, Cache-Control: no-cache, an ETag, and
// the security headers of securityHeaders. Unknown paths get 404 and
// methods other than GET and HEAD get 405.
func Handler() http.Handler {
	h := &handler{files: make(map[string]file), modTime: time.Now()}
	h.loadErr = h.load()
	return h
}

// load reads every embedded file into h.files: the page's at their own
// paths, the SDK's under /sdk/.
func (h *handler) load() error {
	if err := h.loadDir(static, "static", "/"); err != nil {
		return err
	}
	return h.loadDir(sdkFiles, "sdk", "/sdk/")
}

// loadDir reads the files under dir of fsys into h.files at prefix.
func (h *handler) loadDir(fsys fs.FS, dir, prefix string) error {
	root, err := fs.Sub(fsys, dir)
	if err != nil {
		return fmt.Errorf("web: embedded files: %w", err)
	}
	return fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(name)]
		if !ok {
			return fmt.Errorf("web: embedded file %s has no known content type", name)
		}
		body, err := fs.ReadFile(root, name)
		if err != nil {
			return fmt.Errorf("web: read embedded %s: %w", name, err)
		}
		sum := sha256.Sum256(body)
		f := file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		h.files[prefix+name] = f
		if prefix == "/" && name == "index.html" {
			h.files["/"] = f
		}
		return nil
	})
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header(), r.Host)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, ErrMethodNotAllowed.Error(), http.StatusMethodNotAllowed)
		return
	}
	if h.loadErr != nil {
		http.Error(w, h.loadErr.Error(), http.StatusInternalServerError)
		return
	}
	f, ok := h.files[r.URL.Path]
	if !ok || r.URL.Path == "/index.html" {
		// index.html lives at "/" only, so the page has one address.
		http.Error(w, ErrNotFound.Error()+": "+r.URL.Path, http.StatusNotFound)
		return
	}
	hdr := w.Header()
	if strings.HasPrefix(r.URL.Path, "/sdk/") {
		// Apps on other origins import the SDK as a module script, which
		// browsers fetch in CORS mode. It holds no secret.
		hdr.Set("Access-Control-Allow-Origin", "*")
		hdr.Set("Cross-Origin-Resource-Policy", "cross-origin")
	}
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", f.etag)
	// ServeContent answers If-None-Match with 304 and HEAD without a body.
	http.ServeContent(w, r, "", h.modTime, bytes.NewReader(f.body))
}

// securityHeaders sets the headers that hold the page to its own origin.
//
// The Content-Security-Policy (CSP Level 3) allows scripts, styles, images,
// fonts and the manifest from the page's origin only, media from the origin
// and from blob:/mediastream: (camera previews and WebRTC streams), and
// connections to the origin over HTTP and WebSocket. CSP 3 lets 'self'
// match ws:/wss: on the same host, but older engines do not, so the
// WebSocket origins are named explicitly when the Host header is a plain
// host[:port].
func securityHeaders(h http.Header, host string) {
	connect := "'self'"
	if validHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	h.Set("Content-Security-Policy", strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' data: blob:",
		"font-src 'self'",
		"media-src 'self' blob: mediastream:",
		"connect-src " + connect,
		"manifest-src 'self'",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
	}, "; "))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Permissions-Policy", "camera=(self), microphone=(self), autoplay=(self), geolocation=()")
}

// validHost reports whether host is safe to place in a header: a DNS name,
// an IPv4 address or a bracketed IPv6 address, with an optional port.
func validHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}
