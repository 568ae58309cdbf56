package mls

import (
	"fmt"
	"slices"
)

// Commits (RFC 9420 §12.2-§12.4): resolving and validating the proposal
// list, applying it to a copy of the tree, the UpdatePath, and the move to
// the next epoch with transcript hashes and tags.

// resolvedProposal is a proposal a commit covers, with who proposed it.
type resolvedProposal struct {
	p      *Proposal
	sender Sender
}

// commitPlan is the state after a commit's proposals were applied.
type commitPlan struct {
	tree        *ratchetTree
	extensions  []Extension
	added       []LeafIndex
	addedKPs    []*KeyPackage
	removedSelf bool
	needPath    bool
	psks        []resolvedPSK
}

// applyProposals validates a commit's proposal list (RFC 9420 §12.2) and
// applies it to a copy of the tree in the order of §12.3:
// GroupContextExtensions, Updates, Removes, then Adds.
func (g *Group) applyProposals(props []resolvedProposal, committer LeafIndex) (*commitPlan, error) {
	plan := &commitPlan{tree: g.tree.clone(), extensions: g.ctx.Extensions, needPath: len(props) == 0}
	var gce *Proposal
	touched := map[LeafIndex]bool{}
	addKeys := map[string]bool{}
	for _, rp := range props {
		p := rp.p
		switch p.Type {
		case ProposalAdd:
			k := string(p.Add.LeafNode.SignatureKey)
			if addKeys[k] {
				return nil, fmt.Errorf("%w: two Adds with the same signature key", ErrInvalidProposal)
			}
			addKeys[k] = true
		case ProposalUpdate:
			if rp.sender.Type != SenderMember {
				return nil, fmt.Errorf("%w: Update not from a member", ErrInvalidProposal)
			}
			l := LeafIndex(rp.sender.Index)
			if l == committer {
				return nil, fmt.Errorf("%w: commit covers an Update by the committer", ErrInvalidProposal)
			}
			if touched[l] {
				return nil, fmt.Errorf("%w: more than one Update/Remove for leaf %d", ErrInvalidProposal, l)
			}
			touched[l] = true
			plan.needPath = true
		case ProposalRemove:
			if p.Remove == committer {
				return nil, fmt.Errorf("%w: commit removes its own committer", ErrInvalidProposal)
			}
			if uint32(p.Remove) >= g.tree.leafCount() || g.tree.leafNode(p.Remove) == nil {
				return nil, fmt.Errorf("%w: Remove of blank leaf %d", ErrInvalidProposal, p.Remove)
			}
			if touched[p.Remove] {
				return nil, fmt.Errorf("%w: more than one Update/Remove for leaf %d", ErrInvalidProposal, p.Remove)
			}
			touched[p.Remove] = true
			plan.needPath = true
		case ProposalPSK:
			for _, q := range plan.psks {
				if equal(encode(q.id.marshal), encode(p.PSK.marshal)) {
					return nil, fmt.Errorf("%w: PSK proposed twice", ErrInvalidProposal)
				}
			}
			secret, err := g.resolvePSK(p.PSK)
			if err != nil {
				return nil, err
			}
			plan.psks = append(plan.psks, resolvedPSK{id: *p.PSK, psk: secret})
		case ProposalGroupContextExtensions:
			if gce != nil {
				return nil, fmt.Errorf("%w: more than one GroupContextExtensions proposal", ErrInvalidProposal)
			}
			gce = p
			plan.needPath = true
		default:
			return nil, fmt.Errorf("%w: commit covers a proposal of type %d (ReInit and ExternalInit are not implemented)", ErrUnsupported, p.Type)
		}
	}
	ctx := g.ctx
	if gce != nil {
		ctx.Extensions = gce.GroupContextExtensions
		if err := checkExtensionList(ctx.Extensions, "GroupContextExtensions"); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidProposal, err)
		}
		if e, ok := findExtension(ctx.Extensions, ExtensionExternalSenders); ok {
			if _, err := ParseExternalSenders(e.Data); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidProposal, err)
			}
		}
		plan.extensions = ctx.Extensions
	}
	for _, rp := range props {
		if rp.p.Type != ProposalUpdate {
			continue
		}
		l := LeafIndex(rp.sender.Index)
		old := plan.tree.leafNode(l)
		if old == nil {
			return nil, fmt.Errorf("%w: Update from blank leaf %d", ErrInvalidProposal, l)
		}
		if equal(old.EncryptionKey, rp.p.Update.EncryptionKey) {
			return nil, fmt.Errorf("%w: Update of leaf %d keeps its encryption key", ErrInvalidProposal, l)
		}
		if err := checkLeafInGroup(plan.tree, rp.p.Update, l, &ctx, false); err != nil {
			return nil, err
		}
		plan.tree.updateLeaf(l, rp.p.Update.clone())
	}
	for _, rp := range props {
		if rp.p.Type != ProposalRemove {
			continue
		}
		if rp.p.Remove == g.own {
			plan.removedSelf = true
		}
		plan.tree.removeLeaf(rp.p.Remove)
	}
	for _, rp := range props {
		if rp.p.Type != ProposalAdd {
			continue
		}
		kp := rp.p.Add
		if err := g.checkAdd(kp); err != nil {
			return nil, err
		}
		if err := checkLeafSupportsContext(&kp.LeafNode, &ctx); err != nil {
			return nil, err
		}
		l := plan.tree.addLeaf(kp.LeafNode.clone())
		if err := checkLeafInGroup(plan.tree, &kp.LeafNode, l, &ctx, true); err != nil {
			return nil, fmt.Errorf("%w: added key package: %w", ErrInvalidProposal, err)
		}
		plan.added = append(plan.added, l)
		plan.addedKPs = append(plan.addedKPs, kp)
	}
	if gce != nil {
		for i := uint32(0); i < plan.tree.leafCount(); i++ {
			if ln := plan.tree.leafNode(LeafIndex(i)); ln != nil {
				if err := checkLeafSupportsContext(ln, &ctx); err != nil {
					return nil, fmt.Errorf("%w: leaf %d: %w", ErrInvalidProposal, i, err)
				}
			}
		}
	}
	return plan, nil
}

