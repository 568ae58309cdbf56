// Package metrics exposes the bridge's counters in the Prometheus format.
// It reads what the parts already count (the hub's and the bus's Stats,
// the gateway's Status, the voice connections' Stats) through collectors
// that ask at scrape time, so no hot path changes for it; what only the
// seams see (REST responses, frames crossing the voice↔media seam) it
// counts itself, in the wrappers it hands out. Everything registers on a
// registry passed in: no global state.
//
// Labels are bounded: directions, kinds, states, HTTP methods and status
// codes, and a room's channel id on the per-room series, which exist only
// while the room does. No label carries a user id or a token.
package metrics

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/hub"
)

const namespace = "bridge"

// Sources are the parts the collector asks at each scrape; a nil source
// leaves its metrics out.
type Sources struct {
	Hub     func() hub.HubStats
	Bus     func() hub.BusStats
	Gateway func() gateway.Status
	Rooms   func() []gateway.Room
	Voice   func() VoiceTotals
	// ICEFailures counts browsers whose WebRTC connection failed.
	ICEFailures func() uint64
	// RoomCounts are the rooms that exist now with their browsers and
	// Discord members: one series each, gone with the room.
	RoomCounts func() []RoomCount
}

// RoomCount is one room's browsers (in its call on this instance) and
// Discord members.
type RoomCount struct {
	Room           string // the room's channel id
	Browsers       int
	DiscordMembers int
}

// VoiceTotals sum the voice connections' counters, those that ended
// included, so that they only grow.
type VoiceTotals struct {
	TransportDecryptFailures uint64
	FrameDecryptFailures     uint64
	DAVEEncryptFailures      uint64
	DAVENoKeyDropped         uint64
	DAVEEpochs               uint64
}

