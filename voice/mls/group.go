package mls

import (
	"crypto/ecdsa"
	"fmt"
	"slices"
)

// Group is one member's view of an MLS group at one epoch: the public
// ratchet tree and group context, the member's private keys, the epoch's
// secrets, and the proposals received in this epoch. A Group is not safe
// for concurrent use; its owner serializes calls.
type Group struct {
	ctx      GroupContext
	tree     *ratchetTree
	own      LeafIndex
	keys     privateKeys
	sig      *ecdsa.PrivateKey
	secrets  epochSecrets
	interim  []byte
	pending  []pendingProposal
	external []ExternalSender
	// psks are the external PSKs this member knows, by id; resumption
	// keeps the resumption secrets of recent epochs of this group
	// (RFC 9420 §8.4), both to resolve PSK proposals that commits cover.
	psks       map[string][]byte
	resumption map[uint64][]byte
}

// maxResumptionEpochs bounds how many past epochs' resumption secrets a
// group keeps for resumption PSKs.
const maxResumptionEpochs = 16

// ExternalPSK is a pre-shared key known by id (RFC 9420 §8.4). DAVE uses
// none; they are supported so that groups using them can be followed.
type ExternalPSK struct {
	ID     []byte
	Secret []byte
}

// AddExternalPSK makes an external PSK available to commits that inject it.
func (g *Group) AddExternalPSK(id, secret []byte) {
	if g.psks == nil {
		g.psks = map[string][]byte{}
	}
	g.psks[string(id)] = slices.Clone(secret)
}

// resolvePSK finds the secret a PreSharedKeyID names (RFC 9420 §8.4).
func (g *Group) resolvePSK(id *PreSharedKeyID) ([]byte, error) {
	if len(id.PSKNonce) != hashSize {
		return nil, fmt.Errorf("%w: PSK nonce of %d bytes, want %d", ErrInvalidProposal, len(id.PSKNonce), hashSize)
	}
	switch id.Type {
	case PSKExternal:
		if s, ok := g.psks[string(id.PSKID)]; ok {
			return s, nil
		}
		return nil, fmt.Errorf("%w: external PSK %x is not known", ErrUnsupported, id.PSKID)
	default:
		if id.Usage != 1 {
			return nil, fmt.Errorf("%w: resumption PSK usage %d outside a branch or reinit flow", ErrInvalidProposal, id.Usage)
		}
		if !equal(id.PSKGroupID, g.ctx.GroupID) {
			return nil, fmt.Errorf("%w: resumption PSK of another group", ErrUnsupported)
		}
		if id.PSKEpoch == g.ctx.Epoch {
			return g.secrets.resumption, nil
		}
		if s, ok := g.resumption[id.PSKEpoch]; ok {
			return s, nil
		}
		return nil, fmt.Errorf("%w: resumption PSK of epoch %d is no longer kept", ErrUnsupported, id.PSKEpoch)
	}
}

// pendingProposal is a proposal received in the current epoch, kept by
// reference until a commit covers it.
type pendingProposal struct {
	ref      ProposalRef
	proposal *Proposal
	sender   Sender
}

// Member describes one occupied leaf of the group.
type Member struct {
	LeafIndex    LeafIndex
	Identity     []byte
	SignatureKey []byte
}

// NewGroup creates a one-member group at epoch 0 with the key package's
// leaf at index 0 (RFC 9420 §11): a fresh random init secret, an all-zero
// commit secret, and the given group context extensions (DAVE: exactly one
// external_senders extension).
func NewGroup(groupID []byte, kp *KeyPackage, priv *KeyPackagePrivate, extensions []Extension) (*Group, error) {
	if kp == nil || priv == nil || priv.SignatureKey == nil {
		return nil, fmt.Errorf("%w: NewGroup needs a key package and its private keys", ErrInvalidArgument)
	}
	if err := kp.validate(false); err != nil {
		return nil, err
	}
	leafKey, err := keyPairFromPrivate(priv.EncryptionKey)
	if err != nil {
		return nil, err
	}
	if !equal(leafKey.pub, kp.LeafNode.EncryptionKey) {
		return nil, fmt.Errorf("%w: private encryption key does not match the key package", ErrInvalidArgument)
	}
	sigPub, err := SignaturePublicKeyBytes(priv.SignatureKey)
	if err != nil || !equal(sigPub, kp.LeafNode.SignatureKey) {
		return nil, fmt.Errorf("%w: signature key does not match the key package", ErrInvalidArgument)
	}
	tree := &ratchetTree{nodes: []*node{{leaf: kp.LeafNode.clone()}}}
	g := &Group{
		ctx: GroupContext{
			CipherSuite:             CipherSuiteP256,
			GroupID:                 append([]byte{}, groupID...),
			Epoch:                   0,
			ConfirmedTranscriptHash: []byte{},
			Extensions:              slices.Clone(extensions),
		},
		tree: tree,
		own:  0,
		keys: privateKeys{0: leafKey},
		sig:  priv.SignatureKey,
	}
	if err := g.loadExtensions(); err != nil {
		return nil, err
	}
	if err := checkLeafSupportsContext(&kp.LeafNode, &g.ctx); err != nil {
		return nil, err
	}
	g.ctx.TreeHash = tree.rootHash()
	initSecret, err := randomBytes(hashSize)
	if err != nil {
		return nil, err
	}
	g.secrets = keySchedule(initSecret, nil, nil, g.ctx.Marshal())
	tag := mac(g.secrets.confirmation, g.ctx.ConfirmedTranscriptHash)
	g.interim = interimTranscriptHash(g.ctx.ConfirmedTranscriptHash, tag)
	return g, nil
}

