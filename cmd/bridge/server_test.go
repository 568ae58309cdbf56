package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// shortLimits are server limits a test can wait out.
var shortLimits = serverLimits{HeaderTimeout: time.Second, BodyTimeout: 2 * time.Second, WriteTimeout: 4 * time.Second, IdleTimeout: 2 * time.Second}

// needFDs fails the test when the process may not hold n descriptors
// (both ends of each loopback connection are in this process).
func needFDs(t *testing.T, n uint64) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < n {
		t.Fatalf("this test holds %d descriptors and the limit is %d: raise it (ulimit -n %d)", n, rl.Cur, n)
	}
}

// healthWatch asks /healthz from a fresh connection every 50 ms until
// stopped, and counts answers and failures.
type healthWatch struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       chan struct{}
	done       chan struct{}
}

func watchHealth(base string) *healthWatch {
	w := &healthWatch{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			resp, err := client.Get(base + "/healthz")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
					err = fmt.Errorf("%s %q", resp.Status, body)
				}
			}
			if err != nil {
				w.failed.Add(1)
				w.lastErr.Store(err.Error())
				continue
			}
			w.ok.Add(1)
		}
	}()
	return w
}

// check stops the watch and fails the test unless every /healthz
// answered.
func (w *healthWatch) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if n := w.failed.Load(); n > 0 {
		t.Errorf("/healthz failed %d times (last: %v), answered %d", n, w.lastErr.Load(), w.ok.Load())
	}
	if w.ok.Load() == 0 {
		t.Error("/healthz never answered")
	}
	t.Logf("/healthz from fresh clients answered %d times meanwhile", w.ok.Load())
}

// closedBy waits until the server has closed conn (a read ends) or the
// deadline passes, and says when.
func closedBy(conn net.Conn, r io.Reader, deadline time.Time) (time.Time, error) {
	_ = conn.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, r)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return time.Time{}, err
	}
	return time.Now(), nil
}

