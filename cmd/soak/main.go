// Command soak runs the bridge binary in its embedded default with two
// pion browsers in the Lobby, both talking and showing video, for a set
// time, and checks that nothing grows with time: it samples the process's
// RSS and file descriptors (from /proc) and its live heap and goroutines
// (from the operator's /readyz) every interval, and fails when the
// least-squares slope of any of them over the last two thirds of the run
// (after the first third's warm-up) is above its bound. The warm-up is at
// least 90 s: the per-stream retransmission (NACK) buffers of the WebRTC
// peers fill for about 70 s at the test pattern's packet rate, and their
// filling is not a leak.
//
//	go run ./cmd/soak -bin ./bridge -duration 30m
//
// scripts/soak.sh builds the binary and runs this.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/voicebridge/bridge/emulator/voiceemu"
)

// bounds are the slopes, per minute, past which a metric counts as
// growing. The unbounded growth this run guards against was 3.6 MB a
// minute of RSS; a goroutine or a descriptor per minute is a leak.
var bounds = map[string]float64{
	"rss_bytes":       1 << 20,   // 1 MiB/min
	"heap_live_bytes": 512 << 10, // 512 KiB/min
	"goroutines":      1,
	"fds":             1,
}

// metricOrder is the order metrics are printed in.
var metricOrder = []string{"rss_bytes", "heap_live_bytes", "goroutines", "fds"}

type options struct {
	bin      string
	duration time.Duration
	interval time.Duration
	logPath  string
	warmup   time.Duration
}

// minWarmup is the least warm-up (see the package comment).
const minWarmup = 90 * time.Second

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "./bridge", "the bridge binary to run")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to run")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "how often to sample")
	flag.StringVar(&o.logPath, "bridge-log", "", "file for the bridge's log (default: discarded)")
	flag.DurationVar(&o.warmup, "warmup", 0, "samples before this are not judged (default: a third of -duration, at least 90s)")
	flag.Parse()
	if o.warmup == 0 {
		o.warmup = max(o.duration/3, minWarmup)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "soak: FAIL:", err)
		os.Exit(1)
	}
}

// sample is one reading of the bridge process.
type sample struct {
	at     time.Duration // since the start
	values map[string]float64
	audio  [2]int64 // packets each browser had received
	video  [2]int64
}

func run(ctx context.Context, o options, out io.Writer) error {
	if o.duration-o.warmup < 3*o.interval {
		return fmt.Errorf("-duration %s leaves fewer than three samples of -interval %s after the %s warm-up", o.duration, o.interval, o.warmup)
	}
	speech, err := voiceemu.LoadOpusSample("speech")
	if err != nil {
		return err
	}
	pattern, err := voiceemu.LoadVP8Sample("testpattern")
	if err != nil {
		return err
	}
	br, err := startBridge(ctx, o)
	if err != nil {
		return err
	}
	defer br.kill()
	fmt.Fprintf(out, "soak: bridge pid %d at %s; %s, a sample every %s\n", br.cmd.Process.Pid, br.base, o.duration, o.interval)

	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	lobby, err := findLobby(setupCtx, br.base)
	if err != nil {
		return err
	}
	var browsers []*browser
	defer func() {
		for _, b := range browsers {
			b.close()
		}
	}()
	for _, name := range []string{"soak-a", "soak-b"} {
		b, err := newBrowser(setupCtx, br.base, name)
		if err != nil {
			return err
		}
		browsers = append(browsers, b)
		if err := b.join(setupCtx, lobby); err != nil {
			return err
		}
		if err := b.publish(speech, pattern); err != nil {
			return err
		}
	}

	start := time.Now()
	var samples []sample
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	fmt.Fprintf(out, "%8s %12s %14s %10s %5s %10s %10s\n", "t", "rss", "heap_live", "goroutines", "fds", "audio_in", "video_in")
	for {
		s, err := br.sample(ctx, time.Since(start))
		if err != nil {
			return err
		}
		for i, b := range browsers {
			s.audio[i], s.video[i] = b.audioPkts.Load(), b.videoPkts.Load()
			if err := b.Err(); err != nil {
				return err
			}
		}
		samples = append(samples, s)
		fmt.Fprintf(out, "%8s %12.0f %14.0f %10.0f %5.0f %10d %10d\n", s.at.Round(time.Second), s.values["rss_bytes"], s.values["heap_live_bytes"],
			s.values["goroutines"], s.values["fds"], s.audio[0]+s.audio[1], s.video[0]+s.video[1])
		if s.at >= o.duration {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-br.exited:
			return fmt.Errorf("the bridge exited during the run: %v", br.waitErr)
		case <-tick.C:
		}
	}
	for _, b := range browsers {
		b.close()
	}
	browsers = nil
	if err := br.stop(); err != nil {
		return err
	}
	return report(out, samples, o.warmup)
}

