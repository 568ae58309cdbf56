package hub

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// loadgenEnv carries a loadgenConfig (JSON) to a child test binary, which
// then runs runLoadgen instead of the tests. The clients live in that
// child so that 10,000 connections need 10,000 descriptors per process,
// not 20,000, and so the hub's heap is measured alone.
const loadgenEnv = "HUB_TEST_LOADGEN"

type loadgenConfig struct {
	URL    string `json:"url"`
	Token  string `json:"token"`
	N      int    `json:"n"`
	Window int    `json:"window"`
}

// Protocol on the child's stdout, one line each:
//
//	ready              all N clients are authenticated
//	w <k>              every client has read events up to window k
//	err <text>         a client saw an error (missing, duplicate, reordered event)
//	hist <c0> <c1> ... latency histogram buckets, after stdin closes
//
// The parent closes the child's stdin to stop it.

// runLoadgen is the child's side; it returns the exit code.
func runLoadgen(raw string) int {
	var cfg loadgenConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil || cfg.N < 1 || cfg.Window < 1 {
		fmt.Fprintf(os.Stderr, "loadgen: bad config %q: %v\n", raw, err)
		return 2
	}
	if err := setFDLimit(uint64(cfg.N + 64)); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 2
	}
	var outMu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		_ = out.Flush()
		outMu.Unlock()
	}
	conns, err := dialMany(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	var hist latencyHist
	progress := make(chan int, 4*cfg.N)
	var failed atomic.Bool
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			expected := 0
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				seq, sent, ok := parseLoadEvent(data)
				if !ok || seq != expected {
					if failed.CompareAndSwap(false, true) {
						say("err got %.60q as event %d", data, expected)
					}
					return
				}
				hist.add(time.Now().UnixNano() - sent)
				expected++
				if expected%cfg.Window == 0 {
					progress <- expected/cfg.Window - 1
				}
			}
		}()
	}
	aggDone := make(chan struct{})
	go func() {
		defer close(aggDone)
		counts := map[int]int{}
		for w := range progress {
			if counts[w]++; counts[w] == cfg.N {
				delete(counts, w)
				say("w %d", w)
			}
		}
	}()
	say("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		_ = c.Close()
	}
	readers.Wait()
	close(progress)
	<-aggDone
	var b strings.Builder
	b.WriteString("hist")
	for i := range hist.buckets {
		b.WriteString(" " + strconv.FormatUint(hist.buckets[i].Load(), 10))
	}
	say("%s", b.String())
	return 0
}

// dialMany connects and authenticates cfg.N clients, 32 at a time.
func dialMany(cfg loadgenConfig) ([]*websocket.Conn, error) {
	conns := make([]*websocket.Conn, cfg.N)
	auth, _ := json.Marshal(map[string]string{"type": "auth", "token": cfg.Token})
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		firstErr atomic.Value
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for firstErr.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.N {
					return
				}
				c, err := dialAuth(cfg.URL, auth)
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("client %d: %w", i, err))
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, err
	}
	return conns, nil
}

func dialAuth(url string, auth []byte) (*websocket.Conn, error) {
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	err = c.WriteMessage(websocket.TextMessage, auth)
	var data []byte
	if err == nil {
		_, data, err = c.ReadMessage()
	}
	if err == nil && !bytes.Contains(data, []byte(`"auth.ok"`)) {
		err = fmt.Errorf("want the auth ack, got %s", data)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// loadgen is the parent's handle on a child load generator.
type loadgen struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string // closed at the child's EOF
	stderr  *bytes.Buffer
	stopped bool
}

// startLoadgen starts a child with n authenticated clients of e's hub
// and waits until they are all connected.
func startLoadgen(tb testing.TB, e *env, n, window int) *loadgen {
	tb.Helper()
	if err := setFDLimit(uint64(n + 256)); err != nil {
		tb.Fatal(err)
	}
	cfg, _ := json.Marshal(loadgenConfig{URL: e.wsURL(), Token: e.idp.token(tb, tokenSpec{alg: "ES256"}), N: n, Window: window})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loadgenEnv+"="+string(cfg))
	lg := &loadgen{cmd: cmd, lines: make(chan string, 1024), stderr: &bytes.Buffer{}}
	cmd.Stderr = lg.stderr
	var err error
	if lg.stdin, err = cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	// The scanner ends when the child's stdout closes (it exits).
	go func() {
		defer close(lg.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lg.lines <- sc.Text()
		}
	}()
	tb.Cleanup(func() { lg.stop(tb) })
	if line := lg.next(tb, 2*time.Minute); line != "ready" {
		tb.Fatalf("loadgen: want ready, got %q", line)
	}
	return lg
}

// next returns the child's next line; an "err" line or an early exit
// fails the test.
func (lg *loadgen) next(tb testing.TB, limit time.Duration) string {
	tb.Helper()
	select {
	case line, ok := <-lg.lines:
		if !ok {
			_ = lg.cmd.Wait()
			lg.stopped = true
			tb.Fatalf("loadgen exited: %s", lg.stderr.String())
		}
		if strings.HasPrefix(line, "err ") {
			tb.Fatalf("loadgen client: %s", line[4:])
		}
		return line
	case <-time.After(limit):
		tb.Fatalf("loadgen: nothing for %s", limit)
	}
	return ""
}

// waitWindow blocks until every client has read window w.
func (lg *loadgen) waitWindow(tb testing.TB, w int) {
	tb.Helper()
	want := "w " + strconv.Itoa(w)
	for {
		line := lg.next(tb, 2*time.Minute)
		if line == want {
			return
		}
		if !strings.HasPrefix(line, "w ") {
			tb.Fatalf("loadgen: unexpected %q", line)
		}
	}
}

// stop closes the child's clients and returns their latency histogram.
// It is idempotent.
func (lg *loadgen) stop(tb testing.TB) *latencyHist {
	tb.Helper()
	if lg.stopped {
		return nil
	}
	lg.stopped = true
	_ = lg.stdin.Close()
	var hist latencyHist
	var sawHist bool
	for line := range lg.lines {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "err":
			tb.Errorf("loadgen client: %s", line[4:])
		case "hist":
			sawHist = true
			for i, f := range fields[1:] {
				if i < len(hist.buckets) {
					v, _ := strconv.ParseUint(f, 10, 64)
					hist.buckets[i].Store(v)
				}
			}
		}
	}
	if err := lg.cmd.Wait(); err != nil || !sawHist {
		tb.Errorf("loadgen: exit %v, histogram %v: %s", err, sawHist, lg.stderr.String())
	}
	return &hist
}