// loadExtensions parses the group context extensions this package acts on.
func (g *Group) loadExtensions() error {
	if err := checkExtensionList(g.ctx.Extensions, "group context"); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	g.external = nil
	if e, ok := findExtension(g.ctx.Extensions, ExtensionExternalSenders); ok {
		senders, err := ParseExternalSenders(e.Data)
		if err != nil {
			return err
		}
		g.external = senders
	}
	return nil
}

// GroupID returns the group id.
func (g *Group) GroupID() []byte { return slices.Clone(g.ctx.GroupID) }

// Epoch returns the current epoch.
func (g *Group) Epoch() uint64 { return g.ctx.Epoch }

// OwnLeafIndex returns this member's leaf index.
func (g *Group) OwnLeafIndex() LeafIndex { return g.own }

// EpochAuthenticator returns the epoch_authenticator of the current epoch
// (RFC 9420 §8.7), which DAVE shows as the voice privacy code.
func (g *Group) EpochAuthenticator() []byte { return slices.Clone(g.secrets.authentication) }

// Export is the MLS-Exporter of RFC 9420 §8.5 for the current epoch.
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	return exportSecret(g.secrets.exporter, label, context, length)
}

// Extensions returns the group context extensions.
func (g *Group) Extensions() []Extension { return slices.Clone(g.ctx.Extensions) }

// ExternalSenders returns the senders of the external_senders extension.
func (g *Group) ExternalSenders() []ExternalSender { return slices.Clone(g.external) }

// TreeHash returns the tree hash of the current ratchet tree.
func (g *Group) TreeHash() []byte { return slices.Clone(g.ctx.TreeHash) }

// Members lists the occupied leaves in leaf order.
func (g *Group) Members() []Member {
	var out []Member
	for i := uint32(0); i < g.tree.leafCount(); i++ {
		if ln := g.tree.leafNode(LeafIndex(i)); ln != nil {
			out = append(out, Member{
				LeafIndex:    LeafIndex(i),
				Identity:     slices.Clone(ln.Credential.Identity),
				SignatureKey: slices.Clone(ln.SignatureKey),
			})
		}
	}
	return out
}

// RatchetTree returns the encoded ratchet tree (the ratchet_tree extension
// body).
func (g *Group) RatchetTree() []byte { return g.tree.Marshal() }

// PendingProposals returns the references of the proposals received in
// this epoch, in arrival order.
func (g *Group) PendingProposals() []ProposalRef {
	out := make([]ProposalRef, len(g.pending))
	for i, p := range g.pending {
		out[i] = slices.Clone(p.ref)
	}
	return out
}

// RevokeProposal drops a received proposal (DAVE op 27 revoke). Unknown
// references are an error wrapping ErrUnknownProposal.
func (g *Group) RevokeProposal(ref ProposalRef) error {
	i := slices.IndexFunc(g.pending, func(p pendingProposal) bool { return equal(p.ref, ref) })
	if i < 0 {
		return fmt.Errorf("%w: %x", ErrUnknownProposal, []byte(ref))
	}
	g.pending = slices.Delete(g.pending, i, i+1)
	return nil
}

// ClearPendingProposals drops every received proposal.
func (g *Group) ClearPendingProposals() { g.pending = nil }

