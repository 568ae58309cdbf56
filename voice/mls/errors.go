package mls

import "errors"

// Sentinel errors. Every error this package returns wraps one of these
// with %w and adds what exactly failed; branch with errors.Is.
var (
	// ErrMalformed means bytes did not decode as the expected structure
	// (truncated, trailing bytes, bad varint, unknown enum value).
	ErrMalformed = errors.New("mls: malformed encoding")
	// ErrUnsupportedCipherSuite means a cipher suite other than 2
	// (MLS_128_DHKEMP256_AES128GCM_SHA256_P256) was named.
	ErrUnsupportedCipherSuite = errors.New("mls: unsupported cipher suite")
	// ErrUnsupportedVersion means a protocol version other than mls10.
	ErrUnsupportedVersion = errors.New("mls: unsupported protocol version")
	// ErrUnsupported means a well-formed message uses a feature this
	// package does not implement (PrivateMessage content, PSKs, ReInit,
	// external commits, ...).
	ErrUnsupported = errors.New("mls: unsupported feature")
	// ErrBadSignature means a signature did not verify.
	ErrBadSignature = errors.New("mls: signature does not verify")
	// ErrBadMembershipTag means a PublicMessage membership tag is missing
	// or wrong.
	ErrBadMembershipTag = errors.New("mls: bad membership tag")
	// ErrBadConfirmationTag means a confirmation tag did not match.
	ErrBadConfirmationTag = errors.New("mls: bad confirmation tag")
	// ErrWrongEpoch means a message is for another epoch than the group's.
	ErrWrongEpoch = errors.New("mls: wrong epoch")
	// ErrWrongGroup means a message names another group id.
	ErrWrongGroup = errors.New("mls: wrong group id")
	// ErrUnknownSender means the sender is not a member or configured
	// external sender, or is not allowed to send this content.
	ErrUnknownSender = errors.New("mls: unknown or unauthorized sender")
	// ErrInvalidLeafNode means a leaf node failed validation (RFC 9420 §7.3).
	ErrInvalidLeafNode = errors.New("mls: invalid leaf node")
	// ErrInvalidKeyPackage means a key package failed validation (§10.1).
	ErrInvalidKeyPackage = errors.New("mls: invalid key package")
	// ErrInvalidTree means a ratchet tree broke an invariant (§7.9.2,
	// §12.4.3.1): bad parent hash, tree hash mismatch, bad shape.
	ErrInvalidTree = errors.New("mls: invalid ratchet tree")
	// ErrInvalidProposal means a proposal cannot be applied (§12.2).
	ErrInvalidProposal = errors.New("mls: invalid proposal")
	// ErrUnknownProposal means a commit referenced a proposal this member
	// has not received in the current epoch.
	ErrUnknownProposal = errors.New("mls: unknown proposal reference")
	// ErrInvalidCommit means a commit is not valid (§12.4.2).
	ErrInvalidCommit = errors.New("mls: invalid commit")
	// ErrDecrypt means HPKE or AEAD decryption failed.
	ErrDecrypt = errors.New("mls: decryption failed")
	// ErrNotForUs means a Welcome carries no secrets for our key package.
	ErrNotForUs = errors.New("mls: welcome is not addressed to this key package")
	// ErrUnexpectedMessage means a message of the wrong wire format or
	// content type was passed (a Welcome where a commit was expected, ...).
	ErrUnexpectedMessage = errors.New("mls: unexpected message type")
	// ErrRemoved means a valid commit removed this member: the group can
	// no longer be used and the member must rejoin.
	ErrRemoved = errors.New("mls: this member was removed by the commit")
	// ErrInvalidArgument means a caller passed an unusable value.
	ErrInvalidArgument = errors.New("mls: invalid argument")
)
