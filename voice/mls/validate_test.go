package mls

import (
	"errors"
	"testing"
)

// twoMemberGroup returns a server and a group of Alice and Bob at epoch 1.
func twoMemberGroup(t *testing.T) (*testServer, *testClient, *testClient) {
	t.Helper()
	srv := newTestServer(t)
	alice, bob := newTestClient(t, 1), newTestClient(t, 2)
	var err error
	alice.g, err = NewGroup(testGroupID, alice.kp, alice.priv, []Extension{srv.ext})
	if err != nil {
		t.Fatal(err)
	}
	deliverProposal(t, srv.propose(testGroupID, 0, AddProposal(bob.kp)), alice)
	commitAndShare(t, alice, nil, []*testClient{bob})
	return srv, alice, bob
}

func TestProposalValidationFailures(t *testing.T) {
	srv, alice, _ := twoMemberGroup(t)
	carol := newTestClient(t, 3)
	other := newTestServer(t)
	good := srv.propose(testGroupID, 1, AddProposal(carol.kp))

	badSig := mustParse(t, good)
	badSig.Public.Signature[len(badSig.Public.Signature)-1] ^= 1
	badKP := *carol.kp
	badKP.Signature = append([]byte{}, carol.kp.Signature...)
	badKP.Signature[5] ^= 1
	updateByServer := mustParse(t, good)
	updateByServer.Public.Content.Proposal = &Proposal{Type: ProposalGroupContextExtensions}
	if err := updateByServer.Public.sign(srv.sig, nil); err != nil {
		t.Fatal(err)
	}
	commitMsg, _, _, err := alice.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	welcomeMsg := &MLSMessage{WireFormat: WireFormatWelcome, Welcome: &Welcome{CipherSuite: CipherSuiteP256}}

	cases := []struct {
		name string
		msg  *MLSMessage
		want error
	}{
		{"bad signature", badSig, ErrBadSignature},
		{"signed by another server", mustParse(t, other.propose(testGroupID, 1, AddProposal(carol.kp))), ErrBadSignature},
		{"wrong epoch", mustParse(t, srv.propose(testGroupID, 0, AddProposal(carol.kp))), ErrWrongEpoch},
		{"future epoch", mustParse(t, srv.propose(testGroupID, 9, AddProposal(carol.kp))), ErrWrongEpoch},
		{"wrong group id", mustParse(t, srv.propose([]byte("other group"), 1, AddProposal(carol.kp))), ErrWrongGroup},
		{"unknown external sender index", func() *MLSMessage {
			m, err := NewExternalProposal(testGroupID, 1, 3, AddProposal(carol.kp), srv.sig)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}(), ErrUnknownSender},
		{"tampered key package", mustParse(t, srv.propose(testGroupID, 1, AddProposal(&badKP))), ErrInvalidKeyPackage},
		{"remove of blank leaf", mustParse(t, srv.propose(testGroupID, 1, RemoveProposal(7))), ErrInvalidProposal},
		{"external GroupContextExtensions", updateByServer, ErrUnsupported},
		{"commit where a proposal is expected", commitMsg, ErrUnexpectedMessage},
		{"welcome where a proposal is expected", welcomeMsg, ErrUnexpectedMessage},
		{"private message", &MLSMessage{WireFormat: WireFormatPrivateMessage, Private: &PrivateMessage{}}, ErrUnsupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := alice.g.ProcessProposal(tc.msg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if len(alice.g.PendingProposals()) != 0 {
				t.Fatal("a rejected proposal was queued")
			}
		})
	}
	if _, err := alice.g.ProcessProposal(mustParse(t, good)); err != nil {
		t.Fatalf("the untampered proposal: %v", err)
	}
}