// 200 connections trickling a body a byte a second are all closed by
// the server once the body timeout passes, and 1,000 idle keep-alive
// connections once the idle timeout passes; throughout, /healthz from a
// fresh client answers.
func TestSlowAndIdleConnectionsAreClosed(t *testing.T) {
	needFDs(t, 3000)
	tune := fastTuning()
	tune.server = shortLimits
	ta := startTestApp(t, tune, map[string]string{"MAX_CONNS_PER_IP": "1500", "MAX_CONNS": "1500"})
	addr := ta.Addr()
	health := watchHealth(ta.base)

	t.Run("trickled bodies", func(t *testing.T) {
		const n = 200
		start := time.Now()
		var wg sync.WaitGroup
		var closed atomic.Int64
		var latest atomic.Int64
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				defer conn.Close()
				req := "POST /api/dev/token HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
				if _, err := conn.Write([]byte(req)); err != nil {
					errs <- err
					return
				}
				// A byte a second, until the server hangs up.
				stop := make(chan struct{})
				go func() {
					t := time.NewTicker(time.Second)
					defer t.Stop()
					for {
						select {
						case <-stop:
							return
						case <-t.C:
							_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
							if _, err := conn.Write([]byte(" ")); err != nil {
								return
							}
						}
					}
				}()
				var answer strings.Builder
				at, err := closedBy(conn, io.TeeReader(conn, &answer), start.Add(shortLimits.BodyTimeout+20*time.Second))
				close(stop)
				if err != nil {
					errs <- fmt.Errorf("trickling connection %d still open: %v", i, err)
					return
				}
				if a := answer.String(); !strings.HasPrefix(a, "HTTP/1.1 408 ") || !strings.Contains(a, `"body_timeout"`) {
					errs <- fmt.Errorf("trickling connection %d was answered %q, want 408 body_timeout", i, a)
					return
				}
				closed.Add(1)
				for {
					old := latest.Load()
					if int64(at.Sub(start)) <= old || latest.CompareAndSwap(old, int64(at.Sub(start))) {
						break
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if closed.Load() != n {
			t.Fatalf("%d of %d trickling connections closed", closed.Load(), n)
		}
		t.Logf("%d trickling connections all closed by the server %s after they opened (body timeout %s)",
			n, time.Duration(latest.Load()).Round(time.Millisecond), shortLimits.BodyTimeout)
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		const n = 1000
		start := time.Now()
		var wg sync.WaitGroup
		var closed, latest atomic.Int64
		errs := make(chan error, n)
		sem := make(chan struct{}, 100) // dial a hundred at a time
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					<-sem
					errs <- err
					return
				}
				defer conn.Close()
				br := bufio.NewReader(conn)
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n"))
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(br, nil)
				}
				<-sem
				if err != nil {
					errs <- fmt.Errorf("idle connection %d: first request: %v", i, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.Close {
					errs <- fmt.Errorf("idle connection %d: the server did not keep it alive", i)
					return
				}
				// Now idle: the server must hang up.
				at, err := closedBy(conn, br, time.Now().Add(shortLimits.IdleTimeout+20*time.Second))
				if err != nil {
					errs <- fmt.Errorf("idle connection %d still open: %v", i, err)
					return
				}
				closed.Add(1)
				for {
					old := latest.Load()
					if int64(at.Sub(start)) <= old || latest.CompareAndSwap(old, int64(at.Sub(start))) {
						break
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if closed.Load() != n {
			t.Fatalf("%d of %d idle connections closed", closed.Load(), n)
		}
		t.Logf("%d idle keep-alive connections all closed by the server within %s of the first dial (idle timeout %s)",
			n, time.Duration(latest.Load()).Round(time.Millisecond), shortLimits.IdleTimeout)
	})
	health.check(t)
	if total, _ := ta.conns.counts("127.0.0.1"); total > 1 {
		t.Errorf("%d connections still counted after all closed", total)
	}
}

// Connections past MAX_CONNS_PER_IP from one address, or past MAX_CONNS in
// all, are answered 503 and closed; a WebSocket that authenticates leaves
// the count, so signed-in users do not use up the cap.
func TestConnectionCaps(t *testing.T) {
	ta := startTestApp(t, fastTuning(), map[string]string{"MAX_CONNS_PER_IP": "4", "MAX_CONNS": "6"})
	dialFrom := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", ta.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// refused reports whether the server answered conn with its 503.
	refused := func(c net.Conn) bool {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return false
		}
		var body struct{ Error struct{ Code string } }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != "too_many_connections" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("refusal: %s %+v", resp.Status, body)
		}
		return true
	}
	waitCount := func(ip string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, n := ta.conns.counts(ip); n == want {
				return
			}
			if time.Now().After(deadline) {
				_, n := ta.conns.counts(ip)
				t.Fatalf("%s holds %d connections, want %d", ip, n, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	token := ta.devToken(t, "capped")
	http.DefaultClient.CloseIdleConnections() // devToken's keep-alive connection would hold a place
	waitCount("127.0.0.1", 0)
	var held []net.Conn
	for range 4 {
		c := dialFrom("127.0.0.1")
		if refused(c) {
			t.Fatal("a connection within the per-address cap was refused")
		}
		held = append(held, c)
	}
	if !refused(dialFrom("127.0.0.1")) {
		t.Fatal("a fifth connection from one address was accepted (MAX_CONNS_PER_IP=4)")
	}
	for range 2 {
		if refused(dialFrom("127.0.0.2")) {
			t.Fatal("another address was refused within the total cap")
		}
	}
	if !refused(dialFrom("127.0.0.3")) {
		t.Fatal("a seventh connection in all was accepted (MAX_CONNS=6)")
	}

	// A WebSocket that signs in leaves the count.
	held[0].Close()
	waitCount("127.0.0.1", 3)
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		return (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}).Dial(network, addr)
	}}
	ws, _, err := d.Dial("ws://"+ta.Addr()+"/api/ws", http.Header{"Origin": {ta.base}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	waitCount("127.0.0.1", 4)
	if err := ws.WriteJSON(map[string]string{"type": "auth", "token": token}); err != nil {
		t.Fatal(err)
	}
	var ack hubEvent
	if err := ws.ReadJSON(&ack); err != nil || ack.Event != "auth.ok" {
		t.Fatalf("auth: %+v %v", ack, err)
	}
	waitCount("127.0.0.1", 3)
	if refused(dialFrom("127.0.0.1")) {
		t.Fatal("the signed-in socket still counts against its address")
	}
}

// An upgraded WebSocket outlives the HTTP body and write timeouts: the hub
// sets its own deadlines.
func TestWebSocketOutlivesRequestTimeouts(t *testing.T) {
	tune := fastTuning()
	tune.server = serverLimits{BodyTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, IdleTimeout: 500 * time.Millisecond}
	ta := startTestApp(t, tune, nil)
	token := ta.devToken(t, "long")
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ta.base, "http")+"/api/ws", http.Header{"Origin": {ta.base}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]string{"type": "auth", "token": token}); err != nil {
		t.Fatal(err)
	}
	var ack hubEvent
	if err := ws.ReadJSON(&ack); err != nil || ack.Event != "auth.ok" {
		t.Fatalf("auth: %+v %v", ack, err)
	}
	// That the socket survives can only be seen by letting the timeouts
	// pass: three times the longest.
	time.Sleep(1500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteJSON(map[string]string{"type": "ping", "id": "p1"}); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		var m hubEvent
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("the socket died after the request timeouts: %v", err)
		}
		if m.Type == "pong" {
			return
		}
	}
	t.Fatal("no pong")
}
