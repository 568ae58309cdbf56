package media

import (
	"fmt"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// newInterceptors registers the interceptors whose output is used: the
// NACK generator (toward publishers) and responder (toward subscribers),
// RTCP sender and receiver reports, transport-wide congestion feedback
// toward publishers, and the simulcast header extensions. Pion's stats
// interceptor, which the defaults add, is left out: nothing reads
// GetStats, and it costs a lock and bookkeeping per packet.
func newInterceptors(me *webrtc.MediaEngine) (*interceptor.Registry, error) {
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(me, reg); err != nil {
		return nil, fmt.Errorf("register NACK: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, fmt.Errorf("register RTCP reports: %w", err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		return nil, fmt.Errorf("register simulcast extensions: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(me, reg); err != nil {
		return nil, fmt.Errorf("register TWCC: %w", err)
	}
	return reg, nil
}
