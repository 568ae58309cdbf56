package dave

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

const testChannel = "1100000000000000001"

// kpOpts shape a hand-built key package for validation tests.
type kpOpts struct {
	identity      []byte
	notAfter      uint64
	breakLeafSig  bool
	breakKPSig    bool
	wrap          bool
	nonBasicCreds bool
}

// buildKeyPackage encodes a KeyPackage (RFC 9420 §10) signed with key, as a
// DAVE client would send it in op 26.
func buildKeyPackage(t testing.TB, key *ecdsa.PrivateKey, o kpOpts) []byte {
	t.Helper()
	pub, _ := key.PublicKey.Bytes()
	hpke, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	encKey, _ := hpke.PublicKey.Bytes()
	initPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	initKey, _ := initPriv.PublicKey.Bytes()

	leaf := appendMLSVarOpaque(nil, encKey)
	leaf = appendMLSVarOpaque(leaf, pub)
	credType := uint16(credentialBasic)
	if o.nonBasicCreds {
		credType = 2
	}
	leaf = binary.BigEndian.AppendUint16(leaf, credType)
	leaf = appendMLSVarOpaque(leaf, o.identity)
	leaf = appendMLSVarOpaque(leaf, []byte{0, 1})          // versions [mls10]
	leaf = appendMLSVarOpaque(leaf, []byte{0, 2})          // cipher suites [2]
	leaf = appendMLSVarOpaque(leaf, nil)                   // extensions
	leaf = appendMLSVarOpaque(leaf, nil)                   // proposals
	leaf = appendMLSVarOpaque(leaf, []byte{0, 1})          // credentials [basic]
	leaf = append(leaf, leafSourceKeyPackage)              // source
	leaf = binary.BigEndian.AppendUint64(leaf, 0)          // not_before
	leaf = binary.BigEndian.AppendUint64(leaf, o.notAfter) // not_after
	leaf = appendMLSVarOpaque(leaf, nil)                   // leaf extensions
	lsig, err := signWithLabel(key, "LeafNodeTBS", leaf)
	if err != nil {
		t.Fatal(err)
	}
	if o.breakLeafSig {
		lsig[len(lsig)-1] ^= 1
	}
	leaf = appendMLSVarOpaque(leaf, lsig)

	kp := binary.BigEndian.AppendUint16(nil, mlsVersion10)
	kp = binary.BigEndian.AppendUint16(kp, cipherSuiteP256)
	kp = appendMLSVarOpaque(kp, initKey)
	kp = append(kp, leaf...)
	kp = appendMLSVarOpaque(kp, nil)
	sig, err := signWithLabel(key, "KeyPackageTBS", kp)
	if err != nil {
		t.Fatal(err)
	}
	if o.breakKPSig {
		sig[len(sig)-1] ^= 1
	}
	kp = appendMLSVarOpaque(kp, sig)
	if o.wrap {
		kp = append([]byte{0, 1, 0, 5}, kp...)
	}
	return kp
}

func goodKP(t testing.TB, uid string) ([]byte, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n, _ := strconv.ParseUint(uid, 10, 64)
	return buildKeyPackage(t, key, kpOpts{identity: userIDBytes(n), notAfter: math.MaxUint64}), key
}

