package voice_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/internal/audiotest"
	"github.com/voicebridge/bridge/voice"
)

func addMember(t *testing.T, srv *voiceemu.Server) *voiceemu.Member {
	t.Helper()
	m, err := srv.AddMember(voiceemu.MemberOptions{UserID: memberID, GuildID: guildID, ChannelID: channelID})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func memberStream(t *testing.T, c *voice.Conn, kind voice.MediaKind) voice.StreamStats {
	t.Helper()
	for _, s := range c.Stats().Streams {
		if s.UserID == memberID && s.Kind == kind {
			return s
		}
	}
	t.Fatalf("no %s stream from the member in %+v", kind, c.Stats().Streams)
	return voice.StreamStats{}
}

// TestLossReorderDuplicateCounts injects 5% loss, 5% reordering and 5%
// duplication on the way to the bot and checks the receiver's counts
// against what the emulator injected.
func TestLossReorderDuplicateCounts(t *testing.T) {
	r := join(t, voiceemu.Options{Seed: 7})
	member := addMember(t, r.srv)
	r.evs.await(t, 0, "member speaking", func(ev voice.Event) bool { s, ok := ev.(voice.Speaking); return ok && s.UserID == memberID })
	// Counts are about the network: media starts once both ends hold the
	// epoch's keys, so no frame is lost to a transition.
	awaitE2EE(t, r.evs, r.conn, member)
	frames := audiotest.Tone(t, 1000)

	const faulted, clean = 1000, 10
	// The collector counts the sequence positions covered (delivered plus
	// Missing) and reports once the last clean packet is in.
	covered := make(chan struct{})
	done := make(chan []voice.Frame)
	go func() {
		var got []voice.Frame
		n := 0
		signalled := false
		for f := range r.conn.Frames() {
			if f.UserID != memberID || f.Kind != voice.Audio {
				continue
			}
			got = append(got, f)
			n += 1 + f.Missing
			if !signalled && n >= faulted+clean-1 {
				signalled = true
				close(covered)
			}
		}
		done <- got
	}()
	r.srv.SetLoss(0.05)
	r.srv.SetReorder(0.05)
	r.srv.SetDuplicate(0.05)
	tick := time.NewTicker(3 * time.Millisecond) // paces the sender only
	for i := 0; i < faulted+clean; i++ {
		if i == faulted {
			r.srv.SetLoss(0)
			r.srv.SetReorder(0)
			r.srv.SetDuplicate(0)
		}
		if err := member.SendOpus(frames[i%len(frames)]); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
	tick.Stop()
	select {
	case <-covered:
	case <-time.After(15 * time.Second):
		t.Fatalf("the last packets never arrived: %+v", memberStream(t, r.conn, voice.Audio))
	}
	st := memberStream(t, r.conn, voice.Audio)
	inj, ok := r.srv.Stats().Session(botID)
	if !ok {
		t.Fatal("no emulator session for the bot")
	}
	total := float64(faulted + clean)
	within := func(name string, got uint64, want int) {
		if d := math.Abs(float64(got)-float64(want)) / total; d > 0.01 {
			t.Errorf("%s: counted %d, injected %d (%.2f pp apart)", name, got, want, 100*d)
		}
	}
	within("lost", st.Lost, inj.Dropped)
	within("reordered", st.Reordered, inj.Reordered)
	within("duplicate", st.Duplicate, inj.Duplicated)
	if inj.Dropped < 20 || inj.Reordered < 20 || inj.Duplicated < 20 {
		t.Fatalf("emulator injected too little to test: %+v", inj)
	}
	if st.Late != 0 {
		t.Errorf("%d late packets; adjacent swaps should fit the 60 ms buffer", st.Late)
	}
	t.Logf("injected drop %d reorder %d dup %d; counted lost %d reordered %d duplicate %d late %d received %d",
		inj.Dropped, inj.Reordered, inj.Duplicated, st.Lost, st.Reordered, st.Duplicate, st.Late, st.Received)

	// Close ends Frames; what was delivered is in order with gaps marked.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := <-done
	missing := 0
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1+uint16(got[i].Missing) {
			t.Fatalf("frame %d: seq %d after %d with Missing %d", i, got[i].Seq, got[i-1].Seq, got[i].Missing)
		}
		missing += got[i].Missing
	}
	if uint64(missing) != st.Lost {
		t.Fatalf("frames report %d missing, stats %d lost", missing, st.Lost)
	}
}

// TestResumeAfterSocketDrop drops the voice websocket mid-call: the client
// resumes the same session and the audio it receives has no gap over
// 200 ms (by RTP timestamps and sequence numbers).
func TestResumeAfterSocketDrop(t *testing.T) {
	r := join(t, voiceemu.Options{HeartbeatInterval: 300 * time.Millisecond})
	member := addMember(t, r.srv)
	r.evs.await(t, 0, "member speaking", func(ev voice.Event) bool { s, ok := ev.(voice.Speaking); return ok && s.UserID == memberID })
	code := awaitE2EE(t, r.evs, r.conn, member)
	frames := audiotest.Tone(t, 440)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		member.PlayOpus(ctx, frames, false)
	}()
	sendDone := make(chan error, 1)
	go func() {
		defer wg.Done()
		for _, f := range audiotest.Tone(t, 1000) {
			if err := r.conn.SendOpus(f); err != nil {
				sendDone <- err
				return
			}
		}
		sendDone <- nil
	}()
	got := make(chan []voice.Frame)
	go func() { got <- collectFrames(r.conn, memberID, voice.Audio, len(frames), 15*time.Second) }()

	r.evs.await(t, 0, "connected", isState(voice.StateConnected))
	time.AfterFunc(time.Second, r.srv.DropSockets)
	resuming := r.evs.await(t, 0, "resuming", isState(voice.StateResuming))
	r.evs.await(t, resuming, "connected after resume", isState(voice.StateConnected))

	received := <-got
	cancel()
	wg.Wait()
	if err := <-sendDone; err != nil {
		t.Fatal(err)
	}
	if len(received) < len(frames)*99/100 {
		t.Fatalf("received %d of %d frames", len(received), len(frames))
	}
	const maxGap = 200 * 48 // 200 ms of 48 kHz samples
	for i := 1; i < len(received); i++ {
		if dt := received[i].Timestamp - received[i-1].Timestamp; dt > maxGap || received[i].Missing*20 > 200 {
			t.Fatalf("gap of %d samples (%d missing) at frame %d", dt, received[i].Missing, i)
		}
	}
	joins, _ := r.sig.counts(t)
	if joins != 1 {
		t.Fatalf("%d op 4 joins; a resume needs none", joins)
	}
	if st := r.conn.Stats(); st.SendDropped != 0 {
		t.Fatalf("%d outgoing frames dropped across the resume", st.SendDropped)
	}
	sessions := 0
	for _, s := range r.srv.Stats().Sessions {
		if s.UserID == botID {
			sessions++
		}
	}
	if sessions != 1 {
		t.Fatalf("%d emulator sessions for the bot, want the one resumed", sessions)
	}
	// A resume keeps the DAVE session: same group, same code, no change
	// reported.
	changes := r.evs.count(func(ev voice.Event) bool { _, ok := ev.(voice.PrivacyCodeChanged); return ok })
	if r.conn.PrivacyCode() != code || changes != 1 {
		t.Fatalf("after the resume: privacy code %q (was %q), %d PrivacyCodeChanged events, want 1", r.conn.PrivacyCode(), code, changes)
	}
	if st := r.conn.Stats().DAVE; st.NoKeyDropped != 0 {
		t.Fatalf("%d frames dropped for want of a key across the resume", st.NoKeyDropped)
	}
}

