package voice

import (
	"time"

	"github.com/voicebridge/bridge/voice/dave"
)

// MediaKind says whether a frame is audio or video; it is DAVE's, as
// frames are what DAVE encrypts.
type MediaKind = dave.MediaKind

// Media kinds.
const (
	Audio = dave.Audio
	Video = dave.Video
)

// FrameEncryptor transforms each outgoing codec frame before it is
// packetized: the seam where DAVE end-to-end encryption plugs in. It
// appends the result to dst and returns it.
type FrameEncryptor interface {
	EncryptFrame(dst []byte, kind MediaKind, frame []byte) ([]byte, error)
}

// FrameDecryptor transforms each received codec frame after it is
// depacketized, knowing the sender's user id.
type FrameDecryptor interface {
	DecryptFrame(dst []byte, userID string, kind MediaKind, frame []byte) ([]byte, error)
}

// Frame is one received codec frame, in sequence order per stream.
type Frame struct {
	UserID    string
	SSRC      uint32
	Kind      MediaKind
	Seq       uint16
	Timestamp uint32
	Payload   []byte
	// Missing counts frames lost just before this one (audio: packets,
	// conceal them with PLC; video: abandoned frames). For video, Seq is
	// the sequence number of the frame's last packet.
	Missing int
	// Keyframe marks a VP8 key frame.
	Keyframe bool
	// Received is when the UDP socket delivered the packet that completed
	// the frame (its only packet for audio): the start of the bridge's
	// own latency.
	Received time.Time
}
