package mls

import (
	"crypto/ecdsa"
	"fmt"
	"math"
	"slices"
	"time"
)

// CredentialType names a credential format (RFC 9420 §5.3).
type CredentialType uint16

// Credential types of RFC 9420 §17.5.
const (
	CredentialBasic CredentialType = 1
	CredentialX509  CredentialType = 2
)

// Credential binds an identity to a signature key (RFC 9420 §5.3). Basic
// credentials carry Identity; X.509 ones carry Certificates.
type Credential struct {
	Type         CredentialType
	Identity     []byte
	Certificates [][]byte
}

// BasicCredential returns a basic credential for identity.
func BasicCredential(identity []byte) Credential {
	return Credential{Type: CredentialBasic, Identity: identity}
}

func (c *Credential) marshal(w *Writer) {
	w.Uint16(uint16(c.Type))
	switch c.Type {
	case CredentialBasic:
		w.Opaque(c.Identity)
	case CredentialX509:
		w.Vector(func(w *Writer) {
			for _, cert := range c.Certificates {
				w.Opaque(cert)
			}
		})
	}
}

func (c *Credential) unmarshal(r *Reader) {
	c.Type = CredentialType(r.Uint16("Credential.credential_type"))
	switch c.Type {
	case CredentialBasic:
		c.Identity = r.Opaque("Credential.identity")
	case CredentialX509:
		r.Vector("Credential.certificates", func(r *Reader) {
			for r.Len() > 0 && r.Err() == nil {
				c.Certificates = append(c.Certificates, r.Opaque("Certificate.cert_data"))
			}
		})
	default:
		if r.Err() == nil {
			r.failf("Credential.credential_type %d is not basic (1) or x509 (2)", c.Type)
		}
	}
}

// ExtensionType names an extension (RFC 9420 §17.3).
type ExtensionType uint16

// Extension types of RFC 9420 §17.3.
const (
	ExtensionApplicationID        ExtensionType = 1
	ExtensionRatchetTree          ExtensionType = 2
	ExtensionRequiredCapabilities ExtensionType = 3
	ExtensionExternalPub          ExtensionType = 4
	ExtensionExternalSenders      ExtensionType = 5
	lastDefaultExtensionType                    = ExtensionExternalSenders
)

// maxLifetime is the largest not_after, used for key packages that never
// expire (DAVE's choice).
const maxLifetime uint64 = math.MaxUint64

// Extension is a typed opaque extension (RFC 9420 §13).
type Extension struct {
	Type ExtensionType
	Data []byte
}

func marshalExtensions(w *Writer, exts []Extension) {
	w.Vector(func(w *Writer) {
		for _, e := range exts {
			w.Uint16(uint16(e.Type))
			w.Opaque(e.Data)
		}
	})
}

func unmarshalExtensions(r *Reader, what string) []Extension {
	var exts []Extension
	r.Vector(what, func(r *Reader) {
		for r.Len() > 0 && r.Err() == nil {
			t := ExtensionType(r.Uint16(what + ".extension_type"))
			d := r.Opaque(what + ".extension_data")
			exts = append(exts, Extension{Type: t, Data: d})
		}
	})
	return exts
}

// checkExtensionList rejects duplicate extension types (RFC 9420 §13).
func checkExtensionList(exts []Extension, what string) error {
	for i := range exts {
		for j := i + 1; j < len(exts); j++ {
			if exts[i].Type == exts[j].Type {
				return fmt.Errorf("%s: extension type %d appears twice", what, exts[i].Type)
			}
		}
	}
	return nil
}

func findExtension(exts []Extension, t ExtensionType) (Extension, bool) {
	for _, e := range exts {
		if e.Type == t {
			return e, true
		}
	}
	return Extension{}, false
}

// ProposalType names a proposal (RFC 9420 §17.4).
type ProposalType uint16

// Proposal types of RFC 9420 §12.1.
const (
	ProposalAdd                    ProposalType = 1
	ProposalUpdate                 ProposalType = 2
	ProposalRemove                 ProposalType = 3
	ProposalPSK                    ProposalType = 4
	ProposalReInit                 ProposalType = 5
	ProposalExternalInit           ProposalType = 6
	ProposalGroupContextExtensions ProposalType = 7
)

// Capabilities lists what a client supports (RFC 9420 §7.2).
type Capabilities struct {
	Versions     []ProtocolVersion
	CipherSuites []CipherSuite
	Extensions   []ExtensionType
	Proposals    []ProposalType
	Credentials  []CredentialType
}

