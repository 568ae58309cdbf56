package voiceemu

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// Payload types of the voice connection (Discord docs, "Voice Packet
// Structure"; video from the fact sheet's codec list).
const (
	payloadTypeOpus = 120
	payloadTypeVP8  = 105
	payloadTypeRTX  = 106

	rtpFixedHeaderSize = 12
	opusFrameSamples   = 960 // 20 ms at 48 kHz
	opusFrameDuration  = 20 * time.Millisecond
	vp8ClockRate       = 90000
	maxVP8Payload      = 1100 // VP8 bytes per packet, leaving room for headers under a 1200-byte MTU

	// extensionProfileOneByte is the RFC 8285 one-byte header extension
	// profile that Discord's SFU puts on the packets it relays.
	extensionProfileOneByte = 0xBEDE
	// extensionProfileTwoByte is the RFC 8285 §4.3 two-byte form's
	// profile (0x100 and 4 bits of appbits, here 0).
	extensionProfileTwoByte = 0x1000
)

// opusSilence is the Opus frame Discord uses for silence ("Voice Data
// Interpolation").
var opusSilence = []byte{0xF8, 0xFF, 0xFE}

// isRTCP reports whether a datagram is RTCP rather than RTP: Discord's
// RTCP uses packet types 200-204 in the second byte (RFC 3550 §12.1), which
// RTP's marker bit and payload type never reach for the codecs in use.
func isRTCP(pkt []byte) bool {
	return len(pkt) >= 2 && pkt[1] >= 200 && pkt[1] <= 204
}

// rtpPacket is a parsed plaintext RTP packet (RFC 3550 §5.1).
type rtpPacket struct {
	marker      bool
	payloadType uint8
	sequence    uint16
	timestamp   uint32
	ssrc        uint32
	csrcs       []uint32
	extProfile  uint16
	extension   []byte // extension body, without the 4-byte preamble; nil when X is clear
	payload     []byte // without padding
}

// parseRTP parses a plaintext RTP packet, handling CSRCs, the header
// extension (RFC 3550 §5.3.1) and padding.
func parseRTP(b []byte) (rtpPacket, error) {
	var p rtpPacket
	if len(b) < rtpFixedHeaderSize {
		return p, fmt.Errorf("%w: RTP packet of %d bytes is shorter than the 12-byte header", ErrBadPacket, len(b))
	}
	if b[0]>>6 != 2 {
		return p, fmt.Errorf("%w: RTP version %d, want 2", ErrBadPacket, b[0]>>6)
	}
	padding := b[0]&0x20 != 0
	hasExt := b[0]&0x10 != 0
	cc := int(b[0] & 0x0f)
	p.marker = b[1]&0x80 != 0
	p.payloadType = b[1] & 0x7f
	p.sequence = binary.BigEndian.Uint16(b[2:])
	p.timestamp = binary.BigEndian.Uint32(b[4:])
	p.ssrc = binary.BigEndian.Uint32(b[8:])
	off := rtpFixedHeaderSize
	if len(b) < off+4*cc {
		return p, fmt.Errorf("%w: %d CSRCs do not fit in %d bytes", ErrBadPacket, cc, len(b))
	}
	for i := 0; i < cc; i++ {
		p.csrcs = append(p.csrcs, binary.BigEndian.Uint32(b[off:]))
		off += 4
	}
	if hasExt {
		if len(b) < off+4 {
			return p, fmt.Errorf("%w: X bit set but no extension preamble", ErrBadPacket)
		}
		p.extProfile = binary.BigEndian.Uint16(b[off:])
		words := int(binary.BigEndian.Uint16(b[off+2:]))
		off += 4
		if len(b) < off+4*words {
			return p, fmt.Errorf("%w: extension of %d words runs past the packet", ErrBadPacket, words)
		}
		p.extension = b[off : off+4*words]
		off += 4 * words
	}
	end := len(b)
	if padding {
		if end == off {
			return p, fmt.Errorf("%w: P bit set on a packet without payload", ErrBadPacket)
		}
		n := int(b[end-1])
		if n == 0 || n > end-off {
			return p, fmt.Errorf("%w: padding count %d is invalid", ErrBadPacket, n)
		}
		end -= n
	}
	p.payload = b[off:end]
	return p, nil
}

// marshal writes the packet without padding.
func (p rtpPacket) marshal() []byte {
	size := rtpFixedHeaderSize + 4*len(p.csrcs) + len(p.payload)
	if p.extension != nil {
		size += 4 + len(p.extension)
	}
	b := make([]byte, rtpFixedHeaderSize, size)
	b[0] = 0x80 | byte(len(p.csrcs)&0x0f)
	if p.extension != nil {
		b[0] |= 0x10
	}
	b[1] = p.payloadType & 0x7f
	if p.marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], p.sequence)
	binary.BigEndian.PutUint32(b[4:], p.timestamp)
	binary.BigEndian.PutUint32(b[8:], p.ssrc)
	for _, c := range p.csrcs {
		b = binary.BigEndian.AppendUint32(b, c)
	}
	if p.extension != nil {
		b = binary.BigEndian.AppendUint16(b, p.extProfile)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.extension)/4))
		b = append(b, p.extension...)
	}
	return append(b, p.payload...)
}

