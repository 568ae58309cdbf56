package interop

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// CallTimeout bounds one request to the davey peer.
const CallTimeout = 20 * time.Second

// Failures of the peer process, as opposed to davey refusing a request.
var (
	ErrPeerGone    = errors.New("davey peer exited")
	ErrPeerTimeout = errors.New("davey peer did not answer")
)

// Peer is a running peer.js: one davey DAVESession driven by requests and
// responses of one JSON line each on the process's stdin and stdout.
type Peer struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	wg    sync.WaitGroup
	next  int
	once  sync.Once
}

// Dir returns this folder, which holds peer.js and its node_modules: the
// module root, found from the working directory up (go test runs a
// package's tests in its own folder), then voice/dave/interop.
func Dir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			peer := filepath.Join(dir, "voice", "dave", "interop")
			if _, err := os.Stat(filepath.Join(peer, "peer.js")); err != nil {
				return "", fmt.Errorf("the davey peer: %w", err)
			}
			return peer, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("the davey peer: no go.mod above the working directory")
		}
		dir = up
	}
}

// RequireDavey skips the test when davey is not installed (npm ci in this
// folder), and fails it instead under CI=true, where .ci/run installs it.
// It returns the folder peer.js runs in.
func RequireDavey(t testing.TB) string {
	t.Helper()
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@snazzah", "davey", "package.json")); err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("davey is not installed: run `npm ci` in %s to enable the davey interop tests", dir)
		}
		t.Fatalf("CI=true but davey is not installed (run npm ci in %s): %v", dir, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("davey is installed but node is not on PATH: %v", err)
	}
	return dir
}

// StartPeer starts peer.js, or skips the test as RequireDavey does; the
// peer's stderr goes to the test log, and Close is registered with
// t.Cleanup.
func StartPeer(t testing.TB) *Peer {
	t.Helper()
	cmd := exec.Command("node", "peer.js")
	cmd.Dir = RequireDavey(t)
	cmd.Stderr = &testWriter{t: t}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node peer.js: %v", err)
	}
	p := &Peer{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	p.wg.Add(1)
	go func() {
		// Owned by p; ends when the process closes stdout.
		defer p.wg.Done()
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(p.Close)
	return p
}

// Close ends the peer (closing its stdin ends peer.js; one that does not
// end within CallTimeout is killed) and waits for its reader. It is
// idempotent.
func (p *Peer) Close() {
	p.once.Do(func() {
		_ = p.stdin.Close()
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(CallTimeout):
			_ = p.cmd.Process.Kill()
			for range p.lines { // unblock the reader if it waits to send
			}
			<-done
		}
		_ = p.cmd.Wait()
	})
}

// Call sends one request and returns the response's fields; a failed
// request fails the test.
func (p *Peer) Call(cmd string, args map[string]any) map[string]any {
	p.t.Helper()
	res, err := p.Try(cmd, args)
	if err != nil {
		p.t.Fatalf("davey %s: %v", cmd, err)
	}
	return res
}

// Try sends one request and returns the response's fields, davey's refusal
// as an error, or ErrPeerGone or ErrPeerTimeout when the process failed.
func (p *Peer) Try(cmd string, args map[string]any) (map[string]any, error) {
	p.next++
	req := map[string]any{"id": p.next, "cmd": cmd}
	for k, v := range args {
		req[k] = v
	}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("%w: write request: %v", ErrPeerGone, err)
	}
	select {
	case l, ok := <-p.lines:
		if !ok {
			return nil, ErrPeerGone
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			return nil, fmt.Errorf("bad response %q: %w", l, err)
		}
		if id, _ := res["id"].(float64); int(id) != p.next {
			return nil, fmt.Errorf("response id %v for request %d", res["id"], p.next)
		}
		if ok, _ := res["ok"].(bool); !ok {
			return nil, fmt.Errorf("%v", res["error"])
		}
		return res, nil
	case <-time.After(CallTimeout):
		return nil, fmt.Errorf("%w within %v", ErrPeerTimeout, CallTimeout)
	}
}

// B64 encodes a binary request argument; peer.js takes base64.
func B64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// ResultBytes decodes a binary response field (base64); a field that is
// absent or null decodes to nothing.
func ResultBytes(res map[string]any, key string) ([]byte, error) {
	s, _ := res[key].(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("davey result field %s: %w", key, err)
	}
	return b, nil
}

// Bytes is ResultBytes failing the test on a field that does not decode.
func Bytes(t testing.TB, res map[string]any, key string) []byte {
	t.Helper()
	b, err := ResultBytes(res, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testWriter forwards the peer's stderr to the test log.
type testWriter struct{ t testing.TB }

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Logf("davey stderr: %s", b)
	return len(b), nil
}
