package dave

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
)

// externalSenderIdentity is the basic credential identity of our voice
// server; Discord's own is unpublished and members do not check it.
var externalSenderIdentity = []byte("voicebridge voice server")

// ExternalSender is the voice server's side of DAVE's MLS group for one
// call: the external sender identity members accept proposals from (op 25),
// signed Add and Remove proposals (op 27), and the server's bookkeeping of
// the group: epoch, leaf of every member, and the proposals a commit must
// reference (DAVE whitepaper, "Delivery Service" and "Proposal Handling";
// docs/dave.md, "The voice server as external sender"). The server never
// holds group secrets. An ExternalSender is not safe for concurrent use.
type ExternalSender struct {
	key      *ecdsa.PrivateKey
	pub      []byte
	now      func() time.Time
	groupID  []byte
	epoch    uint64
	leaves   []leafSlot
	props    []*extProposal
	keyPkgs  map[uint64]*keyPackage
	nameByID map[uint64]string
}

// leafSlot is one leaf of the server's view of the tree.
type leafSlot struct {
	used   bool
	userID uint64
	sigKey []byte
}

// extProposal is a proposal of the current epoch not yet committed.
type extProposal struct {
	Proposal
	add    bool
	userID uint64
	leaf   uint32
	kp     *keyPackage
}

// Proposal is one signed external proposal.
type Proposal struct {
	// UserID is the user added or removed.
	UserID string
	// Ref is the proposal reference commits use (RFC 9420 §5.2).
	Ref []byte
	// Message is the MLSMessage (PublicMessage) to put in op 27.
	Message []byte
}

// AcceptedCommit is a commit the server accepted as the epoch's winner.
type AcceptedCommit struct {
	// Epoch is the group's new epoch.
	Epoch uint64
	// Commit is the commit MLSMessage to announce in op 29.
	Commit []byte
	// Welcomes holds, per added user id, the Welcome cut down to that
	// user's entry, for op 30.
	Welcomes map[string][]byte
	// Added and Removed list the user ids the commit added and removed.
	Added, Removed []string
}

// NewExternalSender returns a voice server identity with a fresh ECDSA
// P-256 key for the call in channelID, whose group does not exist yet.
func NewExternalSender(channelID string) (*ExternalSender, error) {
	cid, err := parseSnowflake("channel id", channelID)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dave: external sender key: %w", err)
	}
	pub, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("dave: external sender key: %w", err)
	}
	return &ExternalSender{
		key:      key,
		pub:      pub,
		now:      time.Now,
		groupID:  userIDBytes(cid),
		keyPkgs:  make(map[uint64]*keyPackage),
		nameByID: make(map[uint64]string),
	}, nil
}

// Marshal returns the op 25 payload: the TLS-serialized ExternalSender
// (RFC 9420 §12.1.8.1): signature key, then a basic credential.
func (x *ExternalSender) Marshal() []byte {
	b := appendMLSVarOpaque(nil, x.pub)
	b = binary.BigEndian.AppendUint16(b, credentialBasic)
	return appendMLSVarOpaque(b, externalSenderIdentity)
}

// Epoch returns the group's epoch; 0 while the group does not exist.
func (x *ExternalSender) Epoch() uint64 { return x.epoch }

// Members returns the leaf index of every member by user id.
func (x *ExternalSender) Members() map[string]uint32 {
	out := make(map[string]uint32)
	for i, l := range x.leaves {
		if l.used {
			out[x.name(l.userID)] = uint32(i)
		}
	}
	return out
}

// Reset forgets the group: the next commit creates a new one at epoch 0
// (an upgrade, or a sole member's reset).
func (x *ExternalSender) Reset() {
	x.epoch = 0
	x.leaves = nil
	x.props = nil
}

func (x *ExternalSender) name(uid uint64) string {
	if n, ok := x.nameByID[uid]; ok {
		return n
	}
	return strconv.FormatUint(uid, 10)
}

// ProposeAdd validates userID's key package (from its op 26) and returns a
// signed Add proposal for the current epoch. While the group does not exist
// the epoch is 0, so the same proposal is valid in every pending member's
// one-member group.
func (x *ExternalSender) ProposeAdd(userID string, keyPackage []byte) (Proposal, error) {
	uid, err := parseSnowflake("user id", userID)
	if err != nil {
		return Proposal{}, err
	}
	kp, err := parseKeyPackage(keyPackage)
	if err != nil {
		return Proposal{}, fmt.Errorf("key package of %s: %w", userID, err)
	}
	if err := kp.validate(uid, uint64(x.now().Unix())); err != nil {
		return Proposal{}, fmt.Errorf("key package of %s: %w", userID, err)
	}
	if _, ok := x.leafOf(uid); ok {
		return Proposal{}, fmt.Errorf("%w: user %s is already a member", ErrBadArgument, userID)
	}
	for _, p := range x.props {
		if p.add && p.userID == uid {
			return Proposal{}, fmt.Errorf("%w: user %s already has a pending Add; revoke it first", ErrBadArgument, userID)
		}
	}
	body := binary.BigEndian.AppendUint16(nil, proposalAdd)
	body = append(body, kp.raw...)
	p, err := x.sign(userID, body)
	if err != nil {
		return Proposal{}, err
	}
	x.keyPkgs[uid] = kp
	x.nameByID[uid] = userID
	x.props = append(x.props, &extProposal{Proposal: p, add: true, userID: uid, kp: kp})
	return p, nil
}