// nextGroup derives the next epoch (RFC 9420 §8, §8.2): the new group
// context with the confirmed transcript hash over the signed commit, the
// key schedule, and the confirmation tag, which is set on pm when sending
// and checked when receiving.
func (g *Group) nextGroup(plan *commitPlan, keys privateKeys, commitSecret []byte, pm *PublicMessage, sending bool) (*Group, error) {
	ctx := GroupContext{
		CipherSuite:             g.ctx.CipherSuite,
		GroupID:                 g.ctx.GroupID,
		Epoch:                   g.ctx.Epoch + 1,
		TreeHash:                plan.tree.rootHash(),
		ConfirmedTranscriptHash: confirmedTranscriptHash(g.interim, WireFormatPublicMessage, &pm.Content, pm.Signature),
		Extensions:              plan.extensions,
	}
	secrets := keySchedule(g.secrets.init, commitSecret, pskSecret(plan.psks), ctx.Marshal())
	tag := mac(secrets.confirmation, ctx.ConfirmedTranscriptHash)
	if sending {
		pm.ConfirmationTag = tag
	} else if !macEqual(tag, pm.ConfirmationTag) {
		return nil, fmt.Errorf("%w: commit for epoch %d", ErrBadConfirmationTag, ctx.Epoch)
	}
	keys.prune(plan.tree)
	next := &Group{
		ctx:     ctx,
		tree:    plan.tree,
		own:     g.own,
		keys:    keys,
		sig:     g.sig,
		secrets: secrets,
		interim: interimTranscriptHash(ctx.ConfirmedTranscriptHash, tag),
		psks:    g.psks,
	}
	next.resumption = map[uint64][]byte{g.ctx.Epoch: g.secrets.resumption}
	for e, s := range g.resumption {
		if e+maxResumptionEpochs > g.ctx.Epoch {
			next.resumption[e] = s
		}
	}
	if err := next.loadExtensions(); err != nil {
		return nil, err
	}
	return next, nil
}

// provisionalContext is the group context used to encrypt and decrypt the
// path secrets (RFC 9420 §12.4.1): next epoch and tree hash, old confirmed
// transcript hash, new extensions.
func (g *Group) provisionalContext(plan *commitPlan) []byte {
	ctx := GroupContext{
		CipherSuite:             g.ctx.CipherSuite,
		GroupID:                 g.ctx.GroupID,
		Epoch:                   g.ctx.Epoch + 1,
		TreeHash:                plan.tree.rootHash(),
		ConfirmedTranscriptHash: g.ctx.ConfirmedTranscriptHash,
		Extensions:              plan.extensions,
	}
	return ctx.Marshal()
}

