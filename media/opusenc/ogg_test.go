package opusenc_test

import (
	"encoding/binary"
)

// oggCRC is Ogg's CRC-32 (RFC 3533 §6): polynomial 0x04c11db7, not
// reflected, zero initial value and no final xor.
var oggCRC = func() *[256]uint32 {
	var t [256]uint32
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return &t
}()

// oggOpus wraps 20 ms mono Opus packets in an Ogg Opus file (RFC 7845):
// OpusHead with no pre-skip, empty OpusTags, then one packet per page.
func oggOpus(packets [][]byte) []byte {
	const serial = 0x0b1d6e5
	head := []byte("OpusHead")
	head = append(head, 1, 1) // version, channels
	head = binary.LittleEndian.AppendUint16(head, 0)
	head = binary.LittleEndian.AppendUint32(head, 48000)
	head = binary.LittleEndian.AppendUint16(head, 0)
	head = append(head, 0) // mapping family 0
	tags := []byte("OpusTags")
	tags = binary.LittleEndian.AppendUint32(tags, 6)
	tags = append(tags, "opusenc"[:6]...)
	tags = binary.LittleEndian.AppendUint32(tags, 0)

	var out []byte
	seq := uint32(0)
	page := func(packet []byte, granule uint64, flags byte) {
		start := len(out)
		out = append(out, "OggS"...)
		out = append(out, 0, flags)
		out = binary.LittleEndian.AppendUint64(out, granule)
		out = binary.LittleEndian.AppendUint32(out, serial)
		out = binary.LittleEndian.AppendUint32(out, seq)
		seq++
		out = binary.LittleEndian.AppendUint32(out, 0) // CRC, filled below
		var lacing []byte
		n := len(packet)
		for n >= 255 {
			lacing = append(lacing, 255)
			n -= 255
		}
		lacing = append(lacing, byte(n))
		out = append(out, byte(len(lacing)))
		out = append(out, lacing...)
		out = append(out, packet...)
		var crc uint32
		for _, b := range out[start:] {
			crc = crc<<8 ^ oggCRC[byte(crc>>24)^b]
		}
		binary.LittleEndian.PutUint32(out[start+22:], crc)
	}
	page(head, 0, 2)
	page(tags, 0, 0)
	for i, p := range packets {
		flags := byte(0)
		if i == len(packets)-1 {
			flags = 4
		}
		page(p, uint64(i+1)*960, flags)
	}
	return out
}
