package mls

import (
	"crypto/ecdsa"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// testServer plays DAVE's voice server: the group's external sender.
type testServer struct {
	t   testing.TB
	sig *ecdsa.PrivateKey
	ext Extension
}

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	sig, err := GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := SignaturePublicKeyBytes(sig)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{t: t, sig: sig, ext: ExternalSendersExtension([]ExternalSender{{SignatureKey: pub, Credential: BasicCredential([]byte("voice server"))}})}
}

// propose returns the wire bytes of an external proposal, as op 27 sends.
func (s *testServer) propose(groupID []byte, epoch uint64, p Proposal) []byte {
	s.t.Helper()
	m, err := NewExternalProposal(groupID, epoch, 0, p, s.sig)
	if err != nil {
		s.t.Fatal(err)
	}
	return m.Marshal()
}

type testClient struct {
	id   uint64
	kp   *KeyPackage
	priv *KeyPackagePrivate
	g    *Group
}

func newTestClient(t testing.TB, id uint64) *testClient {
	t.Helper()
	sig, err := GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	kp, priv, err := NewKeyPackage(binary.BigEndian.AppendUint64(nil, id), sig)
	if err != nil {
		t.Fatal(err)
	}
	// The key package goes over the wire (op 26) bare.
	parsed, err := ParseKeyPackage(kp.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Validate(); err != nil {
		t.Fatal(err)
	}
	return &testClient{id: id, kp: parsed, priv: priv}
}

func mustParse(t testing.TB, b []byte) *MLSMessage {
	t.Helper()
	m, n, err := ParseMLSMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(b) {
		t.Fatalf("message used %d of %d bytes", n, len(b))
	}
	return m
}

func deliverProposal(t testing.TB, b []byte, members ...*testClient) {
	t.Helper()
	var first ProposalRef
	for i, c := range members {
		ref, err := c.g.ProcessProposal(mustParse(t, b))
		if err != nil {
			t.Fatalf("member %d: ProcessProposal: %v", c.id, err)
		}
		if i == 0 {
			first = ref
		} else if !equal(ref, first) {
			t.Fatalf("members disagree on the proposal ref")
		}
	}
}

// commitAndShare has committer commit its queued proposals, the others
// process the commit from wire bytes, and the joiners join from their own
// cut of the Welcome (as the DAVE server hands each joiner only its entry).
func commitAndShare(t testing.TB, committer *testClient, others []*testClient, joiners []*testClient) {
	t.Helper()
	commitAndShareWith(t, CommitOptions{}, committer, others, joiners)
}

func commitAndShareWith(t testing.TB, opts CommitOptions, committer *testClient, others []*testClient, joiners []*testClient) {
	t.Helper()
	commit, welcome, pending, err := committer.g.Commit(opts)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	wire := commit.Marshal()
	if !equal(wire, pending.Message()) {
		t.Fatal("pending commit does not remember the sent message")
	}
	if err := committer.g.ApplyPendingCommit(pending); err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		if err := o.g.ProcessCommit(mustParse(t, wire)); err != nil {
			t.Fatalf("member %d: ProcessCommit: %v", o.id, err)
		}
	}
	if len(joiners) > 0 && welcome == nil {
		t.Fatal("commit adding members made no Welcome")
	}
	for _, j := range joiners {
		ref := j.kp.Ref()
		cut := *welcome
		cut.Secrets = slices.DeleteFunc(slices.Clone(welcome.Secrets), func(s EncryptedGroupSecrets) bool { return !equal(s.NewMember, ref) })
		if len(cut.Secrets) != 1 {
			t.Fatalf("welcome has %d entries for member %d", len(cut.Secrets), j.id)
		}
		w, n, err := ParseWelcome(cut.Marshal())
		if err != nil || n != len(cut.Marshal()) {
			t.Fatalf("ParseWelcome: %v", err)
		}
		g, err := JoinFromWelcome(w, j.kp, j.priv)
		if err != nil {
			t.Fatalf("member %d: JoinFromWelcome: %v", j.id, err)
		}
		j.g = g
	}
}

