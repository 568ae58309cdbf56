package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

// TestExpiredSessionIdentifiesAnew: a resume after the session's lifetime
// gets Invalid Session (op 9) d:false, and the client starts a new
// session rather than retrying the resume.
func TestExpiredSessionIdentifiesAnew(t *testing.T) {
	f := start(t, discordemu.Options{IdentifyInterval: time.Nanosecond, SessionLifetime: 20 * time.Millisecond},
		gateway.Options{BackoffMin: 200 * time.Millisecond, BackoffMax: 400 * time.Millisecond})
	f.open(t)
	first := f.emu.Stats().SessionID
	f.emu.DropConnection()
	waitStats(t, f.emu, "a new session", func(s discordemu.Stats) bool { return s.Identifies == 2 && s.Connected })
	st := f.emu.Stats()
	if st.InvalidSessions != 1 || st.Resumes != 0 || st.SessionID == first {
		t.Fatalf("stats %+v: want one refused resume, then a new session", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.client.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}
