package dave

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
)

// Voice gateway opcodes the DAVE session handles or sends (Discord voice
// gateway v8; DAVE whitepaper, "Voice Gateway Opcodes").
const (
	OpClientsConnect          = 11 // server JSON: {"user_ids": [...]}
	OpClientDisconnect        = 13 // server JSON: {"user_id": "..."}
	OpPrepareTransition       = 21 // server JSON: transition_id, protocol_version
	OpExecuteTransition       = 22 // server JSON: transition_id
	OpReadyForTransition      = 23 // client JSON: transition_id
	OpPrepareEpoch            = 24 // server JSON: protocol_version, epoch
	OpMLSExternalSender       = 25 // server binary: ExternalSender
	OpMLSKeyPackage           = 26 // client binary: bare KeyPackage
	OpMLSProposals            = 27 // server binary: u8 op type, proposals or refs
	OpMLSCommitWelcome        = 28 // client binary: MLSMessage(commit) [Welcome]
	OpMLSAnnounceCommit       = 29 // server binary: u16 transition id, MLSMessage(commit)
	OpMLSWelcome              = 30 // server binary: u16 transition id, Welcome
	OpMLSInvalidCommitWelcome = 31 // client JSON: transition_id
)

// Proposal operation types of opcode 27.
const (
	ProposalsAppend = 0
	ProposalsRevoke = 1
)

// ProtocolVersion is the highest DAVE protocol version this package
// speaks, to be sent as max_dave_protocol_version in Identify.
const ProtocolVersion = 1

// initTransitionID is the reserved transition id meaning "at once".
const initTransitionID = 0

// PrepareTransition is the data of opcode 21.
type PrepareTransition struct {
	TransitionID    uint16 `json:"transition_id"`
	ProtocolVersion int    `json:"protocol_version"`
}

// ExecuteTransition is the data of opcode 22.
type ExecuteTransition struct {
	TransitionID uint16 `json:"transition_id"`
}

// TransitionReady is the data of opcode 23 (and of opcode 31, which carries
// the same field).
type TransitionReady struct {
	TransitionID uint16 `json:"transition_id"`
}

// PrepareEpoch is the data of opcode 24. Some servers add a transition id.
type PrepareEpoch struct {
	ProtocolVersion int    `json:"protocol_version"`
	Epoch           uint64 `json:"epoch"`
	TransitionID    uint16 `json:"transition_id,omitempty"`
}

// ClientsConnect is the data of opcode 11.
type ClientsConnect struct {
	UserIDs []string `json:"user_ids"`
}

// ClientDisconnect is the data of opcode 13.
type ClientDisconnect struct {
	UserID string `json:"user_id"`
}

// decodeJSON unmarshals the data of op into v with a clear error.
func decodeJSON(op int, data json.RawMessage, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: op %d data: %w", ErrBadMessage, op, err)
	}
	return nil
}

// splitTransition splits the u16 big-endian transition id off an op 29 or
// op 30 payload.
func splitTransition(op int, payload []byte) (uint16, []byte, error) {
	if len(payload) < 2 {
		return 0, nil, fmt.Errorf("%w: op %d payload of %d bytes has no transition id", ErrBadMessage, op, len(payload))
	}
	return binary.BigEndian.Uint16(payload), payload[2:], nil
}

// readVarint reads an RFC 9420 §2.1.2 variable-length integer, rejecting
// non-minimal encodings as the RFC requires.
func readVarint(b []byte) (uint64, int, error) {
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("%w: missing varint", ErrBadMessage)
	}
	n := 1 << (b[0] >> 6)
	if n == 8 {
		return 0, 0, fmt.Errorf("%w: varint prefix 0b11 is invalid", ErrBadMessage)
	}
	if len(b) < n {
		return 0, 0, fmt.Errorf("%w: truncated varint", ErrBadMessage)
	}
	v := uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	if (n == 2 && v < 1<<6) || (n == 4 && v < 1<<14) {
		return 0, 0, fmt.Errorf("%w: non-minimal varint", ErrBadMessage)
	}
	return v, n, nil
}

// readVarOpaque reads opaque<V> from the start of b, returning the body and
// the rest.
func readVarOpaque(b []byte) ([]byte, []byte, error) {
	n, k, err := readVarint(b)
	if err != nil {
		return nil, nil, err
	}
	if uint64(len(b)-k) < n {
		return nil, nil, fmt.Errorf("%w: vector of %d bytes with %d left", ErrBadMessage, n, len(b)-k)
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// parseRevokedRefs parses the body of a revoke op 27: ProposalRef refs<V>,
// each an opaque<V> of hash length.
func parseRevokedRefs(b []byte) ([][]byte, error) {
	body, rest, err := readVarOpaque(b)
	if err != nil {
		return nil, fmt.Errorf("op 27 revoke: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: op 27 revoke has %d trailing bytes", ErrBadMessage, len(rest))
	}
	var refs [][]byte
	for len(body) > 0 {
		var ref []byte
		if ref, body, err = readVarOpaque(body); err != nil {
			return nil, fmt.Errorf("op 27 revoke ref %d: %w", len(refs), err)
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// userIDBytes encodes a user or channel id (a decimal snowflake) as the
// 8-byte big-endian identity DAVE uses for credentials and group ids.
func userIDBytes(id uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, id)
}

// parseSnowflake parses a decimal Discord id.
func parseSnowflake(what, s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a decimal id", ErrBadArgument, what, s)
	}
	return v, nil
}
