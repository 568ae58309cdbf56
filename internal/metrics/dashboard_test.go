package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/hub"
)

// dashboardPath is the example Grafana dashboard, from this package.
const dashboardPath = "../../deploy/grafana-dashboard.json"

// dashboardQueries returns the bridge_ metric names each panel of the
// dashboard queries, by panel title.
func dashboardQueries(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			ID      int
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	name := regexp.MustCompile(`\bbridge_[a-z_]+`)
	out := map[string][]string{}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d used twice", dashboardPath, p.ID)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], name.FindAllString(tg.Expr, -1)...)
		}
	}
	return out
}

// allFamilies registers every bridge_ metric this package defines, with
// every source set and one room, and returns the names gathered.
func allFamilies(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	err := Register(reg, Sources{
		Hub:         func() hub.HubStats { return hub.HubStats{} },
		Bus:         func() hub.BusStats { return hub.BusStats{} },
		Gateway:     func() gateway.Status { return gateway.Status{State: gateway.StateReady} },
		Rooms:       func() []gateway.Room { return nil },
		Voice:       func() VoiceTotals { return VoiceTotals{} },
		ICEFailures: func() uint64 { return 0 },
		RoomCounts:  func() []RoomCount { return []RoomCount{{Room: "301"}} },
	})
	if err != nil {
		t.Fatal(err)
	}
	rest, err := NewREST(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rest.calls.WithLabelValues("GET", "200") // a vector has no series before its first call
	if _, err := NewSeam(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLeases(reg, func() int { return 0 }); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLatency(reg); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	return names
}

// TestDashboardMatchesRegistry: every bridge_ metric the example Grafana
// dashboard queries is one the bridge registers, and every metric the
// bridge registers has a panel.
func TestDashboardMatchesRegistry(t *testing.T) {
	queries := dashboardQueries(t)
	registered := allFamilies(t)
	onDashboard := map[string]bool{}
	for title, names := range queries {
		for _, n := range names {
			// A histogram is queried by its series' names.
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(n, suffix); ok && registered[base] {
					n = base
				}
			}
			onDashboard[n] = true
			if !registered[n] {
				t.Errorf("dashboard panel %q queries %s, which the bridge does not register", title, n)
			}
		}
	}
	var missing []string
	for n := range registered {
		if !onDashboard[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	for _, n := range missing {
		t.Errorf("%s is registered but no dashboard panel queries it", n)
	}
	// The gateway leases, per-room counts, ICE failures and DAVE epochs
	// are among them; named here so that dropping one from the registry
	// and the dashboard together still fails.
	for _, n := range []string{
		"bridge_gateway_lease_changes_total", "bridge_gateway_leases_held", "bridge_redis_events_fenced_total",
		"bridge_room_browsers", "bridge_room_discord_members",
		"bridge_ice_connection_failures_total", "bridge_dave_epochs_total",
		"bridge_media_forward_latency_seconds", "bridge_mix_latency_seconds",
	} {
		if !registered[n] || !onDashboard[n] {
			t.Errorf("%s: registered %v, on the dashboard %v; want both", n, registered[n], onDashboard[n])
		}
	}
}