// checkAgree asserts every member is in the same epoch with the same
// roster, epoch authenticator and exporter output (DAVE's media secrets).
func checkAgree(t testing.TB, members ...*testClient) {
	t.Helper()
	ref := members[0].g
	for _, c := range members {
		label := fmt.Sprintf("member %d", c.id)
		if c.g.Epoch() != ref.Epoch() {
			t.Fatalf("%s at epoch %d, want %d", label, c.g.Epoch(), ref.Epoch())
		}
		if !equal(c.g.EpochAuthenticator(), ref.EpochAuthenticator()) {
			t.Fatalf("%s: epoch authenticator differs", label)
		}
		if !equal(c.g.TreeHash(), ref.TreeHash()) {
			t.Fatalf("%s: tree hash differs", label)
		}
		if fmt.Sprint(c.g.Members()) != fmt.Sprint(ref.Members()) {
			t.Fatalf("%s: roster %v, want %v", label, c.g.Members(), ref.Members())
		}
		for _, sender := range members {
			ctx := binary.LittleEndian.AppendUint64(nil, sender.id)
			want, err := ref.Export("Discord Secure Frames v0", ctx, 16)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.g.Export("Discord Secure Frames v0", ctx, 16)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, want) {
				t.Fatalf("%s: exporter for sender %d differs", label, sender.id)
			}
		}
	}
	if len(ref.Members()) != len(members) {
		t.Fatalf("roster has %d members, want %d", len(ref.Members()), len(members))
	}
}

var testGroupID = binary.BigEndian.AppendUint64(nil, 1234567890)

func TestGroupTwoAndThreeMembers(t *testing.T) {
	srv := newTestServer(t)
	alice, bob, carol := newTestClient(t, 1001), newTestClient(t, 1002), newTestClient(t, 1003)
	var err error
	alice.g, err = NewGroup(testGroupID, alice.kp, alice.priv, []Extension{srv.ext})
	if err != nil {
		t.Fatal(err)
	}
	if alice.g.Epoch() != 0 || len(alice.g.Members()) != 1 || len(alice.g.ExternalSenders()) != 1 {
		t.Fatalf("new group: epoch %d, %d members", alice.g.Epoch(), len(alice.g.Members()))
	}
	epochKeyBefore := alice.g.EpochAuthenticator()

	// Two members: the server proposes Bob, Alice commits, Bob joins.
	deliverProposal(t, srv.propose(testGroupID, 0, AddProposal(bob.kp)), alice)
	commitAndShare(t, alice, nil, []*testClient{bob})
	checkAgree(t, alice, bob)
	if alice.g.Epoch() != 1 || equal(alice.g.EpochAuthenticator(), epochKeyBefore) {
		t.Fatal("epoch did not advance")
	}
	if string(bob.g.GroupID()) != string(testGroupID) || bob.g.OwnLeafIndex() != 1 {
		t.Fatalf("bob: group %x leaf %d", bob.g.GroupID(), bob.g.OwnLeafIndex())
	}

	// Three members: Bob commits Carol's Add, Alice follows.
	deliverProposal(t, srv.propose(testGroupID, 1, AddProposal(carol.kp)), alice, bob)
	commitAndShare(t, bob, []*testClient{alice}, []*testClient{carol})
	checkAgree(t, alice, bob, carol)

	// An empty commit (path only) from Carol.
	commitAndShare(t, carol, []*testClient{alice, bob}, nil)
	checkAgree(t, alice, bob, carol)

	// Remove Bob; Carol commits; Bob learns he is out.
	deliverProposal(t, srv.propose(testGroupID, 3, RemoveProposal(bob.g.OwnLeafIndex())), alice, bob, carol)
	commit, _, pending, err := carol.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := carol.g.ApplyPendingCommit(pending); err != nil {
		t.Fatal(err)
	}
	if err := alice.g.ProcessCommit(mustParse(t, commit.Marshal())); err != nil {
		t.Fatal(err)
	}
	if err := bob.g.ProcessCommit(mustParse(t, commit.Marshal())); !errors.Is(err, ErrRemoved) {
		t.Fatalf("removed member: got %v, want ErrRemoved", err)
	}
	if bob.g.Epoch() != 3 {
		t.Fatal("removed member's group changed")
	}
	checkAgree(t, alice, carol)
	if ids := alice.g.Members(); ids[0].LeafIndex != 0 || ids[1].LeafIndex != 2 {
		t.Fatalf("roster after remove: %v", ids)
	}

	// Bob comes back with a fresh key package: the blank leaf is reused.
	bob2 := newTestClient(t, 1002)
	deliverProposal(t, srv.propose(testGroupID, 4, AddProposal(bob2.kp)), alice, carol)
	commitAndShare(t, alice, []*testClient{carol}, []*testClient{bob2})
	checkAgree(t, alice, bob2, carol)
	if bob2.g.OwnLeafIndex() != 1 {
		t.Fatalf("rejoined at leaf %d, want the blanked leaf 1", bob2.g.OwnLeafIndex())
	}
}