func writeU16s[T ~uint16](w *Writer, v []T) {
	w.Vector(func(w *Writer) {
		for _, x := range v {
			w.Uint16(uint16(x))
		}
	})
}

func readU16s[T ~uint16](r *Reader, what string) []T {
	var out []T
	r.Vector(what, func(r *Reader) {
		for r.Len() > 0 && r.Err() == nil {
			out = append(out, T(r.Uint16(what)))
		}
	})
	return out
}

func (c *Capabilities) marshal(w *Writer) {
	writeU16s(w, c.Versions)
	writeU16s(w, c.CipherSuites)
	writeU16s(w, c.Extensions)
	writeU16s(w, c.Proposals)
	writeU16s(w, c.Credentials)
}

func (c *Capabilities) unmarshal(r *Reader) {
	c.Versions = readU16s[ProtocolVersion](r, "Capabilities.versions")
	c.CipherSuites = readU16s[CipherSuite](r, "Capabilities.cipher_suites")
	c.Extensions = readU16s[ExtensionType](r, "Capabilities.extensions")
	c.Proposals = readU16s[ProposalType](r, "Capabilities.proposals")
	c.Credentials = readU16s[CredentialType](r, "Capabilities.credentials")
}

// Lifetime bounds when a key package may be used, in seconds since the
// Unix epoch (RFC 9420 §7.2).
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

// LeafNodeSource says why a leaf node was made (RFC 9420 §7.2).
type LeafNodeSource uint8

// Leaf node sources.
const (
	SourceKeyPackage LeafNodeSource = 1
	SourceUpdate     LeafNodeSource = 2
	SourceCommit     LeafNodeSource = 3
)

// LeafNode is a member's public state in the ratchet tree (RFC 9420 §7.2).
// Lifetime is set for key_package leaves, ParentHash for commit leaves.
type LeafNode struct {
	EncryptionKey []byte
	SignatureKey  []byte
	Credential    Credential
	Capabilities  Capabilities
	Source        LeafNodeSource
	Lifetime      Lifetime
	ParentHash    []byte
	Extensions    []Extension
	Signature     []byte
}

func (l *LeafNode) marshalContent(w *Writer) {
	w.Opaque(l.EncryptionKey)
	w.Opaque(l.SignatureKey)
	l.Credential.marshal(w)
	l.Capabilities.marshal(w)
	w.Uint8(uint8(l.Source))
	switch l.Source {
	case SourceKeyPackage:
		w.Uint64(l.Lifetime.NotBefore)
		w.Uint64(l.Lifetime.NotAfter)
	case SourceCommit:
		w.Opaque(l.ParentHash)
	}
	marshalExtensions(w, l.Extensions)
}

func (l *LeafNode) marshal(w *Writer) {
	l.marshalContent(w)
	w.Opaque(l.Signature)
}

func (l *LeafNode) unmarshal(r *Reader) {
	l.EncryptionKey = r.Opaque("LeafNode.encryption_key")
	l.SignatureKey = r.Opaque("LeafNode.signature_key")
	l.Credential.unmarshal(r)
	l.Capabilities.unmarshal(r)
	l.Source = LeafNodeSource(r.Uint8("LeafNode.leaf_node_source"))
	switch l.Source {
	case SourceKeyPackage:
		l.Lifetime.NotBefore = r.Uint64("Lifetime.not_before")
		l.Lifetime.NotAfter = r.Uint64("Lifetime.not_after")
	case SourceUpdate:
	case SourceCommit:
		l.ParentHash = r.Opaque("LeafNode.parent_hash")
	default:
		if r.Err() == nil {
			r.failf("LeafNode.leaf_node_source %d is not 1, 2 or 3", l.Source)
		}
	}
	l.Extensions = unmarshalExtensions(r, "LeafNode.extensions")
	l.Signature = r.Opaque("LeafNode.signature")
}

// Marshal returns the TLS encoding of the leaf node.
func (l *LeafNode) Marshal() []byte { return encode(l.marshal) }

// tbs is LeafNodeTBS (RFC 9420 §7.2): update and commit leaves are bound
// to the group id and their leaf index.
func (l *LeafNode) tbs(groupID []byte, leaf LeafIndex) []byte {
	return encode(func(w *Writer) {
		l.marshalContent(w)
		if l.Source == SourceUpdate || l.Source == SourceCommit {
			w.Opaque(groupID)
			w.Uint32(uint32(leaf))
		}
	})
}

func (l *LeafNode) sign(sig *ecdsa.PrivateKey, groupID []byte, leaf LeafIndex) error {
	s, err := SignWithLabel(sig, "LeafNodeTBS", l.tbs(groupID, leaf))
	if err != nil {
		return err
	}
	l.Signature = s
	return nil
}

