package interop

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/voicebridge/bridge/voice/dave"
)

// single returns the only outbound message of op, failing otherwise.
func single(t *testing.T, outs []dave.Outbound, err error, op int) dave.Outbound {
	t.Helper()
	if err != nil {
		t.Fatalf("op %d expected, got error %v", op, err)
	}
	if len(outs) != 1 || outs[0].Op != op {
		t.Fatalf("want one op %d, got %+v", op, outs)
	}
	return outs[0]
}

func jsonOp(t *testing.T, s *dave.Session, op int, v any) []dave.Outbound {
	t.Helper()
	data, _ := json.Marshal(v)
	outs, err := s.HandleJSON(op, data)
	if err != nil {
		t.Fatalf("op %d: %v", op, err)
	}
	return outs
}

// goMember starts our Session as userID at protocol 1 and returns its key
// package after op 25.
func goMember(t *testing.T, userID string, x *dave.ExternalSender, others ...string) (*dave.Session, []byte) {
	t.Helper()
	s, err := dave.NewSession(dave.SessionOptions{UserID: userID, ChannelID: channelID})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := s.Start(1)
	kp := single(t, outs, err, dave.OpMLSKeyPackage).Binary
	if outs, err := s.HandleBinary(dave.OpMLSExternalSender, x.Marshal()); err != nil || len(outs) != 0 {
		t.Fatalf("op 25: %+v %v", outs, err)
	}
	jsonOp(t, s, dave.OpClientsConnect, dave.ClientsConnect{UserIDs: others})
	return s, kp
}

// mediaBetween checks Opus frames both ways between our session and a
// davey peer, and that both show the same privacy and verification codes.
func mediaBetween(t *testing.T, s *dave.Session, goID string, p *Peer, daveyID string) {
	t.Helper()
	frame := bytes.Repeat([]byte{0xfc, 0x01, 0x02, 0x03}, 30)
	enc, err := s.EncryptFrame(nil, dave.Audio, frame)
	if err != nil {
		t.Fatalf("our encrypt: %v", err)
	}
	dec := Bytes(t, p.Call("decrypt", map[string]any{"userId": goID, "data": B64(enc)}), "data")
	if !bytes.Equal(dec, frame) {
		t.Fatalf("davey decrypted our frame to % x", dec)
	}
	theirs := Bytes(t, p.Call("encryptOpus", map[string]any{"data": B64(frame)}), "data")
	got, err := s.DecryptFrame(nil, daveyID, dave.Audio, theirs)
	if err != nil || !bytes.Equal(got, frame) {
		t.Fatalf("we decrypted davey's frame: % x, %v", got, err)
	}
	st := p.Call("state", nil)
	if pc, _ := st["privacyCode"].(string); pc == "" || pc != s.PrivacyCode() {
		t.Fatalf("privacy codes differ: davey %q, ours %q", pc, s.PrivacyCode())
	}
	vc, err := s.VerificationCode(daveyID)
	if err != nil {
		t.Fatal(err)
	}
	if theirVC, _ := p.Call("verificationCode", map[string]any{"userId": goID})["code"].(string); theirVC != vc {
		t.Fatalf("verification codes differ: davey %q, ours %q", theirVC, vc)
	}
}

// Our Session and davey form a group both ways round (we commit and davey
// joins by Welcome; davey commits and we join by Welcome), exchange media,
// agree on the codes, and follow a later commit made by davey.
func TestSessionWithDavey(t *testing.T) {
	t.Run("we commit", func(t *testing.T) {
		x, err := dave.NewExternalSender(channelID)
		if err != nil {
			t.Fatal(err)
		}
		s, kpA := goMember(t, userA, x, userB, userC)
		b, kpB := daveyMember(t, userB, x)
		addA, err := x.ProposeAdd(userA, kpA)
		if err != nil {
			t.Fatal(err)
		}
		addB, err := x.ProposeAdd(userB, kpB)
		if err != nil {
			t.Fatal(err)
		}
		outs, err := s.HandleBinary(dave.OpMLSProposals, dave.AppendProposalsPayload(addB))
		commit := single(t, outs, err, dave.OpMLSCommitWelcome).Binary
		proposeTo(t, b, dave.AppendProposalsPayload(addA), userA) // davey's losing commit
		acc, err := x.AcceptCommit(userA, commit)
		if err != nil {
			t.Fatalf("our commit refused by the server: %v", err)
		}
		outs, err = s.HandleBinary(dave.OpMLSAnnounceCommit, dave.AnnounceCommitPayload(7, acc.Commit))
		if r := single(t, outs, err, dave.OpReadyForTransition); r.JSON != (dave.TransitionReady{TransitionID: 7}) {
			t.Fatalf("op 23 %+v", r.JSON)
		}
		b.Call("processWelcome", map[string]any{"data": B64(acc.Welcomes[userB])})
		jsonOp(t, s, dave.OpExecuteTransition, dave.ExecuteTransition{TransitionID: 7})
		mediaBetween(t, s, userA, b, userB)

		// davey commits the next change (C joins); we apply its commit.
		c, kpC := daveyMember(t, userC, x)
		addC, err := x.ProposeAdd(userC, kpC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.HandleBinary(dave.OpMLSProposals, dave.AppendProposalsPayload(addC)); err != nil {
			t.Fatal(err)
		}
		acc, err = x.AcceptCommit(userB, proposeTo(t, b, dave.AppendProposalsPayload(addC), userA, userC))
		if err != nil {
			t.Fatal(err)
		}
		outs, err = s.HandleBinary(dave.OpMLSAnnounceCommit, dave.AnnounceCommitPayload(8, acc.Commit))
		single(t, outs, err, dave.OpReadyForTransition)
		b.Call("processCommit", map[string]any{"data": B64(acc.Commit)})
		c.Call("processWelcome", map[string]any{"data": B64(acc.Welcomes[userC])})
		jsonOp(t, s, dave.OpExecuteTransition, dave.ExecuteTransition{TransitionID: 8})
		if s.Epoch() != 2 {
			t.Fatalf("epoch %d, want 2", s.Epoch())
		}
		mediaBetween(t, s, userA, b, userB)
		mediaBetween(t, s, userA, c, userC)
	})

	t.Run("davey commits", func(t *testing.T) {
		x, err := dave.NewExternalSender(channelID)
		if err != nil {
			t.Fatal(err)
		}
		s, kpA := goMember(t, userA, x, userB)
		b, kpB := daveyMember(t, userB, x)
		addA, err := x.ProposeAdd(userA, kpA)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.ProposeAdd(userB, kpB); err != nil {
			t.Fatal(err)
		}
		acc, err := x.AcceptCommit(userB, proposeTo(t, b, dave.AppendProposalsPayload(addA), userA))
		if err != nil {
			t.Fatal(err)
		}
		b.Call("processCommit", map[string]any{"data": B64(acc.Commit)})
		outs, err := s.HandleBinary(dave.OpMLSWelcome, dave.WelcomePayload(3, acc.Welcomes[userA]))
		single(t, outs, err, dave.OpReadyForTransition)
		jsonOp(t, s, dave.OpExecuteTransition, dave.ExecuteTransition{TransitionID: 3})
		mediaBetween(t, s, userA, b, userB)
	})
}
