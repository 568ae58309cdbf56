package media

import (
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestOfferedAddrs: what the log says the bridge offers follows what pion
// gathers: loopback only when asked, public IPs in place of the socket's.
func TestOfferedAddrs(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := webrtc.NewICEUDPMux(nil, conn)
	defer mux.Close()
	port := conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	at := func(host string) string { return net.JoinHostPort(host, strconv.Itoa(int(port))) }
	for _, c := range []struct {
		name string
		opts Options
		want []string
	}{
		{"loopback excluded", Options{}, nil},
		{"loopback included", Options{IncludeLoopback: true}, []string{at("127.0.0.1")}},
		{"filtered out", Options{IncludeLoopback: true, IPFilter: func(net.IP) bool { return false }}, nil},
		{"public IP", Options{IncludeLoopback: true, PublicIPs: []string{"203.0.113.7"}}, []string{at("203.0.113.7")}},
	} {
		if got := offeredAddrs(&c.opts, mux); !slices.Equal(got, c.want) {
			t.Errorf("%s: offers %v, want %v", c.name, got, c.want)
		}
	}
}