// relayExtension is the header extension the relay puts on a packet it
// forwards. Discord's SFU varies it from packet to packet, so the relay
// cycles by sequence number through: none (X clear); an RFC 8285
// one-byte element (id 1, audio level, RFC 6464) padded to a word; that
// and a 3-byte element (id 3, abs-send-time), two words; and the two-byte
// form (profile 0x1000, RFC 8285 §4.3) of the audio level.
func relayExtension(seq uint16) (profile uint16, body []byte) {
	switch seq % 4 {
	case 0:
		return 0, nil
	case 1:
		return extensionProfileOneByte, []byte{0x10, 0x7f, 0x00, 0x00}
	case 2:
		return extensionProfileOneByte, []byte{0x10, 0x7f, 0x32, 0x12, 0x34, 0x56, 0x00, 0x00}
	}
	return extensionProfileTwoByte, []byte{0x01, 0x01, 0x7f, 0x00}
}

// isDAVEFrame applies a DAVE receiver's frame check to a media frame
// (DAVE whitepaper, "Protocol Frame Check"; docs/dave.md, "Frame format"):
// at least 11 bytes, the 0xFAFA marker, a supplemental size byte between 11
// and the frame's length, then inside the supplemental data an 8-byte tag,
// a ULEB128 nonce and ULEB128 (offset, size) pairs of unencrypted ranges
// that are ordered, do not overlap, lie inside the frame and fill the data
// up to the size byte.
func isDAVEFrame(frame []byte) bool {
	const minSize, tagSize = 11, 8
	n := len(frame)
	if n < minSize || frame[n-1] != 0xFA || frame[n-2] != 0xFA {
		return false
	}
	supp := int(frame[n-3])
	if supp < minSize || supp > n {
		return false
	}
	body := n - supp // bytes of the frame itself, before the tag
	meta := frame[body+tagSize : n-3]
	if _, ok := readULEB128(&meta); !ok {
		return false
	}
	end := uint64(0)
	for len(meta) > 0 {
		off, ok1 := readULEB128(&meta)
		size, ok2 := readULEB128(&meta)
		if !ok1 || !ok2 || off < end || size > uint64(body) || off > uint64(body)-size {
			return false
		}
		end = off + size
	}
	return true
}

// readULEB128 reads one unsigned LEB128 value (at most 64 bits) from the
// front of *b.
func readULEB128(b *[]byte) (uint64, bool) {
	var v uint64
	for i, c := range *b {
		if i == 10 || (i == 9 && c > 1) {
			return 0, false
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			*b = (*b)[i+1:]
			return v, true
		}
	}
	return 0, false
}

// isSilence reports whether an Opus payload is the silence frame.
func isSilence(payload []byte) bool { return bytes.Equal(payload, opusSilence) }

// IP discovery (Discord docs, Voice Connections, "IP Discovery").
const (
	discoveryLen      = 74
	discoveryRequest  = 1
	discoveryResponse = 2
)

func isDiscoveryRequest(pkt []byte) bool {
	return len(pkt) == discoveryLen &&
		binary.BigEndian.Uint16(pkt) == discoveryRequest &&
		binary.BigEndian.Uint16(pkt[2:]) == discoveryLen-4
}

func discoveryReply(ssrc uint32, addr netip.AddrPort) []byte {
	b := make([]byte, discoveryLen)
	binary.BigEndian.PutUint16(b, discoveryResponse)
	binary.BigEndian.PutUint16(b[2:], discoveryLen-4)
	binary.BigEndian.PutUint32(b[4:], ssrc)
	copy(b[8:8+63], addr.Addr().Unmap().String()) // NUL-terminated: byte 71 stays zero at worst
	binary.BigEndian.PutUint16(b[72:], addr.Port())
	return b
}

// RTCP (RFC 3550 §6.4).
const (
	rtcpSenderReport   = 200
	rtcpReceiverReport = 201
)

// ntpTime converts t to the 64-bit NTP timestamp of RFC 3550 §4.
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return secs<<32 | frac
}

// senderReport builds an RTCP SR without report blocks.
func senderReport(ssrc uint32, now time.Time, rtpTime, packets, octets uint32) []byte {
	b := make([]byte, 28)
	b[0] = 0x80
	b[1] = rtcpSenderReport
	binary.BigEndian.PutUint16(b[2:], 28/4-1)
	binary.BigEndian.PutUint32(b[4:], ssrc)
	binary.BigEndian.PutUint64(b[8:], ntpTime(now))
	binary.BigEndian.PutUint32(b[16:], rtpTime)
	binary.BigEndian.PutUint32(b[20:], packets)
	binary.BigEndian.PutUint32(b[24:], octets)
	return b
}

