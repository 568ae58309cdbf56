package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

// embeddedFiles lists every file under static/.
func embeddedFiles(t *testing.T) []string {
	t.Helper()
	var names []string
	err := fs.WalkDir(static, "static", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, strings.TrimPrefix(name, "static/"))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("nothing embedded")
	}
	return names
}

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

func TestServesEveryFileWithItsType(t *testing.T) {
	h := Handler()
	want := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
		".svg":  "image/svg+xml",
	}
	for _, name := range embeddedFiles(t) {
		target := "/" + name
		if name == "index.html" {
			target = "/"
		}
		res, body := get(t, h, http.MethodGet, target, nil)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", target, res.StatusCode)
			continue
		}
		ct, ok := want[path.Ext(name)]
		if !ok {
			t.Errorf("%s: the test does not know the type of %q files; add it", name, path.Ext(name))
			continue
		}
		if got := res.Header.Get("Content-Type"); got != ct {
			t.Errorf("GET %s: Content-Type %q, want %q", target, got, ct)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", target, got)
		}
		if res.Header.Get("ETag") == "" {
			t.Errorf("GET %s: no ETag", target)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", target)
		}
		raw, err := fs.ReadFile(static, "static/"+name)
		if err != nil {
			t.Fatal(err)
		}
		if body != string(raw) {
			t.Errorf("GET %s: body differs from the embedded file", target)
		}
	}
}

func TestContentSecurityPolicy(t *testing.T) {
	res, _ := get(t, Handler(), http.MethodGet, "http://127.0.0.1:8080/", nil)
	csp := res.Header.Get("Content-Security-Policy")
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		fields := strings.Fields(d)
		if len(fields) > 0 {
			directives[fields[0]] = strings.Join(fields[1:], " ")
		}
	}
	for name, want := range map[string]string{
		"default-src":     "'none'",
		"script-src":      "'self'",
		"style-src":       "'self'",
		"media-src":       "'self' blob: mediastream:",
		"connect-src":     "'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080",
		"frame-ancestors": "'none'",
		"base-uri":        "'none'",
	} {
		if got := directives[name]; got != want {
			t.Errorf("CSP %s = %q, want %q (whole policy: %s)", name, got, want, csp)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline code or eval: %s", csp)
	}
}

func TestCSPLeavesOutAnOddHost(t *testing.T) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "evil.example; script-src *"
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	csp := rec.Result().Header.Get("Content-Security-Policy")
	if strings.Contains(csp, "evil") || !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("a Host header with odd characters reached the policy: %s", csp)
	}
}

func TestNotFoundMethodsAndRevalidation(t *testing.T) {
	h := Handler()
	for _, target := range []string{"/nope.js", "/index.html", "/static/app.js", "/api/rooms"} {
		if res, _ := get(t, h, http.MethodGet, target, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", target, res.StatusCode)
		}
	}
	res, _ := get(t, h, http.MethodPost, "/", nil)
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: status %d Allow %q, want 405 with Allow: GET, HEAD", res.StatusCode, res.Header.Get("Allow"))
	}
	res, body := get(t, h, http.MethodHead, "/app.js", nil)
	if res.StatusCode != http.StatusOK || body != "" || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("HEAD /app.js: status %d, %d body bytes, type %q", res.StatusCode, len(body), res.Header.Get("Content-Type"))
	}
	etag := res.Header.Get("ETag")
	res, body = get(t, h, http.MethodGet, "/app.js", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("GET /app.js with its ETag: status %d, want 304 without a body", res.StatusCode)
	}
}

// TestPageReferencesResolve checks that every script, stylesheet, icon and
// module import the page names is embedded, and that nothing is loaded
// from another origin.
func TestPageReferencesResolve(t *testing.T) {
	files := map[string]bool{}
	for _, n := range embeddedFiles(t) {
		files[n] = true
	}
	sdk := map[string]bool{}
	_ = fs.WalkDir(sdkFiles, "sdk", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			sdk[name] = true
		}
		return nil
	})
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"|from '([^']+)'|import\('([^']+)'\)`)
	for name := range files {
		if ext := path.Ext(name); ext != ".html" && ext != ".js" {
			continue
		}
		raw, _ := fs.ReadFile(static, "static/"+name)
		for _, m := range refs.FindAllStringSubmatch(string(raw), -1) {
			ref := m[1] + m[2] + m[3]
			switch {
			case strings.HasPrefix(ref, "#"):
				continue
			case strings.Contains(ref, "//"):
				t.Errorf("%s loads %q from another origin; everything must come from the binary", name, ref)
				continue
			}
			target := strings.TrimPrefix(strings.TrimPrefix(ref, "./"), "/")
			if !files[target] && !sdk[target] {
				t.Errorf("%s refers to %q, which is not embedded", name, ref)
			}
		}
	}
}

// TestNoSecretsEmbedded looks for anything that resembles a credential in
// the files served to every visitor.
func TestNoSecretsEmbedded(t *testing.T) {
	for _, name := range embeddedFiles(t) {
		raw, _ := fs.ReadFile(static, "static/"+name)
		if what, m := findSecret(raw); what != "" {
			t.Errorf("%s contains what looks like a %s: %.40q", name, what, m)
		}
	}
}

// findSecret returns the kind and text of the first credential-like string
// in b.
func findSecret(b []byte) (string, []byte) {
	patterns := map[string]*regexp.Regexp{
		"Discord bot token": regexp.MustCompile(`[MNO][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,40}`),
		"JWT":               regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`),
		"private key":       regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
		"long hex secret":   regexp.MustCompile(`\b[0-9a-fA-F]{40,}\b`),
		"assigned secret":   regexp.MustCompile(`(?i)(secret|password|api[_-]?key|bot[_-]?token)\s*[:=]\s*['"][^'"]{8,}['"]`),
		"environment name":  regexp.MustCompile(`DISCORD_BOT_TOKEN|HUB_HMAC_SECRET`),
	}
	for what, re := range patterns {
		if m := re.Find(b); m != nil {
			return what, m
		}
	}
	return "", nil
}

// TestSecretScanCatchesPlantedToken makes sure the scan above would fail
// on a real-looking token (a scan that can never fire proves nothing).
func TestSecretScanCatchesPlantedToken(t *testing.T) {
	for _, planted := range []string{
		"const t = 'MTA5ODc2NTQzMjEwOTg3NjU0MzIx.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB';",
		"token: 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJkZXYtYWxpY2UifQ.sig'",
		"-----BEGIN EC PRIVATE KEY-----",
		"const hmac = '0123456789abcdef0123456789abcdef0123456789abcdef';",
	} {
		if what, _ := findSecret([]byte(planted)); what == "" {
			t.Errorf("the scan misses %q", planted)
		}
	}
	if what, m := findSecret([]byte("const x = 'hello';")); what != "" {
		t.Errorf("the scan flags harmless text as a %s: %q", what, m)
	}
}
