package voice

import (
	"fmt"
)

// State is the connection's life-cycle state.
type State int

// Connection states.
const (
	StateConnecting State = iota
	StateConnected
	// StateResuming: the websocket dropped; resuming the same session.
	StateResuming
	// StateReconnecting: starting a new voice session (new server, or the
	// old session could not be resumed).
	StateReconnecting
	// StateWaitingForServer: VOICE_SERVER_UPDATE had a null endpoint.
	StateWaitingForServer
	// StateClosed: the connection ended.
	StateClosed
)

// String names the state.
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateResuming:
		return "resuming"
	case StateReconnecting:
		return "reconnecting"
	case StateWaitingForServer:
		return "waiting for server"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Event is something that happened on a connection; see the types below.
type Event interface{ voiceEvent() }

// Speaking reports a member's speaking flag (op 5), which also maps their
// user id to their audio SSRC.
type Speaking struct {
	UserID   string
	SSRC     uint32
	Speaking bool
}

// MemberJoined reports a user connecting to the call (op 11).
type MemberJoined struct{ UserID string }

// MemberLeft reports a user leaving the call (op 13).
type MemberLeft struct{ UserID string }

// StateChanged reports a new connection state.
type StateChanged struct{ State State }

// Left is the last event when the bot is no longer in the call: close
// 4014 or 4022, or the main gateway reporting the bot out of the channel.
type Left struct{ Reason string }

// Error reports a failure; Fatal errors are the last event.
type Error struct {
	Err   error
	Fatal bool
}

// PrivacyCodeChanged reports a new voice privacy code: the 30-digit code
// of the DAVE epoch whose keys our media now uses, which every member of
// the call sees alike (DAVE whitepaper, "Displayable Codes"). Code is ""
// when end-to-end encryption stopped (a downgrade, or a new voice session
// whose group is not formed yet).
type PrivacyCodeChanged struct{ Code string }

func (Speaking) voiceEvent()           {}
func (MemberJoined) voiceEvent()       {}
func (MemberLeft) voiceEvent()         {}
func (StateChanged) voiceEvent()       {}
func (Left) voiceEvent()               {}
func (Error) voiceEvent()              {}
func (PrivacyCodeChanged) voiceEvent() {}
