package mls

// PSKType names where a pre-shared key comes from (RFC 9420 §8.4).
type PSKType uint8

// PSK types.
const (
	PSKExternal   PSKType = 1
	PSKResumption PSKType = 2
)

// PreSharedKeyID names a PSK (RFC 9420 §8.4). This package parses PSK ids
// so that messages carrying them round-trip, but does not inject PSKs.
type PreSharedKeyID struct {
	Type       PSKType
	PSKID      []byte // external
	Usage      uint8  // resumption
	PSKGroupID []byte // resumption
	PSKEpoch   uint64 // resumption
	PSKNonce   []byte
}

func (p *PreSharedKeyID) marshal(w *Writer) {
	w.Uint8(uint8(p.Type))
	switch p.Type {
	case PSKExternal:
		w.Opaque(p.PSKID)
	case PSKResumption:
		w.Uint8(p.Usage)
		w.Opaque(p.PSKGroupID)
		w.Uint64(p.PSKEpoch)
	}
	w.Opaque(p.PSKNonce)
}

func (p *PreSharedKeyID) unmarshal(r *Reader) {
	p.Type = PSKType(r.Uint8("PreSharedKeyID.psktype"))
	switch p.Type {
	case PSKExternal:
		p.PSKID = r.Opaque("PreSharedKeyID.psk_id")
	case PSKResumption:
		p.Usage = r.Uint8("PreSharedKeyID.usage")
		p.PSKGroupID = r.Opaque("PreSharedKeyID.psk_group_id")
		p.PSKEpoch = r.Uint64("PreSharedKeyID.psk_epoch")
	default:
		if r.Err() == nil {
			r.failf("PreSharedKeyID.psktype %d is not 1 or 2", p.Type)
		}
	}
	p.PSKNonce = r.Opaque("PreSharedKeyID.psk_nonce")
}

// Proposal is one MLS proposal (RFC 9420 §12.1). Exactly the field for
// Type is set. Add and Remove are what DAVE uses; Update and
// GroupContextExtensions are applied when members commit them; PSK,
// ReInit and ExternalInit parse but are rejected when committed.
type Proposal struct {
	Type ProposalType

	Add                    *KeyPackage // add: the new member's key package
	Update                 *LeafNode   // update: the sender's new leaf
	Remove                 LeafIndex   // remove: the leaf to remove
	PSK                    *PreSharedKeyID
	ReInit                 *ReInit
	ExternalInitKEMOutput  []byte
	GroupContextExtensions []Extension
}

// ReInit is the body of a ReInit proposal (RFC 9420 §12.1.5).
type ReInit struct {
	GroupID     []byte
	Version     ProtocolVersion
	CipherSuite CipherSuite
	Extensions  []Extension
}

// AddProposal returns an Add of kp.
func AddProposal(kp *KeyPackage) Proposal { return Proposal{Type: ProposalAdd, Add: kp} }

// RemoveProposal returns a Remove of leaf.
func RemoveProposal(leaf LeafIndex) Proposal { return Proposal{Type: ProposalRemove, Remove: leaf} }

func (p *Proposal) marshal(w *Writer) {
	w.Uint16(uint16(p.Type))
	p.marshalBody(w)
}

func (p *Proposal) marshalBody(w *Writer) {
	switch p.Type {
	case ProposalAdd:
		p.Add.marshal(w)
	case ProposalUpdate:
		p.Update.marshal(w)
	case ProposalRemove:
		w.Uint32(uint32(p.Remove))
	case ProposalPSK:
		p.PSK.marshal(w)
	case ProposalReInit:
		w.Opaque(p.ReInit.GroupID)
		w.Uint16(uint16(p.ReInit.Version))
		w.Uint16(uint16(p.ReInit.CipherSuite))
		marshalExtensions(w, p.ReInit.Extensions)
	case ProposalExternalInit:
		w.Opaque(p.ExternalInitKEMOutput)
	case ProposalGroupContextExtensions:
		marshalExtensions(w, p.GroupContextExtensions)
	}
}

func (p *Proposal) unmarshal(r *Reader) {
	p.Type = ProposalType(r.Uint16("Proposal.proposal_type"))
	p.unmarshalBody(r)
}

