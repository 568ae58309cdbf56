package main

import (
	"net/http"
	"strings"
	"testing"

	bridgemedia "github.com/voicebridge/bridge/media"

	"github.com/pion/webrtc/v4"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/voicebridge/bridge/internal/audiotest"
)

// scrape GETs /metrics and parses it with the Prometheus text parser.
func scrape(t testing.TB, ta *testApp) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + ta.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as the Prometheus text format: %v", err)
	}
	return fams
}

// sample is the value of the family's series with exactly labels.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// TestMetricsScriptedCall: /metrics parses; it shows the gateway ready,
// the REST calls made, the hub's socket; and after a browser speaks into a
// room, the frames-forwarded counter toward Discord equals the frames the
// Discord member heard from the bot that the browser sent.
func TestMetricsScriptedCall(t *testing.T) {
	// The browser's frames are counted as they cross the seam, and the
	// member recognises them byte for byte: the loudest speaker forwarded
	// untranscoded, the mix off.
	tune := mediaTuning()
	base := tune.media
	tune.media = func(o *bridgemedia.Options) {
		base(o)
		o.Mix = bridgemedia.MixOptions{}
	}
	ta, ctx := startMediaE2E(t, tune)
	room := newVoiceRoom(t, ctx, ta, "metrics-room")
	const listenerID = "470000000000000001"
	listener := addDiscordMember(t, ta, listenerID, "Listener", room)
	tone := audiotest.Tone(t, 1000)
	sent := map[string]bool{}
	for _, f := range tone {
		sent[string(f)] = true
	}

	fams := scrape(t, ta)
	for _, name := range []string{"bridge_hub_sockets", "bridge_hub_events_delivered_total", "bridge_gateway_reconnects_total",
		"bridge_rooms", "bridge_discord_members", "bridge_media_frames_forwarded_total", "bridge_voice_links", "go_goroutines"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if v, _ := sample(fams, "bridge_gateway_state", "state", "ready"); v != 1 {
		t.Errorf("bridge_gateway_state{state=ready} = %v, want 1", v)
	}
	if v, _ := sample(fams, "bridge_discord_rest_requests_total", "method", "GET", "code", "200"); v < 1 {
		t.Errorf("GET /gateway/bot is not counted: %v", fams["bridge_discord_rest_requests_total"])
	}
	if v, _ := sample(fams, "bridge_rooms"); v < 2 {
		t.Errorf("bridge_rooms = %v, want the Lobby and %s", v, room)
	}
	before, ok := sample(fams, "bridge_media_frames_forwarded_total", "direction", "browsers_to_discord", "kind", "audio")
	if !ok || before != 0 {
		t.Fatalf("frames toward Discord before the call: %v (present %v)", before, ok)
	}

	ann := newE2EBrowser(t, ta, "ann", browserOptions{})
	ann.join(ctx, room)
	ann.publishOpus(tone, loudLevel)
	bot := ta.gw.Status().BotUserID
	heard := func() int {
		n := 0
		for _, f := range listener.ReceivedOpus(bot) {
			if sent[string(f)] {
				n++
			}
		}
		return n
	}
	waitUntil(t, ctx, "the member hears a second of the browser's tone", func() bool { return heard() >= 50 })
	during := scrape(t, ta)
	if v, _ := sample(during, "bridge_voice_links"); v != 1 {
		t.Errorf("bridge_voice_links = %v during the call, want 1", v)
	}
	if v, _ := sample(during, "bridge_room_browsers", "room", room); v != 1 {
		t.Errorf("bridge_room_browsers{room=%s} = %v during the call, want 1 (ann)", room, v)
	}
	if v, _ := sample(during, "bridge_room_discord_members", "room", room); v != 2 {
		t.Errorf("bridge_room_discord_members{room=%s} = %v during the call, want 2 (the listener and the bot)", room, v)
	}
	if _, ok := during["bridge_ice_connection_failures_total"]; !ok {
		t.Error("/metrics lacks bridge_ice_connection_failures_total")
	}
	if v, _ := sample(during, "bridge_dave_epochs_total"); v < 1 {
		t.Errorf("bridge_dave_epochs_total = %v during a DAVE call, want at least 1", v)
	}
	ann.close()
	var counted float64
	waitUntil(t, ctx, "the counter equals the browser's frames the member heard", func() bool {
		counted, _ = sample(scrape(t, ta), "bridge_media_frames_forwarded_total", "direction", "browsers_to_discord", "kind", "audio")
		return counted > 0 && int(counted) == heard()
	})
	if b, _ := sample(scrape(t, ta), "bridge_media_bytes_forwarded_total", "direction", "browsers_to_discord", "kind", "audio"); b < counted {
		t.Fatalf("bytes forwarded %v < frames %v", b, counted)
	}

	// The other way: frames the member says reach the bot and are counted.
	const spoken = 25
	for _, f := range tone[:spoken] {
		if err := listener.SendOpus(f); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, ctx, "the member's frames are counted toward browsers", func() bool {
		v, _ := sample(scrape(t, ta), "bridge_media_frames_forwarded_total", "direction", "discord_to_browsers", "kind", "audio")
		return v == spoken
	})

	// With a browser in the call, every copy it receives was observed in
	// the forwarding latency histogram when its connection sent it; no
	// browser was there for the frames above.
	if n := histogramCount(scrape(t, ta), "bridge_media_forward_latency_seconds", "direction", "discord_to_browsers"); n != 0 {
		t.Fatalf("forwarding latency observed %d copies with no browser in the call", n)
	}
	bea := newE2EBrowser(t, ta, "bea", browserOptions{})
	bea.join(ctx, room)
	// received counts the packets bea recorded on the member's track.
	received := func() int {
		for _, tr := range bea.Tracks(0) {
			if tr.Remote.StreamID() == "discord-"+listenerID && tr.Remote.Kind() == webrtc.RTPCodecTypeAudio {
				return len(bea.packets(tr, 0))
			}
		}
		return 0
	}
	sentToBea := 0
	waitUntil(t, ctx, "bea receives the member", func() bool {
		if err := listener.SendOpus(tone[sentToBea%len(tone)]); err != nil {
			t.Fatal(err)
		}
		sentToBea++
		return received() >= 10
	})
	got := received()
	waitUntil(t, ctx, "every copy bea received is in the latency histogram", func() bool {
		n := histogramCount(scrape(t, ta), "bridge_media_forward_latency_seconds", "direction", "discord_to_browsers")
		if n > uint64(sentToBea) {
			t.Fatalf("%d copies observed, more than the %d frames sent to one browser", n, sentToBea)
		}
		return n >= uint64(got)
	})
}

// hasLabels says whether m's labels are exactly labels (name, value pairs).
func hasLabels(m *dto.Metric, labels []string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	if len(got) != len(labels)/2 {
		return false
	}
	for i := 0; i+1 < len(labels); i += 2 {
		if v, ok := got[labels[i]]; !ok || v != labels[i+1] {
			return false
		}
	}
	return true
}

// histogramCount is the sample count of a histogram series in fams (0 when
// absent); labels are name, value pairs.
func histogramCount(fams map[string]*dto.MetricFamily, name string, labels ...string) uint64 {
	f, ok := fams[name]
	if !ok {
		return 0
	}
	for _, m := range f.GetMetric() {
		if hasLabels(m, labels) && m.Histogram != nil {
			return m.Histogram.GetSampleCount()
		}
	}
	return 0
}
