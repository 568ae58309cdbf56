package voice

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// handDiscovery builds a 74-byte discovery packet byte by byte.
func handDiscovery(typ uint16, length uint16, ssrc uint32, addr string, port uint16) []byte {
	b := []byte{byte(typ >> 8), byte(typ), byte(length >> 8), byte(length),
		byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc)}
	a := make([]byte, 64)
	copy(a, addr)
	b = append(b, a...)
	return append(b, byte(port>>8), byte(port))
}

func TestDiscoveryRequest(t *testing.T) {
	got := AppendDiscoveryRequest(nil, 0x01020304)
	want := handDiscovery(1, 70, 0x01020304, "", 0)
	if string(got) != string(want) {
		t.Fatalf("request %x, want %x", got, want)
	}
}

func TestParseDiscoveryResponse(t *testing.T) {
	r, err := ParseDiscoveryResponse(handDiscovery(2, 70, 7, "203.0.113.9", 50004))
	if err != nil {
		t.Fatal(err)
	}
	if r.SSRC != 7 || r.Addr != netip.MustParseAddrPort("203.0.113.9:50004") {
		t.Fatalf("%+v", r)
	}
	r, err = ParseDiscoveryResponse(handDiscovery(2, 70, 7, "::1", 9))
	if err != nil || r.Addr != netip.MustParseAddrPort("[::1]:9") {
		t.Fatalf("v6: %+v %v", r, err)
	}
	full := handDiscovery(2, 70, 7, "", 9)
	for i := 8; i < 72; i++ {
		full[i] = '1'
	}
	junk := handDiscovery(2, 70, 7, "1.2.3.4", 9)
	junk[20] = 'x'
	bad := map[string][]byte{
		"request type":    handDiscovery(1, 70, 7, "1.2.3.4", 9),
		"length field":    handDiscovery(2, 74, 7, "1.2.3.4", 9),
		"short":           handDiscovery(2, 70, 7, "1.2.3.4", 9)[:73],
		"long":            append(handDiscovery(2, 70, 7, "1.2.3.4", 9), 0),
		"empty address":   handDiscovery(2, 70, 7, "", 9),
		"no terminator":   full,
		"not an IP":       handDiscovery(2, 70, 7, "example.com", 9),
		"bytes after NUL": junk,
		"port zero":       handDiscovery(2, 70, 7, "1.2.3.4", 0),
	}
	for name, b := range bad {
		if _, err := ParseDiscoveryResponse(b); !errors.Is(err, ErrBadDiscovery) {
			t.Errorf("%s: err %v, want ErrBadDiscovery", name, err)
		}
	}
}

// An answer for another SSRC says more than the timeout that follows it:
// the error keeps it.
func TestDiscoveryKeepsAnswerError(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 100)
		for {
			_, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteToUDP(handDiscovery(2, 70, 99, "127.0.0.1", 5000), from)
		}
	}()
	conn, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err = (&transport{udp: conn, ssrc: 7}).discover(ctx)
	if !errors.Is(err, ErrBadDiscovery) || !strings.Contains(err.Error(), "SSRC 99") {
		t.Fatalf("discover error %v; want the answer for SSRC 99 (ErrBadDiscovery) kept", err)
	}
	srv.Close()
	<-done
}
