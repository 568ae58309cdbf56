package voice_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/internal/audiotest"
	"github.com/voicebridge/bridge/voice"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	guildID   = "100000000000000001"
	channelID = "200000000000000002"
	botID     = "300000000000000003"
	memberID  = "400000000000000004"
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("VOICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

type rig struct {
	srv  *voiceemu.Server
	sig  *mainGateway
	conn *voice.Conn
	evs  *eventLog
}

func startServer(t *testing.T, o voiceemu.Options) *voiceemu.Server {
	t.Helper()
	o.Logger = testLogger(t)
	srv, err := voiceemu.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, srv *voiceemu.Server, sig voice.Signaler) *voice.Client {
	return voice.NewClient(voice.Options{Signaler: sig, UserID: botID, TLSConfig: srv.TLSConfig(), Video: true,
		Logger: testLogger(t), JoinTimeout: 5 * time.Second})
}

// join starts the bot in the channel; the connection is closed at cleanup.
func join(t *testing.T, o voiceemu.Options) *rig {
	t.Helper()
	srv := startServer(t, o)
	sig := newMainGateway(t, srv, botID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := newClient(t, srv, sig).Join(ctx, guildID, channelID)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	r := &rig{srv: srv, sig: sig, conn: conn, evs: watchEvents(conn)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := conn.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := conn.Close(ctx); err != nil {
			t.Errorf("second Close: %v", err)
		}
		r.evs.wait()
	})
	return r
}

// eventLog collects a connection's events and lets tests wait for one.
type eventLog struct {
	mu     sync.Mutex
	cond   chan struct{}
	events []voice.Event
	closed bool
	done   chan struct{}
}

func watchEvents(c *voice.Conn) *eventLog {
	l := &eventLog{cond: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for ev := range c.Events() {
			l.mu.Lock()
			l.events = append(l.events, ev)
			close(l.cond)
			l.cond = make(chan struct{})
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.closed = true
		close(l.cond)
		l.mu.Unlock()
	}()
	return l
}

func (l *eventLog) wait() { <-l.done }

// await waits until match accepts an event at index ≥ from; returns its
// index.
func (l *eventLog) await(t *testing.T, from int, what string, match func(voice.Event) bool) int {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for i := from; i < len(l.events); i++ {
			if match(l.events[i]) {
				l.mu.Unlock()
				return i
			}
		}
		cond, closed := l.cond, l.closed
		evs := fmt.Sprintf("%+v", l.events)
		l.mu.Unlock()
		if closed {
			t.Fatalf("events ended without %s: %s", what, evs)
		}
		select {
		case <-cond:
		case <-deadline.C:
			t.Fatalf("no %s within deadline; events: %s", what, evs)
		}
	}
}

func (l *eventLog) count(match func(voice.Event) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.events {
		if match(ev) {
			n++
		}
	}
	return n
}

func isState(s voice.State) func(voice.Event) bool {
	return func(ev voice.Event) bool { sc, ok := ev.(voice.StateChanged); return ok && sc.State == s }
}

func withoutSilence(frames [][]byte) [][]byte {
	var out [][]byte
	for _, f := range frames {
		if !bytes.Equal(f, []byte{0xf8, 0xff, 0xfe}) {
			out = append(out, f)
		}
	}
	return out
}

// collectFrames reads frames of kind from user until n arrived or the
// deadline passed.
func collectFrames(c *voice.Conn, user string, kind voice.MediaKind, n int, within time.Duration) []voice.Frame {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	var got []voice.Frame
	for len(got) < n {
		select {
		case f, ok := <-c.Frames():
			if !ok {
				return got
			}
			if f.UserID == user && f.Kind == kind {
				got = append(got, f)
			}
		case <-deadline.C:
			return got
		}
	}
	return got
}

func TestToneBothWaysEveryMode(t *testing.T) {
	for _, mode := range voice.Modes() {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, voiceemu.Options{Modes: []string{string(mode)}})
			member, err := srv.AddMember(voiceemu.MemberOptions{UserID: memberID, GuildID: guildID, ChannelID: channelID})
			if err != nil {
				t.Fatal(err)
			}
			sig := newMainGateway(t, srv, botID)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := newClient(t, srv, sig).Join(ctx, guildID, channelID)
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			evs := watchEvents(conn)
			defer func() {
				if err := conn.Close(ctx); err != nil {
					t.Errorf("Close: %v", err)
				}
				evs.wait()
			}()
			evs.await(t, 0, "Speaking from the member", func(ev voice.Event) bool {
				s, ok := ev.(voice.Speaking)
				return ok && s.UserID == memberID
			})
			// The emulator runs DAVE by default: frames sent before the
			// group forms would be dropped, not heard.
			awaitE2EE(t, evs, conn, member)
			res := tonesBothWays(t, ctx, conn, member)
			t.Logf("mode %s: %s", mode, res)
		})
	}
}

