package media

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Signaling protocol: JSON messages over the hub's WebSocket, one object per
// message, discriminated by "type".
//
// Client to server:
//
//	{"type":"join","roomId":"<channelId>"}          join a room (a Discord voice channel)
//	{"type":"offer","sdp":"..."}                     browser's offer (perfect negotiation)
//	{"type":"answer","sdp":"..."}                    answer to the server's offer
//	{"type":"candidate","candidate":{RTCIceCandidateInit}}
//	{"type":"leave"}
//	{"type":"mute","muted":true}
//	{"type":"camera","on":false}
//	{"type":"restart-ice"}                           ask the server for an ICE-restart offer
//
// Every message after join may carry "roomId"; if it does it must be the
// joined room, or the server answers wrong_room and changes nothing.
//
// Server to client:
//
//	{"type":"joined","roomId","self","iceServers":[...],"participants":[Participant...],"privacyCode"}
//	{"type":"offer"|"answer","roomId","sdp"}
//	{"type":"candidate","roomId","candidate":{RTCIceCandidateInit}}
//	{"type":"participant","roomId","event":"joined"|"left"|"updated","participant":Participant}
//	{"type":"status","roomId","discord":"connecting"|"connected"|"reconnecting"|"unavailable","message"}
//	{"type":"privacy","roomId","code"}
//	{"type":"error","error":{"code","message"}}
//
// "joined" is always the first message after a join: the server's first
// offer, candidates, status and privacy messages follow it.
//
// "privacyCode" in "joined" and "code" in "privacy" are the voice call's
// privacy code (Discord's DAVE end-to-end encryption: the code people in
// the call compare to verify it), as the voice connection reports it
// through [DiscordLink.Receive] ([PrivacyCode]). "" means the call is not end-to-end
// encrypted, or the bot is not in it. "privacy" is sent to every browser of
// the room whenever the code changes, including to "" when the voice
// connection ends.
//
// Negotiation follows the W3C "perfect negotiation" pattern (WebRTC 1.0
// §10.7 example): the browser is polite, the server impolite. The server
// offers whenever the set of tracks it sends changes; an offer from the
// browser that arrives while the server's own offer is pending is ignored,
// together with its candidates, and the browser rolls back and answers.
// The browser offers for the tracks it publishes.

// Message types.
const (
	msgJoin        = "join"
	msgOffer       = "offer"
	msgAnswer      = "answer"
	msgCandidate   = "candidate"
	msgLeave       = "leave"
	msgMute        = "mute"
	msgCamera      = "camera"
	msgRestartICE  = "restart-ice"
	msgJoined      = "joined"
	msgParticipant = "participant"
	msgStatus      = "status"
	msgPrivacy     = "privacy"
	msgError       = "error"
)

// clientTypes are the message types a browser may send.
var clientTypes = []string{msgJoin, msgOffer, msgAnswer, msgCandidate, msgLeave, msgMute, msgCamera, msgRestartICE}

// SignalTypes lists the message types a browser sends to media; the hub
// routes each of them to [Manager.HandleSignal].
func SignalTypes() []string { return slices.Clone(clientTypes) }

// Discord link states in "status" messages.
const (
	// StatusConnecting: the bot is joining the voice channel.
	StatusConnecting = "connecting"
	// StatusConnected: the bot is in the voice channel.
	StatusConnected = "connected"
	// StatusReconnecting: the link failed; the bot is joining again.
	StatusReconnecting = "reconnecting"
	// StatusUnavailable: this room has no Discord leg (browser to browser only).
	StatusUnavailable = "unavailable"
)

// clientMessage is any client-to-server message.
type clientMessage struct {
	Type      string                   `json:"type"`
	RoomID    string                   `json:"roomId,omitempty"`
	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Muted     *bool                    `json:"muted,omitempty"`
	On        *bool                    `json:"on,omitempty"`
}

// decodeClientMessage decodes raw as a message of type msgType.
func decodeClientMessage(msgType string, raw json.RawMessage) (clientMessage, error) {
	var m clientMessage
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			return m, fmt.Errorf("%w: %q is not a JSON object: %v", ErrBadMessage, msgType, err)
		}
	}
	if m.Type != "" && m.Type != msgType {
		return m, fmt.Errorf("%w: type %q does not match %q", ErrBadMessage, m.Type, msgType)
	}
	if !slices.Contains(clientTypes, msgType) {
		return m, fmt.Errorf("%w: %q (known: %s)", ErrUnknownType, msgType, strings.Join(clientTypes, ", "))
	}
	m.Type = msgType
	return m, nil
}