// buildCommit encodes an op 28 payload: a PublicMessage commit (signature
// and tags are opaque to the server) and an optional Welcome.
func buildCommit(groupID []byte, epoch uint64, leaf uint32, refs [][]byte, inline bool, path []byte, welcome []byte) []byte {
	m := binary.BigEndian.AppendUint16(nil, mlsVersion10)
	m = binary.BigEndian.AppendUint16(m, wirePublicMessage)
	m = appendMLSVarOpaque(m, groupID)
	m = binary.BigEndian.AppendUint64(m, epoch)
	m = append(m, senderMember)
	m = binary.BigEndian.AppendUint32(m, leaf)
	m = appendMLSVarOpaque(m, nil)
	m = append(m, contentCommit)
	var props []byte
	for _, r := range refs {
		props = append(props, proposalOrRefRef)
		props = appendMLSVarOpaque(props, r)
	}
	if inline {
		props = append(props, proposalOrRefProposal, 0, 3, 0, 0, 0, 1)
	}
	m = appendMLSVarOpaque(m, props)
	if path == nil {
		m = append(m, 0)
	} else {
		m = append(m, 1)
		m = append(m, path...)
		m = appendMLSVarOpaque(m, nil)
	}
	m = appendMLSVarOpaque(m, []byte{0x30, 0x00}) // signature
	m = appendMLSVarOpaque(m, make([]byte, 32))   // confirmation tag
	m = appendMLSVarOpaque(m, make([]byte, 32))   // membership tag
	return append(m, welcome...)
}

// buildWelcome encodes a bare Welcome with one entry per key package.
func buildWelcome(kps ...[]byte) []byte {
	var secrets []byte
	for _, kp := range kps {
		if bytes.HasPrefix(kp, []byte{0, 1, 0, 5}) {
			kp = kp[4:]
		}
		secrets = appendMLSVarOpaque(secrets, refHash("MLS 1.0 KeyPackage Reference", kp))
		secrets = appendMLSVarOpaque(secrets, []byte("kem"))
		secrets = appendMLSVarOpaque(secrets, []byte("ct"))
	}
	w := binary.BigEndian.AppendUint16(nil, cipherSuiteP256)
	w = appendMLSVarOpaque(w, secrets)
	return appendMLSVarOpaque(w, []byte("group info"))
}

// leafOf cuts the LeafNode out of a bare key package.
func leafOf(t testing.TB, kp []byte) []byte {
	t.Helper()
	parsed, err := parseKeyPackage(kp)
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(kp, parsed.leaf.tbs)
	return kp[start : start+len(parsed.leaf.tbs)+len(appendMLSVarOpaque(nil, parsed.leaf.signature))]
}

func TestExternalSenderMarshal(t *testing.T) {
	x, err := NewExternalSender(testChannel)
	if err != nil {
		t.Fatal(err)
	}
	r := &wireReader{b: x.Marshal()}
	key := r.opaque("key")
	if ct := r.u16("type"); ct != credentialBasic {
		t.Fatalf("credential type %d", ct)
	}
	r.opaque("identity")
	if err := r.done("external sender"); err != nil {
		t.Fatal(err)
	}
	if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), key); err != nil {
		t.Fatalf("signature key: %v", err)
	}
	if _, err := NewExternalSender("not-a-number"); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("bad channel: %v", err)
	}
}

func TestProposeAddValidatesKeyPackage(t *testing.T) {
	x, _ := NewExternalSender(testChannel)
	uid := "1200000000000000002"
	n, _ := strconv.ParseUint(uid, 10, 64)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ok := kpOpts{identity: userIDBytes(n), notAfter: math.MaxUint64}
	bad := map[string]kpOpts{
		"other user":       {identity: userIDBytes(n + 1), notAfter: math.MaxUint64},
		"expired":          {identity: userIDBytes(n), notAfter: 1000},
		"leaf signature":   {identity: userIDBytes(n), notAfter: math.MaxUint64, breakLeafSig: true},
		"kp signature":     {identity: userIDBytes(n), notAfter: math.MaxUint64, breakKPSig: true},
		"x509 credential":  {identity: userIDBytes(n), notAfter: math.MaxUint64, nonBasicCreds: true},
		"identity as text": {identity: []byte(uid), notAfter: math.MaxUint64},
	}
	for name, o := range bad {
		if _, err := x.ProposeAdd(uid, buildKeyPackage(t, key, o)); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: err = %v, want ErrBadMessage", name, err)
		}
	}
	good := buildKeyPackage(t, key, ok)
	if _, err := x.ProposeAdd(uid, good[:len(good)-1]); !errors.Is(err, ErrBadMessage) {
		t.Errorf("truncated: %v", err)
	}
	// Wrapped in an MLSMessage is accepted too.
	ok.wrap = true
	p, err := x.ProposeAdd(uid, buildKeyPackage(t, key, ok))
	if err != nil {
		t.Fatalf("wrapped key package: %v", err)
	}
	if len(p.Ref) != 32 || p.UserID != uid {
		t.Fatalf("proposal %+v", p)
	}
	if _, err := x.ProposeAdd(uid, good); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("second pending add: %v", err)
	}
	if err := x.Revoke(p.Ref); err != nil {
		t.Fatal(err)
	}
	if err := x.Revoke(p.Ref); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("revoke twice: %v", err)
	}
}