// TestZombieConnectionResumes stops heartbeat ACKs: the client must see a
// zombie connection and resume.
func TestZombieConnectionResumes(t *testing.T) {
	r := join(t, voiceemu.Options{HeartbeatInterval: 100 * time.Millisecond})
	r.srv.SetHeartbeatACK(false)
	i := r.evs.await(t, 0, "resuming", isState(voice.StateResuming))
	r.srv.SetHeartbeatACK(true)
	r.evs.await(t, i, "connected", isState(voice.StateConnected))
}

func TestCloseCodes(t *testing.T) {
	cases := []struct {
		code     int
		wantLeft bool
		wantText string
		wantErr  error
	}{
		{4022, true, "4022", nil},
		{4016, false, "no common encryption mode", voice.ErrNoCommonMode},
		{4017, false, "DAVE (E2EE) required", voice.ErrDAVERequired},
		{4021, false, "rate limited", voice.ErrClosedByServer},
	}
	for _, c := range cases {
		t.Run(strings.TrimSpace(c.wantText), func(t *testing.T) {
			r := join(t, voiceemu.Options{})
			r.srv.CloseSession(botID, c.code)
			i := r.evs.await(t, 0, "final event", func(ev voice.Event) bool {
				switch e := ev.(type) {
				case voice.Left:
					return true
				case voice.Error:
					return e.Fatal
				}
				return false
			})
			r.evs.wait() // the channel closes after the final event
			r.evs.mu.Lock()
			final, n := r.evs.events[i], len(r.evs.events)
			r.evs.mu.Unlock()
			if i != n-1 {
				t.Fatalf("events after the final one: %+v", r.evs.events[i:])
			}
			if c.wantLeft {
				l, ok := final.(voice.Left)
				if !ok || !strings.Contains(l.Reason, c.wantText) {
					t.Fatalf("final event %+v, want Left naming %s", final, c.wantText)
				}
			} else {
				e, ok := final.(voice.Error)
				if !ok || !errors.Is(e.Err, c.wantErr) || !strings.Contains(e.Err.Error(), c.wantText) {
					t.Fatalf("final event %+v, want error naming %q", final, c.wantText)
				}
			}
			if joins, _ := r.sig.counts(t); joins != 1 {
				t.Fatalf("%d op 4 joins: close %d must not be retried", joins, c.code)
			}
			if r.evs.count(isState(voice.StateResuming)) != 0 || r.evs.count(isState(voice.StateReconnecting)) != 0 {
				t.Fatalf("reconnect attempted after %d", c.code)
			}
			if err := r.conn.SendOpus([]byte{0xfc, 1, 2}); !errors.Is(err, voice.ErrClosed) {
				t.Fatalf("SendOpus after the end: %v", err)
			}
		})
	}
}