// CommitOptions tunes Group.Commit.
type CommitOptions struct {
	// OmitRatchetTree leaves the ratchet_tree extension out of the
	// Welcome's GroupInfo; by default it is inlined, as DAVE requires.
	OmitRatchetTree bool
	// PathOnlyIfRequired leaves the UpdatePath out when the proposals do
	// not require one (only Adds), as libdave's commits do ("path not
	// forced"). By default every commit carries a path.
	PathOnlyIfRequired bool
}

// PendingCommit is a commit this member made but has not yet adopted: the
// state of the next epoch, installed by ApplyPendingCommit once the
// commit is confirmed (DAVE op 29 naming our own commit).
type PendingCommit struct {
	next    *Group
	epoch   uint64
	groupID []byte
	// from is the epoch authenticator of the epoch the commit was made
	// in, so a commit cannot be applied to another group that happens to
	// share the id and epoch (a reset DAVE session).
	from    []byte
	message []byte
}

// Message returns the encoded commit MLSMessage this pending commit sent.
func (p *PendingCommit) Message() []byte { return slices.Clone(p.message) }

// Epoch returns the epoch the commit moves the group to.
func (p *PendingCommit) Epoch() uint64 { return p.epoch + 1 }

// Commit commits every pending proposal by reference, with a fresh
// UpdatePath (RFC 9420 §12.4) unless opts.PathOnlyIfRequired allows
// leaving it out. It returns the commit as a PublicMessage,
// a Welcome when members are added (nil otherwise), and the pending state
// to adopt with ApplyPendingCommit. The group itself does not change.
func (g *Group) Commit(opts CommitOptions) (*MLSMessage, *Welcome, *PendingCommit, error) {
	props := make([]resolvedProposal, len(g.pending))
	refs := make([]ProposalOrRef, len(g.pending))
	for i, p := range g.pending {
		props[i] = resolvedProposal{p: p.proposal, sender: p.sender}
		refs[i] = ProposalOrRef{Type: ProposalOrRefReference, Reference: p.ref}
	}
	plan, err := g.applyProposals(props, g.own)
	if err != nil {
		return nil, nil, nil, err
	}
	keys := g.keys.clone()
	var gen *pathGeneration
	var path *UpdatePath
	var commitSecret []byte
	if plan.needPath || !opts.PathOnlyIfRequired {
		gen, err = plan.tree.generatePath(g.own, plan.tree.leafNode(g.own), g.sig, g.ctx.GroupID)
		if err != nil {
			return nil, nil, nil, err
		}
		path, err = gen.encrypt(plan.tree, g.provisionalContext(plan), plan.added)
		if err != nil {
			return nil, nil, nil, err
		}
		for n, kp := range gen.keys {
			keys[n] = kp
		}
		commitSecret = gen.commitSecret
	}
	pm := &PublicMessage{Content: FramedContent{
		GroupID:     g.ctx.GroupID,
		Epoch:       g.ctx.Epoch,
		Sender:      Sender{Type: SenderMember, Index: uint32(g.own)},
		ContentType: ContentCommit,
		Commit:      &Commit{Proposals: refs, Path: path},
	}}
	if err := pm.sign(g.sig, &g.ctx); err != nil {
		return nil, nil, nil, err
	}
	next, err := g.nextGroup(plan, keys, commitSecret, pm, true)
	if err != nil {
		return nil, nil, nil, err
	}
	pm.MembershipTag = mac(g.secrets.membership, pm.membershipTagInput(&g.ctx))
	msg := &MLSMessage{WireFormat: WireFormatPublicMessage, Public: pm}
	var welcome *Welcome
	if len(plan.added) > 0 {
		welcome, err = next.makeWelcome(plan, gen, !opts.OmitRatchetTree)
		if err != nil {
			return nil, nil, nil, err
		}
	}
	pending := &PendingCommit{next: next, epoch: g.ctx.Epoch, groupID: g.ctx.GroupID, from: g.secrets.authentication, message: msg.Marshal()}
	return msg, welcome, pending, nil
}

