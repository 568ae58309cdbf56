package mls

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The conformance tests read the IETF MLS working group's test vectors
// (mlswg/mls-implementations, test-vectors/), committed under testdata/mls
// at the module root. Entries are filtered on cipher_suite 2 where the file
// has that field; each test logs how many entries it ran and how many it
// left out and why.

// vectorDir is testdata/mls at the module root, two folders above this
// package's (go test runs a package's tests in its own folder). The vectors
// travel with the repository, so a missing folder is a broken checkout and
// fails the test.
func vectorDir(t testing.TB) string {
	t.Helper()
	v := filepath.Join("..", "..", "testdata", "mls")
	if _, err := os.Stat(v); err != nil {
		t.Fatalf("MLS test vectors missing at %s (they are part of the repository; restore them from git): %v", v, err)
	}
	return v
}

func loadVectors(t testing.TB, name string, out any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// hexBytes decodes hex JSON strings; null stays nil.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*h = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	if d == nil {
		d = []byte{}
	}
	*h = d
	return nil
}

func eqHex(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

// tally counts what a vector file's test ran and left out.
type tally struct {
	ran     int
	skipped map[string]int
}

func (c *tally) skip(reason string) {
	if c.skipped == nil {
		c.skipped = map[string]int{}
	}
	c.skipped[reason]++
}

func (c *tally) log(t *testing.T, file string) {
	t.Helper()
	t.Logf("%s: ran %d entries", file, c.ran)
	for r, n := range c.skipped {
		t.Logf("%s: left out %d entries: %s", file, n, r)
	}
	if c.ran == 0 {
		t.Errorf("%s: no entry ran", file)
	}
}

const otherSuite = "cipher suite other than 2"

func TestVectorsDeserialization(t *testing.T) {
	var vs []struct {
		Header hexBytes `json:"vlbytes_header"`
		Length int      `json:"length"`
	}
	loadVectors(t, "deserialization.json", &vs)
	var c tally
	for _, v := range vs {
		r := NewReader(v.Header)
		n := r.Varint("test")
		if err := r.Finish("varint"); err != nil || n != v.Length {
			t.Errorf("header %x: got %d, %v; want %d", []byte(v.Header), n, err, v.Length)
		}
		if got := AppendVarint(nil, v.Length); !equal(got, v.Header) {
			t.Errorf("encode %d: got %x want %x", v.Length, got, []byte(v.Header))
		}
		c.ran++
	}
	c.log(t, "deserialization.json")
}

func TestVectorsTreeMath(t *testing.T) {
	var vs []struct {
		NLeaves uint32    `json:"n_leaves"`
		NNodes  uint32    `json:"n_nodes"`
		Root    uint32    `json:"root"`
		Left    []*uint32 `json:"left"`
		Right   []*uint32 `json:"right"`
		Parent  []*uint32 `json:"parent"`
		Sibling []*uint32 `json:"sibling"`
	}
	loadVectors(t, "tree-math.json", &vs)
	var c tally
	for _, v := range vs {
		if got := nodeWidth(v.NLeaves); got != v.NNodes {
			t.Errorf("n=%d: width %d want %d", v.NLeaves, got, v.NNodes)
		}
		r := root(v.NLeaves)
		if uint32(r) != v.Root {
			t.Errorf("n=%d: root %d want %d", v.NLeaves, r, v.Root)
		}
		check := func(what string, i int, got nodeIndex, ok bool, want *uint32) {
			if (want == nil) != !ok || (ok && uint32(got) != *want) {
				t.Errorf("n=%d %s(%d) = %d,%v want %v", v.NLeaves, what, i, got, ok, want)
			}
		}
		for i := 0; i < int(v.NNodes); i++ {
			x := nodeIndex(i)
			check("left", i, left(x), !x.isLeaf(), v.Left[i])
			check("right", i, right(x), !x.isLeaf(), v.Right[i])
			check("parent", i, parent(x), x != r, v.Parent[i])
			if x != r {
				check("sibling", i, sibling(x), true, v.Sibling[i])
			} else {
				check("sibling", i, 0, false, v.Sibling[i])
			}
		}
		c.ran++
	}
	c.log(t, "tree-math.json")
}

func TestVectorsCryptoBasics(t *testing.T) {
	var vs []struct {
		CipherSuite CipherSuite `json:"cipher_suite"`
		RefHash     struct {
			Label string   `json:"label"`
			Value hexBytes `json:"value"`
			Out   hexBytes `json:"out"`
		} `json:"ref_hash"`
		ExpandWithLabel struct {
			Secret  hexBytes `json:"secret"`
			Label   string   `json:"label"`
			Context hexBytes `json:"context"`
			Length  int      `json:"length"`
			Out     hexBytes `json:"out"`
		} `json:"expand_with_label"`
		DeriveSecret struct {
			Secret hexBytes `json:"secret"`
			Label  string   `json:"label"`
			Out    hexBytes `json:"out"`
		} `json:"derive_secret"`
		DeriveTreeSecret struct {
			Secret     hexBytes `json:"secret"`
			Label      string   `json:"label"`
			Generation uint32   `json:"generation"`
			Length     int      `json:"length"`
			Out        hexBytes `json:"out"`
		} `json:"derive_tree_secret"`
		SignWithLabel struct {
			Priv      hexBytes `json:"priv"`
			Pub       hexBytes `json:"pub"`
			Content   hexBytes `json:"content"`
			Label     string   `json:"label"`
			Signature hexBytes `json:"signature"`
		} `json:"sign_with_label"`
		EncryptWithLabel struct {
			Priv       hexBytes `json:"priv"`
			Pub        hexBytes `json:"pub"`
			Label      string   `json:"label"`
			Context    hexBytes `json:"context"`
			Plaintext  hexBytes `json:"plaintext"`
			KEMOutput  hexBytes `json:"kem_output"`
			Ciphertext hexBytes `json:"ciphertext"`
		} `json:"encrypt_with_label"`
	}
	loadVectors(t, "crypto-basics.json", &vs)
	var c tally
	for _, v := range vs {
		if v.CipherSuite != CipherSuiteP256 {
			c.skip(otherSuite)
			continue
		}
		c.ran++
		eqHex(t, "RefHash", RefHash(v.RefHash.Label, v.RefHash.Value), v.RefHash.Out)
		e := v.ExpandWithLabel
		out, err := ExpandWithLabel(e.Secret, e.Label, e.Context, e.Length)
		if err != nil {
			t.Fatal(err)
		}
		eqHex(t, "ExpandWithLabel", out, e.Out)
		eqHex(t, "DeriveSecret", DeriveSecret(v.DeriveSecret.Secret, v.DeriveSecret.Label), v.DeriveSecret.Out)
		d := v.DeriveTreeSecret
		out, err = deriveTreeSecret(d.Secret, d.Label, d.Generation, d.Length)
		if err != nil {
			t.Fatal(err)
		}
		eqHex(t, "DeriveTreeSecret", out, d.Out)
		s := v.SignWithLabel
		if err := VerifyWithLabel(s.Pub, s.Label, s.Content, s.Signature); err != nil {
			t.Errorf("VerifyWithLabel(vector signature): %v", err)
		}
		key, err := SignatureKeyFromBytes(s.Priv)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := SignaturePublicKeyBytes(key)
		eqHex(t, "signature public key from private", pub, s.Pub)
		sig, err := SignWithLabel(key, s.Label, s.Content)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyWithLabel(s.Pub, s.Label, s.Content, sig); err != nil {
			t.Errorf("VerifyWithLabel(own signature): %v", err)
		}
		x := v.EncryptWithLabel
		pt, err := DecryptWithLabel(x.Priv, x.Label, x.Context, x.KEMOutput, x.Ciphertext)
		if err != nil {
			t.Fatalf("DecryptWithLabel(vector): %v", err)
		}
		eqHex(t, "DecryptWithLabel", pt, x.Plaintext)
		kem, ct, err := EncryptWithLabel(x.Pub, x.Label, x.Context, x.Plaintext)
		if err != nil {
			t.Fatal(err)
		}
		pt, err = DecryptWithLabel(x.Priv, x.Label, x.Context, kem, ct)
		if err != nil {
			t.Fatalf("DecryptWithLabel(own): %v", err)
		}
		eqHex(t, "round trip", pt, x.Plaintext)
	}
	c.log(t, "crypto-basics.json")
}

func TestVectorsKeySchedule(t *testing.T) {
	type epoch struct {
		TreeHash                hexBytes `json:"tree_hash"`
		CommitSecret            hexBytes `json:"commit_secret"`
		PSKSecret               hexBytes `json:"psk_secret"`
		ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
		GroupContext            hexBytes `json:"group_context"`
		JoinerSecret            hexBytes `json:"joiner_secret"`
		WelcomeSecret           hexBytes `json:"welcome_secret"`
		InitSecret              hexBytes `json:"init_secret"`
		SenderDataSecret        hexBytes `json:"sender_data_secret"`
		EncryptionSecret        hexBytes `json:"encryption_secret"`
		ExporterSecret          hexBytes `json:"exporter_secret"`
		EpochAuthenticator      hexBytes `json:"epoch_authenticator"`
		ExternalSecret          hexBytes `json:"external_secret"`
		ConfirmationKey         hexBytes `json:"confirmation_key"`
		MembershipKey           hexBytes `json:"membership_key"`
		ResumptionPSK           hexBytes `json:"resumption_psk"`
		ExternalPub             hexBytes `json:"external_pub"`
		Exporter                struct {
			// The exporter label is used as the literal JSON string
			// (it happens to look like hex).
			Label   string   `json:"label"`
			Context hexBytes `json:"context"`
			Length  int      `json:"length"`
			Secret  hexBytes `json:"secret"`
		} `json:"exporter"`
	}
	var vs []struct {
		CipherSuite       CipherSuite `json:"cipher_suite"`
		GroupID           hexBytes    `json:"group_id"`
		InitialInitSecret hexBytes    `json:"initial_init_secret"`
		Epochs            []epoch     `json:"epochs"`
	}
	loadVectors(t, "key-schedule.json", &vs)
	var c tally
	for _, v := range vs {
		if v.CipherSuite != CipherSuiteP256 {
			c.skip(otherSuite)
			continue
		}
		c.ran++
		initSecret := []byte(v.InitialInitSecret)
		for i, e := range v.Epochs {
			ctx := GroupContext{CipherSuite: v.CipherSuite, GroupID: v.GroupID, Epoch: uint64(i), TreeHash: e.TreeHash, ConfirmedTranscriptHash: e.ConfirmedTranscriptHash}
			eqHex(t, "group_context", ctx.Marshal(), e.GroupContext)
			s := keySchedule(initSecret, e.CommitSecret, e.PSKSecret, ctx.Marshal())
			eqHex(t, "joiner_secret", s.joiner, e.JoinerSecret)
			eqHex(t, "welcome_secret", s.welcome, e.WelcomeSecret)
			eqHex(t, "init_secret", s.init, e.InitSecret)
			eqHex(t, "sender_data_secret", s.senderData, e.SenderDataSecret)
			eqHex(t, "encryption_secret", s.encryption, e.EncryptionSecret)
			eqHex(t, "exporter_secret", s.exporter, e.ExporterSecret)
			eqHex(t, "epoch_authenticator", s.authentication, e.EpochAuthenticator)
			eqHex(t, "external_secret", s.external, e.ExternalSecret)
			eqHex(t, "confirmation_key", s.confirmation, e.ConfirmationKey)
			eqHex(t, "membership_key", s.membership, e.MembershipKey)
			eqHex(t, "resumption_psk", s.resumption, e.ResumptionPSK)
			pub, err := externalPub(s.external)
			if err != nil {
				t.Fatal(err)
			}
			eqHex(t, "external_pub", pub, e.ExternalPub)
			exp, err := exportSecret(s.exporter, e.Exporter.Label, e.Exporter.Context, e.Exporter.Length)
			if err != nil {
				t.Fatal(err)
			}
			eqHex(t, "exporter", exp, e.Exporter.Secret)
			initSecret = s.init
		}
	}
	c.log(t, "key-schedule.json")
}

func TestVectorsTranscriptHashes(t *testing.T) {
	var vs []struct {
		CipherSuite     CipherSuite `json:"cipher_suite"`
		ConfirmationKey hexBytes    `json:"confirmation_key"`
		AuthContent     hexBytes    `json:"authenticated_content"`
		InterimBefore   hexBytes    `json:"interim_transcript_hash_before"`
		ConfirmedAfter  hexBytes    `json:"confirmed_transcript_hash_after"`
		InterimAfter    hexBytes    `json:"interim_transcript_hash_after"`
	}
	loadVectors(t, "transcript-hashes.json", &vs)
	var c tally
	for _, v := range vs {
		if v.CipherSuite != CipherSuiteP256 {
			c.skip(otherSuite)
			continue
		}
		c.ran++
		var pm PublicMessage
		var wf WireFormat
		err := decodeAll(v.AuthContent, "AuthenticatedContent", func(r *Reader) {
			wf = WireFormat(r.Uint16("wire_format"))
			pm.Content.unmarshal(r)
			pm.Signature = r.Opaque("signature")
			pm.ConfirmationTag = r.Opaque("confirmation_tag")
		})
		if err != nil {
			t.Fatal(err)
		}
		if pm.Content.ContentType != ContentCommit {
			t.Fatalf("content type %d", pm.Content.ContentType)
		}
		confirmed := confirmedTranscriptHash(v.InterimBefore, wf, &pm.Content, pm.Signature)
		eqHex(t, "confirmed_transcript_hash_after", confirmed, v.ConfirmedAfter)
		eqHex(t, "confirmation_tag", mac(v.ConfirmationKey, confirmed), pm.ConfirmationTag)
		eqHex(t, "interim_transcript_hash_after", interimTranscriptHash(confirmed, pm.ConfirmationTag), v.InterimAfter)
		if wf == WireFormatPublicMessage {
			eqHex(t, "re-encoded AuthenticatedContent", pm.authenticatedContent(), v.AuthContent)
		}
	}
	c.log(t, "transcript-hashes.json")
}

func TestVectorsPSKSecret(t *testing.T) {
	var vs []struct {
		CipherSuite CipherSuite `json:"cipher_suite"`
		PSKs        []struct {
			PSKID    hexBytes `json:"psk_id"`
			PSK      hexBytes `json:"psk"`
			PSKNonce hexBytes `json:"psk_nonce"`
		} `json:"psks"`
		PSKSecret hexBytes `json:"psk_secret"`
	}
	loadVectors(t, "psk_secret.json", &vs)
	var c tally
	for _, v := range vs {
		if v.CipherSuite != CipherSuiteP256 {
			c.skip(otherSuite)
			continue
		}
		c.ran++
		var psks []resolvedPSK
		for _, p := range v.PSKs {
			psks = append(psks, resolvedPSK{id: PreSharedKeyID{Type: PSKExternal, PSKID: p.PSKID, PSKNonce: p.PSKNonce}, psk: p.PSK})
		}
		eqHex(t, "psk_secret", pskSecret(psks), v.PSKSecret)
	}
	c.log(t, "psk_secret.json")
}

// TestVectorsMessageProtection runs the PublicMessage half of
// message-protection.json: the proposal and commit PublicMessages verify
// (membership tag and signature against the given group context) and
// carry the given content, and messages we protect the same way verify
// too. The PrivateMessage half (proposal_priv, commit_priv,
// application_priv) is left out and counted: it is about PrivateMessage
// encryption alone (§6.3), which DAVE does not use.
func TestVectorsMessageProtection(t *testing.T) {
	var vs []struct {
		CipherSuite             CipherSuite `json:"cipher_suite"`
		GroupID                 hexBytes    `json:"group_id"`
		Epoch                   uint64      `json:"epoch"`
		TreeHash                hexBytes    `json:"tree_hash"`
		ConfirmedTranscriptHash hexBytes    `json:"confirmed_transcript_hash"`
		SignaturePriv           hexBytes    `json:"signature_priv"`
		SignaturePub            hexBytes    `json:"signature_pub"`
		MembershipKey           hexBytes    `json:"membership_key"`
		Proposal                hexBytes    `json:"proposal"`
		ProposalPub             hexBytes    `json:"proposal_pub"`
		Commit                  hexBytes    `json:"commit"`
		CommitPub               hexBytes    `json:"commit_pub"`
	}
	loadVectors(t, "message-protection.json", &vs)
	var c tally
	for i, v := range vs {
		if v.CipherSuite != CipherSuiteP256 {
			c.skip(otherSuite)
			continue
		}
		c.ran++
		c.skip("(per suite-2 entry) proposal_priv, commit_priv, application_priv: PrivateMessage only")
		ctx := GroupContext{CipherSuite: v.CipherSuite, GroupID: v.GroupID, Epoch: v.Epoch, TreeHash: v.TreeHash, ConfirmedTranscriptHash: v.ConfirmedTranscriptHash}
		sig, err := SignatureKeyFromBytes(v.SignaturePriv)
		if err != nil {
			t.Fatal(err)
		}
		check := func(what string, pm *PublicMessage, content []byte) {
			t.Helper()
			if !macEqual(mac(v.MembershipKey, pm.membershipTagInput(&ctx)), pm.MembershipTag) {
				t.Errorf("entry %d %s: membership tag", i, what)
			}
			if err := pm.verifySignature(v.SignaturePub, &ctx); err != nil {
				t.Errorf("entry %d %s: %v", i, what, err)
			}
			var got []byte
			switch pm.Content.ContentType {
			case ContentProposal:
				got = encode(pm.Content.Proposal.marshal)
			case ContentCommit:
				got = encode(pm.Content.Commit.marshal)
			}
			eqHex(t, what+" content", got, content)
		}
		for _, m := range []struct {
			what    string
			wire    []byte
			content []byte
		}{{"proposal_pub", v.ProposalPub, v.Proposal}, {"commit_pub", v.CommitPub, v.Commit}} {
			msg := parseMessage(t, m.wire)
			if msg.Public == nil {
				t.Fatalf("entry %d %s: not a PublicMessage", i, m.what)
			}
			check(m.what, msg.Public, m.content)
			// Protect the same content ourselves and verify it.
			own := &PublicMessage{Content: msg.Public.Content, ConfirmationTag: msg.Public.ConfirmationTag}
			if err := own.sign(sig, &ctx); err != nil {
				t.Fatal(err)
			}
			own.MembershipTag = mac(v.MembershipKey, own.membershipTagInput(&ctx))
			re := parseMessage(t, (&MLSMessage{WireFormat: WireFormatPublicMessage, Public: own}).Marshal())
			check(m.what+" (own)", re.Public, m.content)
		}
	}
	c.log(t, "message-protection.json")
}

// deriveTreeSecret is RFC 9420 §9: ExpandWithLabel(secret, label, uint32
// generation, length). It belongs to the secret tree, which this package
// does not implement (DAVE never uses PrivateMessage); the crypto-basics
// vectors check it all the same.
func deriveTreeSecret(secret []byte, label string, generation uint32, length int) ([]byte, error) {
	return ExpandWithLabel(secret, label, encode(func(w *Writer) { w.Uint32(generation) }), length)
}

// externalPub derives the external_pub key of an epoch (RFC 9420 §8.3),
// which the key-schedule vectors list; DAVE has no external joins, so only
// this test derives it.
func externalPub(externalSecret []byte) ([]byte, error) {
	kp, err := deriveKeyPair(externalSecret)
	if err != nil {
		return nil, err
	}
	return kp.pub, nil
}
