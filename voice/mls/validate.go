package mls

import (
	"fmt"
	"slices"
)

// Validation of received state (RFC 9420 §7.3 leaf nodes, §10.1 key
// packages, §12.2 proposal lists). Framing checks live in group.go,
// tree invariants in tree.go.

// checkLeafSupportsContext checks that a leaf supports the group: every
// non-default group context extension and everything required_capabilities
// names (RFC 9420 §7.3, §11.1).
func checkLeafSupportsContext(ln *LeafNode, ctx *GroupContext) error {
	for _, e := range ctx.Extensions {
		if !isDefaultExtension(e.Type) && !slices.Contains(ln.Capabilities.Extensions, e.Type) {
			return fmt.Errorf("%w: leaf does not support group context extension %d", ErrInvalidLeafNode, e.Type)
		}
	}
	e, ok := findExtension(ctx.Extensions, ExtensionRequiredCapabilities)
	if !ok {
		return nil
	}
	rc, err := parseRequiredCapabilities(e.Data)
	if err != nil {
		return err
	}
	for _, t := range rc.extensions {
		if !isDefaultExtension(t) && !slices.Contains(ln.Capabilities.Extensions, t) {
			return fmt.Errorf("%w: leaf lacks required extension %d", ErrInvalidLeafNode, t)
		}
	}
	for _, t := range rc.proposals {
		if !isDefaultProposal(t) && !slices.Contains(ln.Capabilities.Proposals, t) {
			return fmt.Errorf("%w: leaf lacks required proposal type %d", ErrInvalidLeafNode, t)
		}
	}
	for _, t := range rc.credentials {
		if !slices.Contains(ln.Capabilities.Credentials, t) {
			return fmt.Errorf("%w: leaf lacks required credential type %d", ErrInvalidLeafNode, t)
		}
	}
	return nil
}

// checkLeafInGroup validates a leaf node that is about to occupy leaf l of
// tree t (RFC 9420 §7.3): alone, against the group context, credential
// types mutually supported with every other member, and keys unique in
// the tree.
func checkLeafInGroup(t *ratchetTree, ln *LeafNode, l LeafIndex, ctx *GroupContext, checkLifetime bool) error {
	if err := ln.validateAlone(ctx.GroupID, l, checkLifetime); err != nil {
		return err
	}
	if err := checkLeafSupportsContext(ln, ctx); err != nil {
		return err
	}
	for i := uint32(0); i < t.leafCount(); i++ {
		other := t.leafNode(LeafIndex(i))
		if other == nil || LeafIndex(i) == l {
			continue
		}
		if !slices.Contains(other.Capabilities.Credentials, ln.Credential.Type) || !slices.Contains(ln.Capabilities.Credentials, other.Credential.Type) {
			return fmt.Errorf("%w: credential types of leaf %d and leaf %d are not mutually supported", ErrInvalidLeafNode, l, i)
		}
		if equal(other.SignatureKey, ln.SignatureKey) {
			return fmt.Errorf("%w: signature key already used by leaf %d", ErrInvalidLeafNode, i)
		}
	}
	for i, nd := range t.nodes {
		if nd == nil || nodeIndex(i) == l.node() {
			continue
		}
		if equal(nd.encryptionKey(), ln.EncryptionKey) {
			return fmt.Errorf("%w: encryption key already used by node %d", ErrInvalidLeafNode, i)
		}
	}
	return nil
}

// checkProposalAlone validates what can be checked about a proposal when it
// arrives (RFC 9420 §12.1): an Add's key package, a Remove's target.
func (g *Group) checkProposalAlone(p *Proposal, sender Sender) error {
	switch p.Type {
	case ProposalAdd:
		return g.checkAdd(p.Add)
	case ProposalRemove:
		if uint32(p.Remove) >= g.tree.leafCount() || g.tree.leafNode(p.Remove) == nil {
			return fmt.Errorf("%w: Remove of leaf %d, which is blank or outside the tree", ErrInvalidProposal, p.Remove)
		}
	case ProposalUpdate:
		if sender.Type != SenderMember {
			return fmt.Errorf("%w: Update from a non-member", ErrInvalidProposal)
		}
		if p.Update.Source != SourceUpdate {
			return fmt.Errorf("%w: Update leaf source %d, want update (2)", ErrInvalidProposal, p.Update.Source)
		}
	}
	return nil
}

func (g *Group) checkAdd(kp *KeyPackage) error {
	if kp.CipherSuite != g.ctx.CipherSuite {
		return fmt.Errorf("%w: key package cipher suite %d, group uses %d", ErrInvalidKeyPackage, kp.CipherSuite, g.ctx.CipherSuite)
	}
	if err := kp.validate(true); err != nil {
		return err
	}
	return checkLeafSupportsContext(&kp.LeafNode, &g.ctx)
}
