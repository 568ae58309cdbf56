package mls

// Tree math of RFC 9420 Appendix C over the array representation of a
// left-balanced binary tree: leaves at even node indices, parents at odd
// ones. MLS 1.0 trees always have a power-of-two number of leaves (§7.1).

// nodeIndex is an index into the array representation of the tree.
type nodeIndex uint32

// LeafIndex is a member's position among the leaves of the tree.
type LeafIndex uint32

func (l LeafIndex) node() nodeIndex { return nodeIndex(2 * l) }

func (n nodeIndex) leaf() LeafIndex { return LeafIndex(n / 2) }

func (n nodeIndex) isLeaf() bool { return n%2 == 0 }

// log2 is floor(log2(x)) with log2(0) = 0.
func log2(x uint32) uint32 {
	k := uint32(0)
	for x>>k > 1 {
		k++
	}
	return k
}

// level is the number of trailing one bits: 0 for leaves.
func level(x nodeIndex) uint32 {
	if x&1 == 0 {
		return 0
	}
	k := uint32(0)
	for (x>>k)&1 == 1 {
		k++
	}
	return k
}

// nodeWidth is the number of nodes of a tree with n leaves.
func nodeWidth(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return 2*(n-1) + 1
}

// root is the root node of a tree with n leaves.
func root(n uint32) nodeIndex {
	w := nodeWidth(n)
	return nodeIndex(uint32(1)<<log2(w) - 1)
}

// left is the left child of the parent node x.
func left(x nodeIndex) nodeIndex {
	k := level(x)
	if k == 0 {
		return x
	}
	return x ^ (1 << (k - 1))
}

// right is the right child of the parent node x.
func right(x nodeIndex) nodeIndex {
	k := level(x)
	if k == 0 {
		return x
	}
	return x ^ (3 << (k - 1))
}

// parent is the parent of x (x must not be the root).
func parent(x nodeIndex) nodeIndex {
	k := level(x)
	b := (x >> (k + 1)) & 1
	return (x | (1 << k)) ^ (b << (k + 1))
}

// sibling is the other child of x's parent.
func sibling(x nodeIndex) nodeIndex {
	p := parent(x)
	if x < p {
		return right(p)
	}
	return left(p)
}

// directPath lists the parents of x up to and including the root.
func directPath(x nodeIndex, n uint32) []nodeIndex {
	r := root(n)
	var d []nodeIndex
	for x != r {
		x = parent(x)
		d = append(d, x)
	}
	return d
}

// copath lists the siblings of x and of its direct path except the root.
func copath(x nodeIndex, n uint32) []nodeIndex {
	r := root(n)
	var c []nodeIndex
	for x != r {
		c = append(c, sibling(x))
		x = parent(x)
	}
	return c
}

// isAncestor reports whether a is an ancestor of (or equal to) d.
func isAncestor(a, d nodeIndex) bool {
	k := level(a)
	lo := a - (1<<k - 1)
	hi := a + (1<<k - 1)
	return d >= lo && d <= hi
}

// commonAncestor is the lowest node whose subtree holds both x and y.
func commonAncestor(x, y nodeIndex) nodeIndex {
	lx, ly := level(x)+1, level(y)+1
	if lx <= ly && x>>ly == y>>ly {
		return y
	}
	if ly <= lx && x>>lx == y>>lx {
		return x
	}
	xn, yn := x, y
	k := uint32(0)
	for xn != yn {
		xn >>= 1
		yn >>= 1
		k++
	}
	return (xn << k) + (1<<(k-1) - 1)
}