// Handler serves reg's metrics in the Prometheus text format.
func Handler(reg prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// Register adds the collector of s to reg.
func Register(reg prometheus.Registerer, s Sources) error {
	return reg.Register(&collector{s: s})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

var (
	hubSockets      = desc("hub_sockets", "Authenticated /api/ws sockets on this instance.")
	hubDelivered    = desc("hub_events_delivered_total", "Event messages queued for a socket on this instance.")
	hubDropped      = desc("hub_events_dropped_total", "Event messages not queued: the socket was closed or too slow (and closed for it).")
	busPublished    = desc("redis_events_published_total", "Events this instance added to the Redis stream.")
	busDelivered    = desc("redis_events_read_total", "Events read from the Redis stream and fanned out here.")
	busDuplicates   = desc("redis_events_duplicate_total", "Stream entries skipped because their event was already delivered (a retried XADD).")
	busOutboxDrops  = desc("redis_events_outbox_dropped_total", "Events dropped because the outbox was full while Redis was unreachable.")
	busFenced       = desc("redis_events_fenced_total", "Events dropped because the gateway lease they were published under had passed to another holder.")
	busResyncs      = desc("redis_resyncs_total", "Times events were lost to stream trimming and the sockets closed to resync.")
	redisOps        = desc("redis_operations_total", "Redis round trips made by the hub's bus.")
	redisErrors     = desc("redis_operation_errors_total", "Redis round trips that failed (each retried).")
	redisUp         = desc("redis_connected", "1 when the last Redis round trip succeeded.")
	eventsSource    = desc("events_source", "1 when this instance publishes its gateway's events for all instances.")
	gatewayState    = desc("gateway_state", "1 for the gateway connection's current state.", "state")
	gatewayReconn   = desc("gateway_reconnects_total", "Gateway connections opened after the first.")
	gatewayLatency  = desc("gateway_heartbeat_latency_seconds", "Round trip of the last acknowledged gateway heartbeat.")
	rooms           = desc("rooms", "Rooms (voice channels in the bridge's category).")
	discordMembers  = desc("discord_members", "Discord members in the bridge's rooms, the bot included.")
	voiceTransport  = desc("voice_transport_decrypt_failures_total", "Voice packets failing transport authentication.")
	voiceFrame      = desc("voice_frame_decrypt_failures_total", "Voice frames the DAVE frame decryptor rejected.")
	voiceEncrypt    = desc("dave_encrypt_failures_total", "Our frames the DAVE encryptor refused (dropped, never sent in clear).")
	daveEpochs      = desc("dave_epochs_total", "MLS epochs the bridge's DAVE sessions entered (a commit or welcome that changed a call's keys).")
	voiceNoKey      = desc("dave_no_key_dropped_total", "Our frames dropped while DAVE was in force without a media key yet.")
	iceFailures     = desc("ice_connection_failures_total", "Browsers whose WebRTC connection failed (ICE or DTLS) or stayed disconnected too long.")
	roomBrowsers    = desc("room_browsers", "Browsers in a room's call on this instance, per room while it exists.", "room")
	roomMembers     = desc("room_discord_members", "Discord members in a room's voice channel, the bot included, per room while it exists.", "room")
	gatewayStateSet = []gateway.State{gateway.StateIdle, gateway.StateConnecting, gateway.StateResuming, gateway.StateReady, gateway.StateReconnecting, gateway.StateStopped, gateway.StateFailed}
)

type collector struct{ s Sources }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.s.Hub != nil {
		st := c.s.Hub()
		gauge(hubSockets, float64(st.Sockets))
		counter(hubDelivered, st.Delivered)
		counter(hubDropped, st.Dropped)
	}
	if c.s.Bus != nil {
		st := c.s.Bus()
		counter(busPublished, st.Published)
		counter(busDelivered, st.Delivered)
		counter(busDuplicates, st.Duplicates)
		counter(busOutboxDrops, st.Dropped)
		counter(busResyncs, st.Resyncs)
		counter(busFenced, st.Fenced)
		counter(redisOps, st.Operations)
		counter(redisErrors, st.Errors)
		gauge(redisUp, boolFloat(st.Connected))
		gauge(eventsSource, boolFloat(st.EventsSource))
	}
	if c.s.Gateway != nil {
		st := c.s.Gateway()
		for _, s := range gatewayStateSet {
			gauge(gatewayState, boolFloat(st.State == s), string(s))
		}
		counter(gatewayReconn, uint64(st.Reconnects))
		gauge(gatewayLatency, st.HeartbeatLatency.Seconds())
	}
	if c.s.Rooms != nil {
		rs := c.s.Rooms()
		members := 0
		for _, r := range rs {
			members += len(r.Members)
		}
		gauge(rooms, float64(len(rs)))
		gauge(discordMembers, float64(members))
	}
	if c.s.ICEFailures != nil {
		counter(iceFailures, c.s.ICEFailures())
	}
	if c.s.RoomCounts != nil {
		for _, r := range c.s.RoomCounts() {
			gauge(roomBrowsers, float64(r.Browsers), r.Room)
			gauge(roomMembers, float64(r.DiscordMembers), r.Room)
		}
	}
	if c.s.Voice != nil {
		v := c.s.Voice()
		counter(voiceTransport, v.TransportDecryptFailures)
		counter(voiceFrame, v.FrameDecryptFailures)
		counter(voiceEncrypt, v.DAVEEncryptFailures)
		counter(voiceNoKey, v.DAVENoKeyDropped)
		counter(daveEpochs, v.DAVEEpochs)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// REST counts Discord REST responses by method and status code; 429s are
// the code="429" series.
type REST struct {
	next  http.RoundTripper
	calls *prometheus.CounterVec
}

// NewREST wraps next (nil: http.DefaultTransport) and registers its
// counter on reg.
func NewREST(reg prometheus.Registerer, next http.RoundTripper) (*REST, error) {
	if next == nil {
		next = http.DefaultTransport
	}
	r := &REST{next: next, calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "discord_rest_requests_total",
		Help: "Discord REST requests by method and status code (code=\"error\": no response).",
	}, []string{"method", "code"})}
	if err := reg.Register(r.calls); err != nil {
		return nil, err
	}
	return r, nil
}

// RoundTrip implements http.RoundTripper.
func (r *REST) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	r.calls.WithLabelValues(req.Method, code).Inc()
	return resp, err
}

// Direction is which way a frame crosses the voice↔media seam.
type Direction string

// Directions of Seam's counters.
const (
	ToBrowsers Direction = "discord_to_browsers"
	ToDiscord  Direction = "browsers_to_discord"
)

// Seam counts frames and bytes crossing between the Discord voice
// connections and the WebRTC side, per direction and kind, and frames
// dropped there (a send toward Discord that failed).
type Seam struct {
	frames, bytes, dropped *prometheus.CounterVec
	links                  atomic.Int64
}

