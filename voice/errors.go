package voice

import "errors"

// Sentinel errors of package voice. Functions wrap them with %w and add
// what was wrong; callers branch with errors.Is.
var (
	// ErrShortPacket means a packet ended before a field its header
	// announces (RTP header, CSRC list, extension, nonce or tag).
	ErrShortPacket = errors.New("voice: packet too short")
	// ErrBadRTPVersion means the RTP version bits were not 2 (RFC 3550 §5.1).
	ErrBadRTPVersion = errors.New("voice: RTP version is not 2")
	// ErrBadHeader means an RTP header to be built had a field out of range
	// (more than 15 CSRCs, a payload type above 127).
	ErrBadHeader = errors.New("voice: invalid RTP header field")
	// ErrBadPadding means the RTP padding count was zero or larger than the
	// payload (RFC 3550 §5.1).
	ErrBadPadding = errors.New("voice: invalid RTP padding")
	// ErrBadExtension means an RTP header extension could not be built:
	// its body was not a whole number of 32-bit words or was too long.
	ErrBadExtension = errors.New("voice: invalid RTP header extension")
	// ErrDecrypt means authentication of an encrypted packet failed: wrong
	// key, wrong mode, or a damaged packet.
	ErrDecrypt = errors.New("voice: packet failed authentication")
	// ErrUnknownMode means a transport encryption mode name is not one this
	// package implements.
	ErrUnknownMode = errors.New("voice: unknown encryption mode")
	// ErrNoCommonMode means the voice server offered no transport
	// encryption mode this client implements.
	ErrNoCommonMode = errors.New("voice: no common encryption mode")
	// ErrBadKey means the secret key was not 32 bytes.
	ErrBadKey = errors.New("voice: secret key must be 32 bytes")
	// ErrBadDiscovery means an IP discovery packet did not have the
	// documented 74-byte layout.
	ErrBadDiscovery = errors.New("voice: malformed IP discovery packet")
	// ErrBadVP8 means a VP8 RTP payload descriptor was malformed (RFC 7741 §4.2).
	ErrBadVP8 = errors.New("voice: malformed VP8 payload")
	// ErrIncompleteFrame means a VP8 frame was abandoned because packets
	// of it were missing.
	ErrIncompleteFrame = errors.New("voice: incomplete VP8 frame")
	// ErrBadMessage means a voice gateway message could not be decoded.
	ErrBadMessage = errors.New("voice: malformed voice gateway message")
	// ErrHandshake means the voice gateway handshake did not complete as
	// the protocol describes.
	ErrHandshake = errors.New("voice: voice gateway handshake failed")
	// ErrZombie means the voice gateway did not acknowledge a heartbeat
	// before the next one was due.
	ErrZombie = errors.New("voice: voice gateway heartbeat not acknowledged")
	// ErrClosedByServer means the voice gateway closed the connection with
	// a close code that forbids reconnecting; the wrapped text names the code.
	ErrClosedByServer = errors.New("voice: voice gateway closed the session")
	// ErrDAVERequired means the voice server requires end-to-end encryption
	// (close code 4017), which this connection did not offer.
	ErrDAVERequired = errors.New("voice: DAVE (E2EE) required by the voice server")
	// ErrJoinTimeout means the main gateway did not deliver both the voice
	// state and voice server updates before the join deadline.
	ErrJoinTimeout = errors.New("voice: timed out waiting for voice state and server updates")
	// ErrClosed means the connection was closed.
	ErrClosed = errors.New("voice: connection closed")
	// ErrOptions means the client options were incomplete; the wrapped text
	// names the missing field.
	ErrOptions = errors.New("voice: invalid options")
	// ErrNotConnected means media was sent while the connection had no
	// voice session (between servers or before Session Description).
	ErrNotConnected = errors.New("voice: no voice session")
	// ErrVideoOff means SendVP8 was called without Options.Video.
	ErrVideoOff = errors.New("voice: video is off (Options.Video): Discord discards bot video")
	// ErrNoVideo means the voice server assigned no video SSRC, so video
	// cannot be sent.
	ErrNoVideo = errors.New("voice: voice server assigned no video stream")
	// ErrFrameTooLarge means a frame did not fit in one UDP datagram.
	ErrFrameTooLarge = errors.New("voice: frame too large")
	// ErrNoDAVE means a DAVE operation was asked of a connection with no
	// DAVE session: DAVE is disabled, or the connection is between voice
	// sessions.
	ErrNoDAVE = errors.New("voice: no DAVE session")
)
