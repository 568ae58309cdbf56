// Package oggopus reads Ogg Opus files (RFC 7845): the pages of a single
// Ogg stream (RFC 3533) into packets, and those into 20 ms Opus frames,
// what Discord and WebRTC carry. The voice emulator reads its embedded
// samples with it and internal/audiotest its test tones.
package oggopus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed reports a file that is not a well-formed single-stream Ogg
// Opus file of 20 ms frames; the error wrapping it says what was wrong.
var ErrMalformed = errors.New("oggopus: malformed Ogg Opus")

// FrameSamples is the length of the frames Frames accepts: 20 ms at
// 48 kHz, per channel.
const FrameSamples = 960

// Frames returns the Opus packets of an Ogg Opus file after its two
// header packets (OpusHead, OpusTags; RFC 7845 §3), checking that each is
// one 20 ms frame.
func Frames(data []byte) ([][]byte, error) {
	packets, err := Packets(data)
	if err != nil {
		return nil, err
	}
	if len(packets) < 2 || !bytes.HasPrefix(packets[0], []byte("OpusHead")) || !bytes.HasPrefix(packets[1], []byte("OpusTags")) {
		return nil, fmt.Errorf("%w: missing OpusHead/OpusTags", ErrMalformed)
	}
	frames := packets[2:]
	for i, f := range frames {
		if d, err := PacketSamples(f); err != nil || d != FrameSamples {
			return nil, fmt.Errorf("%w: packet %d is not one 20 ms frame (%d samples, %v)", ErrMalformed, i, d, err)
		}
	}
	return frames, nil
}

// Packets splits a single-stream Ogg file into packets by the pages'
// segment tables (RFC 3533 §6: a lacing value below 255 ends a packet;
// 255 continues it, possibly on the next page), checking each page's CRC.
func Packets(data []byte) ([][]byte, error) {
	var packets [][]byte
	var partial []byte
	for page := 0; len(data) > 0; page++ {
		if len(data) < 27 || string(data[:4]) != "OggS" {
			return nil, fmt.Errorf("%w: page %d: no OggS capture pattern", ErrMalformed, page)
		}
		nseg := int(data[26])
		if len(data) < 27+nseg {
			return nil, fmt.Errorf("%w: page %d: segment table truncated", ErrMalformed, page)
		}
		lacing := data[27 : 27+nseg]
		size := 0
		for _, l := range lacing {
			size += int(l)
		}
		end := 27 + nseg + size
		if len(data) < end {
			return nil, fmt.Errorf("%w: page %d: body truncated", ErrMalformed, page)
		}
		if got, want := pageCRC(data[:end]), binary.LittleEndian.Uint32(data[22:]); got != want {
			return nil, fmt.Errorf("%w: page %d: CRC %08x, header says %08x", ErrMalformed, page, got, want)
		}
		body := data[27+nseg : end]
		for _, l := range lacing {
			partial = append(partial, body[:l]...)
			body = body[l:]
			if l < 255 {
				packets = append(packets, partial)
				partial = nil
			}
		}
		data = data[end:]
	}
	if partial != nil {
		return nil, fmt.Errorf("%w: last packet unterminated", ErrMalformed)
	}
	return packets, nil
}

var crcTable = func() (t [256]uint32) {
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
	return t
}()

// pageCRC is the page checksum of RFC 3533 §6 (polynomial 0x04c11db7, no
// reflection), computed with the checksum field as zero.
func pageCRC(page []byte) uint32 {
	var crc uint32
	for i, b := range page {
		if i >= 22 && i < 26 {
			b = 0
		}
		crc = crc<<8 ^ crcTable[byte(crc>>24)^b]
	}
	return crc
}

// PacketSamples returns the samples per channel at 48 kHz of an Opus
// packet, from its TOC byte (RFC 6716 §3.1).
func PacketSamples(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, errors.New("empty Opus packet")
	}
	config := p[0] >> 3
	var frame int // samples at 48 kHz
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = []int{480, 960, 1920, 2880}[config%4]
	case config < 16: // hybrid: 10, 20 ms
		frame = []int{480, 960}[config%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []int{120, 240, 480, 960}[config%4]
	}
	switch p[0] & 0x03 {
	case 0:
		return frame, nil
	case 1, 2:
		return 2 * frame, nil
	default:
		if len(p) < 2 {
			return 0, errors.New("code 3 Opus packet without frame count")
		}
		return int(p[1]&0x3f) * frame, nil
	}
}