// TestGroupCreationRaceAndMultiAdd follows DAVE's start: the server sends
// every pending member the same epoch-0 Adds; the first commit wins, the
// losers drop their own pending commits, and added members join from the
// Welcome.
func TestGroupCreationRaceAndMultiAdd(t *testing.T) {
	srv := newTestServer(t)
	clients := []*testClient{newTestClient(t, 1), newTestClient(t, 2), newTestClient(t, 3)}
	for _, c := range clients {
		var err error
		c.g, err = NewGroup(testGroupID, c.kp, c.priv, []Extension{srv.ext})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Client 0 and 1 each get the Adds of the other two and commit.
	deliverProposal(t, srv.propose(testGroupID, 0, AddProposal(clients[1].kp)), clients[0])
	deliverProposal(t, srv.propose(testGroupID, 0, AddProposal(clients[2].kp)), clients[0], clients[1])
	deliverProposal(t, srv.propose(testGroupID, 0, AddProposal(clients[0].kp)), clients[1])
	winner, welcome, winPending, err := clients[0].g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, losePending, err := clients[1].g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := clients[0].g.ApplyPendingCommit(winPending); err != nil {
		t.Fatal(err)
	}
	// The loser's one-member group is not the winner's (same id and epoch,
	// other secrets): the commit fails authentication and the loser joins
	// from the Welcome instead.
	if err := clients[1].g.ProcessCommit(mustParse(t, winner.Marshal())); !errors.Is(err, ErrBadMembershipTag) {
		t.Fatalf("loser processing the winner's commit: got %v, want ErrBadMembershipTag", err)
	}
	for _, c := range clients[1:] {
		g, err := JoinFromWelcome(welcome, c.kp, c.priv)
		if err != nil {
			t.Fatalf("client %d: %v", c.id, err)
		}
		c.g = g
	}
	checkAgree(t, clients...)
	// A stale pending commit cannot be applied after the epoch moved on.
	if err := clients[1].g.ApplyPendingCommit(losePending); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("stale pending commit: got %v, want ErrWrongEpoch", err)
	}
}