// The proposal is a PublicMessage from external sender 0, verifiable with
// the op 25 key over FramedContentTBS, and its ref is RefHash of the
// AuthenticatedContent.
func TestProposalEncoding(t *testing.T) {
	x, _ := NewExternalSender(testChannel)
	uid := "1200000000000000002"
	kp, _ := goodKP(t, uid)
	p, err := x.ProposeAdd(uid, kp)
	if err != nil {
		t.Fatal(err)
	}
	r := &wireReader{b: p.Message}
	r.u16("version")
	if wf := r.u16("wire"); wf != wirePublicMessage {
		t.Fatalf("wire format %d", wf)
	}
	contentStart := r.off
	if gid := r.opaque("group"); !bytes.Equal(gid, x.groupID) {
		t.Fatalf("group id %x", gid)
	}
	if e := r.u64("epoch"); e != 0 {
		t.Fatalf("epoch %d", e)
	}
	if st, idx := r.u8("sender"), r.u32("index"); st != senderExternal || idx != 0 {
		t.Fatalf("sender %d/%d", st, idx)
	}
	if ad := r.opaque("ad"); len(ad) != 0 {
		t.Fatalf("authenticated data %x", ad)
	}
	if ct := r.u8("content type"); ct != contentProposal {
		t.Fatalf("content type %d", ct)
	}
	if pt := r.u16("proposal type"); pt != proposalAdd {
		t.Fatalf("proposal type %d", pt)
	}
	if got := r.take("kp", len(kp)); !bytes.Equal(got, kp) {
		t.Fatal("key package not embedded verbatim")
	}
	contentEnd := r.off
	sig := r.opaque("signature")
	if err := r.done("message"); err != nil {
		t.Fatal(err)
	}
	tbs := append([]byte{0, 1, 0, 1}, p.Message[contentStart:contentEnd]...)
	if err := verifyWithLabel(x.pub, "FramedContentTBS", tbs, sig); err != nil {
		t.Fatal(err)
	}
	authContent := append([]byte{0, 1}, p.Message[contentStart:]...)
	if !bytes.Equal(p.Ref, refHash("MLS 1.0 Proposal Reference", authContent)) {
		t.Fatal("proposal ref mismatch")
	}
	parsed, rest, err := readProposalMessage(append(bytes.Clone(p.Message), 0xAA))
	if err != nil || !bytes.Equal(rest, []byte{0xAA}) || parsed.propType != proposalAdd || !bytes.Equal(parsed.add.raw, kp) || !bytes.Equal(parsed.raw, p.Message) {
		t.Fatalf("reading our own proposal back: %v", err)
	}
	rm := buildCommit(x.groupID, 0, 0, nil, false, nil, nil)
	if _, _, err := readProposalMessage(rm); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("a commit read as a proposal: %v", err)
	}
	payload := AppendProposalsPayload(p)
	if payload[0] != ProposalsAppend {
		t.Fatal("op type")
	}
	body, rest, err := readVarOpaque(payload[1:])
	if err != nil || len(rest) != 0 || !bytes.Equal(body, p.Message) {
		t.Fatalf("append payload: %v", err)
	}
	refs, err := parseRevokedRefs(RevokeProposalsPayload(p.Ref)[1:])
	if err != nil || len(refs) != 1 || !bytes.Equal(refs[0], p.Ref) {
		t.Fatalf("revoke payload: %v %x", err, refs)
	}
}

