// Command loadtest measures the bridge's forwarding from outside, in its
// own process: publishers and subscribers made of pion, signaling over
// /api/ws with dev tokens (POST /api/dev/token) or supplied ones, meet in
// one room; each publisher sends paced RTP whose payload carries its send
// time. It reports the target process's CPU time per forwarded packet
// (from /proc/<pid>/stat, the process found by its listening port unless
// -pid is given; the idle rate of the connected browsers subtracted), its
// idle CPU per connected browser (everyone connected and silent, less the
// process's rate before anyone connected), the loss and the
// publisher-to-subscriber latency.
//
//	go run ./cmd/loadtest -url http://127.0.0.1:8080 -publishers 1 -subscribers 100 -kind audio -duration 20s
//	go run ./cmd/loadtest -floor   # this machine's floor: one sendto + one SRTP seal
//
// The last line of a run is a RESULT line of key=value pairs for
// scripts/bench-forward.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"
)

// config is the command line.
type config struct {
	url         string
	publishers  int
	subscribers int
	kind        string
	duration    time.Duration
	idle        time.Duration
	pid         int
	room        string
	tokens      []string
	floor       bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "the bridge's base URL")
	fs.IntVar(&c.publishers, "publishers", 1, "browsers that publish one track each")
	fs.IntVar(&c.subscribers, "subscribers", 10, "browsers that only receive")
	fs.StringVar(&c.kind, "kind", "audio", "audio (Opus-sized, 50 packets/s) or video (VP8-sized, 4 x 1100 bytes at 30 frames/s)")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "how long the publishers send while measured")
	fs.DurationVar(&c.idle, "idle", 5*time.Second, "how long everyone stays connected and silent while the idle CPU is measured")
	fs.IntVar(&c.pid, "pid", 0, "the bridge's process id; 0 finds the process listening on -url's port")
	fs.StringVar(&c.room, "room", "", "room (voice channel id) to join; empty creates one and ends it afterwards")
	tokens := fs.String("tokens", "", "file of tokens, one a line, used in turn for the browsers; empty asks POST /api/dev/token")
	fs.BoolVar(&c.floor, "floor", false, "measure only this machine's floor (sendto of 150 bytes + SRTP AES-GCM seal)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.floor {
		return c, nil
	}
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("-url %q: want http(s)://host:port", c.url)
	}
	c.url = strings.TrimRight(c.url, "/")
	switch {
	case c.kind != "audio" && c.kind != "video":
		return c, fmt.Errorf("-kind %q: want audio or video", c.kind)
	case c.publishers < 1 || c.publishers > 255:
		return c, fmt.Errorf("-publishers %d: want 1 to 255", c.publishers)
	case c.subscribers < 1:
		return c, fmt.Errorf("-subscribers %d: want at least 1", c.subscribers)
	case c.duration <= 0 || c.idle <= 0:
		return c, errors.New("-duration and -idle must be positive")
	}
	if *tokens != "" {
		b, err := os.ReadFile(*tokens)
		if err != nil {
			return c, fmt.Errorf("-tokens: %w", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				c.tokens = append(c.tokens, l)
			}
		}
		if len(c.tokens) == 0 {
			return c, fmt.Errorf("-tokens %s: no token in the file", *tokens)
		}
	}
	if c.pid == 0 {
		_, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		p, _ := strconv.Atoi(port)
		if c.pid, err = pidListening(p); err != nil {
			return c, err
		}
	}
	return c, nil
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	if c.floor {
		f, err := measureFloor(200000)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest: floor:", err)
			os.Exit(1)
		}
		fmt.Printf("floor: sendto(150 B) %.2f µs, SRTP AES-GCM seal %.2f µs, total %.2f µs\n",
			us(f.sendto), us(f.seal), us(f.total()))
		fmt.Printf("RESULT floor_sendto_us=%.3f floor_seal_us=%.3f floor_us=%.3f\n", us(f.sendto), us(f.seal), us(f.total()))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := run(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
	r.print(os.Stdout, c)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
