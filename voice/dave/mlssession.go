package dave

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/voicebridge/bridge/voice/mls"
)

// mediaKeyLabel is the MLS exporter label of DAVE sender base secrets
// (DAVE whitepaper, "Sender Key Derivation").
const mediaKeyLabel = "Discord Secure Frames v0"

// errIgnored marks a message that does not apply to the current state and
// is dropped without recovery (libdave returns "ignored" for these).
var errIgnored = errors.New("dave: message does not apply to the current state")

// mlsSession is one member's MLS state for DAVE, as libdave's mls::Session
// keeps it: a signature key for the connection, the voice server's external
// sender, our current key package, a one-member pending group while no
// group is established, the established group, and the commit we sent and
// may still have to adopt.
type mlsSession struct {
	userID  uint64
	groupID []byte
	sig     *ecdsa.PrivateKey
	sigPub  []byte

	extRaw []byte
	ext    *mls.ExternalSender

	kp     *mls.KeyPackage
	kpPriv *mls.KeyPackagePrivate

	pending   *mls.Group
	current   *mls.Group
	ownCommit *mls.PendingCommit
	members   map[uint64][]byte
	// removesUs holds the refs of queued proposals that remove our own
	// leaf: a member cannot commit its own removal, so while one is queued
	// we leave committing to the others.
	removesUs map[string]bool
}

func newMLSSession(userID, channelID uint64) (*mlsSession, error) {
	sig, err := mls.GenerateSignatureKey()
	if err != nil {
		return nil, fmt.Errorf("dave: signature key: %w", err)
	}
	pub, err := mls.SignaturePublicKeyBytes(sig)
	if err != nil {
		return nil, fmt.Errorf("dave: signature key: %w", err)
	}
	return &mlsSession{userID: userID, groupID: userIDBytes(channelID), sig: sig, sigPub: pub}, nil
}

// reset drops every group and key package; the external sender stays.
func (m *mlsSession) reset() {
	m.kp, m.kpPriv = nil, nil
	m.pending, m.current, m.ownCommit = nil, nil, nil
	m.members = nil
	m.removesUs = nil
}

func (m *mlsSession) established() bool { return m.current != nil }

func (m *mlsSession) epoch() uint64 {
	if m.current == nil {
		return 0
	}
	return m.current.Epoch()
}

func (m *mlsSession) epochAuthenticator() []byte {
	if m.current == nil {
		return nil
	}
	return m.current.EpochAuthenticator()
}

// roster returns the established group's members: user id → signature key.
func (m *mlsSession) roster() map[uint64][]byte { return m.members }

func (m *mlsSession) ownSignatureKey() []byte { return m.sigPub }

// keyPackage makes a fresh key package (libdave makes one per request, as
// key packages are single use) and, once the external sender is known,
// the pending one-member group built on its leaf.
func (m *mlsSession) keyPackage() ([]byte, error) {
	kp, priv, err := mls.NewKeyPackage(userIDBytes(m.userID), m.sig)
	if err != nil {
		return nil, fmt.Errorf("dave: key package: %w", err)
	}
	m.kp, m.kpPriv = kp, priv
	if err := m.createPendingGroup(); err != nil {
		return nil, err
	}
	return kp.Marshal(), nil
}

// createPendingGroup makes our one-member group at epoch 0 when we have a
// key package and an external sender but no established group.
func (m *mlsSession) createPendingGroup() error {
	if m.kp == nil || m.ext == nil || m.current != nil {
		return nil
	}
	ext := mls.ExternalSendersExtension([]mls.ExternalSender{*m.ext})
	g, err := mls.NewGroup(m.groupID, m.kp, m.kpPriv, []mls.Extension{ext})
	if err != nil {
		return fmt.Errorf("dave: pending group: %w", err)
	}
	m.pending, m.ownCommit = g, nil
	m.removesUs = nil
	return nil
}

