package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/internal/redistest"
)

// TestGatewayHandoverAtShutdown: two instances in process on one Redis
// and one emulated Discord. The lease holder shuts down cleanly: it hands
// its gateway on (session left resumable, saved, lease released), the
// other takes the lease at its next try and resumes the session, and a
// room Discord dispatched in between reaches the remaining instance's
// socket once.
func TestGatewayHandoverAtShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("two bridges, Redis and an emulator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, emu, env := redisAndEmulator(t)
	o := emu.Options()
	holds := func(a *testApp) bool {
		v, err := readLeases(a.Addr())
		return err == nil && len(v.Operator.Cluster.Leases) == 1 && v.Operator.Cluster.Leases[0].Held && v.Operator.Gateway.State == "ready"
	}
	a := startTestApp(t, tuning{}, env("a"))
	waitUntil(t, ctx, "instance a holds the gateway", func() bool { return holds(a) })
	b := startTestApp(t, tuning{}, env("b"))
	sock := dialInstance(t, ctx, b.Addr())
	sessionID := emu.Stats().SessionID

	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := a.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	ch, err := emu.CreateChannel("between", 2, o.CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "instance b holds the gateway", func() bool { return holds(b) })
	if st := emu.Stats(); st.Identifies != 1 || st.Resumes != 1 || st.SessionID != sessionID {
		t.Fatalf("emulator %+v: want session %s resumed by b, no second identify", st, sessionID)
	}
	last, err := emu.CreateChannel("last", 2, o.CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "b's socket sees the last room", func() bool {
		return slices.Contains(sock.snapshot(), "room.created "+last.ID)
	})
	got := sock.snapshot()
	for _, id := range []string{ch.ID, last.ID} {
		if n := countOf(got, "room.created "+id); n != 1 {
			t.Errorf("room.created %s seen %d times: %v", id, n, got)
		}
	}
	if fmt.Sprint(b.cluster.leasesHeld()) != "1" {
		t.Errorf("b holds %d leases", b.cluster.leasesHeld())
	}
}

// TestGatewayLeaseLostIsGivenUp: when the lease passes to another holder
// behind the holder's back (a takeover it did not see), the holder's next
// renewal fails; it abandons the gateway (closing with a code that keeps
// the session resumable for the new holder), reports unready, counts the
// change, and its later session saves are refused by the fence.
func TestGatewayLeaseLostIsGivenUp(t *testing.T) {
	if testing.Short() {
		t.Skip("a bridge, Redis and an emulator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, emu, env := redisAndEmulator(t)
	a := startTestApp(t, tuning{}, env("a"))
	waitUntil(t, ctx, "a holds the gateway", func() bool {
		v, err := readLeases(a.Addr())
		return err == nil && v.Ready && len(v.Operator.Cluster.Leases) == 1 && v.Operator.Cluster.Leases[0].Held && v.Operator.Gateway.State == "ready"
	})
	sessionID := emu.Stats().SessionID
	bl := a.cluster.leases[0]
	bl.mu.Lock()
	held := bl.held
	bl.mu.Unlock()

	raw := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer raw.Close()
	if err := raw.Set(ctx, held.Key, "99/intruder", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "a gives the gateway up", func() bool {
		v, err := readLeases(a.Addr())
		return err == nil && !v.Ready && len(v.Operator.Cluster.Leases) == 1 && !v.Operator.Cluster.Leases[0].Held &&
			v.Operator.Cluster.Leases[0].Holder == "intruder" && v.Operator.Gateway.State == "stopped"
	})
	waitUntil(t, ctx, "the emulator sees the connection end", func() bool { return !emu.Stats().Connected })
	conns := emu.Connections()
	if st := emu.Stats(); st.SessionID != sessionID || conns[len(conns)-1].CloseCode == 1000 {
		t.Fatalf("after the loss the emulator has session %q (want %q kept) and the last close code %d", st.SessionID, sessionID, conns[len(conns)-1].CloseCode)
	}
	if err := bl.lease.Save(ctx, held, []byte(`{}`)); err == nil {
		t.Fatal("a save with the lost lease was accepted")
	}
	if got := scrapeCounter(t, a.Addr(), `bridge_gateway_lease_changes_total{change="lost"}`); got != 1 {
		t.Fatalf("lease changes lost = %v, want 1", got)
	}
}

// scrapeCounter reads one sample of an instance's /metrics.
func scrapeCounter(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

// redisAndEmulator starts a redis-server and an emulated Discord for the
// test, and returns the environment of a bridge instance named id on
// them (dev sign-in, the operator token).
func redisAndEmulator(t *testing.T) (*redistest.Server, *discordemu.Server, func(id string) map[string]string) {
	t.Helper()
	rs, err := redistest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	emu, err := discordemu.Start(discordemu.Options{IdentifyInterval: time.Nanosecond, HeartbeatInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	o := emu.Options()
	return rs, emu, func(id string) map[string]string {
		return map[string]string{"DISCORD_BOT_TOKEN": o.Token, "DISCORD_API_BASE": emu.URL() + "/api/v10", "DISCORD_GUILD_ID": o.GuildID,
			"ROOM_CATEGORY_ID": o.CategoryID, "DEV_AUTH": "1", "REDIS_URL": rs.URL(), "INSTANCE_ID": id, "OPERATOR_TOKEN": multiOperatorToken}
	}
}