func (p *Proposal) unmarshalBody(r *Reader) {
	switch p.Type {
	case ProposalAdd:
		p.Add = new(KeyPackage)
		p.Add.unmarshal(r)
	case ProposalUpdate:
		p.Update = new(LeafNode)
		p.Update.unmarshal(r)
	case ProposalRemove:
		p.Remove = LeafIndex(r.Uint32("Remove.removed"))
	case ProposalPSK:
		p.PSK = new(PreSharedKeyID)
		p.PSK.unmarshal(r)
	case ProposalReInit:
		p.ReInit = &ReInit{
			GroupID:     r.Opaque("ReInit.group_id"),
			Version:     ProtocolVersion(r.Uint16("ReInit.version")),
			CipherSuite: CipherSuite(r.Uint16("ReInit.cipher_suite")),
			Extensions:  unmarshalExtensions(r, "ReInit.extensions"),
		}
	case ProposalExternalInit:
		p.ExternalInitKEMOutput = r.Opaque("ExternalInit.kem_output")
	case ProposalGroupContextExtensions:
		p.GroupContextExtensions = unmarshalExtensions(r, "GroupContextExtensions.extensions")
	default:
		if r.Err() == nil {
			r.failf("Proposal.proposal_type %d is unknown", p.Type)
		}
	}
}

// MarshalBody returns the encoding of the proposal's body without its type
// (the form RFC 9420 §12.1 names Add, Remove, ...).
func (p *Proposal) MarshalBody() []byte { return encode(p.marshalBody) }

// ProposalOrRefType says whether a commit carries a proposal or its ref.
type ProposalOrRefType uint8

// ProposalOrRef kinds (RFC 9420 §12.4).
const (
	ProposalOrRefProposal  ProposalOrRefType = 1
	ProposalOrRefReference ProposalOrRefType = 2
)

// ProposalOrRef is a proposal carried by value or by reference in a
// Commit (RFC 9420 §12.4).
type ProposalOrRef struct {
	Type      ProposalOrRefType
	Proposal  *Proposal
	Reference ProposalRef
}

func (p *ProposalOrRef) marshal(w *Writer) {
	w.Uint8(uint8(p.Type))
	if p.Type == ProposalOrRefProposal {
		p.Proposal.marshal(w)
	} else {
		w.Opaque(p.Reference)
	}
}

func (p *ProposalOrRef) unmarshal(r *Reader) {
	p.Type = ProposalOrRefType(r.Uint8("ProposalOrRef.type"))
	switch p.Type {
	case ProposalOrRefProposal:
		p.Proposal = new(Proposal)
		p.Proposal.unmarshal(r)
	case ProposalOrRefReference:
		p.Reference = r.Opaque("ProposalOrRef.reference")
	default:
		if r.Err() == nil {
			r.failf("ProposalOrRef.type %d is not 1 or 2", p.Type)
		}
	}
}

// ExternalSender is one entry of the external_senders extension (RFC 9420
// §12.1.8.1): a signature key and credential allowed to send proposals.
type ExternalSender struct {
	SignatureKey []byte
	Credential   Credential
}

func (e *ExternalSender) marshal(w *Writer) {
	w.Opaque(e.SignatureKey)
	e.Credential.marshal(w)
}

func (e *ExternalSender) unmarshal(r *Reader) {
	e.SignatureKey = r.Opaque("ExternalSender.signature_key")
	e.Credential.unmarshal(r)
}

// Marshal returns the encoding of one ExternalSender (DAVE op 25 payload).
func (e *ExternalSender) Marshal() []byte { return encode(e.marshal) }

// ParseExternalSender decodes one ExternalSender.
func ParseExternalSender(b []byte) (*ExternalSender, error) {
	e := new(ExternalSender)
	if err := decodeAll(b, "ExternalSender", e.unmarshal); err != nil {
		return nil, err
	}
	return e, nil
}

// ExternalSendersExtension returns the external_senders group context
// extension listing senders (RFC 9420 §12.1.8.1).
func ExternalSendersExtension(senders []ExternalSender) Extension {
	return Extension{Type: ExtensionExternalSenders, Data: encode(func(w *Writer) {
		w.Vector(func(w *Writer) {
			for i := range senders {
				senders[i].marshal(w)
			}
		})
	})}
}

// ParseExternalSenders decodes the data of an external_senders extension.
func ParseExternalSenders(data []byte) ([]ExternalSender, error) {
	var out []ExternalSender
	err := decodeAll(data, "external_senders", func(r *Reader) {
		r.Vector("external_senders", func(r *Reader) {
			for r.Len() > 0 && r.Err() == nil {
				var e ExternalSender
				e.unmarshal(r)
				out = append(out, e)
			}
		})
	})
	return out, err
}

// requiredCapabilities is the required_capabilities extension (§11.1).
type requiredCapabilities struct {
	extensions  []ExtensionType
	proposals   []ProposalType
	credentials []CredentialType
}

func parseRequiredCapabilities(data []byte) (requiredCapabilities, error) {
	var rc requiredCapabilities
	err := decodeAll(data, "required_capabilities", func(r *Reader) {
		rc.extensions = readU16s[ExtensionType](r, "RequiredCapabilities.extension_types")
		rc.proposals = readU16s[ProposalType](r, "RequiredCapabilities.proposal_types")
		rc.credentials = readU16s[CredentialType](r, "RequiredCapabilities.credential_types")
	})
	return rc, err
}
