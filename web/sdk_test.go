package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exportedNames lists the names a module or declaration file exports.
func exportedNames(src string, re *regexp.Regexp) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestSDKPackage: the SDK's declarations name exactly what the module
// exports, and the package, the module and the schema agree on the
// versions (the package's major version is the protocol version).
func TestSDKPackage(t *testing.T) {
	js, err := sdkFiles.ReadFile("sdk/bridge.js")
	if err != nil {
		t.Fatal(err)
	}
	dts, err := sdkFiles.ReadFile("sdk/bridge.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	values := regexp.MustCompile(`(?m)^export (?:async )?(?:class|function|const) ([A-Za-z0-9_]+)`)
	got, want := exportedNames(string(dts), values), exportedNames(string(js), values)
	if !slices.Equal(got, want) {
		t.Errorf("bridge.d.ts declares %v; bridge.js exports %v", got, want)
	}

	var pkg struct {
		Name, Version, Type, Types string
		Voicebridge                struct{ ProtocolVersion int }
	}
	raw, _ := sdkFiles.ReadFile("sdk/package.json")
	if err := json.Unmarshal(raw, &pkg); err != nil {
		t.Fatal(err)
	}
	jsVersion := regexp.MustCompile(`export const version = '([^']+)'`).FindStringSubmatch(string(js))
	jsProtocol := regexp.MustCompile(`export const protocolVersion = (\d+);`).FindStringSubmatch(string(js))
	if jsVersion == nil || jsVersion[1] != pkg.Version {
		t.Errorf("bridge.js version %v, package.json %q", jsVersion, pkg.Version)
	}
	if jsProtocol == nil || jsProtocol[1] != "1" || pkg.Voicebridge.ProtocolVersion != 1 || !strings.HasPrefix(pkg.Version, "1.") {
		t.Errorf("protocol version: bridge.js %v, package.json %d, package version %s; want 1 and 1.x", jsProtocol, pkg.Voicebridge.ProtocolVersion, pkg.Version)
	}
	var schema struct {
		ID string `json:"$id"`
	}
	if err := json.Unmarshal(ProtocolSchema(), &schema); err != nil || schema.ID != "urn:voicebridge:protocol:1" {
		t.Errorf("schema $id %q (%v), want urn:voicebridge:protocol:1", schema.ID, err)
	}
	if pkg.Type != "module" || pkg.Types != "./bridge.d.ts" {
		t.Errorf("package.json: type %q, types %q", pkg.Type, pkg.Types)
	}
}

// TestServesSDK: /sdk/ serves the package's files, importable from any
// origin; the page's own files stay same-origin.
func TestServesSDK(t *testing.T) {
	h := Handler()
	for path, ct := range map[string]string{
		"/sdk/bridge.js":            "text/javascript; charset=utf-8",
		"/sdk/bridge.d.ts":          "text/plain; charset=utf-8",
		"/sdk/package.json":         "application/json",
		"/sdk/protocol.schema.json": "application/json",
		"/sdk/README.md":            "text/markdown; charset=utf-8",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ct {
			t.Errorf("%s: %d %q, want 200 %q", path, rec.Code, rec.Header().Get("Content-Type"), ct)
		}
		if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: not importable from other origins (Access-Control-Allow-Origin %q)", path, rec.Header().Get("Access-Control-Allow-Origin"))
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app.js", nil))
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Error("/app.js carries Access-Control-Allow-Origin")
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sdk/nope.js", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("/sdk/nope.js: %d, want 404", rec.Code)
	}
}