// ProcessProposal validates a proposal message for the current epoch and
// queues it by reference (RFC 9420 §12.1, §12.1.8). Accepted are
// PublicMessages from an external sender of the external_senders extension
// (Add or Remove; signed, no membership tag) and from members (Add, Remove,
// Update, PreSharedKey or GroupContextExtensions; signed and with a valid membership
// tag).
func (g *Group) ProcessProposal(msg *MLSMessage) (ProposalRef, error) {
	pm, err := g.checkPublicMessage(msg, ContentProposal)
	if err != nil {
		return nil, err
	}
	p := pm.Content.Proposal
	switch pm.Content.Sender.Type {
	case SenderExternal:
		if p.Type != ProposalAdd && p.Type != ProposalRemove {
			return nil, fmt.Errorf("%w: external proposal of type %d (only Add and Remove)", ErrUnsupported, p.Type)
		}
	case SenderMember:
		switch p.Type {
		case ProposalAdd, ProposalRemove, ProposalUpdate, ProposalPSK, ProposalGroupContextExtensions:
		default:
			return nil, fmt.Errorf("%w: member proposal of type %d", ErrUnsupported, p.Type)
		}
		if p.Type == ProposalUpdate && LeafIndex(pm.Content.Sender.Index) == g.own {
			return nil, fmt.Errorf("%w: an Update from our own leaf we did not make", ErrInvalidProposal)
		}
	}
	if err := g.checkProposalAlone(p, pm.Content.Sender); err != nil {
		return nil, err
	}
	ref := pm.ProposalRef()
	if !slices.ContainsFunc(g.pending, func(q pendingProposal) bool { return equal(q.ref, ref) }) {
		g.pending = append(g.pending, pendingProposal{ref: ref, proposal: p, sender: pm.Content.Sender})
	}
	return slices.Clone(ref), nil
}

// checkPublicMessage verifies framing (RFC 9420 §6): wire format, content
// type, group id, epoch, sender, membership tag (members) and signature.
func (g *Group) checkPublicMessage(msg *MLSMessage, want ContentType) (*PublicMessage, error) {
	if msg == nil || msg.WireFormat != WireFormatPublicMessage || msg.Public == nil {
		wf := WireFormat(0)
		if msg != nil {
			wf = msg.WireFormat
		}
		if wf == WireFormatPrivateMessage {
			return nil, fmt.Errorf("%w: PrivateMessage handshake messages are not supported", ErrUnsupported)
		}
		return nil, fmt.Errorf("%w: wire format %d, want PublicMessage", ErrUnexpectedMessage, wf)
	}
	pm := msg.Public
	c := &pm.Content
	if c.ContentType != want {
		return nil, fmt.Errorf("%w: content type %d, want %d", ErrUnexpectedMessage, c.ContentType, want)
	}
	if !equal(c.GroupID, g.ctx.GroupID) {
		return nil, fmt.Errorf("%w: message for group %x, we are in %x", ErrWrongGroup, c.GroupID, g.ctx.GroupID)
	}
	if c.Epoch != g.ctx.Epoch {
		return nil, fmt.Errorf("%w: message for epoch %d, group is at %d", ErrWrongEpoch, c.Epoch, g.ctx.Epoch)
	}
	switch c.Sender.Type {
	case SenderMember:
		ln := g.tree.leafNode(LeafIndex(c.Sender.Index))
		if c.Sender.Index >= g.tree.leafCount() || ln == nil {
			return nil, fmt.Errorf("%w: sender leaf %d is blank or outside the tree", ErrUnknownSender, c.Sender.Index)
		}
		want := mac(g.secrets.membership, pm.membershipTagInput(&g.ctx))
		if !macEqual(want, pm.MembershipTag) {
			return nil, fmt.Errorf("%w: from leaf %d", ErrBadMembershipTag, c.Sender.Index)
		}
		if err := pm.verifySignature(ln.SignatureKey, &g.ctx); err != nil {
			return nil, fmt.Errorf("%w (from leaf %d)", err, c.Sender.Index)
		}
	case SenderExternal:
		if want != ContentProposal {
			return nil, fmt.Errorf("%w: external sender may only send proposals", ErrUnknownSender)
		}
		if int(c.Sender.Index) >= len(g.external) {
			return nil, fmt.Errorf("%w: external sender index %d, group has %d external senders", ErrUnknownSender, c.Sender.Index, len(g.external))
		}
		if err := pm.verifySignature(g.external[c.Sender.Index].SignatureKey, nil); err != nil {
			return nil, fmt.Errorf("%w (from external sender %d)", err, c.Sender.Index)
		}
	default:
		return nil, fmt.Errorf("%w: sender type %d (new-member messages and external commits are not supported)", ErrUnsupported, c.Sender.Type)
	}
	return pm, nil
}