// setExternalSender handles op 25.
func (m *mlsSession) setExternalSender(b []byte) error {
	ext, err := mls.ParseExternalSender(b)
	if err != nil {
		return fmt.Errorf("%w: op 25: %w", ErrBadMessage, err)
	}
	if !bytes.Equal(ext.Marshal(), b) {
		return fmt.Errorf("%w: op 25 has trailing or non-canonical bytes", ErrBadMessage)
	}
	if ext.Credential.Type != mls.CredentialBasic {
		return fmt.Errorf("%w: op 25 external sender credential type %d is not basic", ErrBadMessage, ext.Credential.Type)
	}
	if m.current != nil {
		if bytes.Equal(b, m.extRaw) {
			return nil
		}
		return fmt.Errorf("%w: op 25 changes the external sender of an established group", ErrBadMessage)
	}
	m.ext, m.extRaw = ext, bytes.Clone(b)
	return m.createPendingGroup()
}

// group returns the group proposals and commits apply to.
func (m *mlsSession) group() *mls.Group {
	if m.current != nil {
		return m.current
	}
	return m.pending
}

// processProposals handles op 27: append or revoke, then commit every
// queued proposal. It returns the op 28 payload, or nil when nothing is
// queued.
func (m *mlsSession) processProposals(payload []byte, recognized map[uint64]bool) ([]byte, error) {
	g := m.group()
	if g == nil {
		return nil, fmt.Errorf("%w: proposals without a pending or established group", errIgnored)
	}
	if len(payload) == 0 {
		return nil, fmt.Errorf("%w: empty op 27", ErrBadMessage)
	}
	switch payload[0] {
	case ProposalsRevoke:
		refs, err := parseRevokedRefs(payload[1:])
		if err != nil {
			return nil, err
		}
		for _, ref := range refs {
			if err := g.RevokeProposal(mls.ProposalRef(ref)); err != nil {
				return nil, fmt.Errorf("%w: op 27 revokes an unknown proposal: %w", ErrBadMessage, err)
			}
			delete(m.removesUs, string(ref))
		}
	case ProposalsAppend:
		msgs, rest, err := readVarOpaque(payload[1:])
		if err != nil {
			return nil, fmt.Errorf("op 27 proposals: %w", err)
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("%w: op 27 has %d bytes after its proposals", ErrBadMessage, len(rest))
		}
		for len(msgs) > 0 {
			var p *parsedProposal
			if p, msgs, err = readProposalMessage(msgs); err != nil {
				return nil, fmt.Errorf("op 27 proposal: %w", err)
			}
			if p.add != nil {
				uid, ok := identityUserID(p.add.leaf.identity)
				if !ok || !recognized[uid] {
					return nil, fmt.Errorf("%w: Add proposal for unrecognized user %x", ErrBadMessage, p.add.leaf.identity)
				}
			}
			msg, _, err := mls.ParseMLSMessage(p.raw)
			if err != nil {
				return nil, fmt.Errorf("%w: op 27 proposal: %w", ErrBadMessage, err)
			}
			ref, err := g.ProcessProposal(msg)
			if err != nil {
				return nil, fmt.Errorf("%w: op 27 proposal refused: %w", ErrBadMessage, err)
			}
			if p.propType == proposalRemove && p.removed == uint32(g.OwnLeafIndex()) {
				if m.removesUs == nil {
					m.removesUs = make(map[string]bool)
				}
				m.removesUs[string(ref)] = true
			}
		}
	default:
		return nil, fmt.Errorf("%w: op 27 operation type %d", ErrBadMessage, payload[0])
	}
	if len(g.PendingProposals()) == 0 || len(m.removesUs) > 0 {
		m.ownCommit = nil
		return nil, nil
	}
	commit, welcome, pc, err := g.Commit(mls.CommitOptions{})
	if err != nil {
		return nil, fmt.Errorf("dave: commit proposals: %w", err)
	}
	m.ownCommit = pc
	out := commit.Marshal()
	if welcome != nil && len(welcome.Secrets) > 0 {
		out = append(out, welcome.Marshal()...)
	}
	return out, nil
}

