package voice_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/internal/audiotest"
	"github.com/voicebridge/bridge/voice"
	"github.com/voicebridge/bridge/voice/dave"
)

const (
	member2ID = "500000000000000005"
	member3ID = "600000000000000006"
)

// awaitE2EE waits until the bot and every member use the keys of the same
// DAVE epoch (equal, non-empty privacy codes) and the bot has reported
// that code in a PrivacyCodeChanged event. It returns the code.
func awaitE2EE(t *testing.T, evs *eventLog, conn *voice.Conn, members ...*voiceemu.Member) string {
	t.Helper()
	var code string
	eventually(t, "the bot and the members to share a privacy code", func() bool {
		code = conn.PrivacyCode()
		if code == "" {
			return false
		}
		for _, m := range members {
			if m.PrivacyCode() != code {
				return false
			}
		}
		return true
	})
	evs.await(t, 0, "PrivacyCodeChanged with the shared code", func(ev voice.Event) bool {
		p, ok := ev.(voice.PrivacyCodeChanged)
		return ok && p.Code == code
	})
	return code
}

// awaitNewCode is awaitE2EE for a code other than old: the group moved to
// a new epoch.
func awaitNewCode(t *testing.T, evs *eventLog, conn *voice.Conn, old string, members ...*voiceemu.Member) string {
	t.Helper()
	eventually(t, "the privacy code to change", func() bool {
		c := conn.PrivacyCode()
		return c != "" && c != old
	})
	return awaitE2EE(t, evs, conn, members...)
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// TestDAVEToneEndToEnd is the end-to-end check of end-to-end encryption:
// the bot joins a channel that requires DAVE; a simulated member, a real
// DAVE participant, decodes the bot's 1 kHz tone, the bot decodes the
// member's 440 Hz tone attributed to the member's user id, both show the
// same privacy code, and the emulator's relay never saw a plaintext Opus
// frame.
func TestDAVEToneEndToEnd(t *testing.T) {
	r := join(t, voiceemu.Options{RequireDAVE: true})
	member := addMember(t, r.srv)
	code := awaitE2EE(t, r.evs, r.conn, member)
	if len(code) != dave.PrivacyCodeDigits || !isDigits(code) {
		t.Fatalf("privacy code %q is not %d digits", code, dave.PrivacyCodeDigits)
	}
	if v := r.conn.DAVEVersion(); v != 1 {
		t.Fatalf("DAVEVersion %d, want 1", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := tonesBothWays(t, ctx, r.conn, member)

	if n := r.srv.Stats().PlaintextOpusSeen; n != 0 {
		t.Fatalf("the relay saw %d plaintext Opus frames", n)
	}
	st := r.conn.Stats().DAVE
	fromMember, own := st.Senders[memberID], st.Senders[botID]
	if fromMember.Decrypted < uint64(res.received) || fromMember.FailedAuth+fromMember.FailedNoKey+fromMember.FailedReplay+fromMember.FailedNotEncrypted != 0 {
		t.Fatalf("member's frames at the bot: %+v, want %d decrypted and no failures", fromMember, res.received)
	}
	if fromMember.Passthrough != 0 {
		t.Fatalf("%d of the member's frames passed through unencrypted", fromMember.Passthrough)
	}
	if own.Encrypted < uint64(res.sent) || st.NoKeyDropped != 0 || st.EncryptFailures != 0 {
		t.Fatalf("bot's own frames: %+v, dropped %d/%d; want %d encrypted", own, st.NoKeyDropped, st.EncryptFailures, res.sent)
	}
	if ms := member.Stats(); ms.DecryptFailures != 0 {
		t.Fatalf("member failed to decrypt %d frames", ms.DecryptFailures)
	}
	if vc, err := r.conn.VerificationCode(memberID); err != nil || len(vc) != dave.VerificationCodeDigits || !isDigits(vc) {
		t.Fatalf("verification code %q, %v", vc, err)
	}
	t.Logf("privacy code %s; %s; member frames decrypted %d, bot frames encrypted %d", code, res, fromMember.Decrypted, own.Encrypted)
}

// TestDAVEMembersJoinAndLeave: while a member talks, another joins and
// then leaves, each moving the group to a new epoch. Each transition
// costs the bot at most one of the talking member's frames, the bot's own
// frames keep reaching the member, and the privacy code follows the
// epochs on both sides.
func TestDAVEMembersJoinAndLeave(t *testing.T) {
	r := join(t, voiceemu.Options{RequireDAVE: true})
	talker := addMember(t, r.srv)
	code1 := awaitE2EE(t, r.evs, r.conn, talker)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tone440 := audiotest.Tone(t, 440)
	tone1000 := audiotest.Tone(t, 1000)
	playing := make(chan struct{})
	go func() {
		defer close(playing)
		talker.PlayOpus(ctx, tone440, true)
	}()
	sending := make(chan error, 1)
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			if err := r.conn.SendOpus(tone1000[i%len(tone1000)]); err != nil {
				sending <- err
				return
			}
		}
		sending <- nil
	}()

	var got []voice.Frame
	phase := func(what string) {
		t.Helper()
		fs := collectFrames(r.conn, memberID, voice.Audio, 50, 10*time.Second)
		if len(fs) < 50 {
			t.Fatalf("%s: the bot got %d of 50 frames from the talker", what, len(fs))
		}
		got = append(got, fs...)
	}
	phase("before the join")
	joiner, err := r.srv.AddMember(voiceemu.MemberOptions{UserID: member2ID, GuildID: guildID, ChannelID: channelID})
	if err != nil {
		t.Fatal(err)
	}
	code2 := awaitNewCode(t, r.evs, r.conn, code1, talker, joiner)
	phase("after the join")
	joiner.Leave()
	code3 := awaitNewCode(t, r.evs, r.conn, code2, talker)
	phase("after the leave")
	heardBefore := len(talker.ReceivedOpus(botID))
	phase("after the leave, again")
	cancel()
	<-playing
	if err := <-sending; err != nil {
		t.Fatalf("SendOpus: %v", err)
	}

	lost := 0
	for i, f := range got {
		if i > 0 && f.Seq != got[i-1].Seq+1+uint16(f.Missing) {
			t.Fatalf("frame %d: seq %d after %d with Missing %d", i, f.Seq, got[i-1].Seq, f.Missing)
		}
		if i > 0 {
			lost += f.Missing
		}
	}
	st := r.conn.Stats()
	talkerStream := memberStream(t, r.conn, voice.Audio)
	lost += int(talkerStream.FrameDecryptFailures)
	if lost > 2 {
		t.Fatalf("the bot lost %d of the talker's frames over two transitions (missing %d, undecryptable %d), want ≤ 2",
			lost, lost-int(talkerStream.FrameDecryptFailures), talkerStream.FrameDecryptFailures)
	}
	if st.FramesDropped != 0 {
		t.Fatalf("%d frames dropped by the test's own slow reading", st.FramesDropped)
	}
	if st.DAVE.NoKeyDropped != 0 || st.DAVE.EncryptFailures != 0 {
		t.Fatalf("the bot dropped %d frames for want of a key and %d for other failures across transitions",
			st.DAVE.NoKeyDropped, st.DAVE.EncryptFailures)
	}
	if heard := len(talker.ReceivedOpus(botID)); heard <= heardBefore {
		t.Fatalf("the talker heard nothing from the bot after the leave (%d frames, %d before)", heard, heardBefore)
	}
	if n := r.srv.Stats().PlaintextOpusSeen; n != 0 {
		t.Fatalf("the relay saw %d plaintext Opus frames", n)
	}
	changes := r.evs.count(func(ev voice.Event) bool { _, ok := ev.(voice.PrivacyCodeChanged); return ok })
	if changes != 3 {
		t.Fatalf("%d PrivacyCodeChanged events, want 3 (one per epoch)", changes)
	}
	if st.DAVE.Epochs != 3 {
		t.Fatalf("DAVE epochs counted %d, want 3 (join, a member joining, a member leaving)", st.DAVE.Epochs)
	}
	t.Logf("codes %s → %s → %s; %d frames from the talker, lost %d (undecryptable %d); talker failed to decrypt %d of the bot's",
		code1[:10], code2[:10], code3[:10], len(got), lost, talkerStream.FrameDecryptFailures, talker.Stats().DecryptFailures)
}

// TestDAVEInvalidWelcomeRecovers: the bot joins a call already under way
// and its Welcome (op 30) is corrupted; it answers op 31 with a new key
// package, is added again, and the call becomes end-to-end encrypted.
func TestDAVEInvalidWelcomeRecovers(t *testing.T) {
	srv := startServer(t, voiceemu.Options{RequireDAVE: true})
	member := addMember(t, srv)
	srv.CorruptNextWelcome(botID)
	sig := newMainGateway(t, srv, botID)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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
	awaitE2EE(t, evs, conn, member)
	info, ok := srv.DAVE(guildID, channelID)
	if !ok || info.Epoch < 3 || len(info.Members) != 2 {
		t.Fatalf("server's view of the group %+v: want the bot added, removed and added again (epoch ≥ 3)", info)
	}
	sendAndHearFrom(t, conn, member)
}

// TestDAVENewSessionNewGroup: after a voice server move (a new voice
// session) the bot starts a new DAVE session: the privacy code is
// cleared, then set again with the member, audio flows encrypted, and the
// DAVE counters of the first session are kept.
func TestDAVENewSessionNewGroup(t *testing.T) {
	r := join(t, voiceemu.Options{RequireDAVE: true})
	member := addMember(t, r.srv)
	code1 := awaitE2EE(t, r.evs, r.conn, member)
	sendAndHearFrom(t, r.conn, member)
	own := func() uint64 { return r.conn.Stats().DAVE.Senders[botID].Encrypted }
	eventually(t, "the 10 frames encrypted", func() bool { return own() >= 10 })
	before := own()
	r.sig.move(t, false)
	i := r.evs.await(t, 0, "the privacy code cleared", func(ev voice.Event) bool {
		p, ok := ev.(voice.PrivacyCodeChanged)
		return ok && p.Code == ""
	})
	r.evs.await(t, i, "a new privacy code", func(ev voice.Event) bool {
		p, ok := ev.(voice.PrivacyCodeChanged)
		return ok && p.Code != ""
	})
	code2 := awaitE2EE(t, r.evs, r.conn, member)
	if code2 == code1 {
		t.Fatal("the new session kept the old group's privacy code")
	}
	sendAndHearFrom(t, r.conn, member)
	if n := r.srv.Stats().PlaintextOpusSeen; n != 0 {
		t.Fatalf("the relay saw %d plaintext Opus frames", n)
	}
	// Ten more frames in the new session: the total includes the first
	// session's.
	eventually(t, "the first session's counts kept", func() bool { return own() >= before+10 })
}

// sendAndHearFrom checks that the bot's audio reaches member, decrypted.
func sendAndHearFrom(t *testing.T, conn *voice.Conn, member *voiceemu.Member) {
	t.Helper()
	heard := make(chan []byte, 1)
	member.OnOpus(func(from string, f []byte) {
		if from == botID && len(f) != 3 {
			select {
			case heard <- f:
			default:
			}
		}
	})
	frames := audiotest.Tone(t, 1000)
	for _, f := range frames[:10] {
		if err := conn.SendOpus(f); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case f := <-heard:
		known := false
		for _, sent := range frames[:10] {
			known = known || string(f) == string(sent)
		}
		if !known {
			t.Fatalf("member heard %x, not one of the frames sent", f[:min(8, len(f))])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("member heard nothing from the bot")
	}
}

// TestDAVEDowngradeAndUpgrade: a client without DAVE joins an end-to-end
// encrypted call, so the voice server downgrades it to protocol 0 (op 21
// version 0, op 22): the bot reports DAVE version 0 and an empty privacy
// code, and audio still reaches the member. When that client leaves, the
// call upgrades again to a new group with a new code.
func TestDAVEDowngradeAndUpgrade(t *testing.T) {
	r := join(t, voiceemu.Options{})
	member := addMember(t, r.srv)
	code1 := awaitE2EE(t, r.evs, r.conn, member)

	sig := newMainGateway(t, r.srv, member3ID)
	legacy := voice.NewClient(voice.Options{Signaler: sig, UserID: member3ID, TLSConfig: r.srv.TLSConfig(),
		Logger: testLogger(t), JoinTimeout: 5 * time.Second, DisableDAVE: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lconn, err := legacy.Join(ctx, guildID, channelID)
	if err != nil {
		t.Fatalf("Join without DAVE: %v", err)
	}
	levs := watchEvents(lconn)
	closed := false
	defer func() {
		if !closed {
			_ = lconn.Close(ctx)
			levs.wait()
		}
	}()
	i := r.evs.await(t, 0, "the privacy code cleared by the downgrade", func(ev voice.Event) bool {
		p, ok := ev.(voice.PrivacyCodeChanged)
		return ok && p.Code == ""
	})
	eventually(t, "DAVE version 0 on both", func() bool { return r.conn.DAVEVersion() == 0 && member.ProtocolVersion() == 0 })
	sendAndHearFrom(t, r.conn, member)

	if err := lconn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	levs.wait()
	closed = true
	r.evs.await(t, i, "a privacy code after the upgrade", func(ev voice.Event) bool {
		p, ok := ev.(voice.PrivacyCodeChanged)
		return ok && p.Code != ""
	})
	code2 := awaitE2EE(t, r.evs, r.conn, member)
	if code2 == code1 || r.conn.DAVEVersion() != 1 {
		t.Fatalf("after the upgrade: code %q (was %q), version %d", code2, code1, r.conn.DAVEVersion())
	}
	sendAndHearFrom(t, r.conn, member)
}