// TestSessionInvalidStartsNewSession: 4006 must not resume; the client
// asks the main gateway again (op 4) and identifies a new session.
func TestSessionInvalidStartsNewSession(t *testing.T) {
	r := join(t, voiceemu.Options{})
	r.srv.CloseSession(botID, 4006)
	i := r.evs.await(t, 0, "reconnecting", isState(voice.StateReconnecting))
	r.evs.await(t, i, "connected", isState(voice.StateConnected))
	// The emulator, as Discord, answers the repeated op 4 with only a
	// voice state: enough to reconnect, without leaving the channel.
	if joins, leaves := r.sig.counts(t); joins != 2 || leaves != 0 {
		t.Fatalf("%d op 4 joins and %d leaves, want 2 and 0", joins, leaves)
	}
	if r.evs.count(isState(voice.StateResuming)) != 0 {
		t.Fatal("resumed after 4006")
	}
	sendAndHear(t, r)
}

// sendAndHear checks audio from the bot reaches a member.
func sendAndHear(t *testing.T, r *rig) {
	t.Helper()
	member := addMember(t, r.srv)
	heard := make(chan struct{})
	var once sync.Once
	member.OnOpus(func(from string, f []byte) {
		if from == botID && !bytes.Equal(f, []byte{0xf8, 0xff, 0xfe}) {
			once.Do(func() { close(heard) })
		}
	})
	awaitE2EE(t, r.evs, r.conn, member)
	frames := audiotest.Tone(t, 1000)
	for _, f := range frames[:10] {
		if err := r.conn.SendOpus(f); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-heard:
	case <-time.After(10 * time.Second):
		t.Fatal("member heard nothing from the bot")
	}
}