func (l *LeafNode) verifySignature(groupID []byte, leaf LeafIndex) error {
	return VerifyWithLabel(l.SignatureKey, "LeafNodeTBS", l.tbs(groupID, leaf), l.Signature)
}

func (l *LeafNode) clone() *LeafNode {
	c := *l
	return &c
}

// isDefaultExtension reports whether t is one of the extension types every
// client supports without listing it (RFC 9420 §7.2).
func isDefaultExtension(t ExtensionType) bool {
	return t >= ExtensionApplicationID && t <= lastDefaultExtensionType
}

// isDefaultProposal reports whether t is one of RFC 9420's own proposal
// types, which need not be listed in capabilities (§7.2).
func isDefaultProposal(t ProposalType) bool {
	return t >= ProposalAdd && t <= ProposalGroupContextExtensions
}

// validateAlone checks what a leaf node must satisfy on its own
// (RFC 9420 §7.3): its credential type and extensions are among its
// capabilities, its keys parse, its signature verifies, and a key_package
// leaf's lifetime covers now.
func (l *LeafNode) validateAlone(groupID []byte, leaf LeafIndex, checkLifetime bool) error {
	if !slices.Contains(l.Capabilities.Credentials, l.Credential.Type) {
		return fmt.Errorf("%w: credential type %d not listed in its own capabilities", ErrInvalidLeafNode, l.Credential.Type)
	}
	if !slices.Contains(l.Capabilities.CipherSuites, CipherSuiteP256) && len(l.Capabilities.CipherSuites) > 0 {
		return fmt.Errorf("%w: capabilities do not list cipher suite %d", ErrInvalidLeafNode, CipherSuiteP256)
	}
	if err := checkExtensionList(l.Extensions, "leaf node"); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidLeafNode, err)
	}
	for _, e := range l.Extensions {
		if !isDefaultExtension(e.Type) && !slices.Contains(l.Capabilities.Extensions, e.Type) {
			return fmt.Errorf("%w: extension %d not listed in capabilities", ErrInvalidLeafNode, e.Type)
		}
	}
	if _, err := hpkeKEM.NewPublicKey(l.EncryptionKey); err != nil {
		return fmt.Errorf("%w: encryption_key is not a P-256 point: %v", ErrInvalidLeafNode, err)
	}
	if checkLifetime && l.Source == SourceKeyPackage {
		now := uint64(time.Now().Unix())
		if now < l.Lifetime.NotBefore || now > l.Lifetime.NotAfter {
			return fmt.Errorf("%w: lifetime %d..%d does not cover now (%d)", ErrInvalidLeafNode, l.Lifetime.NotBefore, l.Lifetime.NotAfter, now)
		}
	}
	if err := l.verifySignature(groupID, leaf); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidLeafNode, err)
	}
	return nil
}

// KeyPackage advertises a client that can be added to a group (RFC 9420
// §10).
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite CipherSuite
	InitKey     []byte
	LeafNode    LeafNode
	Extensions  []Extension
	Signature   []byte
}

// KeyPackagePrivate holds the private keys behind a KeyPackage: the HPKE
// init key (used once, to open a Welcome), the leaf's HPKE encryption key,
// and the signature key.
type KeyPackagePrivate struct {
	InitKey       []byte
	EncryptionKey []byte
	SignatureKey  *ecdsa.PrivateKey
}

func (kp *KeyPackage) marshalContent(w *Writer) {
	w.Uint16(uint16(kp.Version))
	w.Uint16(uint16(kp.CipherSuite))
	w.Opaque(kp.InitKey)
	kp.LeafNode.marshal(w)
	marshalExtensions(w, kp.Extensions)
}

func (kp *KeyPackage) marshal(w *Writer) {
	kp.marshalContent(w)
	w.Opaque(kp.Signature)
}

func (kp *KeyPackage) unmarshal(r *Reader) {
	kp.Version = ProtocolVersion(r.Uint16("KeyPackage.version"))
	kp.CipherSuite = CipherSuite(r.Uint16("KeyPackage.cipher_suite"))
	kp.InitKey = r.Opaque("KeyPackage.init_key")
	kp.LeafNode.unmarshal(r)
	kp.Extensions = unmarshalExtensions(r, "KeyPackage.extensions")
	kp.Signature = r.Opaque("KeyPackage.signature")
}

// Marshal returns the TLS encoding of the bare KeyPackage (as DAVE op 26
// carries it).
func (kp *KeyPackage) Marshal() []byte { return encode(kp.marshal) }

