package gateway_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

// TestBlackholedConnectionResumes: the emulator blackholes the connection
// (nothing arrives, nothing gets through, the close frame is lost). The
// client notices by its heartbeat within two intervals, resumes on a new
// connection, and every event sent meanwhile arrives exactly once, by
// replay.
func TestBlackholedConnectionResumes(t *testing.T) {
	const interval = 300 * time.Millisecond
	f := start(t, discordemu.Options{HeartbeatInterval: interval, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	room := f.room(t, "a")
	users := []string{"500000000000000001", "500000000000000002", "500000000000000003"}
	for _, u := range users {
		f.emu.AddMember(u, "user"+u[len(u)-1:])
	}
	f.open(t)
	f.rec.waitN(t, 1, 5*time.Second) // the room
	waitStats(t, f.emu, "a live session", func(s discordemu.Stats) bool { return s.Connected })
	conns := len(f.emu.Connections())

	f.emu.Blackhole()
	var want []string
	for _, u := range users {
		if err := f.emu.SetVoiceState(u, room); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("voice.joined %s@%s", u, room))
	}
	// Detected by the heartbeat: a missed ACK shows at the next beat, at
	// most two intervals on; the resume follows at once.
	ctx, cancel := context.WithTimeout(context.Background(), 2*interval+time.Second)
	defer cancel()
	if err := f.emu.WaitFor(ctx, func(s discordemu.Stats) bool { return s.Resumes == 1 && s.Connected }); err != nil {
		t.Fatalf("no resume within two heartbeat intervals of the blackhole: %v (stats %+v)", err, f.emu.Stats())
	}
	got := describe(f.rec.waitN(t, 1+len(want), 5*time.Second)[1:])
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q once each", got, want)
	}
	all := f.emu.Connections()
	if len(all) != conns+1 {
		t.Fatalf("%d connections after the blackhole, want %d", len(all), conns+1)
	}
	if bh := all[conns-1]; bh.CloseCode != 0 || bh.ClosedByServer {
		t.Fatalf("blackholed connection %+v: its close frame must be lost", bh)
	}
	if st := f.emu.Stats(); st.Identifies != 1 {
		t.Fatalf("stats %+v: the session must survive", st)
	}
}
