package dave

import "errors"

// Sentinel errors returned by this package. Callers branch on them with
// errors.Is; the returned errors wrap them with the detail of what was wrong.
var (
	// ErrLEB128 reports a malformed ULEB128 value: truncated, overlong
	// (a redundant zero continuation) or too large for its field.
	ErrLEB128 = errors.New("dave: malformed ULEB128 value")

	// ErrNotDAVEFrame reports a frame whose trailer is not a valid DAVE
	// trailer (see the DAVE whitepaper, "Protocol Frame Check").
	ErrNotDAVEFrame = errors.New("dave: not a DAVE-encrypted frame")

	// ErrPassthroughDenied reports an unencrypted frame received while
	// passthrough is not allowed; the frame was dropped.
	ErrPassthroughDenied = errors.New("dave: unencrypted frame while passthrough is not allowed")

	// ErrReplay reports a frame whose nonce was already used or is too old
	// to be tracked by the replay window.
	ErrReplay = errors.New("dave: replayed or out-of-window nonce")

	// ErrNoKey reports that no key ratchet is available for the frame's
	// generation (too old, too far ahead, older than the ratchet's age
	// allows, or no ratchet at all).
	ErrNoKey = errors.New("dave: no key for this generation")

	// ErrAuth reports a frame whose authentication tag did not verify.
	ErrAuth = errors.New("dave: frame authentication failed")

	// ErrEmptyFrame reports an empty media frame given to the encryptor.
	ErrEmptyFrame = errors.New("dave: empty frame")

	// ErrUnknownCodec reports a codec or media kind this package does not
	// handle.
	ErrUnknownCodec = errors.New("dave: unknown codec")

	// ErrBadMessage reports a voice gateway DAVE message that could not be
	// parsed or does not follow the protocol.
	ErrBadMessage = errors.New("dave: malformed DAVE gateway message")

	// ErrBadArgument reports an invalid argument to a pure helper, such as a
	// displayable code length that is not a multiple of its group size.
	ErrBadArgument = errors.New("dave: invalid argument")
)
