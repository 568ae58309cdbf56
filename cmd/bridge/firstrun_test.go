package main

// The first run as the README tells it: the binary with no environment at
// all, on a machine whose only network is loopback, opened at the URL it
// prints. The test puts itself (the bridge and Chromium) in a fresh network
// namespace that holds only lo, so the default ports are free and nothing
// but loopback exists.

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator"
)

// firstRunNSEnv marks the test process re-run inside its namespace.
const firstRunNSEnv = "BRIDGE_TEST_FIRST_RUN_NS"

// firstRunBinEnv carries the path of the binary built outside it.
const firstRunBinEnv = "BRIDGE_TEST_FIRST_RUN_BIN"

func TestFirstRunLoopbackOnly(t *testing.T) {
	if os.Getenv(firstRunNSEnv) == "" {
		reexecInLoopbackNamespace(t)
		return
	}
	bin := os.Getenv(firstRunBinEnv)
	cmd := exec.Command(bin)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")} // "no env": only what a shell always has
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
			t.Log(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the bridge did not stop cleanly on Ctrl+C: %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("the bridge did not stop within 20 s of Ctrl+C")
		}
	})

	// The first screen: the URL, what runs, how to stop; and the media
	// addresses offered, which on this machine are loopback.
	urlRE := regexp.MustCompile(`open (http://\S+) in a browser`)
	var url, offers string
	var screen []string
	stop := false
	deadline := time.After(30 * time.Second)
	for url == "" || offers == "" || !stop {
		select {
		case l := <-lines:
			screen = append(screen, l)
			if m := urlRE.FindStringSubmatch(l); m != nil {
				url = strings.TrimSuffix(m[1], "/")
			}
			if i := strings.Index(l, "offers="); i >= 0 {
				offers = l[i:]
			}
			stop = stop || strings.Contains(l, "Stop: Ctrl+C")
		case err := <-exited:
			t.Fatalf("the bridge exited: %v", err)
		case <-deadline:
			t.Fatalf("within 30 s the bridge printed no URL, no offered address or not how to stop:\n%s", strings.Join(screen, "\n"))
		}
	}
	if !strings.Contains(offers, "127.0.0.1:8443") {
		t.Errorf("the bridge offers %s, want 127.0.0.1:8443 on a loopback-only machine", offers)
	}
	for _, want := range []string{"Ctrl+C", "emulated Discord"} {
		if !strings.Contains(strings.Join(screen, "\n"), want) {
			t.Errorf("the first screen does not say %q:\n%s", want, strings.Join(screen, "\n"))
		}
	}
	for _, l := range screen {
		if strings.Contains(l, "component=voiceemu") || strings.Contains(l, "component=discordemu") || strings.Contains(l, "pion") {
			t.Errorf("emulator or pion detail on the first screen: %s", l)
		}
	}
	if url != "http://localhost:8080" {
		t.Errorf("the printed URL is %s, want http://localhost:8080 (the README's)", url)
	}

	p := &page{t: t, ctx: startBrowser(t), name: "newcomer"}
	p.signIn(url, "newcomer")
	p.join("Lobby")
	joined := time.Now()
	talker := "discord-" + emulator.DemoTalkerID
	budget := func() time.Duration { return max(time.Second, 10*time.Second-time.Since(joined)) }
	before, after := p.waitGrowth("talker audio energy", talker, "audio", "totalAudioEnergy", budget())
	if time.Since(joined) > 10*time.Second {
		t.Fatalf("the talker's audio energy grew only %v after joining, want within 10 s", time.Since(joined))
	}
	t.Logf("talker totalAudioEnergy %.3g -> %.3g, %v after joining", before, after, time.Since(joined).Round(time.Millisecond))
	p.waitJS("offered address shown", 5*time.Second,
		`document.querySelector('[data-testid=call-offers]').textContent.includes('127.0.0.1:8443')`)
	p.checkErrors()
}

// reexecInLoopbackNamespace builds the binary, then runs this test again
// in a new network namespace holding only lo (unshare needs root; CI runs
// as root).
func reexecInLoopbackNamespace(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root and unshare (util-linux) for its network namespace, and CI runs as root")
		}
		t.Skip("needs root and unshare for a loopback-only network namespace (CI runs it)")
	}
	bin := filepath.Join(t.TempDir(), "bridge")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := exec.CommandContext(ctx, "unshare", "--net", "sh", "-c", `ip link set lo up && exec "$@"`, "sh",
		self, "-test.run=^TestFirstRunLoopbackOnly$", "-test.v", "-test.count=1")
	run.Env = append(os.Environ(), firstRunNSEnv+"=1", firstRunBinEnv+"="+bin)
	out, err := run.CombinedOutput()
	t.Logf("inside the namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test inside the loopback-only namespace failed: %v", err)
	}
}
