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

// callTimeout bounds one request to the davey peer.
const callTimeout = 20 * time.Second

// Failures of the peer process, as opposed to davey refusing a request.
var (
	errPeerGone    = errors.New("davey peer exited")
	errPeerTimeout = errors.New("davey peer did not answer")
)

// peer is a running peer.js process.
type peer struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	wg    sync.WaitGroup
	next  int
	once  sync.Once
}

// requireDavey skips when davey is not installed, unless CI=true.
func requireDavey(t testing.TB) {
	t.Helper()
	_, statErr := os.Stat(filepath.Join("node_modules", "@snazzah", "davey", "package.json"))
	if statErr != nil {
		if os.Getenv("CI") != "true" {
			t.Skip("node_modules missing: run `npm ci` in voice/dave/interop to enable the davey interop test")
		}
		t.Fatalf("CI=true but davey is not installed (run npm ci in voice/dave/interop): %v", statErr)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node_modules present but node is not on PATH: %v", err)
	}
}

// startPeer starts peer.js; Close (registered with t.Cleanup) stops it.
func startPeer(t testing.TB) *peer {
	t.Helper()
	requireDavey(t)
	cmd := exec.Command("node", "peer.js")
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
	p := &peer{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
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

// Close ends the peer and waits for its reader; it is idempotent.
func (p *peer) Close() {
	p.once.Do(func() {
		p.stdin.Close()
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(callTimeout):
			p.cmd.Process.Kill()
			<-done
		}
		p.cmd.Wait()
	})
}

// call sends one request and returns the response fields; a failed request
// fails the test.
func (p *peer) call(cmd string, args map[string]any) map[string]any {
	p.t.Helper()
	res, err := p.try(cmd, args)
	if err != nil {
		p.t.Fatalf("davey %s: %v", cmd, err)
	}
	return res
}

// try sends one request and returns the response or the peer's error.
func (p *peer) try(cmd string, args map[string]any) (map[string]any, error) {
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
		return nil, fmt.Errorf("%w: write request: %v", errPeerGone, err)
	}
	select {
	case l, ok := <-p.lines:
		if !ok {
			return nil, errPeerGone
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
	case <-time.After(callTimeout):
		return nil, fmt.Errorf("%w within %v", errPeerTimeout, callTimeout)
	}
}

// b64 encodes binary arguments; bin decodes binary results.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// b64field decodes a binary result field, without a test at hand.
func b64field(res map[string]any, key string) ([]byte, error) {
	s, _ := res[key].(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("davey result field %s: %w", key, err)
	}
	return b, nil
}

func bin(t testing.TB, res map[string]any, key string) []byte {
	t.Helper()
	s, _ := res[key].(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("field %s: %v", key, err)
	}
	return b
}

// testWriter forwards the peer's stderr to the test log.
type testWriter struct{ t testing.TB }

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Logf("davey stderr: %s", b)
	return len(b), nil
}
