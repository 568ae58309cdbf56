package mls

import (
	"slices"
	"testing"
)

// fuzzSeeds returns real messages: an external Add proposal, a commit with
// a path, and a Welcome.
func fuzzSeeds(f *testing.F) (msgs [][]byte, welcomes [][]byte) {
	srv := newTestServer(f)
	alice, bob := newTestClient(f, 1), newTestClient(f, 2)
	var err error
	alice.g, err = NewGroup(testGroupID, alice.kp, alice.priv, []Extension{srv.ext})
	if err != nil {
		f.Fatal(err)
	}
	add := srv.propose(testGroupID, 0, AddProposal(bob.kp))
	deliverProposal(f, add, alice)
	commit, welcome, _, err := alice.g.Commit(CommitOptions{})
	if err != nil {
		f.Fatal(err)
	}
	wm := &MLSMessage{WireFormat: WireFormatWelcome, Welcome: welcome}
	kpm := &MLSMessage{WireFormat: WireFormatKeyPackage, KeyPackage: bob.kp}
	return [][]byte{add, commit.Marshal(), wm.Marshal(), kpm.Marshal(), srv.propose(testGroupID, 0, RemoveProposal(0))}, [][]byte{welcome.Marshal()}
}

// FuzzParseMLSMessage checks that any input either fails with an error or
// parses to a message whose encoding is exactly the bytes it consumed
// (the codec is canonical).
func FuzzParseMLSMessage(f *testing.F) {
	msgs, _ := fuzzSeeds(f)
	for _, m := range msgs {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := ParseMLSMessage(b)
		if err != nil {
			return
		}
		if got := m.Marshal(); !equal(got, b[:n]) {
			t.Fatalf("re-encoding differs from the %d consumed bytes", n)
		}
	})
}

// FuzzParseWelcome is FuzzParseMLSMessage for bare Welcomes, and also runs
// the GroupSecrets and ratchet-tree decoders on the input.
func FuzzParseWelcome(f *testing.F) {
	_, welcomes := fuzzSeeds(f)
	for _, w := range welcomes {
		f.Add(w)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if w, n, err := ParseWelcome(b); err == nil {
			if got := w.Marshal(); !equal(got, b[:n]) {
				t.Fatalf("re-encoding differs from the %d consumed bytes", n)
			}
		}
		var gs GroupSecrets
		if err := decodeAll(b, "GroupSecrets", gs.unmarshal); err == nil && !equal(encode(gs.marshal), b) {
			t.Fatal("GroupSecrets re-encoding differs")
		}
		tr := new(ratchetTree)
		if err := decodeAll(b, "ratchet_tree", tr.unmarshal); err == nil {
			if !equal(tr.Marshal(), b) {
				t.Fatal("ratchet tree re-encoding differs")
			}
			_ = tr.verifyInvariants()
			_ = tr.verifyParentHashes()
			_ = tr.rootHash()
		}
	})
}

// cloneGroup copies a group so a fuzz iteration cannot change the next
// one's starting state.
func cloneGroup(g *Group) *Group {
	c := *g
	c.tree = g.tree.clone()
	c.keys = g.keys.clone()
	c.pending = slices.Clone(g.pending)
	return &c
}

// FuzzProcessMessage feeds arbitrary bytes to a member of a live group as
// a proposal and as a commit: nothing may panic, and anything accepted
// must be well-formed enough to re-encode.
func FuzzProcessMessage(f *testing.F) {
	srv := newTestServer(f)
	alice, bob, carol := newTestClient(f, 1), newTestClient(f, 2), newTestClient(f, 3)
	var err error
	alice.g, err = NewGroup(testGroupID, alice.kp, alice.priv, []Extension{srv.ext})
	if err != nil {
		f.Fatal(err)
	}
	deliverProposal(f, srv.propose(testGroupID, 0, AddProposal(bob.kp)), alice)
	commitAndShare(f, alice, nil, []*testClient{bob})
	add := srv.propose(testGroupID, 1, AddProposal(carol.kp))
	deliverProposal(f, add, alice, bob)
	commit, _, _, err := alice.g.Commit(CommitOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(add)
	f.Add(commit.Marshal())
	f.Add(srv.propose(testGroupID, 1, RemoveProposal(0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, _, err := ParseMLSMessage(b)
		if err != nil {
			return
		}
		g := cloneGroup(bob.g)
		if _, err := g.ProcessProposal(m); err == nil && len(g.PendingProposals()) == 0 {
			t.Fatal("accepted proposal was not queued")
		}
		g = cloneGroup(bob.g)
		if err := g.ProcessCommit(m); err == nil && g.Epoch() != bob.g.Epoch()+1 {
			t.Fatal("accepted commit did not advance the epoch")
		}
	})
}
