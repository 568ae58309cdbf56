package mls

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/voicebridge/bridge/voice/dave/interop"
)

// The davey interop test drives @snazzah/davey (Discord's DAVE protocol on
// OpenMLS) through voice/dave/interop's peer, and checks that both
// implementations agree on every epoch.

func epochAuthenticator(t *testing.T, p *interop.Peer) []byte {
	t.Helper()
	return interop.Bytes(t, p.Call("state", nil), "epochAuthenticator")
}

// proposals sends op 27 (append) to davey and returns its commit and
// Welcome, if any.
func proposals(t *testing.T, p *interop.Peer, msgs [][]byte, recognized ...uint64) ([]byte, []byte) {
	t.Helper()
	var body []byte
	for _, m := range msgs {
		body = append(body, m...)
	}
	data := append(AppendVarint(nil, len(body)), body...)
	ids := make([]string, len(recognized))
	for i, id := range recognized {
		ids[i] = fmt.Sprint(id)
	}
	res := p.Call("processProposals", map[string]any{"opType": 0, "data": interop.B64(data), "recognized": ids})
	var commit, welcome []byte
	if res["commit"] != nil {
		commit = interop.Bytes(t, res, "commit")
	}
	if res["welcome"] != nil {
		welcome = interop.Bytes(t, res, "welcome")
	}
	return commit, welcome
}

func TestDaveyInterop(t *testing.T) {
	p := interop.StartPeer(t)
	const channel = 1234567890
	gid := binary.BigEndian.AppendUint64(nil, channel)
	const daveyID = 1002
	p.Call("init", map[string]any{"protocolVersion": 1, "userId": fmt.Sprint(daveyID), "channelId": fmt.Sprint(channel)})
	srv := newTestServer(t)
	senders, err := ParseExternalSenders(srv.ext.Data)
	if err != nil {
		t.Fatal(err)
	}
	p.Call("setExternalSender", map[string]any{"data": interop.B64(senders[0].Marshal())})

	// davey's bare key package validates here.
	kp, err := ParseKeyPackage(interop.Bytes(t, p.Call("keyPackage", nil), "data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Validate(); err != nil {
		t.Fatalf("davey's key package: %v", err)
	}
	if binary.BigEndian.Uint64(kp.Identity()) != daveyID {
		t.Fatalf("davey identity %x", kp.Identity())
	}

	// 1. We create the group and welcome davey.
	alice := newTestClient(t, 1001)
	alice.g, err = NewGroup(gid, alice.kp, alice.priv, []Extension{srv.ext})
	if err != nil {
		t.Fatal(err)
	}
	deliverProposal(t, srv.propose(gid, 0, AddProposal(kp)), alice)
	_, welcome, pending, err := alice.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.g.ApplyPendingCommit(pending); err != nil {
		t.Fatal(err)
	}
	p.Call("processWelcome", map[string]any{"data": interop.B64(welcome.Marshal())})
	if !equal(epochAuthenticator(t, p), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 1: davey disagrees after joining from our Welcome")
	}

	// 2. davey commits an Add (no path); we follow; Carol joins from
	// davey's Welcome.
	carol := newTestClient(t, 1003)
	add := srv.propose(gid, 1, AddProposal(carol.kp))
	deliverProposal(t, add, alice)
	dc, dw := proposals(t, p, [][]byte{add}, 1001, daveyID, 1003)
	if err := alice.g.ProcessCommit(mustParse(t, dc)); err != nil {
		t.Fatalf("davey's Add commit: %v", err)
	}
	p.Call("processCommit", map[string]any{"data": interop.B64(dc)})
	w, _, err := ParseWelcome(dw)
	if err != nil {
		t.Fatal(err)
	}
	if carol.g, err = JoinFromWelcome(w, carol.kp, carol.priv); err != nil {
		t.Fatalf("joining from davey's Welcome: %v", err)
	}
	if !equal(carol.g.EpochAuthenticator(), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 2: Carol disagrees with us")
	}
	if !equal(epochAuthenticator(t, p), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 2: davey disagrees")
	}

	// 3. davey commits a Remove (with a path we must decrypt).
	rm := srv.propose(gid, 2, RemoveProposal(carol.g.OwnLeafIndex()))
	deliverProposal(t, rm, alice)
	dc, _ = proposals(t, p, [][]byte{rm}, 1001, daveyID)
	if m := mustParse(t, dc); m.Public.Content.Commit.Path == nil {
		t.Fatal("davey's Remove commit has no path")
	}
	if err := alice.g.ProcessCommit(mustParse(t, dc)); err != nil {
		t.Fatalf("davey's Remove commit: %v", err)
	}
	p.Call("processCommit", map[string]any{"data": interop.B64(dc)})
	if !equal(epochAuthenticator(t, p), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 3: davey disagrees")
	}

	// 4. davey answers an Add with its own commit but loses the race: it
	// applies ours (with a path it must decrypt) and Dan joins from our
	// Welcome.
	dan := newTestClient(t, 1004)
	add = srv.propose(gid, 3, AddProposal(dan.kp))
	deliverProposal(t, add, alice)
	if dc, _ := proposals(t, p, [][]byte{add}, 1001, daveyID, 1004); dc == nil {
		t.Fatal("davey made no commit")
	}
	commit, welcome, pending, err := alice.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.g.ApplyPendingCommit(pending); err != nil {
		t.Fatal(err)
	}
	p.Call("processCommit", map[string]any{"data": interop.B64(commit.Marshal())})
	if dan.g, err = JoinFromWelcome(welcome, dan.kp, dan.priv); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testClient{dan} {
		x1, err1 := c.g.Export("Discord Secure Frames v0", []byte{1}, 16)
		x2, err2 := alice.g.Export("Discord Secure Frames v0", []byte{1}, 16)
		if err1 != nil || err2 != nil || !equal(x1, x2) || !equal(c.g.EpochAuthenticator(), alice.g.EpochAuthenticator()) {
			t.Fatal("Dan disagrees with us")
		}
	}
	if !equal(epochAuthenticator(t, p), alice.g.EpochAuthenticator()) {
		t.Fatal("epoch 4: davey disagrees after our commit")
	}
	if got := fmt.Sprint(p.Call("state", nil)["userIds"]); got != "[1001 1002 1004]" {
		t.Fatalf("davey roster %s", got)
	}
}
