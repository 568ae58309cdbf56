package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/voicebridge/bridge/internal/redistest"
)

// The multi-process tests run the built binaries: one standalone emulator,
// three bridge instances sharing a real redis-server, all on loopback.

// buildBinaries builds cmd/bridge and cmd/emulator into dir.
func buildBinaries(t testing.TB, dir string) (bridge, emu string) {
	t.Helper()
	bridge, emu = filepath.Join(dir, "bridge"), filepath.Join(dir, "emulator")
	for out, pkg := range map[string]string{bridge: ".", emu: "../emulator"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return bridge, emu
}

// proc is a child process whose stderr is kept and scanned for a line.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	line chan string // lines of stdout and stderr, dropped when full
	done chan struct{}
}

func startProc(t testing.TB, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), line: make(chan string, 1024), done: make(chan struct{})}
	p.cmd.Env = env
	stdout, _ := p.cmd.StdoutPipe()
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				p.mu.Lock()
				p.log.WriteString(sc.Text() + "\n")
				p.mu.Unlock()
				select {
				case p.line <- sc.Text():
				default:
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("--- %s output:\n%s", p.name, p.log.String())
			p.mu.Unlock()
		}
	})
	return p
}

// waitLine returns the first line matching re.
func (p *proc) waitLine(t testing.TB, ctx context.Context, re *regexp.Regexp) []string {
	t.Helper()
	for {
		select {
		case l := <-p.line:
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-p.done:
			t.Fatalf("%s exited before printing %s", p.name, re)
		case <-ctx.Done():
			t.Fatalf("%s never printed %s", p.name, re)
		}
	}
}

// instSocket is one authenticated /api/ws socket on an instance, keeping
// the room events it receives.
type instSocket struct {
	conn   *websocket.Conn
	mu     sync.Mutex
	events []string // "room.created 1234"
	err    error
	notify chan struct{}
}

func dialInstance(t testing.TB, ctx context.Context, addr string) *instSocket {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/dev/token", strings.NewReader(`{"name":"ann"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	c, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+addr+"/api/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.WriteJSON(map[string]string{"type": "auth", "token": tok.Token}); err != nil {
		t.Fatal(err)
	}
	var ack map[string]any
	if err := c.ReadJSON(&ack); err != nil || ack["type"] != "ack" {
		t.Fatalf("auth on %s: %v %v", addr, ack, err)
	}
	s := &instSocket{conn: c, notify: make(chan struct{}, 1)}
	go func() {
		for {
			var m struct {
				Type, Event string
				Payload     struct {
					ChannelID string `json:"channelId"`
				}
			}
			if err := c.ReadJSON(&m); err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				return
			}
			if m.Type == "event" && strings.HasPrefix(m.Event, "room.") {
				s.mu.Lock()
				s.events = append(s.events, m.Event+" "+m.Payload.ChannelID)
				s.mu.Unlock()
				select {
				case s.notify <- struct{}{}:
				default:
				}
			}
		}
	}()
	return s
}

func (s *instSocket) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// cluster3 is the emulator, Redis and three bridge instances.
type cluster3 struct {
	redis *redistest.Server
	addrs []string
	procs []*proc
	bins  [2]string
	// emu is what the emulator printed: the bridges' settings and
	// EMULATOR_CONTROL_URL, its own view.
	emu map[string]string
}

func startCluster3(t *testing.T, ctx context.Context) *cluster3 {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs five processes")
	}
	dir := t.TempDir()
	bridgeBin, emuBin := buildBinaries(t, dir)
	rs, err := redistest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })

	emu := startProc(t, "emulator", emuBin, []string{"PATH=" + os.Getenv("PATH")},
		"-voice-ca-file", filepath.Join(dir, "voice-ca.pem"), "-identify-interval", "1ns", "-heartbeat-interval", "1s", "-log-level", "warn",
		"-control-addr", "127.0.0.1:0")
	env := []string{"PATH=" + os.Getenv("PATH"), "DEV_AUTH=1", "REDIS_URL=" + rs.URL(), "LISTEN_ADDR=127.0.0.1:0", "OPERATOR_TOKEN=" + multiOperatorToken,
		"ICE_UDP_PORT=0", "ICE_TCP_PORT=off", "LOG_LEVEL=info", "ROOM_GRACE_PERIOD=1s"}
	setting := regexp.MustCompile(`^([A-Z_]+)=(.+)$`)
	c := &cluster3{redis: rs, bins: [2]string{bridgeBin, emuBin}, emu: map[string]string{}}
	for range 6 {
		m := emu.waitLine(t, ctx, setting)
		c.emu[m[1]] = m[2]
		if m[1] != "EMULATOR_CONTROL_URL" {
			env = append(env, m[0])
		}
	}
	listening := regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`)
	for i := range 3 {
		p := startProc(t, fmt.Sprintf("bridge-%d", i+1), bridgeBin, append(slices.Clone(env), fmt.Sprintf("INSTANCE_ID=b%d", i+1)))
		c.addrs = append(c.addrs, p.waitLine(t, ctx, listening)[1])
		c.procs = append(c.procs, p)
	}
	// Every instance is ready and sees the three.
	for _, addr := range c.addrs {
		waitUntil(t, ctx, addr+" ready with three instances", func() bool {
			var rz struct {
				Ready    bool
				Operator struct {
					Cluster struct {
						Redis     string
						Instances []struct{ ID string }
					}
				}
			}
			resp, err := operatorReadyz(addr)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			_ = json.NewDecoder(resp.Body).Decode(&rz)
			return rz.Ready && rz.Operator.Cluster.Redis == "connected" && len(rz.Operator.Cluster.Instances) == 3
		})
	}
	return c
}

// createRoom creates a room through instance addr; its id.
func createRoom(t testing.TB, ctx context.Context, addr, name string) string {
	t.Helper()
	// Any instance's dev token is good on that instance only: mint there.
	tokReq, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/dev/token", strings.NewReader(`{"name":"ops"}`))
	resp, err := http.DefaultClient.Do(tokReq)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/create-room", strings.NewReader(fmt.Sprintf(`{"name":%q}`, name)))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var room struct {
		ChannelID string `json:"channelId"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&room); err != nil || resp.StatusCode/100 != 2 || room.ChannelID == "" {
		t.Fatalf("create-room on %s: %s %v", addr, resp.Status, err)
	}
	return room.ChannelID
}