// ProposeRemove returns a signed Remove proposal for userID's leaf.
func (x *ExternalSender) ProposeRemove(userID string) (Proposal, error) {
	uid, err := parseSnowflake("user id", userID)
	if err != nil {
		return Proposal{}, err
	}
	leaf, ok := x.leafOf(uid)
	if !ok {
		return Proposal{}, fmt.Errorf("%w: user %s is not a member", ErrBadArgument, userID)
	}
	body := binary.BigEndian.AppendUint16(nil, proposalRemove)
	body = binary.BigEndian.AppendUint32(body, leaf)
	p, err := x.sign(userID, body)
	if err != nil {
		return Proposal{}, err
	}
	x.props = append(x.props, &extProposal{Proposal: p, userID: uid, leaf: leaf})
	return p, nil
}

// Revoke withdraws an uncommitted proposal of this epoch; send the ref in
// a revoke op 27 (RevokeProposalsPayload).
func (x *ExternalSender) Revoke(ref []byte) error {
	for i, p := range x.props {
		if string(p.Ref) == string(ref) {
			x.props = append(x.props[:i], x.props[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("%w: no pending proposal %x", ErrBadArgument, ref)
}

// sign frames a proposal as a PublicMessage from external sender 0 and
// signs it (RFC 9420 §6.1, §6.2: no group context and no membership tag
// for external senders).
func (x *ExternalSender) sign(userID string, proposal []byte) (Proposal, error) {
	content := appendMLSVarOpaque(nil, x.groupID)
	content = binary.BigEndian.AppendUint64(content, x.epoch)
	content = append(content, senderExternal)
	content = binary.BigEndian.AppendUint32(content, 0)
	content = appendMLSVarOpaque(content, nil) // authenticated_data
	content = append(content, contentProposal)
	content = append(content, proposal...)

	tbs := binary.BigEndian.AppendUint16(nil, mlsVersion10)
	tbs = binary.BigEndian.AppendUint16(tbs, wirePublicMessage)
	tbs = append(tbs, content...)
	sig, err := signWithLabel(x.key, "FramedContentTBS", tbs)
	if err != nil {
		return Proposal{}, err
	}
	auth := appendMLSVarOpaque(nil, sig)

	authContent := binary.BigEndian.AppendUint16(nil, wirePublicMessage)
	authContent = append(authContent, content...)
	authContent = append(authContent, auth...)

	msg := binary.BigEndian.AppendUint16(nil, mlsVersion10)
	msg = binary.BigEndian.AppendUint16(msg, wirePublicMessage)
	msg = append(msg, content...)
	msg = append(msg, auth...)
	return Proposal{
		UserID:  userID,
		Ref:     refHash("MLS 1.0 Proposal Reference", authContent),
		Message: msg,
	}, nil
}

func (x *ExternalSender) leafOf(uid uint64) (uint32, bool) {
	for i, l := range x.leaves {
		if l.used && l.userID == uid {
			return uint32(i), true
		}
	}
	return 0, false
}

// AppendProposalsPayload builds an op 27 append payload: op type 0, then
// the proposal messages as one vector.
func AppendProposalsPayload(props ...Proposal) []byte {
	var msgs []byte
	for _, p := range props {
		msgs = append(msgs, p.Message...)
	}
	return appendMLSVarOpaque([]byte{ProposalsAppend}, msgs)
}

// RevokeProposalsPayload builds an op 27 revoke payload: op type 1, then
// the refs as a vector of opaque<V>.
func RevokeProposalsPayload(refs ...[]byte) []byte {
	var body []byte
	for _, r := range refs {
		body = appendMLSVarOpaque(body, r)
	}
	return appendMLSVarOpaque([]byte{ProposalsRevoke}, body)
}

// AnnounceCommitPayload builds op 29: transition id, then the commit.
func AnnounceCommitPayload(transitionID uint16, commit []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, transitionID), commit...)
}

// WelcomePayload builds op 30: transition id, then the bare Welcome.
func WelcomePayload(transitionID uint16, welcome []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, transitionID), welcome...)
}

