package mls

import (
	"crypto/ecdsa"
	"fmt"
)

// WireFormat says what an MLSMessage carries (RFC 9420 §6).
type WireFormat uint16

// Wire formats.
const (
	WireFormatPublicMessage  WireFormat = 1
	WireFormatPrivateMessage WireFormat = 2
	WireFormatWelcome        WireFormat = 3
	WireFormatGroupInfo      WireFormat = 4
	WireFormatKeyPackage     WireFormat = 5
)

// SenderType says who sent a framed message (RFC 9420 §6).
type SenderType uint8

// Sender types.
const (
	SenderMember            SenderType = 1
	SenderExternal          SenderType = 2
	SenderNewMemberProposal SenderType = 3
	SenderNewMemberCommit   SenderType = 4
)

// Sender identifies the sender of a framed message: a member's leaf index,
// or an index into the external_senders extension.
type Sender struct {
	Type  SenderType
	Index uint32
}

func (s *Sender) marshal(w *Writer) {
	w.Uint8(uint8(s.Type))
	if s.Type == SenderMember || s.Type == SenderExternal {
		w.Uint32(s.Index)
	}
}

func (s *Sender) unmarshal(r *Reader) {
	s.Type = SenderType(r.Uint8("Sender.sender_type"))
	switch s.Type {
	case SenderMember:
		s.Index = r.Uint32("Sender.leaf_index")
	case SenderExternal:
		s.Index = r.Uint32("Sender.sender_index")
	case SenderNewMemberProposal, SenderNewMemberCommit:
	default:
		if r.Err() == nil {
			r.failf("Sender.sender_type %d is unknown", s.Type)
		}
	}
}

// ContentType says what a FramedContent carries (RFC 9420 §6).
type ContentType uint8

// Content types.
const (
	ContentApplication ContentType = 1
	ContentProposal    ContentType = 2
	ContentCommit      ContentType = 3
)

// FramedContent is RFC 9420 §6: the authenticated body of a handshake or
// application message.
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ContentType       ContentType
	ApplicationData   []byte
	Proposal          *Proposal
	Commit            *Commit
}

func (c *FramedContent) marshal(w *Writer) {
	w.Opaque(c.GroupID)
	w.Uint64(c.Epoch)
	c.Sender.marshal(w)
	w.Opaque(c.AuthenticatedData)
	w.Uint8(uint8(c.ContentType))
	switch c.ContentType {
	case ContentApplication:
		w.Opaque(c.ApplicationData)
	case ContentProposal:
		c.Proposal.marshal(w)
	case ContentCommit:
		c.Commit.marshal(w)
	}
}

func (c *FramedContent) unmarshal(r *Reader) {
	c.GroupID = r.Opaque("FramedContent.group_id")
	c.Epoch = r.Uint64("FramedContent.epoch")
	c.Sender.unmarshal(r)
	c.AuthenticatedData = r.Opaque("FramedContent.authenticated_data")
	c.ContentType = ContentType(r.Uint8("FramedContent.content_type"))
	switch c.ContentType {
	case ContentApplication:
		c.ApplicationData = r.Opaque("FramedContent.application_data")
	case ContentProposal:
		c.Proposal = new(Proposal)
		c.Proposal.unmarshal(r)
	case ContentCommit:
		c.Commit = new(Commit)
		c.Commit.unmarshal(r)
	default:
		if r.Err() == nil {
			r.failf("FramedContent.content_type %d is unknown", c.ContentType)
		}
	}
}

// tbs is FramedContentTBS (RFC 9420 §6.1): member and new_member_commit
// senders also sign the group context.
func (c *FramedContent) tbs(wf WireFormat, ctx *GroupContext) []byte {
	return encode(func(w *Writer) {
		w.Uint16(uint16(ProtocolMLS10))
		w.Uint16(uint16(wf))
		c.marshal(w)
		if c.Sender.Type == SenderMember || c.Sender.Type == SenderNewMemberCommit {
			ctx.marshal(w)
		}
	})
}

