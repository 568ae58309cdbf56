package mls

import (
	"fmt"
	"slices"
)

// Welcome creation and joining (RFC 9420 §12.4.3).

// makeWelcome builds the Welcome of a commit that added members: a signed
// GroupInfo for the new epoch (with the ratchet tree inlined when asked),
// encrypted with the welcome key and nonce, and per new member the
// GroupSecrets (joiner secret and the path secret of the lowest common
// node of the committer's path) encrypted to its init key.
func (g *Group) makeWelcome(plan *commitPlan, gen *pathGeneration, inlineTree bool) (*Welcome, error) {
	gi := &GroupInfo{
		GroupContext:    g.ctx,
		ConfirmationTag: mac(g.secrets.confirmation, g.ctx.ConfirmedTranscriptHash),
		Signer:          g.own,
	}
	if inlineTree {
		gi.Extensions = []Extension{{Type: ExtensionRatchetTree, Data: g.tree.Marshal()}}
	}
	sig, err := SignWithLabel(g.sig, "GroupInfoTBS", encode(gi.marshalTBS))
	if err != nil {
		return nil, err
	}
	gi.Signature = sig
	key, nonce := welcomeKeyNonce(g.secrets.welcome)
	egi, err := aeadSeal(key, nonce, nil, encode(gi.marshal))
	if err != nil {
		return nil, err
	}
	w := &Welcome{CipherSuite: g.ctx.CipherSuite, EncryptedGroupInfo: egi}
	for i, l := range plan.added {
		kp := plan.addedKPs[i]
		gs := GroupSecrets{JoinerSecret: g.secrets.joiner, PathSecret: gen.pathSecretFor(l), PSKs: []PreSharedKeyID{}}
		kem, ct, err := EncryptWithLabel(kp.InitKey, "Welcome", egi, encode(gs.marshal))
		if err != nil {
			return nil, err
		}
		w.Secrets = append(w.Secrets, EncryptedGroupSecrets{
			NewMember:             kp.Ref(),
			EncryptedGroupSecrets: HPKECiphertext{KEMOutput: kem, Ciphertext: ct},
		})
	}
	return w, nil
}

// JoinFromWelcome joins a group from a Welcome whose GroupInfo inlines the
// ratchet tree (RFC 9420 §12.4.3.1), as DAVE's do.
func JoinFromWelcome(w *Welcome, kp *KeyPackage, priv *KeyPackagePrivate) (*Group, error) {
	return JoinFromWelcomeWithOptions(w, kp, priv, JoinOptions{})
}

// JoinOptions carries what a joiner may need beyond the Welcome.
type JoinOptions struct {
	// RatchetTree is the encoded tree to use when the GroupInfo carries
	// no ratchet_tree extension.
	RatchetTree []byte
	// ExternalPSKs are pre-shared keys the Welcome or later commits may
	// name.
	ExternalPSKs []ExternalPSK
}

// JoinFromWelcomeWithOptions joins from a Welcome. It checks everything
// RFC 9420 §12.4.3.1 asks: the GroupInfo signature, the tree hash, parent
// hashes and leaf nodes of the tree, the confirmation tag, and the path
// secret against the tree's public keys.
func JoinFromWelcomeWithOptions(w *Welcome, kp *KeyPackage, priv *KeyPackagePrivate, opts JoinOptions) (*Group, error) {
	treeData := opts.RatchetTree
	if w == nil || kp == nil || priv == nil {
		return nil, fmt.Errorf("%w: JoinFromWelcome needs a welcome, key package and private keys", ErrInvalidArgument)
	}
	if err := w.CipherSuite.check(); err != nil {
		return nil, err
	}
	if w.CipherSuite != kp.CipherSuite {
		return nil, fmt.Errorf("%w: welcome suite %d, key package suite %d", ErrUnsupportedCipherSuite, w.CipherSuite, kp.CipherSuite)
	}
	psks := map[string][]byte{}
	for _, p := range opts.ExternalPSKs {
		psks[string(p.ID)] = slices.Clone(p.Secret)
	}
	gs, gi, psk, err := openWelcome(w, kp, priv.InitKey, psks)
	if err != nil {
		return nil, err
	}
	tree := new(ratchetTree)
	treeBytes := treeData
	if e, ok := findExtension(gi.Extensions, ExtensionRatchetTree); ok {
		treeBytes = e.Data
	}
	if treeBytes == nil {
		return nil, fmt.Errorf("%w: GroupInfo has no ratchet_tree extension and no tree was given", ErrInvalidTree)
	}
	if err := decodeAll(treeBytes, "ratchet_tree", tree.unmarshal); err != nil {
		return nil, err
	}
	signer := tree.leafNode(gi.Signer)
	if uint32(gi.Signer) >= tree.leafCount() || signer == nil {
		return nil, fmt.Errorf("%w: GroupInfo signer %d is not a member", ErrUnknownSender, gi.Signer)
	}
	if err := VerifyWithLabel(signer.SignatureKey, "GroupInfoTBS", encode(gi.marshalTBS), gi.Signature); err != nil {
		return nil, fmt.Errorf("%w (GroupInfo)", err)
	}
	g := &Group{ctx: gi.GroupContext, tree: tree, sig: priv.SignatureKey, psks: psks}
	if err := g.loadExtensions(); err != nil {
		return nil, err
	}
	if err := g.validateJoinedTree(); err != nil {
		return nil, err
	}
	own, ok := tree.findLeaf(kp.LeafNode.EncryptionKey)
	if !ok || !equal(tree.leafNode(own).Marshal(), kp.LeafNode.Marshal()) {
		return nil, fmt.Errorf("%w: our key package's leaf is not in the tree", ErrInvalidTree)
	}
	g.own = own
	leafKey, err := keyPairFromPrivate(priv.EncryptionKey)
	if err != nil {
		return nil, err
	}
	if !equal(leafKey.pub, kp.LeafNode.EncryptionKey) {
		return nil, fmt.Errorf("%w: private encryption key does not match the key package", ErrInvalidArgument)
	}
	g.keys = privateKeys{own.node(): leafKey}
	if gs.PathSecret != nil {
		start := commonAncestor(own.node(), gi.Signer.node())
		nodes := tree.filteredPathFrom(gi.Signer, start)
		if len(nodes) == 0 {
			return nil, fmt.Errorf("%w: path secret given but node %d is not on the signer's filtered direct path", ErrInvalidTree, start)
		}
		keys, _, err := tree.implantPathSecret(nodes, gs.PathSecret)
		if err != nil {
			return nil, err
		}
		for n, k := range keys {
			g.keys[n] = k
		}
	}
	g.secrets = keyScheduleFromJoiner(gs.JoinerSecret, psk, g.ctx.Marshal())
	tag := mac(g.secrets.confirmation, g.ctx.ConfirmedTranscriptHash)
	if !macEqual(tag, gi.ConfirmationTag) {
		return nil, fmt.Errorf("%w: GroupInfo of epoch %d", ErrBadConfirmationTag, g.ctx.Epoch)
	}
	g.interim = interimTranscriptHash(g.ctx.ConfirmedTranscriptHash, gi.ConfirmationTag)
	return g, nil
}

