package main

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/internal/metrics"
	"github.com/voicebridge/bridge/voice"
)

// appMetrics is the bridge's Prometheus registry and the counters only
// the wiring sees: REST responses, frames across the voice↔media seam,
// voice connections' totals.
type appMetrics struct {
	reg  *prometheus.Registry
	rest *metrics.REST
	seam *metrics.Seam
	lat  *metrics.Latency

	mu      sync.Mutex
	conns   map[*voice.Conn]struct{}
	retired metrics.VoiceTotals // of connections that closed
}

func newAppMetrics() (*appMetrics, error) {
	m := &appMetrics{reg: prometheus.NewRegistry(), conns: map[*voice.Conn]struct{}{}}
	if err := m.reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := m.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	var err error
	if m.rest, err = metrics.NewREST(m.reg, nil); err != nil {
		return nil, err
	}
	if m.seam, err = metrics.NewSeam(m.reg); err != nil {
		return nil, err
	}
	if m.lat, err = metrics.NewLatency(m.reg); err != nil {
		return nil, err
	}
	return m, nil
}

// httpClient is the Discord REST client, counted.
func (m *appMetrics) httpClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: m.rest}
}

// register adds the collector reading the app's parts.
func (m *appMetrics) register(a *app) error {
	s := metrics.Sources{
		Hub:         a.hub.Stats,
		Gateway:     func() gateway.Status { return a.bots.lead().Status() },
		Rooms:       func() []gateway.Room { return a.bots.knownRooms() },
		Voice:       m.voiceTotals,
		ICEFailures: func() uint64 { return a.media.Stats().ICEFailures },
		RoomCounts: func() []metrics.RoomCount {
			rs := a.bots.knownRooms()
			out := make([]metrics.RoomCount, len(rs))
			for i, r := range rs {
				out[i] = metrics.RoomCount{Room: r.ChannelID, Browsers: len(a.calls.in(r.ChannelID)), DiscordMembers: len(r.Members)}
			}
			return out
		},
	}
	if a.cluster.bus != nil {
		s.Bus = a.cluster.bus.Stats
		leases, err := metrics.NewLeases(m.reg, a.cluster.leasesHeld)
		if err != nil {
			return err
		}
		a.cluster.onChange = leases.Changed
	}
	return metrics.Register(m.reg, s)
}

// withMetrics serves GET /metrics from the registry and the rest from next.
func (m *appMetrics) withMetrics(next http.Handler) http.Handler {
	h := metrics.Handler(m.reg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// opened and closed track the voice connections whose Stats feed the
// voice totals; a closed one's counts move to retired so totals only grow.
func (m *appMetrics) opened(c *voice.Conn) {
	if m == nil {
		return
	}
	m.seam.LinkOpened()
	m.mu.Lock()
	m.conns[c] = struct{}{}
	m.mu.Unlock()
}

func (m *appMetrics) closed(c *voice.Conn) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.conns[c]; !ok {
		return
	}
	delete(m.conns, c)
	m.seam.LinkClosed()
	addVoice(&m.retired, c.Stats())
}

func (m *appMetrics) voiceTotals() metrics.VoiceTotals {
	m.mu.Lock()
	conns := make([]*voice.Conn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	t := m.retired
	m.mu.Unlock()
	for _, c := range conns {
		addVoice(&t, c.Stats())
	}
	return t
}

func addVoice(t *metrics.VoiceTotals, s voice.Stats) {
	for _, st := range s.Streams {
		t.TransportDecryptFailures += st.DecryptFailures
		t.FrameDecryptFailures += st.FrameDecryptFailures
	}
	t.DAVEEncryptFailures += s.DAVE.EncryptFailures
	t.DAVENoKeyDropped += s.DAVE.NoKeyDropped
	t.DAVEEpochs += s.DAVE.Epochs
}

// frame counts one frame across the seam.
func (m *appMetrics) frame(d metrics.Direction, kind string, n int, err error) {
	if m != nil {
		m.seam.Frame(d, kind, n, err)
	}
}