// NewSeam registers the seam's counters on reg.
func NewSeam(reg prometheus.Registerer) (*Seam, error) {
	labels := []string{"direction", "kind"}
	s := &Seam{
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "media_frames_forwarded_total",
			Help: "Media frames handed across the voice/WebRTC seam, by direction and kind (audio, video)."}, labels),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "media_bytes_forwarded_total",
			Help: "Payload bytes of the frames counted by bridge_media_frames_forwarded_total."}, labels),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "media_frames_dropped_total",
			Help: "Frames toward Discord the voice connection refused, by kind."}, labels),
	}
	for _, c := range []prometheus.Collector{s.frames, s.bytes, s.dropped, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "voice_links", Help: "Voice connections open (one per room with browsers)."},
		func() float64 { return float64(s.links.Load()) })} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, d := range []Direction{ToBrowsers, ToDiscord} {
		for _, k := range []string{"audio", "video"} {
			s.frames.WithLabelValues(string(d), k)
			s.bytes.WithLabelValues(string(d), k)
		}
	}
	for _, k := range []string{"audio", "video"} {
		s.dropped.WithLabelValues(string(ToDiscord), k)
	}
	return s, nil
}

// Frame counts one frame of n bytes; err non-nil counts it as dropped.
func (s *Seam) Frame(d Direction, kind string, n int, err error) {
	if s == nil {
		return
	}
	if err != nil {
		s.dropped.WithLabelValues(string(d), kind).Inc()
		return
	}
	s.frames.WithLabelValues(string(d), kind).Inc()
	s.bytes.WithLabelValues(string(d), kind).Add(float64(n))
}

// LinkOpened and LinkClosed keep bridge_voice_links.
func (s *Seam) LinkOpened() {
	if s != nil {
		s.links.Add(1)
	}
}

// LinkClosed: see LinkOpened.
func (s *Seam) LinkClosed() {
	if s != nil {
		s.links.Add(-1)
	}
}

// Leases counts the changes of the bots' gateway leases on this instance
// (with several instances on Redis): acquired, lost (taken by another, or
// not renewed in time) and released (handed on at shutdown).
type Leases struct{ changes *prometheus.CounterVec }

// LeaseChanges are the values of bridge_gateway_lease_changes_total's
// "change" label.
var LeaseChanges = []string{"acquired", "lost", "released"}

// NewLeases registers the lease counters on reg, and a gauge of the leases
// held now read from held.
func NewLeases(reg prometheus.Registerer, held func() int) (*Leases, error) {
	l := &Leases{changes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "gateway_lease_changes_total",
		Help: "Changes of this instance's gateway leases: acquired, lost, released."}, []string{"change"})}
	for _, c := range LeaseChanges {
		l.changes.WithLabelValues(c)
	}
	for _, c := range []prometheus.Collector{l.changes, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "gateway_leases_held", Help: "Bots' gateway leases this instance holds."},
		func() float64 { return float64(held()) })} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Changed counts one change (one of LeaseChanges).
func (l *Leases) Changed(change string) { l.changes.WithLabelValues(change).Inc() }

// Latency holds the media latency histograms: how long the bridge holds a
// Discord user's audio before a browser's connection sends it, and how
// long a browser's audio waits from its arrival to the mixed frame that
// carries it leaving for Discord (jitter buffer and mix together).
// Observing is a few atomic adds, no allocation: it runs per packet.
type Latency struct {
	toBrowsers, mixed prometheus.Observer
}

// LatencyBuckets are the histograms' bucket bounds in seconds: from half a
// millisecond (a packet passed straight on) to the jitter buffer's
// ceiling and past it.
var LatencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .04, .06, .08, .12, .2, .4}

// NewLatency registers the latency histograms on reg.
func NewLatency(reg prometheus.Registerer) (*Latency, error) {
	forward := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "media_forward_latency_seconds",
		Help:    "Time from a Discord user's audio packet reaching the bridge to a browser's connection sending it, per browser copy.",
		Buckets: LatencyBuckets}, []string{"direction"})
	mix := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "mix_latency_seconds",
		Help:    "Time from a browser's audio packet reaching the bridge to the mixed frame carrying it leaving for Discord.",
		Buckets: LatencyBuckets})
	for _, c := range []prometheus.Collector{forward, mix} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return &Latency{toBrowsers: forward.WithLabelValues(string(ToBrowsers)), mixed: mix}, nil
}

// ToBrowsers observes one Discord packet sent to one browser, d after it
// reached the bridge.
func (l *Latency) ToBrowsers(d time.Duration) { l.toBrowsers.Observe(d.Seconds()) }

// Mixed observes one browser packet mixed, d after it reached the bridge.
func (l *Latency) Mixed(d time.Duration) { l.mixed.Observe(d.Seconds()) }
