package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/hub"
)

// TestRESTCountsByCode: a 429 and a 200 land in their own series, and a
// request that got no response in code="error".
func TestRESTCountsByCode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/limited" {
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	rest, err := NewREST(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: rest}
	for _, p := range []string{"/ok", "/limited", "/limited"} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if _, err := c.Get("http://127.0.0.1:1/"); err == nil {
		t.Fatal("port 1 answered")
	}
	c.CloseIdleConnections()
	for code, want := range map[string]float64{"200": 1, "429": 2, "error": 1} {
		if got := testutil.ToFloat64(rest.calls.WithLabelValues("GET", code)); got != want {
			t.Errorf("code %s: %v, want %v", code, got, want)
		}
	}
}

// TestCollectorSeries: the collector's series follow its sources, one
// gateway_state series per state with 1 on the current one, and the
// output lints clean (names, units, help).
func TestCollectorSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	rooms := []RoomCount{{Room: "301", Browsers: 2, DiscordMembers: 3}, {Room: "302", DiscordMembers: 1}}
	err := Register(reg, Sources{
		Hub:     func() hub.HubStats { return hub.HubStats{Sockets: 3, Delivered: 10, Dropped: 1} },
		Bus:     func() hub.BusStats { return hub.BusStats{Published: 4, Connected: true, EventsSource: true} },
		Gateway: func() gateway.Status { return gateway.Status{State: gateway.StateReady, Reconnects: 2} },
		Rooms: func() []gateway.Room {
			return []gateway.Room{{Members: []gateway.Member{{}, {}}}, {Members: []gateway.Member{{}}}}
		},
		Voice:       func() VoiceTotals { return VoiceTotals{FrameDecryptFailures: 5, DAVEEpochs: 4} },
		ICEFailures: func() uint64 { return 2 },
		RoomCounts:  func() []RoomCount { return rooms },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP bridge_discord_members Discord members in the bridge's rooms, the bot included.
# TYPE bridge_discord_members gauge
bridge_discord_members 3
# HELP bridge_hub_sockets Authenticated /api/ws sockets on this instance.
# TYPE bridge_hub_sockets gauge
bridge_hub_sockets 3
# HELP bridge_rooms Rooms (voice channels in the bridge's category).
# TYPE bridge_rooms gauge
bridge_rooms 2
# HELP bridge_voice_frame_decrypt_failures_total Voice frames the DAVE frame decryptor rejected.
# TYPE bridge_voice_frame_decrypt_failures_total counter
bridge_voice_frame_decrypt_failures_total 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "bridge_hub_sockets", "bridge_rooms", "bridge_discord_members", "bridge_voice_frame_decrypt_failures_total"); err != nil {
		t.Fatal(err)
	}
	perRoom := `
# HELP bridge_dave_epochs_total MLS epochs the bridge's DAVE sessions entered (a commit or welcome that changed a call's keys).
# TYPE bridge_dave_epochs_total counter
bridge_dave_epochs_total 4
# HELP bridge_ice_connection_failures_total Browsers whose WebRTC connection failed (ICE or DTLS) or stayed disconnected too long.
# TYPE bridge_ice_connection_failures_total counter
bridge_ice_connection_failures_total 2
# HELP bridge_room_browsers Browsers in a room's call on this instance, per room while it exists.
# TYPE bridge_room_browsers gauge
bridge_room_browsers{room="301"} 2
bridge_room_browsers{room="302"} 0
# HELP bridge_room_discord_members Discord members in a room's voice channel, the bot included, per room while it exists.
# TYPE bridge_room_discord_members gauge
bridge_room_discord_members{room="301"} 3
bridge_room_discord_members{room="302"} 1
`
	names := []string{"bridge_dave_epochs_total", "bridge_ice_connection_failures_total", "bridge_room_browsers", "bridge_room_discord_members"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(perRoom), names...); err != nil {
		t.Fatal(err)
	}
	// A room that ended has no series any more.
	rooms = rooms[1:]
	gone := strings.NewReplacer(`bridge_room_browsers{room="301"} 2`+"\n", "", `bridge_room_discord_members{room="301"} 3`+"\n", "").Replace(perRoom)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(gone), names...); err != nil {
		t.Fatalf("after room 301 ended: %v", err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "bridge_gateway_state" {
			continue
		}
		on := 0
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() == 1 {
				on++
				if m.GetLabel()[0].GetValue() != "ready" {
					t.Errorf("state %v is 1", m.GetLabel())
				}
			}
		}
		if len(f.GetMetric()) != len(gatewayStateSet) || on != 1 {
			t.Errorf("gateway_state: %d series, %d on", len(f.GetMetric()), on)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestSeamCounts: frames and bytes by direction and kind; a failed send
// is a drop, not a forward.
func TestSeamCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := NewSeam(reg)
	if err != nil {
		t.Fatal(err)
	}
	s.Frame(ToDiscord, "audio", 100, nil)
	s.Frame(ToDiscord, "audio", 50, nil)
	s.Frame(ToDiscord, "video", 10, errors.New("refused"))
	s.Frame(ToBrowsers, "video", 1000, nil)
	for _, c := range []struct {
		v    prometheus.Collector
		want float64
	}{
		{s.frames.WithLabelValues(string(ToDiscord), "audio"), 2},
		{s.bytes.WithLabelValues(string(ToDiscord), "audio"), 150},
		{s.dropped.WithLabelValues(string(ToDiscord), "video"), 1},
		{s.frames.WithLabelValues(string(ToDiscord), "video"), 0},
		{s.bytes.WithLabelValues(string(ToBrowsers), "video"), 1000},
	} {
		if got := testutil.ToFloat64(c.v); got != c.want {
			t.Errorf("%v: %v, want %v", c.v, got, c.want)
		}
	}
}