// report prints each metric's slope over the samples after warm-up and
// fails on any above its bound, or on media that stopped flowing.
func report(out io.Writer, samples []sample, warmup time.Duration) error {
	var errs []error
	first := 0
	for first < len(samples) && samples[first].at < warmup {
		first++
	}
	window := samples[first:]
	last, mid := samples[len(samples)-1], window[0]
	for i := range 2 {
		if last.audio[i] <= mid.audio[i] || last.video[i] <= mid.video[i] {
			errs = append(errs, fmt.Errorf("browser %d stopped receiving media after warm-up (audio %d→%d, video %d→%d packets)",
				i, mid.audio[i], last.audio[i], mid.video[i], last.video[i]))
		}
	}
	fmt.Fprintf(out, "soak: slopes over the last %d samples (%s after a %s warm-up), per minute:\n",
		len(window), (window[len(window)-1].at - window[0].at).Round(time.Second), window[0].at.Round(time.Second))
	for _, m := range metricOrder {
		xs := make([]float64, len(window))
		ys := make([]float64, len(window))
		for i, s := range window {
			xs[i], ys[i] = s.at.Minutes(), s.values[m]
		}
		slope := leastSquaresSlope(xs, ys)
		verdict := "ok"
		if slope > bounds[m] {
			verdict = "GROWING"
			errs = append(errs, fmt.Errorf("%s grows by %.1f per minute, above the bound of %.1f", m, slope, bounds[m]))
		}
		fmt.Fprintf(out, "  %-16s slope %14.1f/min  bound %12.1f/min  first %14.0f  last %14.0f  %s\n",
			m, slope, bounds[m], window[0].values[m], window[len(window)-1].values[m], verdict)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fmt.Fprintln(out, "soak: PASS")
	return nil
}

// leastSquaresSlope is the slope of the least-squares line through the
// points.
func leastSquaresSlope(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// findLobby is the embedded default's Lobby room.
func findLobby(ctx context.Context, base string) (string, error) {
	tok, err := devToken(ctx, base, "soak-lister")
	if err != nil {
		return "", err
	}
	var rooms struct {
		Rooms []struct{ ChannelID, Name string }
	}
	if err := doJSON(ctx, "GET", base+"/api/rooms", tok, "", &rooms); err != nil {
		return "", err
	}
	for _, r := range rooms.Rooms {
		if r.Name == "Lobby" {
			return r.ChannelID, nil
		}
	}
	return "", fmt.Errorf("no Lobby among the rooms %+v", rooms.Rooms)
}

// bridge is the running binary.
type bridge struct {
	cmd      *exec.Cmd
	base     string
	operator string
	exited   chan struct{}
	waitErr  error
}

// startBridge runs the binary in its embedded default on loopback ports
// and waits for its "listening" line.
func startBridge(ctx context.Context, o options) (*bridge, error) {
	var tok [32]byte
	_, _ = rand.Read(tok[:])
	b := &bridge{operator: hex.EncodeToString(tok[:]), exited: make(chan struct{})}
	b.cmd = exec.Command(o.bin)
	b.cmd.Env = append(os.Environ(), "LISTEN_ADDR=127.0.0.1:0", "ICE_UDP_PORT=0", "LOG_FORMAT=json", "LOG_LEVEL=info",
		"DISCORD_BOT_TOKEN=", "OPERATOR_TOKEN="+b.operator)
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	var logw io.Writer = io.Discard
	if o.logPath != "" {
		f, err := os.Create(o.logPath)
		if err != nil {
			return nil, err
		}
		logw = f
	}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.bin, err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logw.Write(append(line, '\n'))
			var rec struct{ Msg, Addr, Level string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
				select {
				case addr <- rec.Addr:
				default:
				}
			}
		}
	}()
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.exited)
	}()
	select {
	case a := <-addr:
		b.base = "http://" + a
		return b, nil
	case <-b.exited:
		return nil, fmt.Errorf("the bridge exited at start: %v", b.waitErr)
	case <-time.After(time.Minute):
		b.kill()
		return nil, errors.New("the bridge did not say it was listening within a minute")
	case <-ctx.Done():
		b.kill()
		return nil, ctx.Err()
	}
}

// sample reads RSS and descriptors from /proc and the live heap and
// goroutines from the operator's /readyz.
func (b *bridge) sample(ctx context.Context, at time.Duration) (sample, error) {
	s := sample{at: at, values: map[string]float64{}}
	pid := b.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read the bridge's /proc status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return s, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			s.values["rss_bytes"] = kb * 1024
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, fmt.Errorf("read the bridge's descriptors: %w", err)
	}
	s.values["fds"] = float64(len(fds))
	var ready struct {
		Operator *struct {
			Process struct {
				Goroutines    float64 `json:"goroutines"`
				HeapLiveBytes float64 `json:"heapLiveBytes"`
			} `json:"process"`
		} `json:"operator"`
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, b.base+"/readyz", nil)
	if err != nil {
		return s, err
	}
	req.Header.Set("Authorization", "Bearer "+b.operator)
	res, err := httpClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("operator /readyz: %w", err)
	}
	defer res.Body.Close()
	// 503 (not ready) still carries the operator's view.
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&ready); err != nil {
		return s, fmt.Errorf("operator /readyz: %s: %w", res.Status, err)
	}
	if ready.Operator == nil {
		return s, errors.New("operator /readyz has no operator section: is OPERATOR_TOKEN taken?")
	}
	s.values["goroutines"] = ready.Operator.Process.Goroutines
	s.values["heap_live_bytes"] = ready.Operator.Process.HeapLiveBytes
	return s, nil
}

// stop asks the bridge to shut down and checks that it exits cleanly.
func (b *bridge) stop() error {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
		if b.waitErr != nil {
			return fmt.Errorf("the bridge's shutdown: %v", b.waitErr)
		}
		return nil
	case <-time.After(30 * time.Second):
		b.kill()
		return errors.New("the bridge did not exit within 30 s of SIGTERM")
	}
}

func (b *bridge) kill() {
	select {
	case <-b.exited:
	default:
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}
