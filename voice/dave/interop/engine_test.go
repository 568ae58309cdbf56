package interop

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/voice/dave"
)

// daveyEngine is a davey DAVESession behind voiceemu.MemberDAVE, so that
// a simulated member of the voice emulator runs davey instead of our
// dave.Session. The MLS group and the frame crypto are davey's; what this
// adapter adds is the voice-gateway layer @discordjs/voice wraps around
// davey (its DAVESession class): ops 11 and 13 keep the recognized user
// ids, op 21/22 transitions (downgrades through davey's passthrough mode),
// op 24 with epoch 1 re-initializes, op 27 goes to processProposals with
// the op type split off, ops 29 and 30 carry a transition id before the
// commit or welcome, and a commit or welcome davey cannot process is
// answered with op 31 and a fresh key package.
//
// One deliberate difference from @discordjs/voice: it sends a frame in
// clear while its session is not ready; this adapter refuses (dave.ErrNoKey),
// as the emulator counts any plaintext frame under DAVE as a leak.
type daveyEngine struct {
	userID, channelID string

	mu         sync.Mutex
	p          *Peer
	started    bool // Start was called: the member is in a call
	protocol   int
	pending    *dave.PrepareTransition
	recognized map[string]bool
	// davey's state after the last message that could change it.
	ready bool
	epoch uint64
	code  string
	// failed is the first error from the peer process itself, not from
	// davey refusing a message: the test checks it is nil.
	failed error
}

func newDaveyEngine(p *Peer, userID, channelID string) *daveyEngine {
	return &daveyEngine{p: p, userID: userID, channelID: channelID, recognized: map[string]bool{}}
}

// Err is the first failure of the peer process, if any.
func (e *daveyEngine) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failed
}

// try calls davey; e.mu is held.
func (e *daveyEngine) try(cmd string, args map[string]any) (map[string]any, error) {
	res, err := e.p.Try(cmd, args)
	if err != nil && e.failed == nil && (errors.Is(err, ErrPeerGone) || errors.Is(err, ErrPeerTimeout)) {
		e.failed = err
	}
	return res, err
}

// refresh reads davey's state; e.mu is held.
func (e *daveyEngine) refresh() {
	e.ready, e.epoch, e.code = false, 0, ""
	st, err := e.try("state", nil)
	if err != nil {
		return
	}
	e.ready, _ = st["ready"].(bool)
	if ep, ok := st["epoch"].(float64); ok {
		e.epoch = uint64(ep)
	}
	if e.ready {
		e.code, _ = st["privacyCode"].(string)
	}
}

// reinit starts a new group membership at protocol and returns the key
// package message; e.mu is held.
func (e *daveyEngine) reinit(protocol int) ([]dave.Outbound, error) {
	e.protocol, e.pending = protocol, nil
	if protocol == 0 {
		_, _ = e.try("reset", nil) // no session yet is fine
		e.refresh()
		return nil, nil
	}
	if _, err := e.try("reinit", map[string]any{"protocolVersion": protocol, "userId": e.userID, "channelId": e.channelID}); err != nil {
		return nil, fmt.Errorf("davey reinit: %w", err)
	}
	res, err := e.try("keyPackage", nil)
	if err != nil {
		return nil, fmt.Errorf("davey key package: %w", err)
	}
	kp, err := ResultBytes(res, "data")
	if err != nil {
		return nil, err
	}
	e.refresh()
	return []dave.Outbound{{Op: dave.OpMLSKeyPackage, Binary: kp}}, nil
}

func (e *daveyEngine) Start(protocol int) ([]dave.Outbound, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started = true
	return e.reinit(protocol)
}

func (e *daveyEngine) HandleJSON(op int, data json.RawMessage) ([]dave.Outbound, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch op {
	case dave.OpClientsConnect:
		var m dave.ClientsConnect
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("op 11: %w", err)
		}
		for _, id := range m.UserIDs {
			e.recognized[id] = true
		}
	case dave.OpClientDisconnect:
		var m dave.ClientDisconnect
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("op 13: %w", err)
		}
		delete(e.recognized, m.UserID)
	case dave.OpPrepareTransition:
		var m dave.PrepareTransition
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("op 21: %w", err)
		}
		e.pending = &m
		if m.TransitionID == 0 {
			e.execute(0)
			return nil, nil
		}
		if m.ProtocolVersion == 0 {
			// Downgrade ahead: accept the others' clear frames meanwhile.
			_, _ = e.try("setPassthrough", map[string]any{"enabled": true, "expiry": 120})
		}
		return []dave.Outbound{{Op: dave.OpReadyForTransition, JSON: dave.TransitionReady{TransitionID: m.TransitionID}}}, nil
	case dave.OpExecuteTransition:
		var m dave.ExecuteTransition
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("op 22: %w", err)
		}
		e.execute(m.TransitionID)
	case dave.OpPrepareEpoch:
		var m dave.PrepareEpoch
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("op 24: %w", err)
		}
		if m.Epoch == 1 {
			return e.reinit(m.ProtocolVersion)
		}
	default:
		return nil, fmt.Errorf("op %d is not a DAVE JSON op", op)
	}
	return nil, nil
}

