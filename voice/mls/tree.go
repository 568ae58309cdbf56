package mls

import (
	"fmt"
	"slices"
)

// ParentNode is an interior node of the ratchet tree (RFC 9420 §7.1).
type ParentNode struct {
	EncryptionKey  []byte
	ParentHash     []byte
	UnmergedLeaves []LeafIndex
}

func (p *ParentNode) marshal(w *Writer) {
	w.Opaque(p.EncryptionKey)
	w.Opaque(p.ParentHash)
	w.Vector(func(w *Writer) {
		for _, l := range p.UnmergedLeaves {
			w.Uint32(uint32(l))
		}
	})
}

func (p *ParentNode) unmarshal(r *Reader) {
	p.EncryptionKey = r.Opaque("ParentNode.encryption_key")
	p.ParentHash = r.Opaque("ParentNode.parent_hash")
	r.Vector("ParentNode.unmerged_leaves", func(r *Reader) {
		for r.Len() > 0 && r.Err() == nil {
			p.UnmergedLeaves = append(p.UnmergedLeaves, LeafIndex(r.Uint32("ParentNode.unmerged_leaves")))
		}
	})
}

func (p *ParentNode) clone() *ParentNode {
	c := *p
	c.UnmergedLeaves = slices.Clone(p.UnmergedLeaves)
	return &c
}

// node is one slot of the array-represented tree: a leaf, a parent, or
// blank (nil *node).
type node struct {
	leaf   *LeafNode
	parent *ParentNode
}

func (n *node) encryptionKey() []byte {
	if n.leaf != nil {
		return n.leaf.EncryptionKey
	}
	return n.parent.EncryptionKey
}

// ratchetTree is the array representation of RFC 9420 §4.1 / §7.1: nodes
// has 2*leaves-1 entries with leaves a power of two; nil entries are blank.
type ratchetTree struct {
	nodes []*node
}

func (t *ratchetTree) leafCount() uint32 { return uint32(len(t.nodes)+1) / 2 }

func (t *ratchetTree) leafNode(l LeafIndex) *LeafNode {
	i := int(l.node())
	if i >= len(t.nodes) || t.nodes[i] == nil {
		return nil
	}
	return t.nodes[i].leaf
}

func (t *ratchetTree) parentNode(n nodeIndex) *ParentNode {
	if int(n) >= len(t.nodes) || t.nodes[n] == nil {
		return nil
	}
	return t.nodes[n].parent
}

func (t *ratchetTree) clone() *ratchetTree {
	c := &ratchetTree{nodes: make([]*node, len(t.nodes))}
	for i, n := range t.nodes {
		switch {
		case n == nil:
		case n.leaf != nil:
			c.nodes[i] = &node{leaf: n.leaf.clone()}
		default:
			c.nodes[i] = &node{parent: n.parent.clone()}
		}
	}
	return c
}

// marshal writes the ratchet_tree extension body: optional<Node>
// ratchet_tree<V> truncated after the last non-blank node (§12.4.3.3).
func (t *ratchetTree) marshal(w *Writer) {
	last := len(t.nodes) - 1
	for last >= 0 && t.nodes[last] == nil {
		last--
	}
	w.Vector(func(w *Writer) {
		for _, n := range t.nodes[:last+1] {
			w.Optional(n != nil, func(w *Writer) {
				if n.leaf != nil {
					w.Uint8(1)
					n.leaf.marshal(w)
				} else {
					w.Uint8(2)
					n.parent.marshal(w)
				}
			})
		}
	})
}

// Marshal returns the encoding of the tree as the ratchet_tree extension
// carries it.
func (t *ratchetTree) Marshal() []byte { return encode(t.marshal) }

func (t *ratchetTree) unmarshal(r *Reader) {
	var nodes []*node
	r.Vector("ratchet_tree", func(r *Reader) {
		for r.Len() > 0 && r.Err() == nil {
			i := len(nodes)
			var n *node
			r.Optional("ratchet_tree node", func(r *Reader) {
				typ := r.Uint8("Node.node_type")
				switch {
				case r.Err() != nil:
				case typ == 1 && i%2 == 0:
					n = &node{leaf: new(LeafNode)}
					n.leaf.unmarshal(r)
				case typ == 2 && i%2 == 1:
					n = &node{parent: new(ParentNode)}
					n.parent.unmarshal(r)
				default:
					r.failf("ratchet_tree node %d: node_type %d at a %s position", i, typ, map[bool]string{true: "leaf", false: "parent"}[i%2 == 0])
				}
			})
			nodes = append(nodes, n)
		}
	})
	if r.Err() != nil {
		return
	}
	if len(nodes) == 0 || nodes[len(nodes)-1] == nil {
		r.failf("ratchet_tree: empty or ends with a blank node")
		return
	}
	leaves := uint32(1)
	for nodeWidth(leaves) < uint32(len(nodes)) {
		leaves *= 2
	}
	t.nodes = make([]*node, nodeWidth(leaves))
	copy(t.nodes, nodes)
}