// PublicMessage is RFC 9420 §6.2: a FramedContent in the clear with its
// signature, confirmation tag (commits) and membership tag (members).
type PublicMessage struct {
	Content         FramedContent
	Signature       []byte
	ConfirmationTag []byte
	MembershipTag   []byte
}

func (m *PublicMessage) marshalAuth(w *Writer) {
	w.Opaque(m.Signature)
	if m.Content.ContentType == ContentCommit {
		w.Opaque(m.ConfirmationTag)
	}
}

func (m *PublicMessage) marshal(w *Writer) {
	m.Content.marshal(w)
	m.marshalAuth(w)
	if m.Content.Sender.Type == SenderMember {
		w.Opaque(m.MembershipTag)
	}
}

func (m *PublicMessage) unmarshal(r *Reader) {
	m.Content.unmarshal(r)
	m.Signature = r.Opaque("FramedContentAuthData.signature")
	if m.Content.ContentType == ContentCommit {
		m.ConfirmationTag = r.Opaque("FramedContentAuthData.confirmation_tag")
	}
	if m.Content.Sender.Type == SenderMember {
		m.MembershipTag = r.Opaque("PublicMessage.membership_tag")
	}
}

// authenticatedContent is AuthenticatedContent (RFC 9420 §6.1), the input
// of proposal references.
func (m *PublicMessage) authenticatedContent() []byte {
	return encode(func(w *Writer) {
		w.Uint16(uint16(WireFormatPublicMessage))
		m.Content.marshal(w)
		m.marshalAuth(w)
	})
}

// ProposalRef returns the reference of the proposal this message carries.
func (m *PublicMessage) ProposalRef() ProposalRef {
	return MakeProposalRef(m.authenticatedContent())
}

// membershipTagInput is AuthenticatedContentTBM (RFC 9420 §6.2).
func (m *PublicMessage) membershipTagInput(ctx *GroupContext) []byte {
	return encode(func(w *Writer) {
		w.Raw(m.Content.tbs(WireFormatPublicMessage, ctx))
		m.marshalAuth(w)
	})
}

func (m *PublicMessage) sign(sig *ecdsa.PrivateKey, ctx *GroupContext) error {
	s, err := SignWithLabel(sig, "FramedContentTBS", m.Content.tbs(WireFormatPublicMessage, ctx))
	if err != nil {
		return err
	}
	m.Signature = s
	return nil
}

func (m *PublicMessage) verifySignature(pub []byte, ctx *GroupContext) error {
	return VerifyWithLabel(pub, "FramedContentTBS", m.Content.tbs(WireFormatPublicMessage, ctx), m.Signature)
}

// PrivateMessage is RFC 9420 §6.3. This package only carries it through
// parsing and serialization: DAVE never sends one, so its content is not
// decrypted.
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

func (m *PrivateMessage) marshal(w *Writer) {
	w.Opaque(m.GroupID)
	w.Uint64(m.Epoch)
	w.Uint8(uint8(m.ContentType))
	w.Opaque(m.AuthenticatedData)
	w.Opaque(m.EncryptedSenderData)
	w.Opaque(m.Ciphertext)
}

func (m *PrivateMessage) unmarshal(r *Reader) {
	m.GroupID = r.Opaque("PrivateMessage.group_id")
	m.Epoch = r.Uint64("PrivateMessage.epoch")
	m.ContentType = ContentType(r.Uint8("PrivateMessage.content_type"))
	if r.Err() == nil && (m.ContentType < ContentApplication || m.ContentType > ContentCommit) {
		r.failf("PrivateMessage.content_type %d is unknown", m.ContentType)
	}
	m.AuthenticatedData = r.Opaque("PrivateMessage.authenticated_data")
	m.EncryptedSenderData = r.Opaque("PrivateMessage.encrypted_sender_data")
	m.Ciphertext = r.Opaque("PrivateMessage.ciphertext")
}