// TestMultiInstanceEventsOnceAcrossRedisRestart: rooms created on Discord
// (through any instance) produce events that reach two sockets on each of
// three instances exactly once and in one order, and a Redis restart in
// the middle of the run loses or repeats none of them.
func TestMultiInstanceEventsOnceAcrossRedisRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startCluster3(t, ctx)
	var socks []*instSocket
	for _, addr := range c.addrs {
		for range 2 {
			socks = append(socks, dialInstance(t, ctx, addr))
		}
	}

	var rooms []string
	for i := range 6 {
		if i == 3 {
			if err := c.redis.Restart(); err != nil {
				t.Fatal(err)
			}
		}
		rooms = append(rooms, createRoom(t, ctx, c.addrs[i%3], fmt.Sprintf("r%d", i)))
	}
	var want []string
	for _, r := range rooms {
		want = append(want, "room.created "+r)
	}
	for i, s := range socks {
		waitUntil(t, ctx, fmt.Sprintf("socket %d (instance %d) sees the six rooms", i, i/2+1), func() bool {
			n := 0
			for _, e := range s.snapshot() {
				if slices.Contains(want, e) {
					n++
				}
			}
			return n >= len(want)
		})
	}
	// A last event through a fresh room: anything still in flight (a
	// duplicate) would arrive before it.
	last := createRoom(t, ctx, c.addrs[0], "last")
	for i, s := range socks {
		waitUntil(t, ctx, fmt.Sprintf("socket %d sees the last room", i), func() bool {
			return slices.Contains(s.snapshot(), "room.created "+last)
		})
	}
	// One instance held the bot's gateway session all along; the others
	// never opened theirs.
	holders, holder := 0, ""
	for _, addr := range c.addrs {
		var rz struct {
			Operator struct {
				Gateway struct {
					State      string
					Reconnects int
				}
				Cluster struct{ EventsSource bool }
			}
		}
		resp, err := operatorReadyz(addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&rz)
		resp.Body.Close()
		switch op := rz.Operator; {
		case op.Cluster.EventsSource && op.Gateway.State == "ready" && op.Gateway.Reconnects == 0:
			holders++
			holder = addr
		case op.Cluster.EventsSource, op.Gateway.State != "idle":
			t.Errorf("instance %s: %+v", addr, rz)
		}
	}
	if holders != 1 {
		t.Errorf("%d instances held the gateway, want 1", holders)
	}
	// The holder knows the rooms, so it serves their per-room series too.
	if holder != "" {
		checkDashboard(t, holder)
	}
	first := socks[0].snapshot()
	for i, s := range socks {
		got := s.snapshot()
		for _, w := range append(want, "room.created "+last) {
			if n := countOf(got, w); n != 1 {
				t.Errorf("socket %d (instance %d) saw %q %d times; all: %v", i, i/2+1, w, n, got)
			}
		}
		if !slices.Equal(got, first) {
			t.Errorf("socket %d saw another order than socket 0:\n%v\n%v", i, got, first)
		}
	}
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// checkDashboard: every bridge_ metric the example Grafana dashboard
// queries is one an instance on Redis serves, and /metrics parses. The
// instance must know a room, for the per-room series to exist.
// (internal/metrics's TestDashboardMatchesRegistry checks the dashboard
// against the registry both ways, without processes.)
func checkDashboard(t *testing.T, addr string) {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json: %v", err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics of an instance on Redis: %v", err)
	}
	name := regexp.MustCompile(`bridge_[a-z_]+`)
	for _, panel := range dash.Panels {
		for _, tg := range panel.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				// A histogram is queried by its series' names.
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(n, suffix); ok && fams[base].GetType() == dto.MetricType_HISTOGRAM {
						n = base
					}
				}
				if _, ok := fams[n]; !ok {
					t.Errorf("dashboard panel %q queries %s, which /metrics does not serve", panel.Title, n)
				}
			}
		}
	}
}

// multiOperatorToken is the instances' OPERATOR_TOKEN: the gateway and
// cluster state are the operator's view of /readyz.
const multiOperatorToken = "multi-instance-operator-token-0123456789abcdef"

// operatorReadyz asks instance addr for /readyz with the operator token.
func operatorReadyz(addr string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+multiOperatorToken)
	return http.DefaultClient.Do(req)
}