// AcceptCommit applies exactly the rules of a winning commit.
func TestAcceptCommitRules(t *testing.T) {
	const a, b, c = "1200000000000000002", "1300000000000000003", "1400000000000000004"
	var keyB *ecdsa.PrivateKey
	setup := func() (*ExternalSender, []byte, []byte, Proposal, Proposal) {
		x, _ := NewExternalSender(testChannel)
		kpA, _ := goodKP(t, a)
		var kpB []byte
		kpB, keyB = goodKP(t, b)
		pa, err := x.ProposeAdd(a, kpA)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := x.ProposeAdd(b, kpB)
		if err != nil {
			t.Fatal(err)
		}
		return x, kpA, kpB, pa, pb
	}
	x, _, kpB, pa, pb := setup()
	gid := x.groupID
	bad := map[string][]byte{
		"wrong group":         buildCommit([]byte{1, 2}, 0, 0, [][]byte{pb.Ref}, false, nil, buildWelcome(kpB)),
		"wrong epoch":         buildCommit(gid, 1, 0, [][]byte{pb.Ref}, false, nil, buildWelcome(kpB)),
		"not leaf 0":          buildCommit(gid, 0, 1, [][]byte{pb.Ref}, false, nil, buildWelcome(kpB)),
		"no refs":             buildCommit(gid, 0, 0, nil, false, nil, nil),
		"inline proposal":     buildCommit(gid, 0, 0, [][]byte{pb.Ref}, true, nil, buildWelcome(kpB)),
		"own add referenced":  buildCommit(gid, 0, 0, [][]byte{pb.Ref, pa.Ref}, false, nil, buildWelcome(kpB)),
		"repeated ref":        buildCommit(gid, 0, 0, [][]byte{pb.Ref, pb.Ref}, false, nil, buildWelcome(kpB)),
		"unknown ref":         buildCommit(gid, 0, 0, [][]byte{make([]byte, 32)}, false, nil, nil),
		"welcome missing":     buildCommit(gid, 0, 0, [][]byte{pb.Ref}, false, nil, nil),
		"welcome for another": buildCommit(gid, 0, 0, [][]byte{pb.Ref}, false, nil, buildWelcome(pa.Message)),
		"truncated":           buildCommit(gid, 0, 0, [][]byte{pb.Ref}, false, nil, nil)[:20],
	}
	for name, payload := range bad {
		if _, err := x.AcceptCommit(a, payload); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: err = %v, want ErrBadMessage", name, err)
		}
	}
	if x.Epoch() != 0 || len(x.Members()) != 0 {
		t.Fatalf("refused commits changed the group: epoch %d members %v", x.Epoch(), x.Members())
	}
	// A committer whose key package the server never saw cannot create.
	if _, err := x.AcceptCommit(c, buildCommit(gid, 0, 0, [][]byte{pa.Ref, pb.Ref}, false, nil, nil)); !errors.Is(err, ErrBadMessage) {
		t.Errorf("unknown committer: %v", err)
	}

	acc, err := x.AcceptCommit(a, buildCommit(gid, 0, 0, [][]byte{pb.Ref}, false, nil, buildWelcome(kpB)))
	if err != nil {
		t.Fatal(err)
	}
	if acc.Epoch != 1 || len(acc.Welcomes[b]) == 0 || strings.Join(acc.Added, ",") != b {
		t.Fatalf("accepted %+v", acc)
	}
	if m := x.Members(); m[a] != 0 || m[b] != 1 {
		t.Fatalf("members %v", m)
	}
	// The cut Welcome holds only B's entry.
	w, err := parseWelcome(acc.Welcomes[b])
	if err != nil || len(w.entries) != 1 {
		t.Fatalf("cut welcome: %v %d entries", err, len(w.entries))
	}

	// Epoch 1: remove A (leaf 0), add C; B commits. C takes leaf 0.
	rmA, err := x.ProposeRemove(a)
	if err != nil {
		t.Fatal(err)
	}
	kpC, _ := goodKP(t, c)
	addC, err := x.ProposeAdd(c, kpC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.AcceptCommit(b, buildCommit(gid, 1, 1, [][]byte{rmA.Ref}, false, nil, nil)); !errors.Is(err, ErrBadMessage) {
		t.Errorf("commit leaving out a proposal: %v", err)
	}
	if _, err := x.AcceptCommit(a, buildCommit(gid, 1, 1, [][]byte{rmA.Ref, addC.Ref}, false, nil, buildWelcome(kpC))); !errors.Is(err, ErrBadMessage) {
		t.Errorf("commit from the wrong leaf: %v", err)
	}
	// A path may not swap the committer's signature key; one that keeps
	// it is fine.
	otherKP, _ := goodKP(t, b)
	if _, err := x.AcceptCommit(b, buildCommit(gid, 1, 1, [][]byte{rmA.Ref, addC.Ref}, false, leafOf(t, otherKP), buildWelcome(kpC))); !errors.Is(err, ErrBadMessage) || !strings.Contains(err.Error(), "path") {
		t.Errorf("path with a new key: %v", err)
	}
	sameKey := buildKeyPackage(t, keyB, kpOpts{identity: userIDBytes(1300000000000000003), notAfter: math.MaxUint64})
	acc, err = x.AcceptCommit(b, buildCommit(gid, 1, 1, [][]byte{addC.Ref, rmA.Ref}, false, leafOf(t, sameKey), buildWelcome(kpC)))
	if err != nil {
		t.Fatal(err)
	}
	if m := x.Members(); len(m) != 2 || m[c] != 0 || m[b] != 1 {
		t.Fatalf("members %v", m)
	}
	if strings.Join(acc.Removed, ",") != a {
		t.Fatalf("removed %v", acc.Removed)
	}
	if _, err := x.ProposeRemove(a); !errors.Is(err, ErrBadArgument) {
		t.Fatalf("remove non-member: %v", err)
	}
	x.Reset()
	if x.Epoch() != 0 || len(x.Members()) != 0 {
		t.Fatal("reset kept the group")
	}
}