func TestCommitValidationFailures(t *testing.T) {
	srv, alice, bob := twoMemberGroup(t)
	carol := newTestClient(t, 3)
	add := srv.propose(testGroupID, 1, AddProposal(carol.kp))
	deliverProposal(t, add, alice, bob)
	commit, _, _, err := alice.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wire := commit.Marshal()
	epochBefore, authBefore := bob.g.Epoch(), bob.g.EpochAuthenticator()

	// remac re-computes the membership tag so a test can reach the check
	// behind it.
	remac := func(m *MLSMessage) *MLSMessage {
		m.Public.MembershipTag = mac(alice.g.secrets.membership, m.Public.membershipTagInput(&alice.g.ctx))
		return m
	}
	mutate := func(f func(m *MLSMessage)) *MLSMessage {
		m := mustParse(t, wire)
		f(m)
		return m
	}
	cases := []struct {
		name string
		msg  *MLSMessage
		want error
	}{
		{"tampered confirmation tag", remac(mutate(func(m *MLSMessage) { m.Public.ConfirmationTag[0] ^= 1 })), ErrBadConfirmationTag},
		{"tampered membership tag", mutate(func(m *MLSMessage) { m.Public.MembershipTag[0] ^= 1 }), ErrBadMembershipTag},
		{"bad signature", remac(mutate(func(m *MLSMessage) { m.Public.Signature[len(m.Public.Signature)-1] ^= 1 })), ErrBadSignature},
		{"wrong epoch", mutate(func(m *MLSMessage) { m.Public.Content.Epoch = 0 }), ErrWrongEpoch},
		{"wrong group id", mutate(func(m *MLSMessage) { m.Public.Content.GroupID = []byte("x") }), ErrWrongGroup},
		{"sender outside the tree", mutate(func(m *MLSMessage) { m.Public.Content.Sender.Index = 9 }), ErrUnknownSender},
		{"unknown proposal reference", remac(mutate(func(m *MLSMessage) {
			m.Public.Content.Commit.Proposals[0].Reference = make([]byte, 32)
			var err error
			m.Public.Signature, err = SignWithLabel(alice.g.sig, "FramedContentTBS", m.Public.Content.tbs(WireFormatPublicMessage, &alice.g.ctx))
			if err != nil {
				t.Fatal(err)
			}
		})), ErrUnknownProposal},
		{"path leaf with a wrong parent hash", remac(mutate(func(m *MLSMessage) {
			leaf := &m.Public.Content.Commit.Path.LeafNode
			leaf.ParentHash = make([]byte, 32)
			if err := leaf.sign(alice.g.sig, testGroupID, 0); err != nil {
				t.Fatal(err)
			}
			var err error
			m.Public.Signature, err = SignWithLabel(alice.g.sig, "FramedContentTBS", m.Public.Content.tbs(WireFormatPublicMessage, &alice.g.ctx))
			if err != nil {
				t.Fatal(err)
			}
		})), ErrInvalidTree},
		{"path leaf with a bad signature", remac(mutate(func(m *MLSMessage) {
			m.Public.Content.Commit.Path.LeafNode.Signature[4] ^= 1
			var err error
			m.Public.Signature, err = SignWithLabel(alice.g.sig, "FramedContentTBS", m.Public.Content.tbs(WireFormatPublicMessage, &alice.g.ctx))
			if err != nil {
				t.Fatal(err)
			}
		})), ErrInvalidLeafNode},
		{"proposal where a commit is expected", mustParse(t, add), ErrUnexpectedMessage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := bob.g.ProcessCommit(tc.msg); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if bob.g.Epoch() != epochBefore || !equal(bob.g.EpochAuthenticator(), authBefore) {
				t.Fatal("a rejected commit changed the group")
			}
		})
	}
	if err := bob.g.ProcessCommit(mustParse(t, wire)); err != nil {
		t.Fatalf("the untampered commit: %v", err)
	}
}

