package media

import "errors"

// Sentinel errors. Errors sent to a browser carry the code from
// [ErrorCode] and a message that says what was wrong.
var (
	// ErrInvalidOptions reports an Options value NewManager cannot work with.
	ErrInvalidOptions = errors.New("media: invalid options")
	// ErrClosed reports use of a Manager after Close.
	ErrClosed = errors.New("media: manager closed")
	// ErrBadMessage reports a signaling message that is not valid JSON or
	// lacks a field its type needs.
	ErrBadMessage = errors.New("media: malformed signaling message")
	// ErrUnknownType reports a signaling message type media does not know.
	ErrUnknownType = errors.New("media: unknown signaling message type")
	// ErrNoFreeBot is what a [Joiner] wraps when no bot of the guild is
	// free for the room (another room took the last one, or a bot left);
	// the room then waits in line for a bot instead of retrying.
	ErrNoFreeBot = errors.New("media: no bot of this server is free")
	// ErrUnknownRoom reports a join for a room (voice channel) that does
	// not exist.
	ErrUnknownRoom = errors.New("media: unknown room")
	// ErrRoomEnded reports that the room's Discord channel was deleted.
	ErrRoomEnded = errors.New("media: room ended")
	// ErrForbidden refuses a join for a room of a guild the browser's
	// token does not allow (Options.MayJoin).
	ErrForbidden = errors.New("media: not allowed in this room's server")
	// ErrNotJoined reports signaling from a peer that has not joined a room.
	ErrNotJoined = errors.New("media: not joined to a room")
	// ErrWrongRoom reports signaling that names a room other than the one
	// the peer joined.
	ErrWrongRoom = errors.New("media: signaling for another room")
	// ErrBadSDP reports an offer or answer that cannot be parsed or applied.
	ErrBadSDP = errors.New("media: malformed or unusable SDP")
	// ErrBadCandidate reports an ICE candidate that cannot be applied.
	ErrBadCandidate = errors.New("media: unusable ICE candidate")
	// ErrUnexpectedAnswer reports an answer when no offer of the server is
	// pending.
	ErrUnexpectedAnswer = errors.New("media: answer without a pending offer")
	// ErrSessionReplaced tells a browser that the same user joined again
	// elsewhere and this session was ended.
	ErrSessionReplaced = errors.New("media: session replaced by a newer join")
	// ErrICEFailed reports a browser whose connection failed or stayed
	// disconnected longer than Options.ICEFailTimeout.
	ErrICEFailed = errors.New("media: connection to the browser failed")
	// ErrBusy reports a browser that sends signaling faster than the
	// server can apply it.
	ErrBusy = errors.New("media: too many signaling messages in flight")
	// ErrInternal reports a server-side WebRTC failure.
	ErrInternal = errors.New("media: internal WebRTC error")
	// ErrLinkEnded is what a DiscordLink's Receive returns (wrapped) once
	// its voice connection ended; the room then rejoins.
	ErrLinkEnded = errors.New("media: voice connection ended")
)

// errorCodes maps each sentinel to the stable code sent to browsers.
var errorCodes = []struct {
	err  error
	code string
}{
	{ErrClosed, "closed"},
	{ErrBadMessage, "bad_message"},
	{ErrUnknownType, "unknown_type"},
	{ErrUnknownRoom, "unknown_room"},
	{ErrRoomEnded, "room_ended"},
	{ErrForbidden, "forbidden"},
	{ErrNotJoined, "not_joined"},
	{ErrWrongRoom, "wrong_room"},
	{ErrBadSDP, "bad_sdp"},
	{ErrBadCandidate, "bad_candidate"},
	{ErrUnexpectedAnswer, "unexpected_answer"},
	{ErrSessionReplaced, "session_replaced"},
	{ErrICEFailed, "ice_failed"},
	{ErrBusy, "busy"},
}

// ErrorCode returns the code an "error" signaling message carries for err:
// the code of the first sentinel err wraps, or "internal".
func ErrorCode(err error) string {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return "internal"
}