// reportBlock is the part of an RR this server fills in.
type reportBlock struct {
	ssrc       uint32
	lost       uint32 // cumulative, 24 bits
	highestSeq uint32 // extended highest sequence number
}

// receiverReport builds an RTCP RR with up to 31 report blocks.
func receiverReport(ssrc uint32, blocks []reportBlock) []byte {
	if len(blocks) > 31 {
		blocks = blocks[:31]
	}
	size := 8 + 24*len(blocks)
	b := make([]byte, 8, size)
	b[0] = 0x80 | byte(len(blocks))
	b[1] = rtcpReceiverReport
	binary.BigEndian.PutUint16(b[2:], uint16(size/4-1))
	binary.BigEndian.PutUint32(b[4:], ssrc)
	for _, rb := range blocks {
		b = binary.BigEndian.AppendUint32(b, rb.ssrc)
		b = binary.BigEndian.AppendUint32(b, rb.lost&0xffffff) // fraction lost 0
		b = binary.BigEndian.AppendUint32(b, rb.highestSeq)
		b = append(b, make([]byte, 12)...) // jitter, LSR, DLSR
	}
	return b
}

// VP8 RTP payload (RFC 7741).

// vp8Packetize splits a VP8 frame into RTP payloads with the RFC 7741 §4.2
// payload descriptor: X=1, I=1 with a 15-bit PictureID, S=1 and PID=0 on
// the first packet.
func vp8Packetize(frame []byte, pictureID uint16) [][]byte {
	var out [][]byte
	for first := true; first || len(frame) > 0; first = false {
		n := min(len(frame), maxVP8Payload)
		p := make([]byte, 4, 4+n)
		p[0] = 0x80 // X
		if first {
			p[0] |= 0x10 // S, PID 0
		}
		p[1] = 0x80 // I
		p[2] = 0x80 | byte(pictureID>>8)&0x7f
		p[3] = byte(pictureID)
		out = append(out, append(p, frame[:n]...))
		frame = frame[n:]
	}
	return out
}

// vp8Descriptor is the parsed RFC 7741 §4.2 payload descriptor.
type vp8Descriptor struct {
	start     bool // S bit
	partition uint8
	headerLen int
}

func parseVP8Descriptor(p []byte) (vp8Descriptor, error) {
	var d vp8Descriptor
	if len(p) < 1 {
		return d, fmt.Errorf("%w: empty VP8 payload", ErrBadPacket)
	}
	d.start = p[0]&0x10 != 0
	d.partition = p[0] & 0x07
	n := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return d, fmt.Errorf("%w: VP8 descriptor X bit without extension byte", ErrBadPacket)
		}
		ext := p[1]
		n = 2
		if ext&0x80 != 0 { // I
			if len(p) < n+1 {
				return d, fmt.Errorf("%w: VP8 descriptor truncated at PictureID", ErrBadPacket)
			}
			if p[n]&0x80 != 0 { // M: 15-bit PictureID
				n += 2
			} else {
				n++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			n++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			n++
		}
	}
	if n > len(p) {
		return d, fmt.Errorf("%w: VP8 descriptor of %d bytes runs past the %d-byte payload", ErrBadPacket, n, len(p))
	}
	d.headerLen = n
	return d, nil
}

// vp8IsKeyframe reads the inverse key frame flag of the VP8 payload
// header (RFC 7741 §4.3, RFC 6386 §9.1).
func vp8IsKeyframe(frame []byte) bool {
	return len(frame) > 0 && frame[0]&0x01 == 0
}

// vp8Assembler rebuilds VP8 frames from RTP packets that arrive in order;
// a sequence gap discards the frame in progress.
type vp8Assembler struct {
	buf     []byte
	active  bool
	lastSeq uint16
	haveSeq bool
}

// push adds one packet and returns a completed frame, if any.
func (a *vp8Assembler) push(p rtpPacket) (VideoFrame, bool) {
	gap := a.haveSeq && p.sequence != a.lastSeq+1
	a.lastSeq, a.haveSeq = p.sequence, true
	d, err := parseVP8Descriptor(p.payload)
	if err != nil {
		a.active, a.buf = false, a.buf[:0]
		return VideoFrame{}, false
	}
	body := p.payload[d.headerLen:]
	switch {
	case d.start && d.partition == 0:
		a.buf = append(a.buf[:0], body...)
		a.active = true
	case a.active && !gap:
		a.buf = append(a.buf, body...)
	default:
		a.active, a.buf = false, a.buf[:0]
		return VideoFrame{}, false
	}
	if !p.marker {
		return VideoFrame{}, false
	}
	a.active = false
	frame := append([]byte(nil), a.buf...)
	return VideoFrame{Data: frame, Keyframe: vp8IsKeyframe(frame)}, true
}
