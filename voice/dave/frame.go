package dave

import (
	"encoding/binary"
	"fmt"
	"math"
)

// MediaKind tells audio from video. Only audio frames can be the SFU's
// silence frame, which always passes through.
type MediaKind uint8

// Media kinds.
const (
	Audio MediaKind = iota + 1
	Video
)

// String returns "audio" or "video".
func (k MediaKind) String() string {
	switch k {
	case Audio:
		return "audio"
	case Video:
		return "video"
	}
	return fmt.Sprintf("MediaKind(%d)", uint8(k))
}

// Codec names a media codec whose DAVE unencrypted ranges this package knows
// (libdave codec_utils; DAVE whitepaper, "Codec Handling").
type Codec uint8

// Codecs the bridge sends.
const (
	// CodecOpus frames are encrypted whole.
	CodecOpus Codec = iota + 1
	// CodecVP8 frames keep their payload header clear: 10 bytes on a key
	// frame, 1 byte otherwise (RFC 7741 §4.3), so the packetizer can read it.
	CodecVP8
)

// Codec returns the codec the bridge uses for media of kind k: Opus for
// audio and VP8 for video.
func (k MediaKind) Codec() Codec {
	switch k {
	case Audio:
		return CodecOpus
	case Video:
		return CodecVP8
	}
	return 0
}

// Frame layout constants (DAVE whitepaper, "Supplemental Data"; libdave
// common.h).
const (
	// TagSize is the truncated AES-GCM tag length carried in each frame.
	TagSize = 8
	// minSupplemental is tag + size byte + magic marker: the smallest
	// possible trailer if the nonce had no bytes (it always has one).
	minSupplemental = TagSize + 1 + 2
	// maxNonceLen bounds the ULEB128 truncated nonce (a u32).
	maxNonceLen = 5
	// maxRanges bounds the unencrypted ranges a trailer can hold: the
	// supplemental size is one byte and each (offset, size) pair takes at
	// least two.
	maxRanges = (math.MaxUint8 - minSupplemental - 1) / 2
	// generationShift moves the generation byte to the top of the u32
	// truncated nonce.
	generationShift = 24
	// vp8KeyFrameClear and vp8DeltaFrameClear are the clear prefix lengths
	// libdave uses for VP8.
	vp8KeyFrameClear   = 10
	vp8DeltaFrameClear = 1
)

// marker ends every DAVE frame.
var marker = [2]byte{0xFA, 0xFA}

// opusSilence is the Opus frame the SFU synthesizes for silence; it always
// passes through unencrypted (DAVE whitepaper, "Silence Packets").
var opusSilence = [3]byte{0xF8, 0xFF, 0xFE}

// IsSilence reports whether frame is exactly the Opus silence frame.
func IsSilence(frame []byte) bool {
	return len(frame) == len(opusSilence) && [3]byte(frame) == opusSilence
}

// byteRange is one unencrypted range of a frame.
type byteRange struct {
	off, size int
}

// trailer is a parsed DAVE frame trailer. It is a value with fixed-size
// storage so that parsing allocates nothing.
type trailer struct {
	tag     [TagSize]byte
	nonce   uint32
	ranges  [maxRanges]byteRange
	nranges int
	// payload is the length of the frame before the trailer.
	payload int
}

