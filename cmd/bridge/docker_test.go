package main

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDockerImageBinaryRunsInEmptyRoot builds the binary exactly as the
// Dockerfile's build stage does and runs it the way the image does: alone
// in an otherwise empty root, as the image's non-root user. No Docker
// engine is available here, so chroot stands in for the container.
func TestDockerImageBinaryRunsInEmptyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root for chroot, and CI runs as root")
		}
		t.Skip("needs root for chroot (CI runs it)")
	}
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*) -o (\S+) (\S+)$`).FindSubmatch(dockerfile)
	if build == nil {
		t.Fatal("Dockerfile has no `RUN CGO_ENABLED=0 go build ... -o OUT PKG` line")
	}
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindSubmatch(dockerfile)
	if user == nil || string(user[1]) == "0" {
		t.Fatal("Dockerfile must switch to a numeric non-root USER")
	}

	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bridge")
	args := shellWords(string(build[1]))[1:] // drop CGO_ENABLED=0, set below
	args = append(args, "-o", bin, "./"+strings.TrimPrefix(string(build[3]), "./"))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("binary is dynamically linked; the scratch image cannot run it")
		}
	}
	f.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, "chroot", "--userspec="+string(user[1])+":"+string(user[2]), root, "/bridge")
	run.Env = []string{"LISTEN_ADDR=127.0.0.1:0", "ICE_UDP_PORT=0", "ICE_TCP_PORT=off", "LOG_FORMAT=json"}
	stderr, err := run.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
		exited <- run.Wait()
	}()

	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-exited:
		t.Fatalf("binary exited before listening: %v", err)
	case <-ctx.Done():
		t.Fatal("binary did not report its listen address")
	}
	for _, path := range []string{"/healthz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
	if err := run.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("graceful shutdown on SIGTERM must exit 0: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("binary did not stop on SIGTERM")
	}
}

// shellWords splits a Dockerfile RUN line the way sh would for the simple
// quoting it uses: spaces separate words, quotes group them.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
