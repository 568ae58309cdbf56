package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestEmulatorPrintsWorkingSettings: the settings printed reach a REST API
// that accepts the token, and the CA file is what the voice server's TLS
// verifies against.
func TestEmulatorPrintsWorkingSettings(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-voice-ca-file", ca, "-log-level", "error"}, pw, io.Discard)
		_ = pw.Close()
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit code %d", code)
		}
	}()

	env := map[string]string{}
	sc := bufio.NewScanner(pr)
	for len(env) < 5 && sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("line %q is not VAR=value", sc.Text())
		}
		env[k] = v
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	for _, k := range []string{"DISCORD_API_BASE", "DISCORD_BOT_TOKEN", "DISCORD_GUILD_ID", "ROOM_CATEGORY_ID", "VOICE_CA_FILE"} {
		if env[k] == "" {
			t.Fatalf("%s not printed: %v", k, env)
		}
	}
	if u, err := url.Parse(env["DISCORD_API_BASE"]); err != nil || u.Hostname() != "127.0.0.1" {
		t.Fatalf("DISCORD_API_BASE %q is not a loopback URL", env["DISCORD_API_BASE"])
	}

	req, _ := http.NewRequest(http.MethodGet, env["DISCORD_API_BASE"]+"/gateway/bot", nil)
	req.Header.Set("Authorization", "Bot "+env["DISCORD_BOT_TOKEN"])
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"url"`) {
		t.Fatalf("GET /gateway/bot: %s %s", resp.Status, body)
	}
	client.CloseIdleConnections()

	b, err := os.ReadFile(env["VOICE_CA_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no PEM certificate", env["VOICE_CA_FILE"])
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil || !cert.IsCA {
		t.Fatalf("the voice certificate must be a CA valid for 127.0.0.1: %v (CA %v)", err, cert.IsCA)
	}
}

// TestEmulatorControlView: with -control-addr the emulator prints
// EMULATOR_CONTROL_URL, whose /stats counts identifies and resumes and
// whose /connections lists the gateway connections; a bad address is
// named.
func TestEmulatorControlView(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
	var stderr strings.Builder
	if code := run(context.Background(), []string{"-control-addr", "nohostport"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "-control-addr") {
		t.Fatalf("bad -control-addr: exit %d, %q", code, stderr.String())
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-voice-ca-file", filepath.Join(t.TempDir(), "ca.pem"), "-log-level", "error", "-control-addr", "127.0.0.1:0"}, pw, io.Discard)
		_ = pw.Close()
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit code %d", code)
		}
	}()
	env := map[string]string{}
	sc := bufio.NewScanner(pr)
	for len(env) < 6 && sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		env[k] = v
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	control := env["EMULATOR_CONTROL_URL"]
	if !strings.HasPrefix(control, "http://127.0.0.1:") {
		t.Fatalf("EMULATOR_CONTROL_URL %q; printed %v", control, env)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	for path, want := range map[string]string{"/stats": `"Identifies":0`, "/connections": `[]`} {
		resp, err := client.Get(control + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s: %s %s, want it to hold %s", path, resp.Status, body, want)
		}
	}
}
