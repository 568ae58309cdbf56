package interop

import (
	"bytes"
	"testing"

	"github.com/voicebridge/bridge/voice/dave"
)

const (
	channelID = "1100000000000000001"
	userA     = "1200000000000000002"
	userB     = "1300000000000000003"
	userC     = "1400000000000000004"
)

// daveyMember starts a davey peer as userID in the call and returns it with
// its key package (op 26).
func daveyMember(t *testing.T, userID string, x *dave.ExternalSender) (*Peer, []byte) {
	t.Helper()
	p := StartPeer(t)
	p.Call("init", map[string]any{"protocolVersion": 1, "userId": userID, "channelId": channelID})
	p.Call("setExternalSender", map[string]any{"data": B64(x.Marshal())})
	return p, Bytes(t, p.Call("keyPackage", nil), "data")
}

// proposeTo hands an op 27 payload to a davey member (davey takes the op
// type separately) and returns its op 28 payload.
func proposeTo(t *testing.T, p *Peer, payload []byte, recognized ...string) []byte {
	t.Helper()
	res := p.Call("processProposals", map[string]any{"opType": int(payload[0]), "data": B64(payload[1:]), "recognized": recognized})
	commit := Bytes(t, res, "commit")
	if len(commit) == 0 {
		t.Fatalf("davey produced no commit")
	}
	return append(commit, Bytes(t, res, "welcome")...)
}

// Our voice-server half against davey members: two davey peers form a
// group through our external sender's proposals and commit vetting, a
// third joins, one leaves, and media flows between them at every step.
func TestExternalSenderWithDavey(t *testing.T) {
	x, err := dave.NewExternalSender(channelID)
	if err != nil {
		t.Fatal(err)
	}
	a, kpA := daveyMember(t, userA, x)
	b, kpB := daveyMember(t, userB, x)

	// Creation: each pending member is proposed to the other.
	addA, err := x.ProposeAdd(userA, kpA)
	if err != nil {
		t.Fatal(err)
	}
	addB, err := x.ProposeAdd(userB, kpB)
	if err != nil {
		t.Fatal(err)
	}
	commitA := proposeTo(t, a, dave.AppendProposalsPayload(addB), userB)
	commitB := proposeTo(t, b, dave.AppendProposalsPayload(addA), userA)

	acc, err := x.AcceptCommit(userA, commitA)
	if err != nil {
		t.Fatalf("A's creating commit refused: %v", err)
	}
	if acc.Epoch != 1 || len(acc.Added) != 1 || acc.Added[0] != userB {
		t.Fatalf("accepted %+v", acc)
	}
	// The losing commit is now for a past epoch.
	if _, err := x.AcceptCommit(userB, commitB); err == nil {
		t.Fatal("second commit for the same epoch accepted")
	}
	a.Call("processCommit", map[string]any{"data": B64(acc.Commit)})
	b.Call("processWelcome", map[string]any{"data": B64(acc.Welcomes[userB])})
	if m := x.Members(); m[userA] != 0 || m[userB] != 1 || len(m) != 2 {
		t.Fatalf("members %v", m)
	}
	checkMedia(t, map[string]*Peer{userA: a, userB: b})

	// A third member: proposal to both, A commits.
	c, kpC := daveyMember(t, userC, x)
	addC, err := x.ProposeAdd(userC, kpC)
	if err != nil {
		t.Fatal(err)
	}
	commit := proposeTo(t, a, dave.AppendProposalsPayload(addC), userB, userC)
	proposeTo(t, b, dave.AppendProposalsPayload(addC), userA, userC)
	acc, err = x.AcceptCommit(userA, commit)
	if err != nil {
		t.Fatalf("add C: %v", err)
	}
	a.Call("processCommit", map[string]any{"data": B64(acc.Commit)})
	b.Call("processCommit", map[string]any{"data": B64(acc.Commit)})
	c.Call("processWelcome", map[string]any{"data": B64(acc.Welcomes[userC])})
	checkMedia(t, map[string]*Peer{userA: a, userB: b, userC: c})

	// B leaves: C commits the Remove.
	rmB, err := x.ProposeRemove(userB)
	if err != nil {
		t.Fatal(err)
	}
	proposeTo(t, a, dave.AppendProposalsPayload(rmB), userA, userC)
	commit = proposeTo(t, c, dave.AppendProposalsPayload(rmB), userA, userC)
	acc, err = x.AcceptCommit(userC, commit)
	if err != nil {
		t.Fatalf("remove B: %v", err)
	}
	if len(acc.Removed) != 1 || len(acc.Welcomes) != 0 {
		t.Fatalf("accepted %+v", acc)
	}
	a.Call("processCommit", map[string]any{"data": B64(acc.Commit)})
	c.Call("processCommit", map[string]any{"data": B64(acc.Commit)})
	checkMedia(t, map[string]*Peer{userA: a, userC: c})
	if m := x.Members(); len(m) != 2 || m[userC] != 2 {
		t.Fatalf("members after remove %v", m)
	}
}

// checkMedia has every peer encrypt an Opus frame that every other peer
// decrypts, checks the frames are DAVE frames, and that all peers show the
// same privacy code derived from the same epoch authenticator.
func checkMedia(t *testing.T, peers map[string]*Peer) {
	t.Helper()
	code := ""
	for id, p := range peers {
		st := p.Call("state", nil)
		if ready, _ := st["ready"].(bool); !ready {
			t.Fatalf("%s not ready: %v", id, st)
		}
		pc, _ := st["privacyCode"].(string)
		ours, err := dave.VoicePrivacyCode(Bytes(t, st, "epochAuthenticator"))
		if err != nil || ours != pc {
			t.Fatalf("%s: davey code %q, ours from its authenticator %q (%v)", id, pc, ours, err)
		}
		if code == "" {
			code = pc
		} else if pc != code {
			t.Fatalf("%s shows privacy code %s, another member %s", id, pc, code)
		}
	}
	frame := bytes.Repeat([]byte{0x78, 0x11, 0x22}, 40)
	for from, p := range peers {
		enc := Bytes(t, p.Call("encryptOpus", map[string]any{"data": B64(frame)}), "data")
		if !bytes.HasSuffix(enc, []byte{0xFA, 0xFA}) || len(enc) <= len(frame) {
			t.Fatalf("%s sent a non-DAVE frame % x", from, enc)
		}
		for to, q := range peers {
			if to == from {
				continue
			}
			dec := Bytes(t, q.Call("decrypt", map[string]any{"userId": from, "data": B64(enc)}), "data")
			if !bytes.Equal(dec, frame) {
				t.Fatalf("%s decrypting %s: got % x", to, from, dec)
			}
		}
	}
}
