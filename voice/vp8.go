package voice

import (
	"fmt"
)

// VP8Descriptor is the VP8 RTP payload descriptor (RFC 7741 §4.2).
type VP8Descriptor struct {
	// NonReference is the N bit: the frame can be discarded.
	NonReference bool
	// Start is the S bit: this packet begins a VP8 partition.
	Start bool
	// PartitionID is the 3-bit PID; 0 with Start marks the frame start.
	PartitionID uint8
	// HasPictureID is the I bit; LongPictureID the M bit (15-bit ID).
	HasPictureID  bool
	LongPictureID bool
	PictureID     uint16
	// HasTL0PICIDX is the L bit.
	HasTL0PICIDX bool
	TL0PICIDX    uint8
	// HasTID is the T bit; TID and LayerSync (Y) are valid with it.
	HasTID    bool
	TID       uint8
	LayerSync bool
	// HasKeyIdx is the K bit.
	HasKeyIdx bool
	KeyIdx    uint8
}

// ParseVP8Descriptor parses the payload descriptor at the start of an RTP
// payload and returns it with its length; the VP8 data is b[n:].
func ParseVP8Descriptor(b []byte) (d VP8Descriptor, n int, err error) {
	if len(b) < 1 {
		return d, 0, fmt.Errorf("voice: empty VP8 payload: %w", ErrBadVP8)
	}
	x := b[0]&0x80 != 0
	d.NonReference = b[0]&0x20 != 0
	d.Start = b[0]&0x10 != 0
	d.PartitionID = b[0] & 0x07
	n = 1
	if !x {
		return d, n, nil
	}
	if len(b) < 2 {
		return d, 0, fmt.Errorf("voice: VP8 descriptor X byte missing: %w", ErrBadVP8)
	}
	ext := b[1]
	n = 2
	d.HasPictureID = ext&0x80 != 0
	d.HasTL0PICIDX = ext&0x40 != 0
	d.HasTID = ext&0x20 != 0
	d.HasKeyIdx = ext&0x10 != 0
	if d.HasPictureID {
		if len(b) < n+1 {
			return d, 0, fmt.Errorf("voice: VP8 picture ID missing: %w", ErrBadVP8)
		}
		if b[n]&0x80 != 0 {
			if len(b) < n+2 {
				return d, 0, fmt.Errorf("voice: VP8 15-bit picture ID truncated: %w", ErrBadVP8)
			}
			d.LongPictureID = true
			d.PictureID = uint16(b[n]&0x7f)<<8 | uint16(b[n+1])
			n += 2
		} else {
			d.PictureID = uint16(b[n] & 0x7f)
			n++
		}
	}
	if d.HasTL0PICIDX {
		if len(b) < n+1 {
			return d, 0, fmt.Errorf("voice: VP8 TL0PICIDX missing: %w", ErrBadVP8)
		}
		d.TL0PICIDX = b[n]
		n++
	}
	if d.HasTID || d.HasKeyIdx {
		if len(b) < n+1 {
			return d, 0, fmt.Errorf("voice: VP8 TID/KEYIDX byte missing: %w", ErrBadVP8)
		}
		d.TID = b[n] >> 6
		d.LayerSync = b[n]&0x20 != 0
		d.KeyIdx = b[n] & 0x1f
		n++
	}
	return d, n, nil
}

// AppendTo appends the marshalled descriptor.
func (d *VP8Descriptor) AppendTo(dst []byte) []byte {
	x := d.HasPictureID || d.HasTL0PICIDX || d.HasTID || d.HasKeyIdx
	b0 := d.PartitionID & 0x07
	if x {
		b0 |= 0x80
	}
	if d.NonReference {
		b0 |= 0x20
	}
	if d.Start {
		b0 |= 0x10
	}
	dst = append(dst, b0)
	if !x {
		return dst
	}
	var ext byte
	if d.HasPictureID {
		ext |= 0x80
	}
	if d.HasTL0PICIDX {
		ext |= 0x40
	}
	if d.HasTID {
		ext |= 0x20
	}
	if d.HasKeyIdx {
		ext |= 0x10
	}
	dst = append(dst, ext)
	if d.HasPictureID {
		if d.LongPictureID {
			dst = append(dst, 0x80|byte(d.PictureID>>8)&0x7f, byte(d.PictureID))
		} else {
			dst = append(dst, byte(d.PictureID)&0x7f)
		}
	}
	if d.HasTL0PICIDX {
		dst = append(dst, d.TL0PICIDX)
	}
	if d.HasTID || d.HasKeyIdx {
		b := d.TID<<6 | d.KeyIdx&0x1f
		if d.LayerSync {
			b |= 0x20
		}
		dst = append(dst, b)
	}
	return dst
}

// VP8IsKeyframe reports whether VP8 frame data (the bytes after the
// descriptor of a frame's first packet) is a key frame: the P bit, bit 0
// of the first byte, is 0 for key frames (RFC 7741 §4.3, RFC 6386 §9.1).
func VP8IsKeyframe(frame []byte) bool { return len(frame) > 0 && frame[0]&0x01 == 0 }

// DefaultVP8MaxPayload bounds each outgoing VP8 RTP payload, descriptor
// included: it keeps RTP packets well under a 1200-byte path MTU once RTP
// header, tag and nonce are added. pion's codecs.VP8Payloader splits the
// frames (RFC 7741 §4.4, a 15-bit picture ID advancing per frame).
const DefaultVP8MaxPayload = 1100

// VP8Result is what VP8Assembler.Push produced.
type VP8Result struct {
	// Frame is a complete frame when Complete; it aliases the assembler's
	// buffer until the next Push.
	Frame    []byte
	Keyframe bool
	Complete bool
	// Abandoned counts frames given up because packets were missing.
	Abandoned int
}

// VP8Assembler rebuilds VP8 frames from in-order RTP payloads: a frame
// begins with S set and PID 0, continues with consecutive sequence
// numbers of the same timestamp and ends at the marker bit (RFC 7741
// §4.4, §4.5). A frame with a hole is abandoned and reported.
type VP8Assembler struct {
	buf      []byte
	active   bool
	keyframe bool
	ts       uint32
	nextSeq  uint16
	orphanTS uint32
	orphan   bool
}

// Push adds one RTP payload; missing is how many packets were lost just
// before it (from the reorder buffer).
func (a *VP8Assembler) Push(seq uint16, ts uint32, marker bool, missing int, payload []byte) (VP8Result, error) {
	var r VP8Result
	d, n, err := ParseVP8Descriptor(payload)
	if err != nil {
		if a.active {
			a.active = false
			r.Abandoned++
		}
		return r, err
	}
	data := payload[n:]
	if a.active && (ts != a.ts || missing > 0 || seq != a.nextSeq) {
		a.active = false
		r.Abandoned++
		a.orphan, a.orphanTS = true, a.ts
	}
	if !a.active {
		if !d.Start || d.PartitionID != 0 {
			// A continuation whose start was lost: one abandoned frame
			// per timestamp.
			if !a.orphan || a.orphanTS != ts {
				r.Abandoned++
				a.orphan, a.orphanTS = true, ts
			}
			return r, nil
		}
		a.active, a.ts = true, ts
		a.keyframe = VP8IsKeyframe(data)
		a.buf = a.buf[:0]
		a.orphan = false
	}
	a.buf = append(a.buf, data...)
	a.nextSeq = seq + 1
	if marker {
		a.active = false
		r.Frame, r.Keyframe, r.Complete = a.buf, a.keyframe, true
	}
	return r, nil
}
