package voiceemu

import "errors"

// Sentinel errors; functions wrap them with %w and a description of what
// was wrong.
var (
	// ErrClosed is returned by operations on a Server or Member that has
	// been closed or has left.
	ErrClosed = errors.New("voiceemu: closed")
	// ErrInvalidOptions reports an Options or MemberOptions value that
	// cannot work, for example an unknown transport mode.
	ErrInvalidOptions = errors.New("voiceemu: invalid options")
	// ErrBadPacket reports a datagram or frame that does not parse as the
	// protocol it claims to be (RTP, RTCP, VP8 payload, Ogg page).
	ErrBadPacket = errors.New("voiceemu: bad packet")
	// ErrDecrypt reports a packet whose transport encryption did not
	// authenticate with the session key.
	ErrDecrypt = errors.New("voiceemu: decryption failed")
	// ErrUnknownMode reports a transport encryption mode this server does
	// not implement.
	ErrUnknownMode = errors.New("voiceemu: unknown encryption mode")
	// ErrUnknownSample reports a sample name that is not embedded.
	ErrUnknownSample = errors.New("voiceemu: unknown sample")
	// ErrBadSample reports an embedded sample that does not parse.
	ErrBadSample = errors.New("voiceemu: bad sample")
	// ErrNoMediaKey reports a frame a simulated member did not send
	// because its channel runs DAVE and the member holds no media key yet:
	// it is not in the group, or the transition adding it has not
	// executed. Real clients drop such frames too.
	ErrNoMediaKey = errors.New("voiceemu: no DAVE media key yet")
)
