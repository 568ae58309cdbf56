package dave

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	sessUserA = "1200000000000000002"
	sessUserB = "1300000000000000003"
)

func one(t *testing.T, outs []Outbound, err error, op int) Outbound {
	t.Helper()
	if err != nil {
		t.Fatalf("want op %d, got error %v", op, err)
	}
	if len(outs) != 1 || outs[0].Op != op {
		t.Fatalf("want one op %d, got %+v", op, outs)
	}
	return outs[0]
}

func sendJSON(t *testing.T, s *Session, op int, v any) []Outbound {
	t.Helper()
	data, _ := json.Marshal(v)
	outs, err := s.HandleJSON(op, data)
	if err != nil {
		t.Fatalf("op %d: %v", op, err)
	}
	return outs
}

// twoMembers builds a two-member group: A commits B's Add, the server
// announces it with transition tid, and executes it.
func twoMembers(t *testing.T, clk *fakeClock, tid uint16) (*Session, *Session, *ExternalSender) {
	t.Helper()
	x, err := NewExternalSender(testChannel)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(uid, other string) (*Session, []byte) {
		s, err := NewSession(SessionOptions{UserID: uid, ChannelID: testChannel, Clock: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		outs, err := s.Start(1)
		kp := one(t, outs, err, OpMLSKeyPackage).Binary
		if outs, err := s.HandleBinary(OpMLSExternalSender, x.Marshal()); err != nil || len(outs) != 0 {
			t.Fatalf("op 25: %+v %v", outs, err)
		}
		sendJSON(t, s, OpClientsConnect, ClientsConnect{UserIDs: []string{other}})
		return s, kp
	}
	a, kpA := mk(sessUserA, sessUserB)
	b, kpB := mk(sessUserB, sessUserA)
	addA, err := x.ProposeAdd(sessUserA, kpA)
	if err != nil {
		t.Fatal(err)
	}
	addB, err := x.ProposeAdd(sessUserB, kpB)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := a.HandleBinary(OpMLSProposals, AppendProposalsPayload(addB))
	commitA := one(t, outs, err, OpMLSCommitWelcome).Binary
	outs, err = b.HandleBinary(OpMLSProposals, AppendProposalsPayload(addA))
	one(t, outs, err, OpMLSCommitWelcome) // B's commit loses the race
	acc, err := x.AcceptCommit(sessUserA, commitA)
	if err != nil {
		t.Fatal(err)
	}
	outs, err = a.HandleBinary(OpMLSAnnounceCommit, AnnounceCommitPayload(tid, acc.Commit))
	if tid != 0 {
		one(t, outs, err, OpReadyForTransition)
	}
	outs, err = b.HandleBinary(OpMLSWelcome, WelcomePayload(tid, acc.Welcomes[sessUserB]))
	if tid != 0 {
		one(t, outs, err, OpReadyForTransition)
		sendJSON(t, a, OpExecuteTransition, ExecuteTransition{TransitionID: tid})
		sendJSON(t, b, OpExecuteTransition, ExecuteTransition{TransitionID: tid})
	}
	return a, b, x
}

func exchange(t *testing.T, from *Session, fromID string, to *Session, kind MediaKind, frame []byte) error {
	t.Helper()
	enc, err := from.EncryptFrame(nil, kind, frame)
	if err != nil {
		return err
	}
	dec, err := to.DecryptFrame(nil, fromID, kind, enc)
	if err != nil {
		return err
	}
	if !bytes.Equal(dec, frame) {
		t.Fatalf("decrypted % x, want % x", dec, frame)
	}
	return nil
}

func TestSessionGroupAndMedia(t *testing.T) {
	clk := newFakeClock()
	a, b, _ := twoMembers(t, clk, 5)
	for _, s := range []*Session{a, b} {
		if s.ProtocolVersion() != 1 || s.Epoch() != 1 || len(s.Members()) != 2 {
			t.Fatalf("state: v%d epoch %d members %v", s.ProtocolVersion(), s.Epoch(), s.Members())
		}
	}
	if a.PrivacyCode() == "" || a.PrivacyCode() != b.PrivacyCode() || len(a.PrivacyCode()) != 30 {
		t.Fatalf("privacy codes %q / %q", a.PrivacyCode(), b.PrivacyCode())
	}
	if err := exchange(t, a, sessUserA, b, Audio, opusFrame(100)); err != nil {
		t.Fatal(err)
	}
	if err := exchange(t, b, sessUserB, a, Video, vp8Frame(true, 500)); err != nil {
		t.Fatal(err)
	}
	va, err := a.VerificationCode(sessUserB)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := b.VerificationCode(sessUserA)
	if err != nil || va != vb || len(va) != 45 {
		t.Fatalf("verification codes %q / %q (%v)", va, vb, err)
	}
	// Plaintext from a member is dropped once E2EE is in force.
	if _, err := b.DecryptFrame(nil, sessUserA, Audio, opusFrame(50)); !errors.Is(err, ErrPassthroughDenied) {
		t.Fatalf("plaintext under E2EE: %v", err)
	}
	st := b.Stats()[sessUserA]
	if st.Decrypted != 1 || st.FailedNotEncrypted != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Transition id 0 executes at once; no op 23 is sent.
func TestSessionImmediateTransition(t *testing.T) {
	clk := newFakeClock()
	a, b, _ := twoMembers(t, clk, 0)
	if err := exchange(t, a, sessUserA, b, Audio, opusFrame(80)); err != nil {
		t.Fatal(err)
	}
}

// Before any group exists at protocol 1, nothing is sent in the clear.
func TestSessionNeverSendsPlaintextUnderDAVE(t *testing.T) {
	s, err := NewSession(SessionOptions{UserID: sessUserA, ChannelID: testChannel})
	if err != nil {
		t.Fatal(err)
	}
	// Protocol 0: frames pass unchanged.
	if out, err := s.EncryptFrame(nil, Audio, opusFrame(10)); err != nil || !bytes.Equal(out, opusFrame(10)) {
		t.Fatalf("protocol 0: %v", err)
	}
	if _, err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	if out, err := s.EncryptFrame(nil, Audio, opusFrame(10)); !errors.Is(err, ErrNoKey) || out != nil {
		t.Fatalf("protocol 1 without keys: out=%x err=%v", out, err)
	}
	if _, err := NewSession(SessionOptions{UserID: "x", ChannelID: testChannel}); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("bad user id: %v", err)
	}
}

// Downgrade to protocol 0 and upgrade back to a new group.
func TestSessionDowngradeUpgrade(t *testing.T) {
	clk := newFakeClock()
	a, b, x := twoMembers(t, clk, 1)

	// Downgrade: op 21 v0 → op 23; receivers accept plaintext at once.
	outs := sendJSON(t, b, OpPrepareTransition, PrepareTransition{TransitionID: 2, ProtocolVersion: 0})
	one(t, outs, nil, OpReadyForTransition)
	if _, err := b.DecryptFrame(nil, sessUserA, Audio, opusFrame(40)); err != nil {
		t.Fatalf("plaintext during downgrade: %v", err)
	}
	// A still encrypts until it executes; B still decrypts that.
	if err := exchange(t, a, sessUserA, b, Audio, opusFrame(41)); err != nil {
		t.Fatal(err)
	}
	sendJSON(t, a, OpPrepareTransition, PrepareTransition{TransitionID: 2, ProtocolVersion: 0})
	sendJSON(t, a, OpExecuteTransition, ExecuteTransition{TransitionID: 2})
	sendJSON(t, b, OpExecuteTransition, ExecuteTransition{TransitionID: 2})
	if a.ProtocolVersion() != 0 || a.PrivacyCode() != "" {
		t.Fatalf("after downgrade: v%d code %q", a.ProtocolVersion(), a.PrivacyCode())
	}
	if out, err := a.EncryptFrame(nil, Audio, opusFrame(42)); err != nil || !bytes.Equal(out, opusFrame(42)) {
		t.Fatalf("downgraded sender must send plaintext: %v", err)
	}

	// Upgrade: op 24 epoch 1 → new key packages; a new group forms.
	x.Reset()
	outs = sendJSON(t, a, OpPrepareEpoch, PrepareEpoch{ProtocolVersion: 1, Epoch: 1})
	kpA := one(t, outs, nil, OpMLSKeyPackage).Binary
	outs = sendJSON(t, b, OpPrepareEpoch, PrepareEpoch{ProtocolVersion: 1, Epoch: 1})
	kpB := one(t, outs, nil, OpMLSKeyPackage).Binary
	if _, err := x.ProposeAdd(sessUserA, kpA); err != nil {
		t.Fatal(err)
	}
	addB, err := x.ProposeAdd(sessUserB, kpB)
	if err != nil {
		t.Fatal(err)
	}
	outs, err = a.HandleBinary(OpMLSProposals, AppendProposalsPayload(addB))
	acc, err := x.AcceptCommit(sessUserA, one(t, outs, err, OpMLSCommitWelcome).Binary)
	if err != nil {
		t.Fatal(err)
	}
	outs, err = a.HandleBinary(OpMLSAnnounceCommit, AnnounceCommitPayload(3, acc.Commit))
	one(t, outs, err, OpReadyForTransition)
	outs, err = b.HandleBinary(OpMLSWelcome, WelcomePayload(3, acc.Welcomes[sessUserB]))
	one(t, outs, err, OpReadyForTransition)
	// Until execution A still sends plaintext (protocol 0 in force).
	if out, _ := a.EncryptFrame(nil, Audio, opusFrame(43)); !bytes.Equal(out, opusFrame(43)) {
		t.Fatal("sender switched before op 22")
	}
	sendJSON(t, a, OpExecuteTransition, ExecuteTransition{TransitionID: 3})
	sendJSON(t, b, OpExecuteTransition, ExecuteTransition{TransitionID: 3})
	if err := exchange(t, a, sessUserA, b, Audio, opusFrame(44)); err != nil {
		t.Fatal(err)
	}
	// Passthrough lingers 10 s after the upgrade, then plaintext is dropped.
	if _, err := b.DecryptFrame(nil, sessUserA, Audio, opusFrame(45)); err != nil {
		t.Fatalf("plaintext just after upgrade: %v", err)
	}
	clk.advance(TransitionExpiry + time.Second)
	if _, err := b.DecryptFrame(nil, sessUserA, Audio, opusFrame(46)); !errors.Is(err, ErrPassthroughDenied) {
		t.Fatalf("plaintext 11 s after upgrade: %v", err)
	}
}

// An unprocessable commit or welcome is answered with op 31 and a fresh
// key package.
func TestSessionRecovery(t *testing.T) {
	clk := newFakeClock()
	a, _, _ := twoMembers(t, clk, 1)
	outs, err := a.HandleBinary(OpMLSAnnounceCommit, AnnounceCommitPayload(9, []byte{0, 1, 0, 1, 0xff}))
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 || outs[0].Op != OpMLSInvalidCommitWelcome || outs[0].JSON != (TransitionReady{TransitionID: 9}) || outs[1].Op != OpMLSKeyPackage {
		t.Fatalf("recovery outbound %+v", outs)
	}
	if _, err := a.HandleBinary(OpMLSAnnounceCommit, []byte{1}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("short op 29: %v", err)
	}
	if _, err := a.HandleBinary(99, nil); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("unknown op: %v", err)
	}
	if _, err := a.HandleJSON(OpPrepareTransition, json.RawMessage(`{"transition_id":"x"}`)); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("bad json: %v", err)
	}
}

