package media

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// iceTCPReadBuffer is how many packets the TCP mux buffers per connection
// before the ICE agent reads them.
const iceTCPReadBuffer = 64

// listenICETCP opens the ICE-TCP listener (RFC 6544: the bridge offers
// passive TCP candidates, browsers connect to them), so a browser whose
// network blocks UDP still reaches the bridge directly. Empty addr: off.
func listenICETCP(se *webrtc.SettingEngine, addr string, log *slog.Logger) (ice.TCPMux, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: ICETCPListen %q: %w", ErrInvalidOptions, addr, err)
	}
	mux := webrtc.NewICETCPMux(nil, ln, iceTCPReadBuffer)
	se.SetICETCPMux(mux)
	log.Info("ICE TCP mux listening", "addr", ln.Addr().String())
	return mux, nil
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