func TestDAVERequiredFailsJoin(t *testing.T) {
	srv := startServer(t, voiceemu.Options{RequireDAVE: true})
	sig := newMainGateway(t, srv, botID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := voice.NewClient(voice.Options{Signaler: sig, UserID: botID, TLSConfig: srv.TLSConfig(),
		Logger: testLogger(t), JoinTimeout: 5 * time.Second, DisableDAVE: true})
	_, err := c.Join(ctx, guildID, channelID)
	if !errors.Is(err, voice.ErrDAVERequired) || !strings.Contains(err.Error(), "DAVE (E2EE) required") {
		t.Fatalf("Join: %v, want the DAVE requirement named", err)
	}
	eventually(t, "one op 4 leave after the failed join", func() bool { _, leaves := sig.counts(t); return leaves == 1 })
}

// TestServerMove: a new VOICE_SERVER_UPDATE moves the connection to the
// new server as a new session; a null endpoint waits for the next.
func TestServerMove(t *testing.T) {
	r := join(t, voiceemu.Options{})
	r.sig.move(t, true)
	i := r.evs.await(t, 0, "waiting for server", isState(voice.StateWaitingForServer))
	r.sig.move(t, false)
	i = r.evs.await(t, i, "reconnecting", isState(voice.StateReconnecting))
	r.evs.await(t, i, "connected", isState(voice.StateConnected))
	sendAndHear(t, r)
}

// TestVP8FromMember: VP8 frames from a member arrive byte-identical, key
// frames flagged; the bot's own VP8 reaches the member the same way.
func TestVP8BothWays(t *testing.T) {
	r := join(t, voiceemu.Options{})
	member := addMember(t, r.srv)
	r.evs.await(t, 0, "member speaking", func(ev voice.Event) bool { s, ok := ev.(voice.Speaking); return ok && s.UserID == memberID })
	// Frames are sent once both ends hold the epoch's keys; before that the
	// client drops video it cannot encrypt.
	awaitE2EE(t, r.evs, r.conn, member)
	frames, err := voiceemu.LoadVP8Sample("testpattern")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []voice.Frame)
	go func() { got <- collectFrames(r.conn, memberID, voice.Video, len(frames), 15*time.Second) }()
	tick := time.NewTicker(5 * time.Millisecond) // paces the sender only
	defer tick.Stop()
	for _, f := range frames {
		if err := member.SendVP8(f.Data, f.Keyframe); err != nil {
			t.Fatal(err)
		}
		if err := r.conn.SendVP8(f.Data, f.Keyframe); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
	received := <-got
	if len(received) != len(frames) {
		t.Fatalf("bot assembled %d of %d frames", len(received), len(frames))
	}
	keyframes := 0
	for i, f := range received {
		if !bytes.Equal(f.Payload, frames[i].Data) || f.Keyframe != frames[i].Keyframe {
			t.Fatalf("frame %d: %d bytes keyframe %v, want %d bytes keyframe %v", i, len(f.Payload), f.Keyframe, len(frames[i].Data), frames[i].Keyframe)
		}
		if f.Keyframe {
			keyframes++
		}
	}
	if keyframes < 2 {
		t.Fatalf("only %d key frames in the sample", keyframes)
	}
	eventually(t, "the member to assemble the bot's VP8", func() bool { return len(member.ReceivedVP8(botID)) >= len(frames) })
	for i, f := range member.ReceivedVP8(botID) {
		if !bytes.Equal(f.Data, frames[i].Data) || f.Keyframe != frames[i].Keyframe {
			t.Fatalf("member frame %d differs", i)
		}
	}
	if st := memberStream(t, r.conn, voice.Video); st.IncompleteFrames != 0 {
		t.Fatalf("%d incomplete frames without faults", st.IncompleteFrames)
	}
}

// xorSeam stands in for DAVE at the FrameEncryptor/FrameDecryptor seam:
// it XORs every byte and appends a marker byte naming the kind.
type xorSeam struct {
	mu    sync.Mutex
	users map[string]int
}

func (x *xorSeam) EncryptFrame(dst []byte, kind voice.MediaKind, frame []byte) ([]byte, error) {
	for _, b := range frame {
		dst = append(dst, b^0x5a)
	}
	return append(dst, byte(kind)), nil
}

func (x *xorSeam) DecryptFrame(dst []byte, user string, kind voice.MediaKind, frame []byte) ([]byte, error) {
	x.mu.Lock()
	x.users[user]++
	x.mu.Unlock()
	for _, b := range frame {
		dst = append(dst, b^0x5a)
	}
	return dst, nil
}

func TestFrameSeam(t *testing.T) {
	srv := startServer(t, voiceemu.Options{})
	member := addMember(t, srv)
	heard := make(chan []byte, 1)
	member.OnOpus(func(from string, f []byte) {
		if from == botID {
			select {
			case heard <- f:
			default:
			}
		}
	})
	// DAVE off: the emulator's DAVE members could not read the XOR seam's
	// frames, so the call runs at DAVE protocol 0.
	seam := &xorSeam{users: map[string]int{}}
	c := voice.NewClient(voice.Options{Signaler: newMainGateway(t, srv, botID), UserID: botID, TLSConfig: srv.TLSConfig(),
		Logger: testLogger(t), Encryptor: seam, Decryptor: seam, DisableDAVE: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.Join(ctx, guildID, channelID)
	if err != nil {
		t.Fatal(err)
	}
	evs := watchEvents(conn)
	defer func() {
		if err := conn.Close(ctx); err != nil {
			t.Error(err)
		}
		evs.wait()
		if evs.count(isState(voice.StateClosed)) != 1 {
			t.Error("no StateClosed after Close")
		}
	}()
	if err := conn.SendOpus([]byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-heard:
		if !bytes.Equal(f, []byte{1 ^ 0x5a, 2 ^ 0x5a, 3 ^ 0x5a, byte(voice.Audio)}) {
			t.Fatalf("member got %x: the encryptor did not run before packetization", f)
		}
	case <-ctx.Done():
		t.Fatal("member heard nothing")
	}
	evs.await(t, 0, "member speaking", func(ev voice.Event) bool { s, ok := ev.(voice.Speaking); return ok && s.UserID == memberID })
	// The member joined a DAVE call; the bot without DAVE downgrades it.
	eventually(t, "the call at DAVE protocol 0 for the member", func() bool { return member.ProtocolVersion() == 0 })
	if err := member.SendOpus([]byte{7, 8, 9}); err != nil {
		t.Fatal(err)
	}
	got := collectFrames(conn, memberID, voice.Audio, 1, 10*time.Second)
	if len(got) != 1 || !bytes.Equal(got[0].Payload, []byte{7 ^ 0x5a, 8 ^ 0x5a, 9 ^ 0x5a}) {
		t.Fatalf("bot got %+v: the decryptor did not run", got)
	}
	seam.mu.Lock()
	defer seam.mu.Unlock()
	if seam.users[memberID] != 1 {
		t.Fatalf("decryptor saw users %v", seam.users)
	}
}

// eventually polls cond (counters without a notification hook) until the
// deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestRTCPCountedNotDelivered: the emulator's sender and receiver reports
// authenticate and are counted, and never surface as media frames.
func TestRTCPCountedNotDelivered(t *testing.T) {
	r := join(t, voiceemu.Options{RTCPInterval: 50 * time.Millisecond})
	member := addMember(t, r.srv)
	if err := member.SendOpus([]byte{0xfc, 1, 2}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "RTCP", func() bool { return r.conn.Stats().RTCPReceived >= 3 })
	st := r.conn.Stats()
	if st.RTCPDecryptFailures != 0 {
		t.Fatalf("%d RTCP packets failed to authenticate", st.RTCPDecryptFailures)
	}
	for _, s := range st.Streams {
		if s.SSRC >= 0x5EF00000 {
			t.Fatalf("RTCP sender %x became a media stream", s.SSRC)
		}
	}
}

// TestGivesUpWhenServerGone: with the voice server gone, the client tries
// to resume, then (backing off) a new session, and after MaxReconnects
// stops with an error.
func TestGivesUpWhenServerGone(t *testing.T) {
	srv := startServer(t, voiceemu.Options{})
	sig := newMainGateway(t, srv, botID)
	c := voice.NewClient(voice.Options{Signaler: sig, UserID: botID, TLSConfig: srv.TLSConfig(),
		Logger: testLogger(t), JoinTimeout: 2 * time.Second, MaxReconnects: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := c.Join(ctx, guildID, channelID)
	if err != nil {
		t.Fatal(err)
	}
	evs := watchEvents(conn)
	srv.Close()
	i := evs.await(t, 0, "fatal error", func(ev voice.Event) bool { e, ok := ev.(voice.Error); return ok && e.Fatal })
	evs.wait()
	evs.mu.Lock()
	final := evs.events[i].(voice.Error)
	evs.mu.Unlock()
	if !strings.Contains(final.Err.Error(), "gave up after 2 reconnect attempts") {
		t.Fatalf("final error %v", final.Err)
	}
	if evs.count(isState(voice.StateResuming)) != 1 || evs.count(isState(voice.StateReconnecting)) != 1 {
		t.Fatal("expected one resume attempt, then one new session attempt")
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKickedByMainGateway: a VOICE_STATE_UPDATE with no channel (a
// moderator disconnected the bot) ends the connection with Left.
func TestKickedByMainGateway(t *testing.T) {
	r := join(t, voiceemu.Options{})
	r.sig.kick(t)
	i := r.evs.await(t, 0, "left", func(ev voice.Event) bool { _, ok := ev.(voice.Left); return ok })
	r.evs.wait()
	r.evs.mu.Lock()
	defer r.evs.mu.Unlock()
	if i != len(r.evs.events)-1 {
		t.Fatalf("events after Left: %+v", r.evs.events[i:])
	}
}
