package mls

import (
	"crypto/ecdsa"
	"fmt"
	"slices"
)

// TreeKEM (RFC 9420 §7.4-7.6): generating an UpdatePath, merging its
// public keys into the tree with parent hashes, encrypting path secrets to
// co-path resolutions, and decrypting them.

// privateKeys holds the HPKE key pairs a member knows, by node.
type privateKeys map[nodeIndex]hpkeKeyPair

func (k privateKeys) clone() privateKeys {
	c := make(privateKeys, len(k))
	for n, kp := range k {
		c[n] = kp
	}
	return c
}

// prune drops keys whose node is blank or now holds another public key.
func (k privateKeys) prune(t *ratchetTree) {
	for n, kp := range k {
		if int(n) >= len(t.nodes) || t.nodes[n] == nil || !equal(t.nodes[n].encryptionKey(), kp.pub) {
			delete(k, n)
		}
	}
}

// mergePathKeys writes the public keys of an UpdatePath from sender into
// the filtered direct path (blanking the rest of the direct path), fills
// parent hashes top-down (§7.9), and returns the parent hash the sender's
// new leaf must carry.
func (t *ratchetTree) mergePathKeys(sender LeafIndex, keys [][]byte) ([]byte, error) {
	fdp, cp := t.filteredDirectPath(sender)
	if len(keys) != len(fdp) {
		return nil, fmt.Errorf("%w: update path has %d nodes, filtered direct path of leaf %d has %d", ErrInvalidCommit, len(keys), sender, len(fdp))
	}
	t.blankPath(sender)
	for i, n := range fdp {
		t.nodes[n] = &node{parent: &ParentNode{EncryptionKey: keys[i]}}
	}
	ph := []byte{}
	for i := len(fdp) - 1; i >= 0; i-- {
		t.nodes[fdp[i]].parent.ParentHash = ph
		ph = t.parentHash(fdp[i], cp[i])
	}
	return ph, nil
}

// pathGeneration is an UpdatePath being built by a committer.
type pathGeneration struct {
	sender       LeafIndex
	leaf         *LeafNode
	nodes        []nodeIndex // filtered direct path
	pathSecrets  [][]byte    // one per node of nodes
	keys         privateKeys // new leaf and path keys
	commitSecret []byte
}

// generatePath draws a fresh leaf secret and derives the path of
// RFC 9420 §7.4 for sender, merges the public keys into t, and signs the
// new leaf node (source commit, bound to groupID and the leaf index).
func (t *ratchetTree) generatePath(sender LeafIndex, current *LeafNode, sig *ecdsa.PrivateKey, groupID []byte) (*pathGeneration, error) {
	leafSecret, err := randomBytes(hashSize)
	if err != nil {
		return nil, err
	}
	leafKey, err := deriveKeyPair(DeriveSecret(leafSecret, "node"))
	if err != nil {
		return nil, err
	}
	fdp, _ := t.filteredDirectPath(sender)
	g := &pathGeneration{sender: sender, nodes: fdp, keys: privateKeys{sender.node(): leafKey}}
	ps := DeriveSecret(leafSecret, "path")
	pubs := make([][]byte, len(fdp))
	for i, n := range fdp {
		kp, err := deriveKeyPair(DeriveSecret(ps, "node"))
		if err != nil {
			return nil, err
		}
		g.keys[n] = kp
		g.pathSecrets = append(g.pathSecrets, ps)
		pubs[i] = kp.pub
		ps = DeriveSecret(ps, "path")
	}
	g.commitSecret = ps
	ph, err := t.mergePathKeys(sender, pubs)
	if err != nil {
		return nil, err
	}
	leaf := current.clone()
	leaf.EncryptionKey = leafKey.pub
	leaf.Source = SourceCommit
	leaf.Lifetime = Lifetime{}
	leaf.ParentHash = ph
	if err := leaf.sign(sig, groupID, sender); err != nil {
		return nil, err
	}
	t.nodes[sender.node()] = &node{leaf: leaf}
	g.leaf = leaf
	return g, nil
}

