package voice

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IP discovery packet layout (Discord voice docs, "IP Discovery"): all
// big-endian, type u16 (1 request, 2 response), length u16 = 70 (the
// bytes after type and length), SSRC u32, a 64-byte NUL-terminated
// address and a u16 port.
const (
	discoveryLen          = 74
	discoveryBodyLen      = 70
	discoveryAddrLen      = 64
	discoveryTypeRequest  = 1
	discoveryTypeResponse = 2
)

// DiscoveryResponse is the voice server's answer to IP discovery: the
// address and port it saw the client's UDP packets come from.
type DiscoveryResponse struct {
	SSRC uint32
	Addr netip.AddrPort
}

// AppendDiscoveryRequest appends the 74-byte IP discovery request for ssrc.
func AppendDiscoveryRequest(dst []byte, ssrc uint32) []byte {
	dst = binary.BigEndian.AppendUint16(dst, discoveryTypeRequest)
	dst = binary.BigEndian.AppendUint16(dst, discoveryBodyLen)
	dst = binary.BigEndian.AppendUint32(dst, ssrc)
	dst = append(dst, make([]byte, discoveryAddrLen+2)...)
	return dst
}

// ParseDiscoveryResponse parses an IP discovery response strictly: exact
// length, type 2, length field 70, a NUL-terminated textual IP address
// with only NULs after the terminator.
func ParseDiscoveryResponse(b []byte) (DiscoveryResponse, error) {
	var r DiscoveryResponse
	if len(b) != discoveryLen {
		return r, fmt.Errorf("voice: discovery response of %d bytes, want %d: %w", len(b), discoveryLen, ErrBadDiscovery)
	}
	if t := binary.BigEndian.Uint16(b); t != discoveryTypeResponse {
		return r, fmt.Errorf("voice: discovery type %d, want %d (response): %w", t, discoveryTypeResponse, ErrBadDiscovery)
	}
	if l := binary.BigEndian.Uint16(b[2:]); l != discoveryBodyLen {
		return r, fmt.Errorf("voice: discovery length field %d, want %d: %w", l, discoveryBodyLen, ErrBadDiscovery)
	}
	r.SSRC = binary.BigEndian.Uint32(b[4:])
	field := b[8 : 8+discoveryAddrLen]
	end := bytes.IndexByte(field, 0)
	if end <= 0 {
		return r, fmt.Errorf("voice: discovery address empty or not NUL-terminated: %w", ErrBadDiscovery)
	}
	for _, c := range field[end:] {
		if c != 0 {
			return r, fmt.Errorf("voice: discovery address has bytes after its terminator: %w", ErrBadDiscovery)
		}
	}
	addr, err := netip.ParseAddr(string(field[:end]))
	if err != nil {
		return r, fmt.Errorf("voice: discovery address %q: %v: %w", field[:end], err, ErrBadDiscovery)
	}
	port := binary.BigEndian.Uint16(b[8+discoveryAddrLen:])
	if port == 0 {
		return r, fmt.Errorf("voice: discovery port 0: %w", ErrBadDiscovery)
	}
	r.Addr = netip.AddrPortFrom(addr, port)
	return r, nil
}
