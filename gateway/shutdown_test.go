package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

// TestCloseSendsNormalClosure: Close ends the session with 1000, so
// Discord shows the bot offline at once; the emulator invalidates the
// session as Discord does.
func TestCloseSendsNormalClosure(t *testing.T) {
	f := start(t, discordemu.Options{IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	waitStats(t, f.emu, "a live session", func(st discordemu.Stats) bool { return st.Connected && st.SessionID != "" })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.client.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.client.Close(ctx); err != nil {
		t.Fatal("second Close:", err)
	}
	waitStats(t, f.emu, "the session ended", func(st discordemu.Stats) bool { return !st.Connected && st.SessionID == "" })
	conns := f.emu.Connections()
	if last := conns[len(conns)-1]; last.CloseCode != websocket.CloseNormalClosure || last.ClosedByServer {
		t.Fatalf("last connection %+v, want closed by the client with 1000", last)
	}
	if st := f.client.Status(); st.State != gateway.StateStopped {
		t.Fatalf("status after Close: %+v", st)
	}
}