// Add proposals for users the voice gateway never announced are refused.
func TestSessionRejectsUnrecognizedAdd(t *testing.T) {
	x, _ := NewExternalSender(testChannel)
	s, err := NewSession(SessionOptions{UserID: sessUserA, ChannelID: testChannel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HandleBinary(OpMLSExternalSender, x.Marshal()); err != nil {
		t.Fatal(err)
	}
	kpB, _ := goodKP(t, sessUserB)
	addB, err := x.ProposeAdd(sessUserB, kpB)
	if err != nil {
		t.Fatal(err)
	}
	if outs, err := s.HandleBinary(OpMLSProposals, AppendProposalsPayload(addB)); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("unrecognized add: %+v %v", outs, err)
	}
	// Announced by op 11 and gone again by op 13: still refused.
	sendJSON(t, s, OpClientsConnect, ClientsConnect{UserIDs: []string{sessUserB}})
	sendJSON(t, s, OpClientDisconnect, ClientDisconnect{UserID: sessUserB})
	if outs, err := s.HandleBinary(OpMLSProposals, AppendProposalsPayload(addB)); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("disconnected user's add: %+v %v", outs, err)
	}
	// Announced: committed.
	sendJSON(t, s, OpClientsConnect, ClientsConnect{UserIDs: []string{sessUserB}})
	outs, err := s.HandleBinary(OpMLSProposals, AppendProposalsPayload(addB))
	one(t, outs, err, OpMLSCommitWelcome)
}