// execute carries out the pending transition tid; e.mu is held.
func (e *daveyEngine) execute(tid uint16) {
	if e.pending == nil || e.pending.TransitionID != tid {
		return
	}
	old := e.protocol
	e.protocol = e.pending.ProtocolVersion
	e.pending = nil
	if old == 0 && e.protocol != 0 && tid != 0 {
		// Upgraded: the others' clear frames may still arrive for a while.
		_, _ = e.try("setPassthrough", map[string]any{"enabled": true, "expiry": 10})
	}
	e.refresh()
}

func (e *daveyEngine) HandleBinary(op int, payload []byte) ([]dave.Outbound, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch op {
	case dave.OpMLSExternalSender:
		if _, err := e.try("setExternalSender", map[string]any{"data": B64(payload)}); err != nil {
			return nil, fmt.Errorf("davey refused the external sender: %w", err)
		}
		return nil, nil
	case dave.OpMLSProposals:
		if len(payload) < 1 {
			return nil, fmt.Errorf("op 27 without an operation type")
		}
		ids := slices.Sorted(maps.Keys(e.recognized))
		res, err := e.try("processProposals", map[string]any{"opType": int(payload[0]), "data": B64(payload[1:]), "recognized": ids})
		if err != nil {
			return nil, fmt.Errorf("davey refused the proposals: %w", err)
		}
		commit, err := ResultBytes(res, "commit")
		if err != nil {
			return nil, err
		}
		welcome, err := ResultBytes(res, "welcome")
		if err != nil {
			return nil, err
		}
		if len(commit) == 0 {
			return nil, nil
		}
		return []dave.Outbound{{Op: dave.OpMLSCommitWelcome, Binary: append(commit, welcome...)}}, nil
	case dave.OpMLSAnnounceCommit, dave.OpMLSWelcome:
		if len(payload) < 2 {
			return nil, fmt.Errorf("op %d shorter than its transition id", op)
		}
		tid := binary.BigEndian.Uint16(payload)
		cmd := "processCommit"
		if op == dave.OpMLSWelcome {
			cmd = "processWelcome"
		}
		if _, err := e.try(cmd, map[string]any{"data": B64(payload[2:])}); err != nil {
			// Unprocessable: tell the server (op 31) and start again.
			out, rerr := e.reinit(e.protocol)
			return append([]dave.Outbound{{Op: dave.OpMLSInvalidCommitWelcome, JSON: dave.TransitionReady{TransitionID: tid}}}, out...), rerr
		}
		if tid == 0 {
			e.refresh()
			return nil, nil
		}
		e.pending = &dave.PrepareTransition{TransitionID: tid, ProtocolVersion: e.protocol}
		e.refresh()
		return []dave.Outbound{{Op: dave.OpReadyForTransition, JSON: dave.TransitionReady{TransitionID: tid}}}, nil
	}
	return nil, fmt.Errorf("op %d is not a DAVE binary op", op)
}

func (e *daveyEngine) ProtocolVersion() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.protocol
}

func (e *daveyEngine) Epoch() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.epoch
}

func (e *daveyEngine) PrivacyCode() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.code
}

func (e *daveyEngine) EncryptFrame(dst []byte, kind dave.MediaKind, frame []byte) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		return dst, fmt.Errorf("davey member not in a call yet: %w", dave.ErrNoKey)
	}
	if e.protocol == 0 || dave.IsSilence(frame) {
		return append(dst, frame...), nil
	}
	if kind != dave.Audio {
		return dst, fmt.Errorf("the davey member sends Opus only")
	}
	if !e.ready {
		return dst, fmt.Errorf("davey session not ready: %w", dave.ErrNoKey)
	}
	res, err := e.try("encryptOpus", map[string]any{"data": B64(frame)})
	if err != nil {
		return dst, fmt.Errorf("davey encrypt: %w", err)
	}
	out, err := ResultBytes(res, "data")
	if err != nil {
		return dst, err
	}
	return append(dst, out...), nil
}

func (e *daveyEngine) DecryptFrame(dst []byte, userID string, kind dave.MediaKind, frame []byte) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		// The relay can deliver a frame before the call starts the member.
		return dst, fmt.Errorf("davey member not in a call yet: %w", dave.ErrNoKey)
	}
	// A clear frame passes at protocol 0; a DAVE frame (marker FA FA) is
	// always davey's to decrypt, even during a downgrade.
	daveFrame := len(frame) >= 2 && frame[len(frame)-2] == 0xFA && frame[len(frame)-1] == 0xFA
	if dave.IsSilence(frame) || e.protocol == 0 && !daveFrame {
		return append(dst, frame...), nil
	}
	if kind != dave.Audio {
		return dst, fmt.Errorf("the davey member receives Opus only")
	}
	if !e.ready {
		return dst, fmt.Errorf("davey session not ready: %w", dave.ErrNoKey)
	}
	res, err := e.try("decrypt", map[string]any{"userId": userID, "data": B64(frame)})
	if err != nil {
		return dst, fmt.Errorf("davey decrypt: %w", err)
	}
	out, err := ResultBytes(res, "data")
	if err != nil {
		return dst, err
	}
	return append(dst, out...), nil
}

var _ voiceemu.MemberDAVE = (*daveyEngine)(nil)
