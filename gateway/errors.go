package gateway

import "errors"

// Sentinel errors of package gateway. Functions wrap them with %w and add
// what was wrong; callers branch with errors.Is.
var (
	// ErrOptions means Options or RoomsOptions were incomplete or out of
	// range; the wrapped text names the field and the fix.
	ErrOptions = errors.New("gateway: invalid options")
	// ErrClosed means the client was closed.
	ErrClosed = errors.New("gateway: client closed")
	// ErrAlreadyOpen means Open was called twice.
	ErrAlreadyOpen = errors.New("gateway: client already open")
	// ErrNotOpen means a method that needs the run loop was called before Open.
	ErrNotOpen = errors.New("gateway: client not open")
	// ErrFatalClose means Discord ended the session for a reason that
	// retrying cannot fix (close codes 4004, 4010-4014, or a rejected token);
	// the wrapped text names the code and what to do. The client stopped.
	ErrFatalClose = errors.New("gateway: Discord refused the session")
	// ErrBadPayload means a gateway frame or event could not be decoded.
	ErrBadPayload = errors.New("gateway: malformed gateway payload")
	// ErrHandshake means the gateway did not complete Hello then
	// Ready/Resumed in time.
	ErrHandshake = errors.New("gateway: gateway handshake failed")
	// ErrZombie means a heartbeat was not acknowledged before the next one
	// was due (Discord docs, Gateway, Sending Heartbeats).
	ErrZombie = errors.New("gateway: heartbeat not acknowledged")

	// ErrNotRoom means the channel exists but is not a room: not a voice
	// channel under the configured category of the configured guild.
	ErrNotRoom = errors.New("gateway: channel is not a room of this bridge")
	// ErrForbidden means Discord answered 403: the bot lacks a permission
	// (MANAGE_CHANNELS on the category, or VIEW_CHANNEL).
	ErrForbidden = errors.New("gateway: Discord refused the request (403): check the bot's permissions on the category")
	// ErrNotFound means Discord answered 404 (unknown channel or guild).
	ErrNotFound = errors.New("gateway: not found on Discord (404)")
	// ErrUnauthorized means Discord answered 401: the bot token is wrong.
	ErrUnauthorized = errors.New("gateway: Discord rejected the bot token (401): check DISCORD_BOT_TOKEN")
	// ErrRateLimited means Discord still answered 429 after one retry that
	// waited the advertised retry_after, or asked for a wait longer than a
	// request may take (10 s): the request was not (re)sent; try later.
	ErrRateLimited = errors.New("gateway: rate limited by Discord")
	// ErrRoomFull means a room's user limit is reached and the bot lacks
	// Move Members, so Discord would ignore its join.
	ErrRoomFull = errors.New("gateway: the room is full")
	// ErrBadRequest means Discord answered another 4xx; the wrapped text
	// carries Discord's message.
	ErrBadRequest = errors.New("gateway: Discord rejected the request")
	// ErrUpstream means Discord could not be reached or answered 5xx or
	// something undecodable.
	ErrUpstream = errors.New("gateway: Discord request failed")
)