// A member removed by a commit stops sending and offers a new key package;
// the remaining member moves on alone.
func TestSessionRemoved(t *testing.T) {
	clk := newFakeClock()
	a, b, x := twoMembers(t, clk, 1)
	rm, err := x.ProposeRemove(sessUserB)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := a.HandleBinary(OpMLSProposals, AppendProposalsPayload(rm))
	commit := one(t, outs, err, OpMLSCommitWelcome).Binary
	// B cannot commit its own removal, so it sends nothing.
	if outs, err := b.HandleBinary(OpMLSProposals, AppendProposalsPayload(rm)); err != nil || len(outs) != 0 {
		t.Fatalf("removed member's op 27: %+v %v", outs, err)
	}
	acc, err := x.AcceptCommit(sessUserA, commit)
	if err != nil {
		t.Fatal(err)
	}
	outs, err = b.HandleBinary(OpMLSAnnounceCommit, AnnounceCommitPayload(2, acc.Commit))
	one(t, outs, err, OpMLSKeyPackage)
	if _, err := b.EncryptFrame(nil, Audio, opusFrame(20)); !errors.Is(err, ErrNoKey) {
		t.Fatalf("removed member encrypting: %v", err)
	}
	outs, err = a.HandleBinary(OpMLSAnnounceCommit, AnnounceCommitPayload(2, acc.Commit))
	one(t, outs, err, OpReadyForTransition)
	sendJSON(t, a, OpExecuteTransition, ExecuteTransition{TransitionID: 2})
	if a.Epoch() != 2 || len(a.Members()) != 1 {
		t.Fatalf("remaining member: epoch %d members %v", a.Epoch(), a.Members())
	}
}