// parseTrailer checks that frame is a DAVE frame and parses its trailer
// into t. It applies the receiver's protocol frame check exactly (DAVE
// whitepaper, "Protocol Frame Check"; libdave InboundFrameProcessor): at
// least 11 bytes, the FA FA marker, a supplemental size between 11 and the
// frame length, a strict ULEB128 nonce that fits 32 bits, and unencrypted
// ranges that are strict ULEB128 pairs filling their area exactly, ordered,
// non-overlapping and inside the payload. (libdave bounds ranges by the
// whole frame; ranges reaching into the trailer are refused here, as no
// sender produces them.)
func parseTrailer(frame []byte, t *trailer) error {
	t.nranges = 0
	if len(frame) < minSupplemental {
		return fmt.Errorf("%w: %d bytes is shorter than a trailer", ErrNotDAVEFrame, len(frame))
	}
	if frame[len(frame)-2] != marker[0] || frame[len(frame)-1] != marker[1] {
		return fmt.Errorf("%w: no FA FA marker", ErrNotDAVEFrame)
	}
	supp := int(frame[len(frame)-3])
	if supp < minSupplemental || supp > len(frame) {
		return fmt.Errorf("%w: supplemental size %d outside [%d, %d]", ErrNotDAVEFrame, supp, minSupplemental, len(frame))
	}
	t.payload = len(frame) - supp
	copy(t.tag[:], frame[t.payload:])
	area := frame[t.payload+TagSize : len(frame)-3]
	nonce, n, err := readLEB128(area, math.MaxUint32)
	if err != nil {
		return fmt.Errorf("%w: nonce: %w", ErrNotDAVEFrame, err)
	}
	t.nonce = uint32(nonce)
	area = area[n:]
	end := 0
	for len(area) > 0 {
		off, n, err := readLEB128(area, uint64(t.payload))
		if err != nil {
			return fmt.Errorf("%w: range %d offset: %w", ErrNotDAVEFrame, t.nranges, err)
		}
		area = area[n:]
		size, n, err := readLEB128(area, uint64(t.payload))
		if err != nil {
			return fmt.Errorf("%w: range %d size: %w", ErrNotDAVEFrame, t.nranges, err)
		}
		area = area[n:]
		r := byteRange{off: int(off), size: int(size)}
		if r.off < end || r.off+r.size > t.payload {
			return fmt.Errorf("%w: range %d (%d+%d) overlaps, is out of order or leaves the %d-byte payload",
				ErrNotDAVEFrame, t.nranges, r.off, r.size, t.payload)
		}
		// The area is at most 243 bytes, so maxRanges pairs always fit.
		t.ranges[t.nranges] = r
		t.nranges++
		end = r.off + r.size
	}
	return nil
}

// clearPrefix returns how many leading bytes of frame stay unencrypted for
// codec (libdave codec_utils ProcessFrameOpus / ProcessFrameVp8). Frames
// shorter than the prefix stay wholly clear.
func clearPrefix(codec Codec, frame []byte) (int, error) {
	switch codec {
	case CodecOpus:
		return 0, nil
	case CodecVP8:
		n := vp8DeltaFrameClear
		if frame[0]&0x01 == 0 { // P bit clear: key frame (RFC 7741 §4.3)
			n = vp8KeyFrameClear
		}
		return min(n, len(frame)), nil
	}
	return 0, fmt.Errorf("%w: %d", ErrUnknownCodec, codec)
}

// appendTrailer appends everything after the tag: the ULEB128 nonce, the
// one unencrypted range (0, clear) when clear > 0, the supplemental size and
// the marker.
func appendTrailer(dst []byte, nonce uint32, clear int) []byte {
	rangesLen := 0
	if clear > 0 {
		rangesLen = 1 + leb128Size(uint64(clear))
	}
	supp := minSupplemental + leb128Size(uint64(nonce)) + rangesLen
	dst = appendLEB128(dst, uint64(nonce))
	if clear > 0 {
		dst = appendLEB128(dst, 0)
		dst = appendLEB128(dst, uint64(clear))
	}
	dst = append(dst, byte(supp))
	return append(dst, marker[:]...)
}

// gcmNonce expands a truncated nonce to the 12-byte AES-GCM nonce: eight
// zero bytes, then the u32 little-endian (libdave kAesGcm128TruncatedSync
// NonceOffset).
func gcmNonce(truncated uint32) [12]byte {
	var n [12]byte
	binary.LittleEndian.PutUint32(n[8:], truncated)
	return n
}

// wrapGeneration extends the 8-bit generation b of a frame to the full
// generation, relative to the oldest generation still kept, so that
// generations continue past 255 when the sender's u32 nonce wraps (libdave
// ComputeWrappedGeneration).
func wrapGeneration(oldest uint32, b uint32) uint32 {
	factor := oldest / 256
	if b < oldest%256 {
		factor++
	}
	return factor*256 + b
}

// bigNonce combines a full generation with the low 24 bits of the nonce
// into the 64-bit counter replay protection orders frames by.
func bigNonce(gen uint32, nonce uint32) uint64 {
	return uint64(gen)<<generationShift | uint64(nonce&(1<<generationShift-1))
}