// validate checks the fields the message's type needs.
func (m clientMessage) validate() error {
	switch m.Type {
	case msgJoin:
		if !isSnowflake(m.RoomID) {
			return fmt.Errorf("%w: join needs \"roomId\", a Discord channel id (digits), got %q", ErrBadMessage, m.RoomID)
		}
	case msgOffer, msgAnswer:
		if m.SDP == "" {
			return fmt.Errorf("%w: %s needs \"sdp\"", ErrBadMessage, m.Type)
		}
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(m.SDP); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadSDP, m.Type, err)
		}
		if len(sd.MediaDescriptions) == 0 {
			return fmt.Errorf("%w: %s has no media sections", ErrBadSDP, m.Type)
		}
	case msgCandidate:
		if m.Candidate == nil {
			return fmt.Errorf("%w: candidate needs \"candidate\" (an RTCIceCandidateInit)", ErrBadMessage)
		}
	case msgMute:
		if m.Muted == nil {
			return fmt.Errorf("%w: mute needs \"muted\": true or false", ErrBadMessage)
		}
	case msgCamera:
		if m.On == nil {
			return fmt.Errorf("%w: camera needs \"on\": true or false", ErrBadMessage)
		}
	case msgLeave, msgRestartICE:
	default:
		return fmt.Errorf("%w: %q", ErrUnknownType, m.Type)
	}
	return nil
}

// isSnowflake reports whether s looks like a Discord id: 1 to 20 digits.
func isSnowflake(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// TrackInfo names one track a participant publishes, as browsers see it.
type TrackInfo struct {
	TrackID  string `json:"trackId"`
	StreamID string `json:"streamId"`
	Kind     string `json:"kind"`
}

// Participant is one member of a room as browsers and room events see it.
type Participant struct {
	ID       string      `json:"id"`
	UserID   string      `json:"userId"`
	Name     string      `json:"name"`
	Kind     string      `json:"kind"` // "browser" or "discord"
	Muted    bool        `json:"muted"`
	Camera   bool        `json:"camera"`
	Speaking bool        `json:"speaking"`
	Tracks   []TrackInfo `json:"tracks"`
}

// Participant kinds.
const (
	kindBrowser = "browser"
	kindDiscord = "discord"
)

// ParticipantEvent is the payload of every room event Options.Publish
// receives (participant.joined, participant.left, speaking, mute, camera).
type ParticipantEvent struct {
	RoomID      string      `json:"roomId"`
	Participant Participant `json:"participant"`
}

// Room event names passed to Options.Publish.
const (
	// EventParticipantJoined: a browser joined, or a Discord user was first heard.
	EventParticipantJoined = "participant.joined"
	// EventParticipantLeft: a browser left or was removed, or the Discord link ended.
	EventParticipantLeft = "participant.left"
	// EventSpeaking: the bot's forwarded browser speaker changed, or a
	// Discord user started or stopped sending audio.
	EventSpeaking = "speaking"
	// EventMute: a browser muted or unmuted.
	EventMute = "mute"
	// EventCamera: a browser turned its camera on or off.
	EventCamera = "camera"
)

type joinedMessage struct {
	Type         string             `json:"type"`
	RoomID       string             `json:"roomId"`
	Self         string             `json:"self"`
	ICEServers   []webrtc.ICEServer `json:"iceServers"`
	Participants []Participant      `json:"participants"`
	PrivacyCode  string             `json:"privacyCode"`
}

type privacyMessage struct {
	Type   string `json:"type"`
	RoomID string `json:"roomId"`
	Code   string `json:"code"`
}

type sdpMessage struct {
	Type   string `json:"type"`
	RoomID string `json:"roomId"`
	SDP    string `json:"sdp"`
}

type candidateMessage struct {
	Type      string                  `json:"type"`
	RoomID    string                  `json:"roomId"`
	Candidate webrtc.ICECandidateInit `json:"candidate"`
}

type participantMessage struct {
	Type        string      `json:"type"`
	RoomID      string      `json:"roomId"`
	Event       string      `json:"event"`
	Participant Participant `json:"participant"`
}

type statusMessage struct {
	Type    string `json:"type"`
	RoomID  string `json:"roomId"`
	Discord string `json:"discord"`
	Message string `json:"message"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type errorMessage struct {
	Type  string    `json:"type"`
	Error errorBody `json:"error"`
}

// newErrorMessage turns err into the "error" message a browser gets.
func newErrorMessage(err error) errorMessage {
	return errorMessage{Type: msgError, Error: errorBody{Code: ErrorCode(err), Message: err.Error()}}
}