// encrypt builds the UpdatePath, encrypting each path secret to the
// resolution of the matching co-path child minus the excluded (newly
// added) leaves, with the provisional group context as context (§7.6).
func (g *pathGeneration) encrypt(t *ratchetTree, groupContext []byte, exclude []LeafIndex) (*UpdatePath, error) {
	_, cp := t.filteredDirectPath(g.sender)
	up := &UpdatePath{LeafNode: *g.leaf}
	for i, n := range g.nodes {
		upn := UpdatePathNode{EncryptionKey: t.nodes[n].parent.EncryptionKey}
		for _, r := range resolutionExcluding(t, cp[i], exclude) {
			kem, ct, err := EncryptWithLabel(t.nodes[r].encryptionKey(), "UpdatePathNode", groupContext, g.pathSecrets[i])
			if err != nil {
				return nil, err
			}
			upn.EncryptedPathSecret = append(upn.EncryptedPathSecret, HPKECiphertext{KEMOutput: kem, Ciphertext: ct})
		}
		up.Nodes = append(up.Nodes, upn)
	}
	return up, nil
}

// pathSecretFor returns the path secret a new member at leaf l needs: the
// one of the lowest filtered-direct-path node above l (§12.4.3.1).
func (g *pathGeneration) pathSecretFor(l LeafIndex) []byte {
	if g == nil {
		return nil
	}
	for i, n := range g.nodes {
		if isAncestor(n, l.node()) {
			return g.pathSecrets[i]
		}
	}
	return nil
}

func resolutionExcluding(t *ratchetTree, n nodeIndex, exclude []LeafIndex) []nodeIndex {
	res := t.resolution(n)
	return slices.DeleteFunc(res, func(x nodeIndex) bool { return x.isLeaf() && slices.Contains(exclude, x.leaf()) })
}

// decryptPath is the receiving side of §7.5/§12.4.2: after the sender's
// path was merged into t, find the co-path node above own, decrypt its
// path secret with a key we hold, derive the secrets up to the root,
// check the derived public keys against the tree, and return the new keys
// the commit secret, and the path secret it decrypted.
func (t *ratchetTree) decryptPath(own LeafIndex, keys privateKeys, sender LeafIndex, up *UpdatePath, groupContext []byte, exclude []LeafIndex) (newKeys privateKeys, commitSecret, pathSecret []byte, err error) {
	fdp, cp := t.filteredDirectPath(sender)
	i := slices.IndexFunc(cp, func(c nodeIndex) bool { return isAncestor(c, own.node()) })
	if i < 0 {
		return nil, nil, nil, fmt.Errorf("%w: leaf %d is not below the filtered direct path of sender %d", ErrInvalidCommit, own, sender)
	}
	res := resolutionExcluding(t, cp[i], exclude)
	cts := up.Nodes[i].EncryptedPathSecret
	if len(cts) != len(res) {
		return nil, nil, nil, fmt.Errorf("%w: update path node %d has %d ciphertexts for a resolution of %d", ErrInvalidCommit, i, len(cts), len(res))
	}
	j := slices.IndexFunc(res, func(n nodeIndex) bool { _, ok := keys[n]; return ok })
	if j < 0 {
		return nil, nil, nil, fmt.Errorf("%w: no private key for any node in the resolution of node %d", ErrDecrypt, cp[i])
	}
	ps, err := decryptWithKey(keys[res[j]].priv, "UpdatePathNode", groupContext, cts[j].KEMOutput, cts[j].Ciphertext)
	if err != nil {
		return nil, nil, nil, err
	}
	newKeys, commitSecret, err = t.implantPathSecret(fdp[i:], ps)
	if err != nil {
		return nil, nil, nil, err
	}
	return newKeys, commitSecret, ps, nil
}

// implantPathSecret derives the keys of nodes from ps onward (§7.4) and
// checks each derived public key against the tree. It returns the keys and
// the secret one step past the last node (the commit secret at the root).
func (t *ratchetTree) implantPathSecret(nodes []nodeIndex, ps []byte) (privateKeys, []byte, error) {
	keys := privateKeys{}
	for _, n := range nodes {
		kp, err := deriveKeyPair(DeriveSecret(ps, "node"))
		if err != nil {
			return nil, nil, err
		}
		if t.nodes[n] == nil || !equal(t.nodes[n].encryptionKey(), kp.pub) {
			return nil, nil, fmt.Errorf("%w: path secret for node %d derives a public key the tree does not hold", ErrInvalidCommit, n)
		}
		keys[n] = kp
		ps = DeriveSecret(ps, "path")
	}
	return keys, ps, nil
}

// filteredPathFrom returns the nodes of sender's filtered direct path from
// start (inclusive) upward.
func (t *ratchetTree) filteredPathFrom(sender LeafIndex, start nodeIndex) []nodeIndex {
	fdp, _ := t.filteredDirectPath(sender)
	i := slices.Index(fdp, start)
	if i < 0 {
		return nil
	}
	return fdp[i:]
}