// A revoke withdraws a queued proposal: the next commit no longer covers
// it, and revoking an unknown reference is an error.
func TestSessionRevoke(t *testing.T) {
	clk := newFakeClock()
	a, _, x := twoMembers(t, clk, 1)
	const userC = "1400000000000000004"
	sendJSON(t, a, OpClientsConnect, ClientsConnect{UserIDs: []string{userC}})
	kpC, _ := goodKP(t, userC)
	addC, err := x.ProposeAdd(userC, kpC)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := a.HandleBinary(OpMLSProposals, AppendProposalsPayload(addC))
	one(t, outs, err, OpMLSCommitWelcome)
	// After the revoke nothing is left to commit.
	outs, err = a.HandleBinary(OpMLSProposals, RevokeProposalsPayload(addC.Ref))
	if err != nil || len(outs) != 0 {
		t.Fatalf("revoke: %+v %v", outs, err)
	}
	if _, err := a.HandleBinary(OpMLSProposals, RevokeProposalsPayload(addC.Ref)); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("revoking an unknown ref: %v", err)
	}
	// The server's view agrees: a commit covering the revoked Add fails.
	if err := x.Revoke(addC.Ref); err != nil {
		t.Fatal(err)
	}
	if x.Epoch() != 1 || a.Epoch() != 1 {
		t.Fatalf("epochs moved: server %d member %d", x.Epoch(), a.Epoch())
	}
}

// Media keeps flowing on two goroutines while the gateway side downgrades
// and reads state on a third; run with -race to check the locking.
func TestSessionConcurrentUse(t *testing.T) {
	clk := &lockedClock{c: newFakeClock()}
	a, b, _ := twoMembersWithClock(t, clk.now)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, pair := range [][2]*Session{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		fromID := []string{sessUserA, sessUserB}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				enc, err := from.EncryptFrame(nil, Audio, opusFrame(60))
				if err != nil {
					errs <- err
					return
				}
				if _, err := to.DecryptFrame(nil, fromID, Audio, enc); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		_ = a.Stats()
		_ = b.PrivacyCode()
		_ = a.Members()
	}
	sendJSON(t, a, OpPrepareTransition, PrepareTransition{TransitionID: 4, ProtocolVersion: 0})
	sendJSON(t, b, OpPrepareTransition, PrepareTransition{TransitionID: 4, ProtocolVersion: 0})
	sendJSON(t, a, OpExecuteTransition, ExecuteTransition{TransitionID: 4})
	sendJSON(t, b, OpExecuteTransition, ExecuteTransition{TransitionID: 4})
	close(stop)
	wg.Wait()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("media during downgrade: %v", err)
		}
	}
}

// lockedClock is a fake clock safe to read from several goroutines.
type lockedClock struct {
	mu sync.Mutex
	c  *fakeClock
}

func (l *lockedClock) now() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.now()
}

func twoMembersWithClock(t *testing.T, now func() time.Time) (*Session, *Session, *ExternalSender) {
	t.Helper()
	clk := newFakeClock()
	a, b, x := twoMembers(t, clk, 1)
	a.now, b.now = now, now
	return a, b, x
}

