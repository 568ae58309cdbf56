package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startFailure is a start-up that must fail: its environment and what
// the one line on stderr must say.
type startFailure struct {
	name string
	env  map[string]string
	want []string // substrings of the line
}

// startFailures holds the port in use, a JWKS that answers 500 and one
// that never answers. busy is a listening address; the JWKS servers stay
// up until the test ends.
func startFailures(t *testing.T, busy string) []startFailure {
	t.Helper()
	free := freeAddr(t)
	jwks500 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(jwks500.Close)
	hang := make(chan struct{})
	jwksHang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(jwksHang.Close)
	t.Cleanup(func() { close(hang) }) // runs first: releases the handler before Close waits for it
	production := func(jwks string) map[string]string {
		return map[string]string{
			"LISTEN_ADDR": free, "ICE_UDP_PORT": "0",
			"DISCORD_BOT_TOKEN": "bot-token", "DISCORD_GUILD_ID": "100", "ROOM_CATEGORY_ID": "200",
			// Never reached: the JWKS fails first.
			"DISCORD_API_BASE": "http://127.0.0.1:1/api/v10",
			"JWKS_URL":         jwks, "JWT_ISSUER": "https://idp.test", "JWT_AUDIENCE": "bridge",
			"JWKS_TIMEOUT": "1s",
		}
	}
	return []startFailure{
		{"port in use", map[string]string{"LISTEN_ADDR": busy, "ICE_UDP_PORT": "0"},
			[]string{"start: LISTEN_ADDR " + busy + ":", "address already in use", "set LISTEN_ADDR to a free address"}},
		{"JWKS 500", production(jwks500.URL + "/jwks.json"),
			[]string{"start: JWKS_URL " + jwks500.URL + "/jwks.json:", "HTTP 500", "check that JWKS_URL"}},
		{"JWKS never answers", production(jwksHang.URL + "/jwks.json"),
			[]string{"start: JWKS_URL " + jwksHang.URL + "/jwks.json:", "no answer within 1s", "JWKS_TIMEOUT (1s)"}},
	}
}

// freeAddr is a loopback address nothing listens on (just now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// The binary, started in each way that cannot work, prints one line
// naming the cause and the fix and exits 1, without a panic.
func TestStartFailuresExitWithOneLine(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bridge")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range startFailures(t, busy.Addr().String()) {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LOG_LEVEL=error"}
			for k, v := range tc.env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v (want status 1)\nstderr:\n%s", err, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("stderr has %d lines, want one:\n%s", len(lines), stderr.String())
			}
			t.Logf("stderr: %s", lines[0])
			for _, w := range tc.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("stderr line %q lacks %q", lines[0], w)
				}
			}
			if strings.Contains(stderr.String(), "panic") || strings.Contains(stderr.String(), "goroutine ") {
				t.Errorf("stderr shows a panic:\n%s", stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// In process, a failed start leaves no goroutine and no listener: the
// address can be taken again at once. The ICE UDP port in use joins the
// cases: it fails after the embedded emulator started, which must stop.
func TestStartFailuresLeaveNothingRunning(t *testing.T) {
	checkLeaks(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	udp, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	cases := append(startFailures(t, busy.Addr().String()), startFailure{"ICE UDP port in use",
		map[string]string{"LISTEN_ADDR": "127.0.0.1:0", "ICE_UDP_PORT": strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port)},
		[]string{"start: media (ICE_UDP_PORT " + strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port) + ")", "ICE_UDP_PORT to a free one"}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(nil, envFrom(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
			a, err := newApp(context.Background(), cfg, log)
			if err == nil {
				_ = a.Shutdown(context.Background())
				t.Fatal("start succeeded")
			}
			var se *StartError
			if !errors.As(err, &se) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want a one-line *StartError, got %T %q", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if a != nil {
				t.Error("a failed start returned an app")
			}
			if cfg.ListenAddr != busy.Addr().String() && !strings.HasSuffix(cfg.ListenAddr, ":0") {
				ln, err := net.Listen("tcp", cfg.ListenAddr)
				if err != nil {
					t.Fatalf("the failed start left %s taken: %v", cfg.ListenAddr, err)
				}
				ln.Close()
			}
		})
	}
}