// MLSMessage is the top-level MLS framing (RFC 9420 §6): a version, a wire
// format, and the one body that wire format names.
type MLSMessage struct {
	WireFormat WireFormat
	Public     *PublicMessage
	Private    *PrivateMessage
	Welcome    *Welcome
	GroupInfo  *GroupInfo
	KeyPackage *KeyPackage
}

func (m *MLSMessage) marshal(w *Writer) {
	w.Uint16(uint16(ProtocolMLS10))
	w.Uint16(uint16(m.WireFormat))
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.Public.marshal(w)
	case WireFormatPrivateMessage:
		m.Private.marshal(w)
	case WireFormatWelcome:
		m.Welcome.marshal(w)
	case WireFormatGroupInfo:
		m.GroupInfo.marshal(w)
	case WireFormatKeyPackage:
		m.KeyPackage.marshal(w)
	}
}

func (m *MLSMessage) unmarshal(r *Reader) {
	v := ProtocolVersion(r.Uint16("MLSMessage.version"))
	if r.Err() == nil && v != ProtocolMLS10 {
		r.Fail(fmt.Errorf("%w: MLSMessage.version %d", ErrUnsupportedVersion, v))
		return
	}
	m.WireFormat = WireFormat(r.Uint16("MLSMessage.wire_format"))
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.Public = new(PublicMessage)
		m.Public.unmarshal(r)
	case WireFormatPrivateMessage:
		m.Private = new(PrivateMessage)
		m.Private.unmarshal(r)
	case WireFormatWelcome:
		m.Welcome = new(Welcome)
		m.Welcome.unmarshal(r)
	case WireFormatGroupInfo:
		m.GroupInfo = new(GroupInfo)
		m.GroupInfo.unmarshal(r)
	case WireFormatKeyPackage:
		m.KeyPackage = new(KeyPackage)
		m.KeyPackage.unmarshal(r)
	default:
		if r.Err() == nil {
			r.failf("MLSMessage.wire_format %d is unknown", m.WireFormat)
		}
	}
}

// Marshal returns the TLS encoding of the message.
func (m *MLSMessage) Marshal() []byte { return encode(m.marshal) }

// ParseMLSMessage decodes one MLSMessage from the start of b and returns
// it with the number of bytes it used, so messages sent back to back (DAVE
// op 28) can be split. Bytes after the message are not an error.
func ParseMLSMessage(b []byte) (*MLSMessage, int, error) {
	r := NewReader(b)
	m := new(MLSMessage)
	m.unmarshal(r)
	if err := r.Err(); err != nil {
		return nil, 0, err
	}
	return m, r.Offset(), nil
}

// NewExternalProposal builds the PublicMessage an external sender (the
// DAVE voice server) sends to propose p: sender external(senderIndex),
// empty authenticated data, signed with SignWithLabel("FramedContentTBS")
// and without a membership tag (RFC 9420 §6.1, §12.1.8).
func NewExternalProposal(groupID []byte, epoch uint64, senderIndex uint32, p Proposal, sig *ecdsa.PrivateKey) (*MLSMessage, error) {
	if p.Type != ProposalAdd && p.Type != ProposalRemove {
		return nil, fmt.Errorf("%w: external proposals here are Add or Remove, not type %d", ErrInvalidArgument, p.Type)
	}
	if p.Type == ProposalAdd && p.Add == nil {
		return nil, fmt.Errorf("%w: Add proposal without a key package", ErrInvalidArgument)
	}
	pm := &PublicMessage{Content: FramedContent{
		GroupID:     append([]byte{}, groupID...),
		Epoch:       epoch,
		Sender:      Sender{Type: SenderExternal, Index: senderIndex},
		ContentType: ContentProposal,
		Proposal:    &p,
	}}
	if err := pm.sign(sig, nil); err != nil {
		return nil, err
	}
	return &MLSMessage{WireFormat: WireFormatPublicMessage, Public: pm}, nil
}
