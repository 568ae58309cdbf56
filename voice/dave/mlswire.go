package dave

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// This file reads and writes the few RFC 9420 structures the voice server
// role needs (ExternalSender uses them): key packages to validate, external
// proposals to sign, commits to vet, Welcomes to cut per recipient. A
// server never decrypts or keeps a ratchet tree, so this is structure and
// signatures only; members use voice/mls for the protocol proper.

// MLS constants (RFC 9420 §17).
const (
	mlsVersion10          = 1
	cipherSuiteP256       = 2
	wirePublicMessage     = 1
	wireKeyPackage        = 5
	senderMember          = 1
	senderExternal        = 2
	contentProposal       = 2
	contentCommit         = 3
	proposalAdd           = 1
	proposalRemove        = 3
	proposalOrRefProposal = 1
	proposalOrRefRef      = 2
	credentialBasic       = 1
	leafSourceKeyPackage  = 1
	leafSourceUpdate      = 2
	leafSourceCommit      = 3
)

// wireReader decodes TLS presentation language (RFC 9420 §2.1). The first
// failure sticks; later reads return zero values.
type wireReader struct {
	b   []byte
	off int
	err error
}

func (r *wireReader) fail(what string, detail string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s at byte %d", ErrBadMessage, what, detail, r.off)
	}
}