func TestWelcomeValidationFailures(t *testing.T) {
	srv := newTestServer(t)
	alice, bob, eve := newTestClient(t, 1), newTestClient(t, 2), newTestClient(t, 3)
	var err error
	alice.g, err = NewGroup(testGroupID, alice.kp, alice.priv, []Extension{srv.ext})
	if err != nil {
		t.Fatal(err)
	}
	deliverProposal(t, srv.propose(testGroupID, 0, AddProposal(bob.kp)), alice)
	_, welcome, _, err := alice.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := JoinFromWelcome(welcome, eve.kp, eve.priv); !errors.Is(err, ErrNotForUs) {
		t.Fatalf("welcome for someone else: %v", err)
	}
	bad := *welcome
	bad.EncryptedGroupInfo = append([]byte{}, welcome.EncryptedGroupInfo...)
	bad.EncryptedGroupInfo[3] ^= 1
	if _, err := JoinFromWelcome(&bad, bob.kp, bob.priv); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered group info: %v", err)
	}
	wrongKey := *bob.priv
	wrongKey.InitKey = eve.priv.InitKey
	if _, err := JoinFromWelcome(welcome, bob.kp, &wrongKey); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong init key: %v", err)
	}
	_, _, _, err = alice.g.Commit(CommitOptions{OmitRatchetTree: true})
	if err != nil {
		t.Fatal(err)
	}
	_, noTree, _, err := alice.g.Commit(CommitOptions{OmitRatchetTree: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := JoinFromWelcome(noTree, bob.kp, bob.priv); !errors.Is(err, ErrInvalidTree) {
		t.Fatalf("welcome without a tree: %v", err)
	}
	if _, err := JoinFromWelcomeWithOptions(noTree, bob.kp, bob.priv, JoinOptions{RatchetTree: alice.g.RatchetTree()}); !errors.Is(err, ErrInvalidTree) {
		t.Fatalf("welcome with the previous epoch's tree: %v", err)
	}
	if _, err := JoinFromWelcome(welcome, bob.kp, bob.priv); err != nil {
		t.Fatalf("the untampered welcome: %v", err)
	}
}

func TestTreeParentHashTampering(t *testing.T) {
	_, alice, bob := twoMemberGroup(t)
	carol := newTestClient(t, 3)
	_ = bob
	tr := alice.g.tree.clone()
	if err := tr.verifyParentHashes(); err != nil {
		t.Fatalf("untampered tree: %v", err)
	}
	rootNode := root(tr.leafCount())
	tr.nodes[rootNode].parent.EncryptionKey = carol.kp.InitKey
	if err := tr.verifyParentHashes(); !errors.Is(err, ErrInvalidTree) {
		t.Fatalf("tampered parent key: %v", err)
	}
}

func TestMalformedBytes(t *testing.T) {
	srv, alice, bob := twoMemberGroup(t)
	carol := newTestClient(t, 3)
	deliverProposal(t, srv.propose(testGroupID, 1, AddProposal(carol.kp)), bob)
	commit, welcome, _, err := bob.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = alice
	msgs := [][]byte{commit.Marshal(), (&MLSMessage{WireFormat: WireFormatWelcome, Welcome: welcome}).Marshal(), srv.propose(testGroupID, 1, RemoveProposal(1))}
	for _, full := range msgs {
		for n := 0; n < len(full); n++ {
			if _, _, err := ParseMLSMessage(full[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("prefix of %d/%d bytes: got %v, want ErrMalformed", n, len(full), err)
			}
		}
	}
	cases := map[string]struct {
		b    []byte
		want error
	}{
		"empty":                 {nil, ErrMalformed},
		"version 2":             {[]byte{0, 2, 0, 1}, ErrUnsupportedVersion},
		"unknown wire format":   {[]byte{0, 1, 0, 9}, ErrMalformed},
		"varint prefix 0b11":    {[]byte{0, 1, 0, 1, 0xc0}, ErrMalformed},
		"non-minimal varint":    {[]byte{0, 1, 0, 1, 0x40, 0x01, 0xaa}, ErrMalformed},
		"length past the end":   {[]byte{0, 1, 0, 1, 0x20, 1, 2}, ErrMalformed},
		"unknown sender type":   {[]byte{0, 1, 0, 1, 1, 0xaa, 0, 0, 0, 0, 0, 0, 0, 1, 9}, ErrMalformed},
		"unknown proposal type": {[]byte{0, 1, 0, 1, 1, 0xaa, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 2, 0, 99}, ErrMalformed},
	}
	for name, tc := range cases {
		if _, _, err := ParseMLSMessage(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
	var gs GroupSecrets
	if err := decodeAll([]byte{0x00, 0x02, 0x00}, "GroupSecrets", gs.unmarshal); !errors.Is(err, ErrMalformed) {
		t.Errorf("optional presence byte 2: %v", err)
	}
	if _, err := ParseKeyPackage(append(carol.kp.Marshal(), 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("key package with a trailing byte: %v", err)
	}
	if _, _, err := ParseWelcome([]byte{0, 2, 0x40}); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated welcome: %v", err)
	}
	if _, err := ParseExternalSender([]byte{0x01, 0xaa, 0, 9}); !errors.Is(err, ErrMalformed) {
		t.Errorf("external sender with credential type 9: %v", err)
	}
}

func TestKeyPackageValidation(t *testing.T) {
	c := newTestClient(t, 42)
	if got := c.kp.Identity(); string(got) != "\x00\x00\x00\x00\x00\x00\x00\x2a" {
		t.Fatalf("identity %x", got)
	}
	caps := c.kp.LeafNode.Capabilities
	if len(caps.Extensions) != 0 || len(caps.Proposals) != 0 || caps.CipherSuites[0] != CipherSuiteP256 || caps.Credentials[0] != CredentialBasic {
		t.Fatalf("capabilities %+v", caps)
	}
	if lt := c.kp.LeafNode.Lifetime; lt.NotBefore != 0 || lt.NotAfter != ^uint64(0) {
		t.Fatalf("lifetime %+v", lt)
	}
	mutations := map[string]func(kp *KeyPackage){
		"cipher suite":       func(kp *KeyPackage) { kp.CipherSuite = 1 },
		"version":            func(kp *KeyPackage) { kp.Version = 2 },
		"signature":          func(kp *KeyPackage) { kp.Signature = append([]byte{}, kp.Signature[:len(kp.Signature)-1]...) },
		"identity":           func(kp *KeyPackage) { kp.LeafNode.Credential.Identity = []byte("someone else") },
		"init equals leaf":   func(kp *KeyPackage) { kp.InitKey = kp.LeafNode.EncryptionKey },
		"expired":            func(kp *KeyPackage) { kp.LeafNode.Lifetime.NotAfter = 1 },
		"credential not cap": func(kp *KeyPackage) { kp.LeafNode.Capabilities.Credentials = []CredentialType{CredentialX509} },
	}
	for name, mutate := range mutations {
		kp, err := ParseKeyPackage(c.kp.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		mutate(kp)
		if err := kp.Validate(); !errors.Is(err, ErrInvalidKeyPackage) {
			t.Errorf("%s: got %v, want ErrInvalidKeyPackage", name, err)
		}
	}
}