// AcceptCommit vets an op 28 payload from committer and, if it is a valid
// winner for the current epoch, applies it to the server's view (docs/
// dave.md): a PublicMessage commit of this group and epoch from the
// committer's leaf, referencing exactly this epoch's unrevoked proposals
// (at epoch 0, all but the committer's own Add), with no inline proposals,
// and no path that changes the committer's credential or signature key.
// Adds take the leftmost blank leaf and Removes blank theirs (RFC 9420
// §12.3). The Welcome, required when members are added, is cut per added
// member.
func (x *ExternalSender) AcceptCommit(committer string, payload []byte) (*AcceptedCommit, error) {
	cuid, err := parseSnowflake("committer", committer)
	if err != nil {
		return nil, err
	}
	c, welcomeBytes, err := readCommitMessage(payload)
	if err != nil {
		return nil, fmt.Errorf("commit from %s: %w", committer, err)
	}
	if string(c.groupID) != string(x.groupID) {
		return nil, fmt.Errorf("%w: commit for group %x, want %x", ErrBadMessage, c.groupID, x.groupID)
	}
	if c.epoch != x.epoch {
		return nil, fmt.Errorf("%w: commit for epoch %d, group is at %d", ErrBadMessage, c.epoch, x.epoch)
	}
	var committerKey []byte
	if x.epoch == 0 {
		kp, ok := x.keyPkgs[cuid]
		if !ok || c.committer != 0 {
			return nil, fmt.Errorf("%w: group-creating commit from %s (leaf %d) without its key package", ErrBadMessage, committer, c.committer)
		}
		committerKey = kp.leaf.sigKey
	} else {
		leaf, ok := x.leafOf(cuid)
		if !ok || leaf != c.committer {
			return nil, fmt.Errorf("%w: commit from leaf %d, but %s is not there", ErrBadMessage, c.committer, committer)
		}
		committerKey = x.leaves[leaf].sigKey
	}
	if c.inline > 0 || len(c.refs) == 0 {
		return nil, fmt.Errorf("%w: commit has %d inline proposals and %d references (want references only)", ErrBadMessage, c.inline, len(c.refs))
	}
	if c.path != nil && (string(c.path.identity) != string(userIDBytes(cuid)) || string(c.path.sigKey) != string(committerKey)) {
		return nil, fmt.Errorf("%w: commit path changes the committer's credential or key", ErrBadMessage)
	}
	expected := make(map[string]*extProposal)
	for _, p := range x.props {
		if x.epoch == 0 && p.add && p.userID == cuid {
			continue
		}
		expected[string(p.Ref)] = p
	}
	var ordered []*extProposal
	for _, ref := range c.refs {
		p, ok := expected[string(ref)]
		if !ok {
			return nil, fmt.Errorf("%w: commit references unknown, revoked or repeated proposal %x", ErrBadMessage, ref)
		}
		delete(expected, string(ref))
		ordered = append(ordered, p)
	}
	if len(expected) > 0 {
		return nil, fmt.Errorf("%w: commit leaves out %d pending proposals", ErrBadMessage, len(expected))
	}

	// Apply to a copy of the leaves, so a bad Welcome changes nothing.
	leaves := append([]leafSlot(nil), x.leaves...)
	if x.epoch == 0 {
		leaves = []leafSlot{{used: true, userID: cuid, sigKey: committerKey}}
	}
	acc := &AcceptedCommit{Epoch: x.epoch + 1, Commit: c.raw, Welcomes: make(map[string][]byte)}
	for _, p := range ordered {
		if !p.add {
			leaves[p.leaf] = leafSlot{}
			acc.Removed = append(acc.Removed, p.UserID)
		}
	}
	var welcome *parsedWelcome
	for _, p := range ordered {
		if !p.add {
			continue
		}
		slot := leafSlot{used: true, userID: p.userID, sigKey: p.kp.leaf.sigKey}
		placed := false
		for i := range leaves {
			if !leaves[i].used {
				leaves[i], placed = slot, true
				break
			}
		}
		if !placed {
			leaves = append(leaves, slot)
		}
		if welcome == nil {
			if welcome, err = parseWelcome(welcomeBytes); err != nil {
				return nil, fmt.Errorf("welcome from %s: %w", committer, err)
			}
		}
		w := welcome.forRecipient(refHash("MLS 1.0 KeyPackage Reference", p.kp.raw))
		if w == nil {
			return nil, fmt.Errorf("%w: welcome has no entry for added user %s", ErrBadMessage, p.UserID)
		}
		acc.Welcomes[p.UserID] = w
		acc.Added = append(acc.Added, p.UserID)
	}
	if welcome == nil && len(welcomeBytes) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after a commit that adds nobody", ErrBadMessage, len(welcomeBytes))
	}
	x.leaves = leaves
	x.epoch++
	x.props = nil
	x.nameByID[cuid] = committer
	return acc, nil
}
