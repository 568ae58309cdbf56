package voice_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/voicebridge/bridge/internal/audiotest"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/voice"
)

// frameWatch consumes a connection's frames from the member and counts
// those that arrive after a mark.
type frameWatch struct {
	mu    sync.Mutex
	after int
	mark  bool
	wake  chan struct{}
	done  chan struct{}
}

func watchFrames(c *voice.Conn) *frameWatch {
	w := &frameWatch{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for f := range c.Frames() {
			if f.UserID != memberID || f.Kind != voice.Audio {
				continue
			}
			w.mu.Lock()
			if w.mark {
				w.after++
			}
			w.mu.Unlock()
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}()
	return w
}

// markAndAwait starts counting and waits for n member frames.
func (w *frameWatch) markAndAwait(t *testing.T, n int) {
	t.Helper()
	w.mu.Lock()
	w.mark, w.after = true, 0
	w.mu.Unlock()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		got := w.after
		w.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-w.wake:
		case <-w.done:
			t.Fatalf("frames ended after %d of %d member frames", got, n)
		case <-deadline.C:
			t.Fatalf("%d of %d member frames after recovery", got, n)
		}
	}
}

// callRig is a bot in a call with a member who speaks all along.
type callRig struct {
	*rig
	member *voiceemu.Member
	frames *frameWatch
}

func startCall(t *testing.T, o voiceemu.Options, co func(*voice.Options)) *callRig {
	t.Helper()
	srv := startServer(t, o)
	sig := newMainGateway(t, srv, botID)
	member := addMember(t, srv)
	opts := voice.Options{Signaler: sig, UserID: botID, TLSConfig: srv.TLSConfig(), Logger: testLogger(t), JoinTimeout: 5 * time.Second}
	if co != nil {
		co(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := voice.NewClient(opts).Join(ctx, guildID, channelID)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	r := &callRig{rig: &rig{srv: srv, sig: sig, conn: conn, evs: watchEvents(conn)}, member: member,
		frames: watchFrames(conn)}
	playCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		member.PlayOpus(playCtx, audiotest.Tone(t, 440), true)
	}()
	t.Cleanup(func() {
		stop()
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := conn.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		r.evs.wait()
		<-r.frames.done
	})
	awaitE2EE(t, r.evs, conn, member)
	r.frames.markAndAwait(t, 10)
	return r
}

// awaitBothWays checks, after a recovery, that the member's audio reaches
// the bot again and the bot's audio reaches the member.
func (r *callRig) awaitBothWays(t *testing.T) {
	t.Helper()
	r.frames.markAndAwait(t, 25)
	heard := make(chan struct{})
	var once sync.Once
	r.member.OnOpus(func(from string, f []byte) {
		if from == botID && !bytes.Equal(f, []byte{0xf8, 0xff, 0xfe}) {
			once.Do(func() { close(heard) })
		}
	})
	awaitE2EE(t, r.evs, r.conn, r.member)
	for _, f := range audiotest.Tone(t, 1000)[:10] {
		if err := r.conn.SendOpus(f); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-heard:
	case <-time.After(10 * time.Second):
		t.Fatal("the member heard nothing from the bot after recovery")
	}
}

// TestRecoveryThroughNewSession: each way Discord ends a voice session
// ends in the same call again, through the bridge's own main gateway
// client against the emulator. 4006 and 4009 invalidate the voice
// session: the repeated op 4 is answered with only a voice state, which
// is enough. 4014 followed by a server update (a voice server move)
// needs no op 4 at all.
func TestRecoveryThroughNewSession(t *testing.T) {
	cases := []struct {
		name      string
		close     func(t *testing.T, r *callRig)
		wantJoins int
	}{
		{"4006", func(t *testing.T, r *callRig) { r.srv.CloseSession(botID, 4006) }, 2},
		{"4009", func(t *testing.T, r *callRig) { r.srv.CloseSession(botID, 4009) }, 2},
		{"4014 then server update", func(t *testing.T, r *callRig) {
			r.srv.CloseSession(botID, 4014)
			r.sig.move(t, false)
		}, 1},
		{"server move", func(t *testing.T, r *callRig) { r.sig.move(t, false) }, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := startCall(t, voiceemu.Options{}, nil)
			c.close(t, r)
			i := r.evs.await(t, 0, "reconnecting", isState(voice.StateReconnecting))
			r.evs.await(t, i, "connected", isState(voice.StateConnected))
			r.awaitBothWays(t)
			if joins, leaves := r.sig.counts(t); joins != c.wantJoins || leaves != 0 {
				t.Fatalf("%d op 4 joins and %d leaves, want %d and 0", joins, leaves, c.wantJoins)
			}
			if n := r.evs.count(func(ev voice.Event) bool { _, ok := ev.(voice.Left); return ok }); n != 0 {
				t.Fatal("the connection reported Left")
			}
		})
	}
}

// Test4014WithoutUpdateRejoins: a 4014 that no voice update follows
// within ServerUpdateWait starts a new session (op 4), rather than
// ending the call.
func Test4014WithoutUpdateRejoins(t *testing.T) {
	r := startCall(t, voiceemu.Options{}, func(o *voice.Options) { o.ServerUpdateWait = 200 * time.Millisecond })
	r.srv.CloseSession(botID, 4014)
	i := r.evs.await(t, 0, "waiting for server", isState(voice.StateWaitingForServer))
	i = r.evs.await(t, i, "reconnecting", isState(voice.StateReconnecting))
	r.evs.await(t, i, "connected", isState(voice.StateConnected))
	r.awaitBothWays(t)
	if joins, leaves := r.sig.counts(t); joins != 2 || leaves != 0 {
		t.Fatalf("%d op 4 joins and %d leaves, want 2 and 0", joins, leaves)
	}
}

// staleRenewals is the voice emulator with a main gateway that does not
// renew the voice session on a repeated op 4: identifying after it keeps
// failing with 4006.
type staleRenewals struct{ *voiceemu.Server }

func (staleRenewals) Renew(string, string, string) {}

// TestLeaveAndJoinAsLastResort: when repeated joins do not bring a usable
// session, the client leaves the channel and joins it again, which brings
// both voice updates.
func TestLeaveAndJoinAsLastResort(t *testing.T) {
	srv := startServer(t, voiceemu.Options{})
	sig := newMainGateway(t, staleRenewals{srv}, botID)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := newClient(t, srv, sig).Join(ctx, guildID, channelID)
	if err != nil {
		t.Fatal(err)
	}
	evs := watchEvents(conn)
	defer func() {
		if err := conn.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		evs.wait()
	}()
	srv.CloseSession(botID, 4006)
	i := evs.await(t, 0, "reconnecting", isState(voice.StateReconnecting))
	evs.await(t, i, "connected", isState(voice.StateConnected))
	want := []string{channelID, channelID, channelID, "", channelID}
	if got := sig.voiceStateUpdates(t); len(got) != len(want) || got[3] != "" || got[4] != channelID {
		t.Fatalf("op 4 sequence %q, want %q (join, two rejoins, leave, join)", got, want)
	}
}