// openWelcome finds our entry in a Welcome, decrypts the GroupSecrets
// with the init key, and decrypts the GroupInfo with the welcome key and
// nonce (RFC 9420 §12.4.3.1), resolving the external PSKs it names from
// psks. It returns the PSK secret too. The GroupInfo signature is not yet
// checked.
func openWelcome(w *Welcome, kp *KeyPackage, initPriv []byte, psks map[string][]byte) (*GroupSecrets, *GroupInfo, []byte, error) {
	ref := kp.Ref()
	i := slices.IndexFunc(w.Secrets, func(s EncryptedGroupSecrets) bool { return equal(s.NewMember, ref) })
	if i < 0 {
		return nil, nil, nil, fmt.Errorf("%w: no entry for key package ref %x among %d", ErrNotForUs, []byte(ref), len(w.Secrets))
	}
	egs := w.Secrets[i].EncryptedGroupSecrets
	raw, err := DecryptWithLabel(initPriv, "Welcome", w.EncryptedGroupInfo, egs.KEMOutput, egs.Ciphertext)
	if err != nil {
		return nil, nil, nil, err
	}
	gs := new(GroupSecrets)
	if err := decodeAll(raw, "GroupSecrets", gs.unmarshal); err != nil {
		return nil, nil, nil, err
	}
	var resolved []resolvedPSK
	for _, id := range gs.PSKs {
		if id.Type != PSKExternal {
			return nil, nil, nil, fmt.Errorf("%w: welcome names a resumption PSK", ErrUnsupported)
		}
		s, ok := psks[string(id.PSKID)]
		if !ok {
			return nil, nil, nil, fmt.Errorf("%w: welcome needs external PSK %x, which is not known", ErrUnsupported, id.PSKID)
		}
		resolved = append(resolved, resolvedPSK{id: id, psk: s})
	}
	psk := pskSecret(resolved)
	welcomeSecret := DeriveSecret(extract(gs.JoinerSecret, psk), "welcome")
	key, nonce := welcomeKeyNonce(welcomeSecret)
	giRaw, err := aeadOpen(key, nonce, nil, w.EncryptedGroupInfo)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w (GroupInfo)", err)
	}
	gi := new(GroupInfo)
	if err := decodeAll(giRaw, "GroupInfo", gi.unmarshal); err != nil {
		return nil, nil, nil, err
	}
	if gi.GroupContext.CipherSuite != w.CipherSuite {
		return nil, nil, nil, fmt.Errorf("%w: GroupInfo suite %d, welcome suite %d", ErrUnsupportedCipherSuite, gi.GroupContext.CipherSuite, w.CipherSuite)
	}
	if err := checkExtensionList(gi.Extensions, "GroupInfo"); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return gs, gi, psk, nil
}

// validateJoinedTree checks a tree received when joining (RFC 9420
// §12.4.3.1): its hash matches the group context, it keeps the structural
// invariants, every parent node is parent-hash valid, and every leaf node
// is valid for its position. Lifetimes of key_package leaves already in
// the tree are not checked: they were checked when the members were added,
// and RFC 9420 §7.3 lets a joiner accept leaves that have since expired.
func (g *Group) validateJoinedTree() error {
	t := g.tree
	if h := t.rootHash(); !equal(h, g.ctx.TreeHash) {
		return fmt.Errorf("%w: tree hash %x, group context says %x", ErrInvalidTree, h, g.ctx.TreeHash)
	}
	if err := t.verifyInvariants(); err != nil {
		return err
	}
	if err := t.verifyParentHashes(); err != nil {
		return err
	}
	for i := uint32(0); i < t.leafCount(); i++ {
		ln := t.leafNode(LeafIndex(i))
		if ln == nil {
			continue
		}
		if err := checkLeafInGroup(t, ln, LeafIndex(i), &g.ctx, false); err != nil {
			return fmt.Errorf("leaf %d: %w", i, err)
		}
	}
	return nil
}