// ApplyPendingCommit moves the group to the epoch of its own commit p.
func (g *Group) ApplyPendingCommit(p *PendingCommit) error {
	if p == nil || p.next == nil {
		return fmt.Errorf("%w: nil pending commit", ErrInvalidArgument)
	}
	if !equal(p.groupID, g.ctx.GroupID) {
		return fmt.Errorf("%w: pending commit for group %x", ErrWrongGroup, p.groupID)
	}
	if p.epoch != g.ctx.Epoch {
		return fmt.Errorf("%w: pending commit made at epoch %d, group is at %d", ErrWrongEpoch, p.epoch, g.ctx.Epoch)
	}
	if !equal(p.from, g.secrets.authentication) {
		return fmt.Errorf("%w: pending commit was made in another instance of this group", ErrWrongGroup)
	}
	*g = *p.next
	return nil
}

// ProcessCommit validates a commit from another member and moves the group
// to the next epoch (RFC 9420 §12.4.2). Proposals by reference must have
// been passed to ProcessProposal in this epoch. When the commit removes
// this member the result wraps ErrRemoved and the group is unchanged.
// On any error the group is unchanged.
func (g *Group) ProcessCommit(msg *MLSMessage) error {
	pm, err := g.checkPublicMessage(msg, ContentCommit)
	if err != nil {
		return err
	}
	committer := LeafIndex(pm.Content.Sender.Index)
	if committer == g.own {
		return fmt.Errorf("%w: commit from our own leaf; adopt it with ApplyPendingCommit", ErrInvalidCommit)
	}
	commit := pm.Content.Commit
	props := make([]resolvedProposal, 0, len(commit.Proposals))
	for _, por := range commit.Proposals {
		if por.Type == ProposalOrRefProposal {
			props = append(props, resolvedProposal{p: por.Proposal, sender: pm.Content.Sender})
			continue
		}
		i := slices.IndexFunc(g.pending, func(p pendingProposal) bool { return equal(p.ref, por.Reference) })
		if i < 0 {
			return fmt.Errorf("%w: commit references %x", ErrUnknownProposal, []byte(por.Reference))
		}
		props = append(props, resolvedProposal{p: g.pending[i].proposal, sender: g.pending[i].sender})
	}
	for i, rp := range props {
		for _, other := range props[:i] {
			if rp.p == other.p {
				return fmt.Errorf("%w: commit covers the same proposal twice", ErrInvalidProposal)
			}
		}
	}
	plan, err := g.applyProposals(props, committer)
	if err != nil {
		return err
	}
	if plan.needPath && commit.Path == nil {
		return fmt.Errorf("%w: commit without a path covers proposals that require one", ErrInvalidCommit)
	}
	if plan.removedSelf {
		return fmt.Errorf("%w (by leaf %d at epoch %d)", ErrRemoved, committer, g.ctx.Epoch)
	}
	keys := g.keys.clone()
	var commitSecret []byte
	if commit.Path != nil {
		leaf := commit.Path.LeafNode.clone()
		if leaf.Source != SourceCommit {
			return fmt.Errorf("%w: path leaf source %d, want commit (3)", ErrInvalidLeafNode, leaf.Source)
		}
		if old := plan.tree.leafNode(committer); old != nil && equal(old.EncryptionKey, leaf.EncryptionKey) {
			return fmt.Errorf("%w: path leaf keeps the committer's encryption key", ErrInvalidLeafNode)
		}
		ctx := g.ctx
		ctx.Extensions = plan.extensions
		if err := checkLeafInGroup(plan.tree, leaf, committer, &ctx, false); err != nil {
			return err
		}
		pubs := make([][]byte, len(commit.Path.Nodes))
		for i, n := range commit.Path.Nodes {
			pubs[i] = n.EncryptionKey
		}
		ph, err := plan.tree.mergePathKeys(committer, pubs)
		if err != nil {
			return err
		}
		if !equal(ph, leaf.ParentHash) {
			return fmt.Errorf("%w: committer leaf parent_hash does not match its path (RFC 9420 §7.9.2)", ErrInvalidTree)
		}
		plan.tree.nodes[committer.node()] = &node{leaf: leaf}
		keys.prune(plan.tree)
		newKeys, cs, _, err := plan.tree.decryptPath(g.own, keys, committer, commit.Path, g.provisionalContext(plan), plan.added)
		if err != nil {
			return err
		}
		for n, kp := range newKeys {
			keys[n] = kp
		}
		commitSecret = cs
	}
	next, err := g.nextGroup(plan, keys, commitSecret, pm, false)
	if err != nil {
		return err
	}
	*g = *next
	return nil
}
