package media

import (
	"fmt"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/webrtc/v4"
)

// newInterceptors registers the interceptors whose output is used: the
// NACK responder (toward subscribers) and generator (toward publishers,
// started only on a connection that receives a stream with NACK), RTCP
// sender and receiver reports, transport-wide congestion feedback toward
// publishers, and the simulcast header extensions. Pion's stats
// interceptor, which the defaults add, is left out: nothing reads
// GetStats, and it costs a lock and bookkeeping per packet.
func newInterceptors(me *webrtc.MediaEngine) (*interceptor.Registry, error) {
	reg := &interceptor.Registry{}
	generator, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, fmt.Errorf("NACK generator: %w", err)
	}
	responder, err := nack.NewResponderInterceptor()
	if err != nil {
		return nil, fmt.Errorf("NACK responder: %w", err)
	}
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBNACK}, webrtc.RTPCodecTypeVideo)
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	reg.Add(responder)
	reg.Add(lazyLoop{generator, wantsNACK})
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

// wantsNACK reports whether a received stream negotiated generic NACK
// (RFC 4585 §6.2.1), the streams pion's generator serves.
func wantsNACK(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == webrtc.TypeRTCPFBNACK && fb.Parameter == "" {
			return true
		}
	}
	return false
}

// lazyLoop makes interceptors whose BindRTCPWriter starts a periodic
// loop (pion's NACK generator ticks every 100 ms on every connection,
// whether or not it receives anything) start it only when the connection
// binds a remote stream the loop serves. Most browsers only receive, so
// their connections never run the loop.
type lazyLoop struct {
	inner interceptor.Factory
	wants func(*interceptor.StreamInfo) bool
}

// NewInterceptor implements interceptor.Factory.
func (f lazyLoop) NewInterceptor(id string) (interceptor.Interceptor, error) {
	in, err := f.inner.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &lazyInterceptor{Interceptor: in, wants: f.wants}, nil
}

// lazyInterceptor holds back its inner interceptor's BindRTCPWriter until
// a stream it wants is bound.
type lazyInterceptor struct {
	interceptor.Interceptor
	wants func(*interceptor.StreamInfo) bool

	mu      sync.Mutex
	writer  interceptor.RTCPWriter
	started bool
}

// BindRTCPWriter keeps writer for later; the loop does not start yet.
func (l *lazyInterceptor) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.mu.Lock()
	l.writer = writer
	l.mu.Unlock()
	return writer
}

// BindRemoteStream starts the loop at the first stream it serves.
func (l *lazyInterceptor) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	if !l.wants(info) {
		return reader
	}
	l.mu.Lock()
	if !l.started && l.writer != nil {
		l.started = true
		l.Interceptor.BindRTCPWriter(l.writer)
	}
	l.mu.Unlock()
	return l.Interceptor.BindRemoteStream(info, reader)
}