// toneResult is what tonesBothWays measured.
type toneResult struct {
	atMember, sent, received, played, missing int
	f1000, f440                               float64
}

func (r toneResult) String() string {
	return fmt.Sprintf("member got %d/%d at %.0f Hz, bot got %d/%d (missing %d) at %.0f Hz",
		r.atMember, r.sent, r.f1000, r.received, r.played, r.missing, r.f440)
}

// tonesBothWays plays the 440 Hz tone from the member while the bot sends
// the 1 kHz tone, and checks what a user would notice: ≥99% of the frames
// arrive each way, byte-identical at the member (so any encryption in
// between was undone exactly), decoding to the tone that was sent (±2%),
// attributed to the right user and in sequence order at the bot.
func tonesBothWays(t *testing.T, ctx context.Context, conn *voice.Conn, member *voiceemu.Member) toneResult {
	t.Helper()
	tone1000 := audiotest.Tone(t, 1000)
	tone440 := audiotest.Tone(t, 440)
	gotAll := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	count := 0
	member.OnOpus(func(from string, frame []byte) {
		if from != botID || bytes.Equal(frame, []byte{0xf8, 0xff, 0xfe}) {
			return
		}
		mu.Lock()
		count++
		if count == len(tone1000) {
			once.Do(func() { close(gotAll) })
		}
		mu.Unlock()
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		member.PlayOpus(ctx, tone440, false)
	}()
	sendErr := make(chan error, 1)
	go func() {
		for _, f := range tone1000 {
			if err := conn.SendOpus(f); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	received := collectFrames(conn, member.UserID(), voice.Audio, len(tone440), 15*time.Second)
	wg.Wait()
	if err := <-sendErr; err != nil {
		t.Fatalf("SendOpus: %v", err)
	}
	select {
	case <-gotAll:
	case <-time.After(5 * time.Second):
	}

	// Bot → member: ≥99% of packets, byte-identical, a 1 kHz tone.
	atMember := withoutSilence(member.ReceivedOpus(botID))
	if min := len(tone1000) * 99 / 100; len(atMember) < min {
		t.Fatalf("member got %d of %d frames", len(atMember), len(tone1000))
	}
	for i := range atMember {
		if i < len(tone1000) && !bytes.Equal(atMember[i], tone1000[i]) {
			t.Fatalf("frame %d at the member differs from what was sent", i)
		}
	}
	res := toneResult{atMember: len(atMember), sent: len(tone1000), received: len(received), played: len(tone440)}
	res.f1000 = audiotest.Frequency(t, atMember)
	if math.Abs(res.f1000-1000) > 20 {
		t.Fatalf("member hears %.0f Hz, want 1000 Hz ±2%%", res.f1000)
	}

	// Member → bot: attributed to the member, in order, a 440 Hz tone.
	if min := len(tone440) * 99 / 100; len(received) < min {
		t.Fatalf("bot got %d of %d frames from the member", len(received), len(tone440))
	}
	var payloads [][]byte
	for i, f := range received {
		if i > 0 && f.Seq != received[i-1].Seq+1+uint16(f.Missing) {
			t.Fatalf("frame %d seq %d after %d with %d missing", i, f.Seq, received[i-1].Seq, f.Missing)
		}
		if f.UserID != member.UserID() {
			t.Fatalf("frame %d attributed to %q", i, f.UserID)
		}
		res.missing += f.Missing
		payloads = append(payloads, f.Payload)
	}
	res.f440 = audiotest.Frequency(t, payloads)
	if math.Abs(res.f440-440) > 8.8 {
		t.Fatalf("bot hears %.0f Hz from the member, want 440 Hz ±2%%", res.f440)
	}
	st := conn.Stats()
	// Five silence frames end the spurt; a producer that fell behind
	// under load may have had a slot filled with one more.
	if st.AudioPacketsSent < uint64(len(tone1000)) || st.SilenceFramesSent < 5 {
		t.Fatalf("sent %d audio packets (%d silence), want ≥%d and ≥5", st.AudioPacketsSent, st.SilenceFramesSent, len(tone1000))
	}
	return res
}