// TestGroupRevokeAndCommitRace covers op 27 revoke and two members racing
// to commit the same proposals: the loser applies the winner's commit.
func TestGroupRevokeAndCommitRace(t *testing.T) {
	srv := newTestServer(t)
	a, b, c, d := newTestClient(t, 1), newTestClient(t, 2), newTestClient(t, 3), newTestClient(t, 4)
	var err error
	a.g, err = NewGroup(testGroupID, a.kp, a.priv, []Extension{srv.ext})
	if err != nil {
		t.Fatal(err)
	}
	deliverProposal(t, srv.propose(testGroupID, 0, AddProposal(b.kp)), a)
	commitAndShare(t, a, nil, []*testClient{b})

	addC := srv.propose(testGroupID, 1, AddProposal(c.kp))
	addD := srv.propose(testGroupID, 1, AddProposal(d.kp))
	deliverProposal(t, addC, a, b)
	deliverProposal(t, addD, a, b)
	refD := mustParse(t, addD).Public.ProposalRef()
	for _, m := range []*testClient{a, b} {
		if err := m.g.RevokeProposal(refD); err != nil {
			t.Fatal(err)
		}
		if err := m.g.RevokeProposal(refD); !errors.Is(err, ErrUnknownProposal) {
			t.Fatalf("second revoke: %v", err)
		}
		if len(m.g.PendingProposals()) != 1 {
			t.Fatalf("%d proposals pending after revoke", len(m.g.PendingProposals()))
		}
	}
	winner, welcome, bPending, err := b.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := a.g.Commit(CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.g.ProcessCommit(mustParse(t, winner.Marshal())); err != nil {
		t.Fatalf("loser applying the winning commit: %v", err)
	}
	if b.g.Epoch() != 1 {
		t.Fatal("Commit changed the group before ApplyPendingCommit")
	}
	// The winner's own commit is adopted from its pending state, never
	// processed as if from someone else.
	if err := b.g.ProcessCommit(mustParse(t, winner.Marshal())); !errors.Is(err, ErrInvalidCommit) {
		t.Fatalf("own commit through ProcessCommit: got %v, want ErrInvalidCommit", err)
	}
	if err := b.g.ApplyPendingCommit(bPending); err != nil {
		t.Fatal(err)
	}
	c.g, err = JoinFromWelcome(welcome, c.kp, c.priv)
	if err != nil {
		t.Fatal(err)
	}
	checkAgree(t, a, b, c)
	if slices.ContainsFunc(a.g.Members(), func(m Member) bool { return equal(m.Identity, binary.BigEndian.AppendUint64(nil, d.id)) }) {
		t.Fatal("revoked Add was committed")
	}
}

// TestGroupCommitsWithoutPath follows libdave's commits, which carry no
// UpdatePath when they only add members.
func TestGroupCommitsWithoutPath(t *testing.T) {
	srv := newTestServer(t)
	a, b, c := newTestClient(t, 1), newTestClient(t, 2), newTestClient(t, 3)
	var err error
	a.g, err = NewGroup(testGroupID, a.kp, a.priv, []Extension{srv.ext})
	if err != nil {
		t.Fatal(err)
	}
	opts := CommitOptions{PathOnlyIfRequired: true}
	deliverProposal(t, srv.propose(testGroupID, 0, AddProposal(b.kp)), a)
	commitAndShareWith(t, opts, a, nil, []*testClient{b})
	deliverProposal(t, srv.propose(testGroupID, 1, AddProposal(c.kp)), a, b)
	commit, _, _, err := b.g.Commit(opts)
	if err != nil {
		t.Fatal(err)
	}
	if commit.Public.Content.Commit.Path != nil {
		t.Fatal("an Add-only commit carried a path")
	}
	commitAndShareWith(t, opts, b, []*testClient{a}, []*testClient{c})
	checkAgree(t, a, b, c)
	// A Remove requires a path even when asked to leave it out.
	deliverProposal(t, srv.propose(testGroupID, 2, RemoveProposal(a.g.OwnLeafIndex())), b, c)
	commit, _, pending, err := c.g.Commit(opts)
	if err != nil {
		t.Fatal(err)
	}
	if commit.Public.Content.Commit.Path == nil {
		t.Fatal("a Remove commit without a path")
	}
	if err := c.g.ApplyPendingCommit(pending); err != nil {
		t.Fatal(err)
	}
	if err := b.g.ProcessCommit(mustParse(t, commit.Marshal())); err != nil {
		t.Fatal(err)
	}
	checkAgree(t, b, c)
	// A path-less Remove commit is rejected.
	deliverProposal(t, srv.propose(testGroupID, 3, RemoveProposal(b.g.OwnLeafIndex())), b, c)
	bad, _, _, err := c.g.Commit(opts)
	if err != nil {
		t.Fatal(err)
	}
	bad.Public.Content.Commit.Path = nil
	if err := bad.Public.sign(c.g.sig, &c.g.ctx); err != nil {
		t.Fatal(err)
	}
	bad.Public.MembershipTag = mac(c.g.secrets.membership, bad.Public.membershipTagInput(&c.g.ctx))
	if err := b.g.ProcessCommit(bad); !errors.Is(err, ErrInvalidCommit) {
		t.Fatalf("path-less Remove: got %v, want ErrInvalidCommit", err)
	}
}

// TestPendingCommitBoundToItsGroup checks a pending commit cannot be
// applied to a fresh group that reuses the id at the same epoch.
func TestPendingCommitBoundToItsGroup(t *testing.T) {
	srv := newTestServer(t)
	a, b := newTestClient(t, 1), newTestClient(t, 2)
	g1, err := NewGroup(testGroupID, a.kp, a.priv, []Extension{srv.ext})
	if err != nil {
		t.Fatal(err)
	}
	a.g = g1
	deliverProposal(t, srv.propose(testGroupID, 0, AddProposal(b.kp)), a)
	_, _, pending, err := g1.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g2, err := NewGroup(testGroupID, a.kp, a.priv, []Extension{srv.ext})
	if err != nil {
		t.Fatal(err)
	}
	if err := g2.ApplyPendingCommit(pending); !errors.Is(err, ErrWrongGroup) {
		t.Fatalf("got %v, want ErrWrongGroup", err)
	}
	if pending.Epoch() != 1 {
		t.Fatalf("pending epoch %d", pending.Epoch())
	}
}
