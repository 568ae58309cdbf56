package voice

import (
	"encoding/binary"
	"fmt"
)

// RTP constants (RFC 3550 §5.1) and Discord's payload types
// (discord-protocol.md, "Video over the voice connection").
const (
	rtpVersion        = 2
	rtpFixedHeaderLen = 12
	rtpMaxCSRC        = 15
	rtcpHeaderLen     = 8

	// PayloadTypeOpus is the RTP payload type Discord uses for Opus.
	PayloadTypeOpus = 120
	// PayloadTypeVP8 is the RTP payload type announced for VP8 video.
	PayloadTypeVP8 = 105
	// PayloadTypeVP8RTX is the retransmission payload type paired with VP8.
	PayloadTypeVP8RTX = 106
)

// Header is a parsed RTP header (RFC 3550 §5.1) with an optional header
// extension (RFC 3550 §5.3.1, RFC 8285). Parsing does not allocate:
// ExtensionBody aliases the parsed buffer.
type Header struct {
	Padding     bool
	Marker      bool
	PayloadType uint8
	Sequence    uint16
	Timestamp   uint32
	SSRC        uint32
	// CSRCCount is the number of valid entries in CSRC (0..15).
	CSRCCount uint8
	CSRC      [rtpMaxCSRC]uint32
	// Extension is the X bit. ExtensionProfile is the 16-bit profile
	// (0xBEDE for RFC 8285 one-byte headers) and ExtensionBody the
	// extension data, a whole number of 32-bit words.
	Extension        bool
	ExtensionProfile uint16
	ExtensionBody    []byte
}

// clearLen is the part of the header that rtpsize modes leave in the clear
// and authenticate: fixed header, CSRCs and, with X set, the 4-byte
// extension preamble (Discord voice docs, "Transport Encryption Modes").
func (h *Header) clearLen() int {
	n := rtpFixedHeaderLen + 4*int(h.CSRCCount)
	if h.Extension {
		n += 4
	}
	return n
}

// Len is the marshalled length of the header including the extension body.
func (h *Header) Len() int {
	n := h.clearLen()
	if h.Extension {
		n += len(h.ExtensionBody)
	}
	return n
}

// check validates the fields a marshaller cannot represent.
func (h *Header) check() error {
	if h.CSRCCount > rtpMaxCSRC {
		return fmt.Errorf("voice: %d CSRCs, at most %d: %w", h.CSRCCount, rtpMaxCSRC, ErrBadHeader)
	}
	if h.PayloadType > 127 {
		return fmt.Errorf("voice: payload type %d does not fit 7 bits: %w", h.PayloadType, ErrBadHeader)
	}
	if h.Extension && (len(h.ExtensionBody)%4 != 0 || len(h.ExtensionBody) > 4*0xffff) {
		return fmt.Errorf("voice: extension body of %d bytes: %w", len(h.ExtensionBody), ErrBadExtension)
	}
	return nil
}

// appendClear appends the fixed header, the CSRCs and, with X set, the
// extension preamble (profile and length in words).
func (h *Header) appendClear(dst []byte) []byte {
	b0 := byte(rtpVersion<<6) | h.CSRCCount&0x0f
	if h.Padding {
		b0 |= 0x20
	}
	if h.Extension {
		b0 |= 0x10
	}
	b1 := h.PayloadType & 0x7f
	if h.Marker {
		b1 |= 0x80
	}
	dst = append(dst, b0, b1)
	dst = binary.BigEndian.AppendUint16(dst, h.Sequence)
	dst = binary.BigEndian.AppendUint32(dst, h.Timestamp)
	dst = binary.BigEndian.AppendUint32(dst, h.SSRC)
	for i := 0; i < int(h.CSRCCount); i++ {
		dst = binary.BigEndian.AppendUint32(dst, h.CSRC[i])
	}
	if h.Extension {
		dst = binary.BigEndian.AppendUint16(dst, h.ExtensionProfile)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.ExtensionBody)/4))
	}
	return dst
}

// AppendTo appends the marshalled header, extension body included.
func (h *Header) AppendTo(dst []byte) ([]byte, error) {
	if err := h.check(); err != nil {
		return dst, err
	}
	dst = h.appendClear(dst)
	if h.Extension {
		dst = append(dst, h.ExtensionBody...)
	}
	return dst, nil
}

// ParseHeader parses the RTP header at the start of b (RFC 3550 §5.1,
// §5.3.1) and returns it with its length, extension body included; the
// payload is b[n:] (padding not yet removed, see StripPadding).
func ParseHeader(b []byte) (h Header, n int, err error) {
	if len(b) < rtpFixedHeaderLen {
		return h, 0, fmt.Errorf("voice: RTP header needs %d bytes, have %d: %w", rtpFixedHeaderLen, len(b), ErrShortPacket)
	}
	if b[0]>>6 != rtpVersion {
		return h, 0, fmt.Errorf("voice: RTP version %d: %w", b[0]>>6, ErrBadRTPVersion)
	}
	h.Padding = b[0]&0x20 != 0
	h.Extension = b[0]&0x10 != 0
	h.CSRCCount = b[0] & 0x0f
	h.Marker = b[1]&0x80 != 0
	h.PayloadType = b[1] & 0x7f
	h.Sequence = binary.BigEndian.Uint16(b[2:])
	h.Timestamp = binary.BigEndian.Uint32(b[4:])
	h.SSRC = binary.BigEndian.Uint32(b[8:])
	n = rtpFixedHeaderLen + 4*int(h.CSRCCount)
	if len(b) < n {
		return h, 0, fmt.Errorf("voice: RTP header with %d CSRCs needs %d bytes, have %d: %w", h.CSRCCount, n, len(b), ErrShortPacket)
	}
	for i := 0; i < int(h.CSRCCount); i++ {
		h.CSRC[i] = binary.BigEndian.Uint32(b[rtpFixedHeaderLen+4*i:])
	}
	if h.Extension {
		if len(b) < n+4 {
			return h, 0, fmt.Errorf("voice: RTP extension preamble truncated: %w", ErrShortPacket)
		}
		h.ExtensionProfile = binary.BigEndian.Uint16(b[n:])
		words := int(binary.BigEndian.Uint16(b[n+2:]))
		n += 4
		if len(b) < n+4*words {
			return h, 0, fmt.Errorf("voice: RTP extension of %d words truncated: %w", words, ErrShortPacket)
		}
		h.ExtensionBody = b[n : n+4*words : n+4*words]
		n += 4 * words
	}
	return h, n, nil
}

// StripPadding removes RTP padding (RFC 3550 §5.1: the last octet counts
// the padding octets, itself included) when the P bit is set.
func StripPadding(h *Header, payload []byte) ([]byte, error) {
	if !h.Padding {
		return payload, nil
	}
	if len(payload) == 0 {
		return nil, fmt.Errorf("voice: padding bit set on empty payload: %w", ErrBadPadding)
	}
	p := int(payload[len(payload)-1])
	if p == 0 || p > len(payload) {
		return nil, fmt.Errorf("voice: padding count %d with %d payload bytes: %w", p, len(payload), ErrBadPadding)
	}
	return payload[:len(payload)-p], nil
}

// IsRTCP reports whether a datagram on the voice socket is RTCP rather
// than RTP: RTCP packet types 200-204 (SR, RR, SDES, BYE, APP; RFC 3550
// §6) sit where RTP has marker and payload type, so masking the marker
// leaves 72-76, payload types RTP must not use (RFC 5761 §4).
func IsRTCP(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	pt := b[1] & 0x7f
	return pt >= 72 && pt <= 76
}