// Ref returns the KeyPackageRef of kp (RFC 9420 §5.2).
func (kp *KeyPackage) Ref() KeyPackageRef { return MakeKeyPackageRef(kp.Marshal()) }

// Identity returns the basic credential identity of the key package.
func (kp *KeyPackage) Identity() []byte { return kp.LeafNode.Credential.Identity }

// ParseKeyPackage decodes a bare KeyPackage; it does not validate it.
func ParseKeyPackage(b []byte) (*KeyPackage, error) {
	kp := new(KeyPackage)
	if err := decodeAll(b, "KeyPackage", kp.unmarshal); err != nil {
		return nil, err
	}
	return kp, nil
}

// daveCapabilities are the leaf capabilities DAVE clients advertise.
func daveCapabilities() Capabilities {
	return Capabilities{
		Versions:     []ProtocolVersion{ProtocolMLS10},
		CipherSuites: []CipherSuite{CipherSuiteP256},
		Extensions:   []ExtensionType{},
		Proposals:    []ProposalType{},
		Credentials:  []CredentialType{CredentialBasic},
	}
}

// NewKeyPackage makes a key package for identity (a basic credential) with
// the given signature key, fresh init and encryption keys, the capabilities
// DAVE uses (mls10, suite 2, basic credentials, no extensions), and a
// lifetime of 0..2^64-1 (RFC 9420 §10).
func NewKeyPackage(identity []byte, sig *ecdsa.PrivateKey) (*KeyPackage, *KeyPackagePrivate, error) {
	sigPub, err := SignaturePublicKeyBytes(sig)
	if err != nil {
		return nil, nil, err
	}
	initKey, err := generateKeyPair()
	if err != nil {
		return nil, nil, err
	}
	encKey, err := generateKeyPair()
	if err != nil {
		return nil, nil, err
	}
	kp := &KeyPackage{
		Version:     ProtocolMLS10,
		CipherSuite: CipherSuiteP256,
		InitKey:     initKey.pub,
		LeafNode: LeafNode{
			EncryptionKey: encKey.pub,
			SignatureKey:  sigPub,
			Credential:    BasicCredential(append([]byte{}, identity...)),
			Capabilities:  daveCapabilities(),
			Source:        SourceKeyPackage,
			Lifetime:      Lifetime{NotBefore: 0, NotAfter: maxLifetime},
		},
	}
	if err := kp.LeafNode.sign(sig, nil, 0); err != nil {
		return nil, nil, err
	}
	kp.Signature, err = SignWithLabel(sig, "KeyPackageTBS", encode(kp.marshalContent))
	if err != nil {
		return nil, nil, err
	}
	initPriv, err := initKey.priv.Bytes()
	if err != nil {
		return nil, nil, err
	}
	encPriv, err := encKey.priv.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return kp, &KeyPackagePrivate{InitKey: initPriv, EncryptionKey: encPriv, SignatureKey: sig}, nil
}

// Validate checks a key package as RFC 9420 §10.1 requires: version mls10,
// cipher suite 2, a key_package leaf node that validates on its own (§7.3,
// lifetime included), a valid KeyPackageTBS signature by the leaf's
// signature key, and an init key different from the encryption key.
func (kp *KeyPackage) Validate() error { return kp.validate(true) }

func (kp *KeyPackage) validate(checkLifetime bool) error {
	if kp.Version != ProtocolMLS10 {
		return fmt.Errorf("%w: version %d", ErrInvalidKeyPackage, kp.Version)
	}
	if err := kp.CipherSuite.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
	}
	if kp.LeafNode.Source != SourceKeyPackage {
		return fmt.Errorf("%w: leaf node source is %d, want key_package (1)", ErrInvalidKeyPackage, kp.LeafNode.Source)
	}
	if err := kp.LeafNode.validateAlone(nil, 0, checkLifetime); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
	}
	if _, err := hpkeKEM.NewPublicKey(kp.InitKey); err != nil {
		return fmt.Errorf("%w: init_key is not a P-256 point: %v", ErrInvalidKeyPackage, err)
	}
	if equal(kp.InitKey, kp.LeafNode.EncryptionKey) {
		return fmt.Errorf("%w: init_key equals the leaf encryption_key", ErrInvalidKeyPackage)
	}
	if err := checkExtensionList(kp.Extensions, "key package"); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidKeyPackage, err)
	}
	if err := VerifyWithLabel(kp.LeafNode.SignatureKey, "KeyPackageTBS", encode(kp.marshalContent), kp.Signature); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
	}
	return nil
}
