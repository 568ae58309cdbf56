package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// leaseView is the part of an instance's operator /readyz the failover
// test reads.
type leaseView struct {
	Ready    bool
	Operator struct {
		Gateway struct {
			State     string
			SessionID string
		}
		Cluster struct {
			EventsSource bool
			Leases       []struct {
				Bot    string
				Held   bool
				Token  int64
				Holder string
			}
		}
	}
}

func readLeases(addr string) (leaseView, error) {
	var v leaseView
	resp, err := operatorReadyz(addr)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v, err
}

// emuStats is the standalone emulator's GET /stats.
type emuStats struct {
	Identifies, Resumes, InvalidSessions int
	SessionID                            string
	Connected                            bool
}

func readEmuStats(t *testing.T, ctx context.Context, controlURL string) emuStats {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, controlURL+"/stats", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st emuStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// createChannelOnDiscord creates a room directly on the emulated Discord
// (its REST API, as a Discord user would in the client), so that Discord
// dispatches it whoever holds the gateway; its id.
func createChannelOnDiscord(t *testing.T, ctx context.Context, c *cluster3, name string) string {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"type":2,"parent_id":%q}`, name, c.emu["ROOM_CATEGORY_ID"])
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.emu["DISCORD_API_BASE"]+"/guilds/"+c.emu["DISCORD_GUILD_ID"]+"/channels", strings.NewReader(body))
	req.Header.Set("Authorization", "Bot "+c.emu["DISCORD_BOT_TOKEN"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ch struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&ch); err != nil || resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK || ch.ID == "" {
		t.Fatalf("create channel on the emulator: %s %v", resp.Status, err)
	}
	return ch.ID
}

// TestMultiInstanceGatewayFailover (issue 15, test 2): kill -9 the instance
// holding the bot's gateway lease. Within 10 s another instance holds the
// lease with a larger fencing token and has resumed the same Discord
// session (the emulator saw a RESUME, no second IDENTIFY), and every room
// Discord dispatched while no one held the gateway reaches each socket on
// the surviving instances exactly once.
func TestMultiInstanceGatewayFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startCluster3(t, ctx)

	holder, token := -1, int64(0)
	waitUntil(t, ctx, "one instance holds the gateway lease, ready", func() bool {
		holder, token = -1, 0
		for i, addr := range c.addrs {
			v, err := readLeases(addr)
			if err != nil {
				return false
			}
			if l := v.Operator.Cluster.Leases; len(l) == 1 && l[0].Held {
				if holder >= 0 {
					t.Fatalf("instances %d and %d both hold the lease", holder+1, i+1)
				}
				if v.Operator.Gateway.State != "ready" {
					return false
				}
				holder, token = i, l[0].Token
			}
		}
		return holder >= 0 && token >= 1
	})
	before := readEmuStats(t, ctx, c.emu["EMULATOR_CONTROL_URL"])
	if before.Identifies != 1 || before.SessionID == "" {
		t.Fatalf("emulator before the kill: %+v", before)
	}

	var socks []*instSocket
	var survivors []int
	for i, addr := range c.addrs {
		if i == holder {
			continue
		}
		survivors = append(survivors, i)
		socks = append(socks, dialInstance(t, ctx, addr), dialInstance(t, ctx, addr))
	}
	// A room before the kill, to know the sockets are live.
	first := createChannelOnDiscord(t, ctx, c, "before")
	for i, s := range socks {
		waitUntil(t, ctx, fmt.Sprintf("socket %d sees the first room", i), func() bool {
			return slices.Contains(s.snapshot(), "room.created "+first)
		})
	}

	if err := c.procs[holder].cmd.Process.Kill(); err != nil { // SIGKILL: no handover
		t.Fatal(err)
	}
	killed := time.Now()
	<-c.procs[holder].done
	var during []string
	for i := range 3 {
		during = append(during, createChannelOnDiscord(t, ctx, c, fmt.Sprintf("during-%d", i)))
	}

	// Another instance holds the lease, resumed, within 10 s.
	tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
	defer tcancel()
	next := -1
	waitUntil(t, tctx, "a surviving instance holds the gateway, ready", func() bool {
		for _, i := range survivors {
			v, err := readLeases(c.addrs[i])
			if err == nil && len(v.Operator.Cluster.Leases) == 1 && v.Operator.Cluster.Leases[0].Held && v.Operator.Gateway.State == "ready" {
				next = i
				return true
			}
		}
		return false
	})
	t.Logf("instance %d took over %v after the kill", next+1, time.Since(killed).Round(time.Millisecond))
	v, _ := readLeases(c.addrs[next])
	if tok := v.Operator.Cluster.Leases[0].Token; tok <= token {
		t.Errorf("the new holder's token %d is not above the dead one's %d", tok, token)
	}
	if v.Operator.Gateway.SessionID != before.SessionID {
		t.Errorf("the new holder's session %q, want the resumed %q", v.Operator.Gateway.SessionID, before.SessionID)
	}
	after := readEmuStats(t, ctx, c.emu["EMULATOR_CONTROL_URL"])
	if after.Identifies != 1 || after.Resumes < 1 || after.SessionID != before.SessionID {
		t.Errorf("emulator after the failover: %+v, want the session %s resumed, not a new identify", after, before.SessionID)
	}
	for _, i := range survivors {
		if i == next {
			continue
		}
		if v, err := readLeases(c.addrs[i]); err != nil || v.Operator.Cluster.Leases[0].Held || v.Operator.Gateway.State != "idle" {
			t.Errorf("instance %d besides the holder: %+v %v", i+1, v, err)
		}
	}

	// A last room: anything still in flight (a duplicate) comes before it.
	last := createChannelOnDiscord(t, ctx, c, "last")
	for i, s := range socks {
		waitUntil(t, ctx, fmt.Sprintf("socket %d sees the last room", i), func() bool {
			return slices.Contains(s.snapshot(), "room.created "+last)
		})
	}
	want := append(append([]string{first}, during...), last)
	for i, s := range socks {
		got := s.snapshot()
		for _, id := range want {
			if n := countOf(got, "room.created "+id); n != 1 {
				t.Errorf("socket %d (instance %d) saw room.created %s %d times; all: %v", i, survivors[i/2]+1, id, n, got)
			}
		}
	}
}