// resolution is RFC 9420 §4.1.1: the non-blank nodes covering the subtree
// of n, with each parent's unmerged leaves.
func (t *ratchetTree) resolution(n nodeIndex) []nodeIndex {
	return t.appendResolution(nil, n)
}

func (t *ratchetTree) appendResolution(out []nodeIndex, n nodeIndex) []nodeIndex {
	switch nd := t.nodes[n]; {
	case nd != nil && nd.leaf != nil:
		return append(out, n)
	case nd != nil:
		out = append(out, n)
		for _, l := range nd.parent.UnmergedLeaves {
			out = append(out, l.node())
		}
		return out
	case n.isLeaf():
		return out
	default:
		out = t.appendResolution(out, left(n))
		return t.appendResolution(out, right(n))
	}
}

// treeHash is RFC 9420 §7.8 for the subtree at n. Leaves in exclude are
// treated as blank and dropped from unmerged_leaves, which gives the
// original_sibling_tree_hash of §7.9.
func (t *ratchetTree) treeHash(n nodeIndex, exclude []LeafIndex) []byte {
	var w Writer
	if n.isLeaf() {
		w.Uint8(1)
		w.Uint32(uint32(n.leaf()))
		nd := t.nodes[n]
		present := nd != nil && !slices.Contains(exclude, n.leaf())
		w.Optional(present, func(w *Writer) { nd.leaf.marshal(w) })
		return hashBytes(w.buf)
	}
	l := t.treeHash(left(n), exclude)
	r := t.treeHash(right(n), exclude)
	w.Uint8(2)
	nd := t.nodes[n]
	w.Optional(nd != nil, func(w *Writer) {
		p := nd.parent
		if len(exclude) > 0 {
			p = p.clone()
			p.UnmergedLeaves = slices.DeleteFunc(p.UnmergedLeaves, func(l LeafIndex) bool { return slices.Contains(exclude, l) })
		}
		p.marshal(w)
	})
	w.Opaque(l)
	w.Opaque(r)
	return hashBytes(w.buf)
}

// rootHash is the tree hash of the whole tree.
func (t *ratchetTree) rootHash() []byte { return t.treeHash(root(t.leafCount()), nil) }

// parentHash is RFC 9420 §7.9: the hash of parent p as seen from its child
// on the other side of copathChild.
func (t *ratchetTree) parentHash(p nodeIndex, copathChild nodeIndex) []byte {
	pn := t.nodes[p].parent
	return hashBytes(encode(func(w *Writer) {
		w.Opaque(pn.EncryptionKey)
		w.Opaque(pn.ParentHash)
		w.Opaque(t.treeHash(copathChild, pn.UnmergedLeaves))
	}))
}

func (t *ratchetTree) nodeParentHash(n nodeIndex) []byte {
	nd := t.nodes[n]
	if nd.leaf != nil {
		if nd.leaf.Source != SourceCommit {
			return nil
		}
		return nd.leaf.ParentHash
	}
	return nd.parent.ParentHash
}

// verifyParentHashes checks RFC 9420 §7.9.2: every non-blank parent node P
// is parent-hash valid, i.e. for one of its children C (with S the other)
// some node D in C's resolution, not among P's unmerged leaves, carries
// parent_hash equal to the parent hash of P with co-path child S.
func (t *ratchetTree) verifyParentHashes() error {
	for i := range t.nodes {
		n := nodeIndex(i)
		if n.isLeaf() || t.nodes[n] == nil {
			continue
		}
		if !t.parentHashValid(n) {
			return fmt.Errorf("%w: parent node %d is not parent-hash valid (RFC 9420 §7.9.2)", ErrInvalidTree, n)
		}
	}
	return nil
}

func (t *ratchetTree) parentHashValid(p nodeIndex) bool {
	unmerged := t.nodes[p].parent.UnmergedLeaves
	for _, side := range [2][2]nodeIndex{{left(p), right(p)}, {right(p), left(p)}} {
		c, s := side[0], side[1]
		want := t.parentHash(p, s)
		for _, d := range t.resolution(c) {
			if d.isLeaf() && slices.Contains(unmerged, d.leaf()) {
				continue
			}
			if equal(t.nodeParentHash(d), want) {
				return true
			}
		}
	}
	return false
}