// FuzzSessionBinary feeds arbitrary binary DAVE messages to a session that
// has started and knows its external sender: errors or recovery messages,
// never a panic, and never plaintext media afterwards.
func FuzzSessionBinary(f *testing.F) {
	x, err := NewExternalSender(testChannel)
	if err != nil {
		f.Fatal(err)
	}
	kp, _ := goodKP(f, sessUserB)
	if p, err := x.ProposeAdd(sessUserB, kp); err == nil {
		f.Add(uint8(OpMLSProposals), AppendProposalsPayload(p))
		f.Add(uint8(OpMLSProposals), RevokeProposalsPayload(p.Ref))
	}
	f.Add(uint8(OpMLSExternalSender), x.Marshal())
	f.Add(uint8(OpMLSAnnounceCommit), AnnounceCommitPayload(1, buildCommit(userIDBytes(1100000000000000001), 0, 0, nil, false, nil, nil)))
	f.Add(uint8(OpMLSWelcome), WelcomePayload(1, buildWelcome(kp)))
	f.Fuzz(func(t *testing.T, op uint8, payload []byte) {
		s, err := NewSession(SessionOptions{UserID: sessUserA, ChannelID: testChannel})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Start(1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.HandleJSON(OpClientsConnect, json.RawMessage(`{"user_ids":["`+sessUserB+`"]}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.HandleBinary(OpMLSExternalSender, x.Marshal()); err != nil {
			t.Fatal(err)
		}
		_, _ = s.HandleBinary(int(op), payload)
		if out, err := s.EncryptFrame(nil, Audio, opusFrame(30)); err == nil && bytes.Equal(out, opusFrame(30)) {
			t.Fatal("plaintext sent at protocol 1")
		}
	})
}

// Protocol events reach the injected logger, tagged with the user.
func TestSessionLogs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	x, _ := NewExternalSender(testChannel)
	s, err := NewSession(SessionOptions{UserID: sessUserA, ChannelID: testChannel, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HandleBinary(OpMLSExternalSender, x.Marshal()); err != nil {
		t.Fatal(err)
	}
	outs, err := s.HandleBinary(OpMLSWelcome, WelcomePayload(6, []byte{0, 2, 0}))
	if err != nil || len(outs) != 2 || outs[0].Op != OpMLSInvalidCommitWelcome {
		t.Fatalf("bad welcome: %+v %v", outs, err)
	}
	if got := buf.String(); !strings.Contains(got, "invalid commit or welcome") || !strings.Contains(got, "user_id="+sessUserA) || !strings.Contains(got, "transition=6") {
		t.Fatalf("log output:\n%s", got)
	}
}

// A transition that keeps the epoch (a version change on the same group,
// or a downgrade and back) keeps the sender's nonce counter running, so no
// nonce is ever used twice under one key.
func TestSessionNoNonceReuse(t *testing.T) {
	clk := newFakeClock()
	a, b, _ := twoMembers(t, clk, 1)
	nonceOf := func() uint32 {
		t.Helper()
		enc, err := a.EncryptFrame(nil, Audio, opusFrame(30))
		if err != nil {
			t.Fatal(err)
		}
		var tr trailer
		if err := parseTrailer(enc, &tr); err != nil {
			t.Fatal(err)
		}
		if _, err := b.DecryptFrame(nil, sessUserA, Audio, enc); err != nil {
			t.Fatalf("nonce %d: %v", tr.nonce, err)
		}
		return tr.nonce
	}
	if n := nonceOf(); n != 1 {
		t.Fatalf("first nonce %d", n)
	}
	sendJSON(t, a, OpPrepareEpoch, PrepareEpoch{ProtocolVersion: 1, Epoch: 2})
	sendJSON(t, a, OpPrepareTransition, PrepareTransition{TransitionID: 5, ProtocolVersion: 1})
	sendJSON(t, a, OpExecuteTransition, ExecuteTransition{TransitionID: 5})
	if n := nonceOf(); n != 2 {
		t.Fatalf("nonce after same-epoch transition %d, want 2", n)
	}
	sendJSON(t, a, OpPrepareTransition, PrepareTransition{TransitionID: 6, ProtocolVersion: 0})
	sendJSON(t, a, OpExecuteTransition, ExecuteTransition{TransitionID: 6})
	sendJSON(t, a, OpPrepareTransition, PrepareTransition{TransitionID: 0, ProtocolVersion: 1})
	if n := nonceOf(); n != 3 {
		t.Fatalf("nonce after downgrade and back %d, want 3", n)
	}
}
