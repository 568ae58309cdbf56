package mls

// GroupContext is the shared summary of the group's state that every key
// derivation is bound to (RFC 9420 §8.1).
type GroupContext struct {
	CipherSuite             CipherSuite
	GroupID                 []byte
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              []Extension
}

func (c *GroupContext) marshal(w *Writer) {
	w.Uint16(uint16(ProtocolMLS10))
	w.Uint16(uint16(c.CipherSuite))
	w.Opaque(c.GroupID)
	w.Uint64(c.Epoch)
	w.Opaque(c.TreeHash)
	w.Opaque(c.ConfirmedTranscriptHash)
	marshalExtensions(w, c.Extensions)
}

func (c *GroupContext) unmarshal(r *Reader) {
	if v := ProtocolVersion(r.Uint16("GroupContext.version")); r.Err() == nil && v != ProtocolMLS10 {
		r.failf("GroupContext.version %d is not mls10", v)
	}
	c.CipherSuite = CipherSuite(r.Uint16("GroupContext.cipher_suite"))
	c.GroupID = r.Opaque("GroupContext.group_id")
	c.Epoch = r.Uint64("GroupContext.epoch")
	c.TreeHash = r.Opaque("GroupContext.tree_hash")
	c.ConfirmedTranscriptHash = r.Opaque("GroupContext.confirmed_transcript_hash")
	c.Extensions = unmarshalExtensions(r, "GroupContext.extensions")
}

// Marshal returns the TLS encoding of the group context.
func (c *GroupContext) Marshal() []byte { return encode(c.marshal) }

// HPKECiphertext is an EncryptWithLabel output (RFC 9420 §7.6).
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

func (c *HPKECiphertext) marshal(w *Writer) {
	w.Opaque(c.KEMOutput)
	w.Opaque(c.Ciphertext)
}

func (c *HPKECiphertext) unmarshal(r *Reader) {
	c.KEMOutput = r.Opaque("HPKECiphertext.kem_output")
	c.Ciphertext = r.Opaque("HPKECiphertext.ciphertext")
}

// UpdatePathNode is one node of an UpdatePath (RFC 9420 §7.6).
type UpdatePathNode struct {
	EncryptionKey       []byte
	EncryptedPathSecret []HPKECiphertext
}

// UpdatePath carries a committer's new leaf and path keys (§7.6).
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

func (u *UpdatePath) marshal(w *Writer) {
	u.LeafNode.marshal(w)
	w.Vector(func(w *Writer) {
		for i := range u.Nodes {
			w.Opaque(u.Nodes[i].EncryptionKey)
			w.Vector(func(w *Writer) {
				for j := range u.Nodes[i].EncryptedPathSecret {
					u.Nodes[i].EncryptedPathSecret[j].marshal(w)
				}
			})
		}
	})
}

func (u *UpdatePath) unmarshal(r *Reader) {
	u.LeafNode.unmarshal(r)
	r.Vector("UpdatePath.nodes", func(r *Reader) {
		for r.Len() > 0 && r.Err() == nil {
			var n UpdatePathNode
			n.EncryptionKey = r.Opaque("UpdatePathNode.encryption_key")
			r.Vector("UpdatePathNode.encrypted_path_secret", func(r *Reader) {
				for r.Len() > 0 && r.Err() == nil {
					var c HPKECiphertext
					c.unmarshal(r)
					n.EncryptedPathSecret = append(n.EncryptedPathSecret, c)
				}
			})
			u.Nodes = append(u.Nodes, n)
		}
	})
}

// Commit is RFC 9420 §12.4: the proposals it applies and an optional path.
type Commit struct {
	Proposals []ProposalOrRef
	Path      *UpdatePath
}

func (c *Commit) marshal(w *Writer) {
	w.Vector(func(w *Writer) {
		for i := range c.Proposals {
			c.Proposals[i].marshal(w)
		}
	})
	w.Optional(c.Path != nil, func(w *Writer) { c.Path.marshal(w) })
}

func (c *Commit) unmarshal(r *Reader) {
	r.Vector("Commit.proposals", func(r *Reader) {
		for r.Len() > 0 && r.Err() == nil {
			var p ProposalOrRef
			p.unmarshal(r)
			c.Proposals = append(c.Proposals, p)
		}
	})
	r.Optional("Commit.path", func(r *Reader) {
		c.Path = new(UpdatePath)
		c.Path.unmarshal(r)
	})
}