func (r *wireReader) take(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.fail(what, fmt.Sprintf("need %d bytes, have %d", n, len(r.b)-r.off))
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *wireReader) u8(what string) uint8 {
	b := r.take(what, 1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *wireReader) u16(what string) uint16 {
	b := r.take(what, 2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func (r *wireReader) u32(what string) uint32 {
	b := r.take(what, 4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *wireReader) u64(what string) uint64 {
	b := r.take(what, 8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// opaque reads opaque<V>.
func (r *wireReader) opaque(what string) []byte {
	if r.err != nil {
		return nil
	}
	n, k, err := readVarint(r.b[r.off:])
	if err != nil {
		r.fail(what, err.Error())
		return nil
	}
	r.off += k
	return r.take(what, int(n))
}

// rest returns the unread bytes.
func (r *wireReader) rest() []byte { return r.b[r.off:] }

// done fails unless everything was read.
func (r *wireReader) done(what string) error {
	if r.err == nil && r.off != len(r.b) {
		r.fail(what, fmt.Sprintf("%d trailing bytes", len(r.b)-r.off))
	}
	return r.err
}

// leafNode is a parsed LeafNode (RFC 9420 §7.2).
type leafNode struct {
	sigKey    []byte
	credType  uint16
	identity  []byte
	source    uint8
	notBefore uint64
	notAfter  uint64
	// tbs is the encoding of every field before the signature; for a
	// key_package leaf it is exactly LeafNodeTBS.
	tbs       []byte
	signature []byte
}

func readLeafNode(r *wireReader) leafNode {
	var l leafNode
	start := r.off
	r.opaque("leaf encryption_key")
	l.sigKey = r.opaque("leaf signature_key")
	l.credType = r.u16("credential type")
	switch l.credType {
	case credentialBasic:
		l.identity = r.opaque("basic credential identity")
	default:
		r.fail("credential", fmt.Sprintf("type %d is not basic", l.credType))
	}
	for _, f := range []string{"capabilities versions", "capabilities cipher_suites", "capabilities extensions", "capabilities proposals", "capabilities credentials"} {
		r.opaque(f)
	}
	l.source = r.u8("leaf_node_source")
	switch l.source {
	case leafSourceKeyPackage:
		l.notBefore = r.u64("lifetime not_before")
		l.notAfter = r.u64("lifetime not_after")
	case leafSourceUpdate:
	case leafSourceCommit:
		r.opaque("parent_hash")
	default:
		r.fail("leaf_node_source", fmt.Sprintf("unknown value %d", l.source))
	}
	r.opaque("leaf extensions")
	if r.err == nil {
		l.tbs = r.b[start:r.off]
	}
	l.signature = r.opaque("leaf signature")
	return l
}

// keyPackage is a parsed KeyPackage (RFC 9420 §10).
type keyPackage struct {
	raw       []byte // the bare KeyPackage encoding
	initKey   []byte
	leaf      leafNode
	tbs       []byte
	signature []byte
}

// parseKeyPackage reads a KeyPackage, bare or wrapped in an MLSMessage
// (op 26 senders do both; docs/dave.md).
func parseKeyPackage(b []byte) (*keyPackage, error) {
	if len(b) >= 4 && binary.BigEndian.Uint16(b) == mlsVersion10 && binary.BigEndian.Uint16(b[2:]) == wireKeyPackage {
		b = b[4:]
	}
	r := &wireReader{b: b}
	kp := readKeyPackage(r)
	if err := r.done("key package"); err != nil {
		return nil, err
	}
	return kp, nil
}

// readKeyPackage reads one bare KeyPackage at r's position.
func readKeyPackage(r *wireReader) *keyPackage {
	start := r.off
	kp := &keyPackage{}
	if v := r.u16("key package version"); r.err == nil && v != mlsVersion10 {
		r.fail("key package version", fmt.Sprintf("%d is not mls10", v))
	}
	if cs := r.u16("key package cipher suite"); r.err == nil && cs != cipherSuiteP256 {
		r.fail("key package cipher suite", fmt.Sprintf("%d is not 2", cs))
	}
	kp.initKey = r.opaque("init_key")
	kp.leaf = readLeafNode(r)
	r.opaque("key package extensions")
	if r.err == nil {
		kp.tbs = r.b[start:r.off]
	}
	kp.signature = r.opaque("key package signature")
	if r.err == nil {
		kp.raw = r.b[start:r.off]
	}
	return kp
}

// parsedProposal is an external proposal message as op 27 carries it.
type parsedProposal struct {
	raw     []byte // the MLSMessage
	groupID []byte
	epoch   uint64
	// propType is proposalAdd or proposalRemove.
	propType uint16
	// add is the proposed key package of an Add.
	add *keyPackage
	// removed is the leaf of a Remove.
	removed uint32
}

// readProposalMessage reads one MLSMessage from the start of b, which DAVE
// requires to be a PublicMessage proposal from an external sender, Add or
// Remove (DAVE whitepaper, "Proposal Handling"; libdave
// ValidateProposalMessage). It returns the bytes that follow.
func readProposalMessage(b []byte) (*parsedProposal, []byte, error) {
	r := &wireReader{b: b}
	p := &parsedProposal{}
	if v := r.u16("message version"); r.err == nil && v != mlsVersion10 {
		r.fail("message version", fmt.Sprintf("%d is not mls10", v))
	}
	if wf := r.u16("wire format"); r.err == nil && wf != wirePublicMessage {
		r.fail("wire format", fmt.Sprintf("%d is not a PublicMessage", wf))
	}
	p.groupID = r.opaque("group_id")
	p.epoch = r.u64("epoch")
	if st := r.u8("sender type"); r.err == nil && st != senderExternal {
		r.fail("sender", fmt.Sprintf("type %d is not external", st))
	}
	r.u32("sender index")
	r.opaque("authenticated_data")
	if ct := r.u8("content type"); r.err == nil && ct != contentProposal {
		r.fail("content type", fmt.Sprintf("%d is not a proposal", ct))
	}
	p.propType = r.u16("proposal type")
	switch {
	case r.err != nil:
	case p.propType == proposalAdd:
		p.add = readKeyPackage(r)
	case p.propType == proposalRemove:
		p.removed = r.u32("removed leaf")
	default:
		r.fail("proposal type", fmt.Sprintf("%d is neither Add nor Remove", p.propType))
	}
	r.opaque("signature")
	if r.err != nil {
		return nil, nil, r.err
	}
	p.raw = b[:r.off]
	return p, r.rest(), nil
}

// validate checks a key package as the voice server must before proposing
// it (RFC 9420 §10.1; docs/dave.md): leaf source, basic credential naming
// userID, lifetime covering now, both signatures, distinct keys.
func (kp *keyPackage) validate(userID uint64, nowUnix uint64) error {
	if kp.leaf.source != leafSourceKeyPackage {
		return fmt.Errorf("%w: key package leaf source %d", ErrBadMessage, kp.leaf.source)
	}
	if want := userIDBytes(userID); string(kp.leaf.identity) != string(want) {
		return fmt.Errorf("%w: key package identity %x is not user %d", ErrBadMessage, kp.leaf.identity, userID)
	}
	if nowUnix < kp.leaf.notBefore || nowUnix > kp.leaf.notAfter {
		return fmt.Errorf("%w: key package lifetime [%d, %d] excludes %d", ErrBadMessage, kp.leaf.notBefore, kp.leaf.notAfter, nowUnix)
	}
	if string(kp.initKey) == string(kp.leaf.sigKey) {
		return fmt.Errorf("%w: key package init key equals its signature key", ErrBadMessage)
	}
	if err := verifyWithLabel(kp.leaf.sigKey, "LeafNodeTBS", kp.leaf.tbs, kp.leaf.signature); err != nil {
		return fmt.Errorf("key package leaf node: %w", err)
	}
	if err := verifyWithLabel(kp.leaf.sigKey, "KeyPackageTBS", kp.tbs, kp.signature); err != nil {
		return fmt.Errorf("key package: %w", err)
	}
	return nil
}

// signContent builds SignContent (RFC 9420 §5.1.2).
func signContent(label string, content []byte) []byte {
	b := appendMLSVarOpaque(nil, []byte(mlsLabelPrefix+label))
	return appendMLSVarOpaque(b, content)
}

// signWithLabel is SignWithLabel for suite 2: ECDSA P-256 over SHA-256,
// DER signature.
func signWithLabel(key *ecdsa.PrivateKey, label string, content []byte) ([]byte, error) {
	h := sha256.Sum256(signContent(label, content))
	sig, err := ecdsa.SignASN1(nil, key, h[:])
	if err != nil {
		return nil, fmt.Errorf("dave: sign %s: %w", label, err)
	}
	return sig, nil
}

// verifyWithLabel is VerifyWithLabel for suite 2.
func verifyWithLabel(pub []byte, label string, content, sig []byte) error {
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub)
	if err != nil {
		return fmt.Errorf("%w: signature key: %w", ErrBadMessage, err)
	}
	h := sha256.Sum256(signContent(label, content))
	if !ecdsa.VerifyASN1(key, h[:], sig) {
		return fmt.Errorf("%w: %s signature does not verify", ErrBadMessage, label)
	}
	return nil
}

// refHash is RefHash (RFC 9420 §5.2) for suite 2.
func refHash(label string, value []byte) []byte {
	b := appendMLSVarOpaque(nil, []byte(label))
	b = appendMLSVarOpaque(b, value)
	h := sha256.Sum256(b)
	return h[:]
}

// parsedCommit is the part of a commit MLSMessage the server checks.
type parsedCommit struct {
	raw       []byte // the MLSMessage encoding
	groupID   []byte
	epoch     uint64
	committer uint32
	refs      [][]byte
	inline    int
	path      *leafNode
}

// readCommitMessage reads one MLSMessage holding a PublicMessage commit
// from the start of b and returns it with the bytes that follow (op 28
// appends a Welcome).
func readCommitMessage(b []byte) (*parsedCommit, []byte, error) {
	r := &wireReader{b: b}
	c := &parsedCommit{}
	if v := r.u16("message version"); r.err == nil && v != mlsVersion10 {
		r.fail("message version", fmt.Sprintf("%d is not mls10", v))
	}
	if wf := r.u16("wire format"); r.err == nil && wf != wirePublicMessage {
		r.fail("wire format", fmt.Sprintf("%d is not a PublicMessage", wf))
	}
	c.groupID = r.opaque("group_id")
	c.epoch = r.u64("epoch")
	if st := r.u8("sender type"); r.err == nil && st != senderMember {
		r.fail("sender", fmt.Sprintf("type %d is not a member", st))
	}
	c.committer = r.u32("sender leaf index")
	r.opaque("authenticated_data")
	if ct := r.u8("content type"); r.err == nil && ct != contentCommit {
		r.fail("content type", fmt.Sprintf("%d is not a commit", ct))
	}
	props := &wireReader{b: r.opaque("commit proposals")}
	for r.err == nil && props.err == nil && len(props.rest()) > 0 {
		switch t := props.u8("proposal_or_ref type"); t {
		case proposalOrRefRef:
			c.refs = append(c.refs, props.opaque("proposal ref"))
		case proposalOrRefProposal:
			// Inline proposals have no length prefix; the server refuses
			// them anyway, so stop reading here.
			c.inline++
			props.off = len(props.b)
		default:
			props.fail("proposal_or_ref", fmt.Sprintf("unknown type %d", t))
		}
	}
	if props.err != nil && r.err == nil {
		r.err = props.err
	}
	switch present := r.u8("path presence"); present {
	case 0:
	case 1:
		l := readLeafNode(r)
		c.path = &l
		r.opaque("update path nodes")
	default:
		r.fail("path presence", fmt.Sprintf("optional flag %d", present))
	}
	r.opaque("signature")
	r.opaque("confirmation_tag")
	r.opaque("membership_tag")
	if r.err != nil {
		return nil, nil, r.err
	}
	c.raw = b[:r.off]
	return c, r.rest(), nil
}

// welcomeEntry is one EncryptedGroupSecrets of a Welcome.
type welcomeEntry struct {
	ref []byte // KeyPackageRef of the recipient
	raw []byte // the whole entry's encoding
}

// parsedWelcome is a bare Welcome (RFC 9420 §12.4.3.1).
type parsedWelcome struct {
	suite     uint16
	entries   []welcomeEntry
	groupInfo []byte
}

func parseWelcome(b []byte) (*parsedWelcome, error) {
	r := &wireReader{b: b}
	w := &parsedWelcome{suite: r.u16("welcome cipher suite")}
	secrets := &wireReader{b: r.opaque("welcome secrets")}
	for r.err == nil && secrets.err == nil && len(secrets.rest()) > 0 {
		start := secrets.off
		ref := secrets.opaque("new_member")
		secrets.opaque("kem_output")
		secrets.opaque("ciphertext")
		if secrets.err == nil {
			w.entries = append(w.entries, welcomeEntry{ref: ref, raw: secrets.b[start:secrets.off]})
		}
	}
	if secrets.err != nil && r.err == nil {
		r.err = secrets.err
	}
	w.groupInfo = r.opaque("encrypted_group_info")
	if err := r.done("welcome"); err != nil {
		return nil, err
	}
	return w, nil
}

// forRecipient returns the Welcome cut down to the entry for ref, or nil.
func (w *parsedWelcome) forRecipient(ref []byte) []byte {
	for _, e := range w.entries {
		if string(e.ref) != string(ref) {
			continue
		}
		out := binary.BigEndian.AppendUint16(nil, w.suite)
		out = appendMLSVarOpaque(out, e.raw)
		return appendMLSVarOpaque(out, w.groupInfo)
	}
	return nil
}