// verifyInvariants checks the structural rules a received tree must obey
// (RFC 9420 §7.9.2, §12.4.3.1): unmerged leaves are non-blank leaves below
// their parent and listed by every parent in between, encryption and
// signature keys are unique.
func (t *ratchetTree) verifyInvariants() error {
	n := t.leafCount()
	for i := range t.nodes {
		p := t.parentNode(nodeIndex(i))
		if p == nil {
			continue
		}
		for _, l := range p.UnmergedLeaves {
			ln := l.node()
			if uint32(l) >= n || !isAncestor(nodeIndex(i), ln) || t.leafNode(l) == nil {
				return fmt.Errorf("%w: node %d lists unmerged leaf %d that is blank or not below it", ErrInvalidTree, i, l)
			}
			for x := parent(ln); x != nodeIndex(i); x = parent(x) {
				if q := t.parentNode(x); q != nil && !slices.Contains(q.UnmergedLeaves, l) {
					return fmt.Errorf("%w: unmerged leaf %d of node %d missing from node %d", ErrInvalidTree, l, i, x)
				}
			}
		}
	}
	encKeys := map[string]bool{}
	sigKeys := map[string]bool{}
	for i, nd := range t.nodes {
		if nd == nil {
			continue
		}
		k := string(nd.encryptionKey())
		if encKeys[k] {
			return fmt.Errorf("%w: node %d repeats an encryption key", ErrInvalidTree, i)
		}
		encKeys[k] = true
		if nd.leaf != nil {
			s := string(nd.leaf.SignatureKey)
			if sigKeys[s] {
				return fmt.Errorf("%w: leaf %d repeats a signature key", ErrInvalidTree, i/2)
			}
			sigKeys[s] = true
		}
	}
	return nil
}

// blankPath blanks leaf l's direct path (RFC 9420 §12.1.2, §12.1.3).
func (t *ratchetTree) blankPath(l LeafIndex) {
	for _, p := range directPath(l.node(), t.leafCount()) {
		t.nodes[p] = nil
	}
}

// updateLeaf replaces leaf l and blanks its direct path (Update, §12.1.2).
func (t *ratchetTree) updateLeaf(l LeafIndex, ln *LeafNode) {
	t.nodes[l.node()] = &node{leaf: ln}
	t.blankPath(l)
}

// removeLeaf blanks leaf l and its direct path, then truncates the tree
// while its right half is all blank (Remove, §12.1.3; §7.7).
func (t *ratchetTree) removeLeaf(l LeafIndex) {
	t.nodes[l.node()] = nil
	t.blankPath(l)
	for len(t.nodes) > 1 {
		half := len(t.nodes) / 2
		if slices.ContainsFunc(t.nodes[half:], func(n *node) bool { return n != nil }) {
			break
		}
		t.nodes = t.nodes[:half]
	}
}

// addLeaf puts ln in the leftmost blank leaf, extending the tree when full,
// and records it as unmerged on its non-blank ancestors (Add, §12.1.1).
func (t *ratchetTree) addLeaf(ln *LeafNode) LeafIndex {
	n := t.leafCount()
	l := LeafIndex(n)
	for i := uint32(0); i < n; i++ {
		if t.nodes[2*i] == nil {
			l = LeafIndex(i)
			break
		}
	}
	if uint32(l) == n {
		grown := make([]*node, nodeWidth(2*n))
		copy(grown, t.nodes)
		t.nodes = grown
	}
	t.nodes[l.node()] = &node{leaf: ln}
	for _, p := range directPath(l.node(), t.leafCount()) {
		if pn := t.parentNode(p); pn != nil {
			pn.UnmergedLeaves = append(pn.UnmergedLeaves, l)
		}
	}
	return l
}

// findLeaf returns the leaf whose encryption key is encKey.
func (t *ratchetTree) findLeaf(encKey []byte) (LeafIndex, bool) {
	for i := uint32(0); i < t.leafCount(); i++ {
		if ln := t.leafNode(LeafIndex(i)); ln != nil && equal(ln.EncryptionKey, encKey) {
			return LeafIndex(i), true
		}
	}
	return 0, false
}

// filteredDirectPath is RFC 9420 §4.1.2: the direct path of l without the
// nodes whose co-path child has an empty resolution. It returns the kept
// nodes and their co-path children.
func (t *ratchetTree) filteredDirectPath(l LeafIndex) (path, copathNodes []nodeIndex) {
	n := t.leafCount()
	dp := directPath(l.node(), n)
	cp := copath(l.node(), n)
	for i, p := range dp {
		if len(t.resolution(cp[i])) == 0 {
			continue
		}
		path = append(path, p)
		copathNodes = append(copathNodes, cp[i])
	}
	return path, copathNodes
}