// GroupInfo describes a group to joiners (RFC 9420 §12.4.3).
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      []Extension
	ConfirmationTag []byte
	Signer          LeafIndex
	Signature       []byte
}

func (g *GroupInfo) marshalTBS(w *Writer) {
	g.GroupContext.marshal(w)
	marshalExtensions(w, g.Extensions)
	w.Opaque(g.ConfirmationTag)
	w.Uint32(uint32(g.Signer))
}

func (g *GroupInfo) marshal(w *Writer) {
	g.marshalTBS(w)
	w.Opaque(g.Signature)
}

func (g *GroupInfo) unmarshal(r *Reader) {
	g.GroupContext.unmarshal(r)
	g.Extensions = unmarshalExtensions(r, "GroupInfo.extensions")
	g.ConfirmationTag = r.Opaque("GroupInfo.confirmation_tag")
	g.Signer = LeafIndex(r.Uint32("GroupInfo.signer"))
	g.Signature = r.Opaque("GroupInfo.signature")
}

// GroupSecrets is what a Welcome encrypts to each joiner (§12.4.3.1).
type GroupSecrets struct {
	JoinerSecret []byte
	PathSecret   []byte // nil when absent
	PSKs         []PreSharedKeyID
}

func (g *GroupSecrets) marshal(w *Writer) {
	w.Opaque(g.JoinerSecret)
	w.Optional(g.PathSecret != nil, func(w *Writer) { w.Opaque(g.PathSecret) })
	w.Vector(func(w *Writer) {
		for i := range g.PSKs {
			g.PSKs[i].marshal(w)
		}
	})
}

func (g *GroupSecrets) unmarshal(r *Reader) {
	g.JoinerSecret = r.Opaque("GroupSecrets.joiner_secret")
	r.Optional("GroupSecrets.path_secret", func(r *Reader) {
		g.PathSecret = r.Opaque("PathSecret.path_secret")
		if g.PathSecret == nil {
			g.PathSecret = []byte{}
		}
	})
	r.Vector("GroupSecrets.psks", func(r *Reader) {
		for r.Len() > 0 && r.Err() == nil {
			var p PreSharedKeyID
			p.unmarshal(r)
			g.PSKs = append(g.PSKs, p)
		}
	})
}

// EncryptedGroupSecrets is one joiner's entry in a Welcome (§12.4.3.1).
type EncryptedGroupSecrets struct {
	NewMember             KeyPackageRef
	EncryptedGroupSecrets HPKECiphertext
}

// Welcome invites new members (RFC 9420 §12.4.3.1).
type Welcome struct {
	CipherSuite        CipherSuite
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

func (wl *Welcome) marshal(w *Writer) {
	w.Uint16(uint16(wl.CipherSuite))
	w.Vector(func(w *Writer) {
		for i := range wl.Secrets {
			w.Opaque(wl.Secrets[i].NewMember)
			wl.Secrets[i].EncryptedGroupSecrets.marshal(w)
		}
	})
	w.Opaque(wl.EncryptedGroupInfo)
}

func (wl *Welcome) unmarshal(r *Reader) {
	wl.CipherSuite = CipherSuite(r.Uint16("Welcome.cipher_suite"))
	r.Vector("Welcome.secrets", func(r *Reader) {
		for r.Len() > 0 && r.Err() == nil {
			var s EncryptedGroupSecrets
			s.NewMember = r.Opaque("EncryptedGroupSecrets.new_member")
			s.EncryptedGroupSecrets.unmarshal(r)
			wl.Secrets = append(wl.Secrets, s)
		}
	})
	wl.EncryptedGroupInfo = r.Opaque("Welcome.encrypted_group_info")
}

// Marshal returns the TLS encoding of the bare Welcome (as DAVE sends it
// after a commit in op 28 and in op 30).
func (wl *Welcome) Marshal() []byte { return encode(wl.marshal) }

// ParseWelcome decodes a bare Welcome from the start of b and returns the
// number of bytes it used.
func ParseWelcome(b []byte) (*Welcome, int, error) {
	r := NewReader(b)
	wl := new(Welcome)
	wl.unmarshal(r)
	if err := r.Err(); err != nil {
		return nil, 0, err
	}
	return wl, r.Offset(), nil
}
