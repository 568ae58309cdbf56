package hub

import (
	"errors"
	"time"
)

// Errors a Rooms implementation returns. The hub maps them onto HTTP
// statuses (see rest.go); anything else becomes 502 with a generic message
// and the cause goes to the log only.
var (
	// ErrNotRoom: the channel exists but is not a room this bridge manages
	// (another channel type, another category, another guild). HTTP 404.
	ErrNotRoom = errors.New("hub: channel is not a room of this bridge")
	// ErrForbidden: Discord refused because the bot lacks a permission
	// (Manage Channels in the room category). HTTP 403.
	ErrForbidden = errors.New("hub: the bot lacks permission for this action")
	// ErrRateLimited: Discord rate-limited the request. HTTP 429 with a
	// Retry-After header; wrap an error that implements RetryAfterError to
	// pass the wait on.
	ErrRateLimited = errors.New("hub: rate limited by Discord")
	// ErrNotFound: the channel does not exist (any more). HTTP 404.
	ErrNotFound = errors.New("hub: channel not found")
)

// RetryAfterError is what the hub looks for (errors.As) inside an
// ErrRateLimited error to fill the Retry-After header; without it the
// header says 1 second.
type RetryAfterError interface {
	error
	RetryAfter() time.Duration
}

// Errors of the hub itself.
var (
	// ErrInvalidOptions: Options or VerifierOptions are missing a required
	// field or hold a bad value; the wrapped message names the field.
	ErrInvalidOptions = errors.New("hub: invalid options")
	// ErrInvalidToken: a bearer token was refused (bad signature, algorithm
	// not allowed, expired, wrong issuer or audience, malformed). The
	// wrapped message says which check failed.
	ErrInvalidToken = errors.New("hub: invalid token")
	// ErrUnknownKey: the token's kid is not in the key set, even after a
	// (rate-limited) re-fetch of the JWKS. It also matches ErrInvalidToken.
	ErrUnknownKey = errors.New("unknown signing key id (kid)")
	// ErrJWKS: the JWKS could not be fetched or parsed.
	ErrJWKS = errors.New("cannot load JWKS")
	// ErrClientClosed: Client.Send after the connection closed.
	ErrClientClosed = errors.New("hub: client connection is closed")
	// ErrSlowClient: a message did not fit the client's send queue; the
	// client has been closed with CloseSlowClient.
	ErrSlowClient = errors.New("hub: client send queue overflow")
	// ErrBadMessage: a client message is not a JSON object with a string
	// "type" of acceptable length.
	ErrBadMessage = errors.New("hub: bad client message")
	// ErrBadEvent: an internal event body failed validation.
	ErrBadEvent = errors.New("hub: bad internal event")
)