// processCommit handles the commit of op 29: adopt our own cached commit,
// or apply another member's (dropping ours, which lost).
func (m *mlsSession) processCommit(b []byte) error {
	g := m.group()
	if g == nil {
		return fmt.Errorf("%w: commit without a pending or established group", errIgnored)
	}
	msg, n, err := mls.ParseMLSMessage(b)
	if err != nil {
		return fmt.Errorf("%w: op 29 commit: %w", ErrBadMessage, err)
	}
	if n != len(b) {
		return fmt.Errorf("%w: op 29 has %d bytes after its commit", ErrBadMessage, len(b)-n)
	}
	if msg.WireFormat != mls.WireFormatPublicMessage || msg.Public == nil {
		return fmt.Errorf("%w: op 29 commit is not a PublicMessage", ErrBadMessage)
	}
	c := &msg.Public.Content
	if c.ContentType != mls.ContentCommit || c.Commit == nil {
		return fmt.Errorf("%w: op 29 carries content type %d, not a commit", ErrBadMessage, c.ContentType)
	}
	if c.Epoch != g.Epoch() {
		return fmt.Errorf("%w: op 29 commit for epoch %d, group is at %d", ErrBadMessage, c.Epoch, g.Epoch())
	}
	if c.Sender.Type != mls.SenderMember {
		return fmt.Errorf("%w: op 29 commit from sender type %d, not a member", ErrBadMessage, c.Sender.Type)
	}
	for _, p := range c.Commit.Proposals {
		if p.Type != mls.ProposalOrRefReference {
			return fmt.Errorf("%w: op 29 commit carries a proposal by value", ErrBadMessage)
		}
	}
	if m.ownCommit != nil && bytes.Equal(m.ownCommit.Message(), b) {
		err = g.ApplyPendingCommit(m.ownCommit)
	} else {
		err = g.ProcessCommit(msg)
	}
	if err != nil {
		return fmt.Errorf("dave: commit: %w", err)
	}
	return m.install(g)
}

// processWelcome handles the Welcome of op 30.
func (m *mlsSession) processWelcome(b []byte) error {
	if m.current != nil {
		return fmt.Errorf("%w: welcome while already in a group", ErrBadMessage)
	}
	if m.ext == nil || m.kp == nil {
		return fmt.Errorf("%w: welcome before op 25 or before our key package", ErrBadMessage)
	}
	w, n, err := mls.ParseWelcome(b)
	if err != nil {
		return fmt.Errorf("%w: op 30 welcome: %w", ErrBadMessage, err)
	}
	if n != len(b) {
		return fmt.Errorf("%w: op 30 has %d bytes after its welcome", ErrBadMessage, len(b)-n)
	}
	g, err := mls.JoinFromWelcome(w, m.kp, m.kpPriv)
	if err != nil {
		return fmt.Errorf("dave: join from welcome: %w", err)
	}
	exts := g.ExternalSenders()
	if len(exts) != 1 || !bytes.Equal(exts[0].Marshal(), m.extRaw) {
		return fmt.Errorf("%w: welcome's group has %d external senders, want exactly the op 25 one", ErrBadMessage, len(exts))
	}
	return m.install(g)
}

// established_ installs g as the established group after a commit or
// welcome, refusing rosters with duplicate or malformed identities.
func (m *mlsSession) install(g *mls.Group) error {
	members := make(map[uint64][]byte)
	for _, mem := range g.Members() {
		uid, ok := identityUserID(mem.Identity)
		if !ok {
			return fmt.Errorf("%w: member at leaf %d has identity %x, not a user id", ErrBadMessage, mem.LeafIndex, mem.Identity)
		}
		if _, dup := members[uid]; dup {
			return fmt.Errorf("%w: user %d appears twice in the group", ErrBadMessage, uid)
		}
		members[uid] = mem.SignatureKey
	}
	if _, ok := members[m.userID]; !ok {
		return fmt.Errorf("%w: we are not in the group", ErrBadMessage)
	}
	m.current, m.pending, m.ownCommit = g, nil, nil
	m.kp, m.kpPriv = nil, nil
	m.removesUs = nil
	m.members = members
	return nil
}

// ratchet returns the media key ratchet of uid in the established group:
// MLS-Exporter("Discord Secure Frames v0", LE64(uid), 16).
func (m *mlsSession) ratchet(uid uint64) (*HashRatchet, error) {
	if m.current == nil {
		return nil, fmt.Errorf("%w: no established group", ErrNoKey)
	}
	base, err := m.current.Export(mediaKeyLabel, binary.LittleEndian.AppendUint64(nil, uid), KeySize)
	if err != nil {
		return nil, fmt.Errorf("dave: export media key of %d: %w", uid, err)
	}
	return NewHashRatchet(base)
}

// identityUserID reads a basic credential identity as DAVE's 8-byte
// big-endian user id.
func identityUserID(id []byte) (uint64, bool) {
	if len(id) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(id), true
}
