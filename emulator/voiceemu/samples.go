package voiceemu

import (
	"bytes"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// samples are made by scripts/make-samples.sh.
//
//go:embed samples/*.opus samples/*.ivf
var samples embed.FS

// LoadOpusSample returns the 20 ms Opus frames of an embedded Ogg Opus
// sample: "tone-1000", "tone-440" (3 s stereo sines) or "speech".
func LoadOpusSample(name string) ([][]byte, error) {
	data, err := samples.ReadFile("samples/" + name + ".opus")
	if err != nil {
		return nil, fmt.Errorf("%w: %q (have tone-1000, tone-440, speech)", ErrUnknownSample, name)
	}
	packets, err := oggPackets(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadSample, name, err)
	}
	// RFC 7845 §3: the first two packets are the OpusHead and OpusTags
	// headers.
	if len(packets) < 2 || !bytes.HasPrefix(packets[0], []byte("OpusHead")) || !bytes.HasPrefix(packets[1], []byte("OpusTags")) {
		return nil, fmt.Errorf("%w: %s: missing OpusHead/OpusTags", ErrBadSample, name)
	}
	frames := packets[2:]
	for i, f := range frames {
		if d, err := opusPacketSamples(f); err != nil || d != opusFrameSamples {
			return nil, fmt.Errorf("%w: %s: packet %d is not one 20 ms frame (%d samples, %v)", ErrBadSample, name, i, d, err)
		}
	}
	return frames, nil
}

// LoadVP8Sample returns the frames of an embedded IVF sample:
// "testpattern" (3 s of 320x240 at 15 fps, a key frame every second).
func LoadVP8Sample(name string) ([]VideoFrame, error) {
	data, err := samples.ReadFile("samples/" + name + ".ivf")
	if err != nil {
		return nil, fmt.Errorf("%w: %q (have testpattern)", ErrUnknownSample, name)
	}
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadSample, name, err)
	}
	if hdr.FourCC != "VP80" {
		return nil, fmt.Errorf("%w: %s: codec %q, want VP80", ErrBadSample, name, hdr.FourCC)
	}
	var frames []VideoFrame
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: frame %d: %w", ErrBadSample, name, len(frames), err)
		}
		frames = append(frames, VideoFrame{Data: frame, Keyframe: vp8IsKeyframe(frame)})
	}
	if len(frames) == 0 || !frames[0].Keyframe {
		return nil, fmt.Errorf("%w: %s: does not start with a key frame", ErrBadSample, name)
	}
	return frames, nil
}

// oggPackets splits a single-stream Ogg file into packets by the pages'
// segment tables (RFC 3533 §6: a lacing value below 255 ends a packet;
// 255 continues it, possibly on the next page), checking each page's CRC.
func oggPackets(data []byte) ([][]byte, error) {
	var packets [][]byte
	var partial []byte
	for page := 0; len(data) > 0; page++ {
		if len(data) < 27 || string(data[:4]) != "OggS" {
			return nil, fmt.Errorf("page %d: no OggS capture pattern", page)
		}
		nseg := int(data[26])
		if len(data) < 27+nseg {
			return nil, fmt.Errorf("page %d: segment table truncated", page)
		}
		lacing := data[27 : 27+nseg]
		size := 0
		for _, l := range lacing {
			size += int(l)
		}
		end := 27 + nseg + size
		if len(data) < end {
			return nil, fmt.Errorf("page %d: body truncated", page)
		}
		if got, want := oggCRC(data[:end]), binary.LittleEndian.Uint32(data[22:]); got != want {
			return nil, fmt.Errorf("page %d: CRC %08x, header says %08x", page, got, want)
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
		return nil, errors.New("last packet unterminated")
	}
	return packets, nil
}

var oggCRCTable = func() (t [256]uint32) {
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

// oggCRC is the page checksum of RFC 3533 §6 (polynomial 0x04c11db7, no
// reflection), computed with the checksum field as zero.
func oggCRC(page []byte) uint32 {
	var crc uint32
	for i, b := range page {
		if i >= 22 && i < 26 {
			b = 0
		}
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^b]
	}
	return crc
}

// opusPacketSamples returns the samples per channel at 48 kHz of an Opus
// packet from its TOC byte (RFC 6716 §3.1).
func opusPacketSamples(p []byte) (int, error) {
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
