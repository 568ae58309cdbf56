package opusenc

import "errors"

var (
	// ErrBitrate reports an Options.Bitrate outside what a CELT-only
	// 20 ms packet can carry; the error says the bounds.
	ErrBitrate = errors.New("opusenc: bitrate out of range")
	// ErrFrameSize reports PCM that is not one 20 ms frame (FrameSize
	// samples) or an output buffer shorter than PacketSize.
	ErrFrameSize = errors.New("opusenc: wrong frame or buffer size")
)
