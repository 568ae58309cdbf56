package media

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// iceTCPReadBuffer is how many packets the TCP mux buffers per connection
// before the ICE agent reads them.
const iceTCPReadBuffer = 64

// listenICETCP opens the ICE-TCP listener (RFC 6544: the bridge offers
// passive TCP candidates, browsers connect to them), so a browser whose
// network blocks UDP still reaches the bridge directly. Empty addr: off.
func listenICETCP(se *webrtc.SettingEngine, addr string, loggers pionLoggers, log *slog.Logger) (ice.TCPMux, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: ICETCPListen %q: %w", ErrInvalidOptions, addr, err)
	}
	mux := webrtc.NewICETCPMux(loggers.NewLogger("ice"), ln, iceTCPReadBuffer)
	se.SetICETCPMux(mux)
	log.Info("ICE TCP mux listening", "addr", ln.Addr().String())
	return mux, nil
}

// offeredAddrs are the addresses of the host candidates the bridge offers
// browsers on its shared UDP port: the listening socket's addresses as pion
// gathers them (loopback only with IncludeLoopback, through IPFilter), or
// PublicIPs in their place. Empty when no address passes, or without
// ICEUDPListen.
func offeredAddrs(opts *Options, mux ice.UDPMux) []string {
	var out []string
	for _, a := range mux.GetListenAddresses() {
		ua, ok := a.(*net.UDPAddr)
		if !ok {
			continue
		}
		ip := ua.IP
		if (ip.IsLoopback() && !opts.IncludeLoopback) || ip.IsLinkLocalUnicast() ||
			(opts.IPFilter != nil && !opts.IPFilter(ip)) {
			continue
		}
		if len(opts.PublicIPs) > 0 {
			for _, pub := range opts.PublicIPs {
				out = append(out, net.JoinHostPort(pub, strconv.Itoa(ua.Port)))
			}
			return out
		}
		out = append(out, net.JoinHostPort(ip.String(), strconv.Itoa(ua.Port)))
	}
	return out
}

// logOffered says which addresses browsers are told to send media to, and
// warns when there is none: then no browser connects.
func logOffered(log *slog.Logger, opts *Options, mux ice.UDPMux) {
	addrs := offeredAddrs(opts, mux)
	listen := ""
	if ua, ok := mux.(interface{ LocalAddr() net.Addr }); ok {
		listen = ua.LocalAddr().String()
	}
	if len(addrs) == 0 {
		log.Warn("the bridge offers browsers no media address: no interface has an address they could reach; "+
			"set ICE_PUBLIC_IP to the address browsers reach this machine at (127.0.0.1 when they run on it)",
			"addr", listen)
		return
	}
	log.Info("ICE UDP mux listening", "addr", listen, "offers", addrs)
}

// iceServers is what one browser gets in "joined": the configured servers,
// then those made for the user (TURN credentials).
func (m *Manager) iceServers(userID string) []webrtc.ICEServer {
	servers := append([]webrtc.ICEServer(nil), m.opts.ICEServers...)
	if m.opts.ICEServersFor != nil {
		servers = append(servers, m.opts.ICEServersFor(userID)...)
	}
	return servers
}