// FuzzServerParsers feeds arbitrary client bytes to the server-side
// parsers of key packages (op 26), commits (op 28) and Welcomes: errors
// only, never a panic.
func FuzzServerParsers(f *testing.F) {
	kp, _ := goodKP(f, "1200000000000000002")
	f.Add(kp)
	f.Add(buildCommit([]byte{1}, 0, 0, [][]byte{make([]byte, 32)}, false, nil, buildWelcome(kp)))
	f.Add(buildWelcome(kp))
	if x, err := NewExternalSender(testChannel); err == nil {
		if p, err := x.ProposeAdd("1200000000000000002", kp); err == nil {
			f.Add(p.Message)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := parseKeyPackage(b); err == nil {
			_ = k.validate(1, 0)
		}
		if c, rest, err := readCommitMessage(b); err == nil {
			if len(c.raw)+len(rest) != len(b) {
				t.Fatalf("commit split %d+%d of %d", len(c.raw), len(rest), len(b))
			}
			_, _ = parseWelcome(rest)
		}
		if p, rest, err := readProposalMessage(b); err == nil && len(p.raw)+len(rest) != len(b) {
			t.Fatalf("proposal split %d+%d of %d", len(p.raw), len(rest), len(b))
		}
		if w, err := parseWelcome(b); err == nil {
			for _, e := range w.entries {
				if got := w.forRecipient(e.ref); got == nil {
					t.Fatal("entry not found by its own ref")
				}
			}
		}
	})
}
