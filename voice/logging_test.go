package voice_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/voice"
)

// keyCheck is a slog handler that records every record's full attribute
// keys (those of its child loggers included) and flags a key given twice.
type keyCheck struct {
	mu      *sync.Mutex
	records *int
	bad     *[]string
	keys    []string
	group   string
}

func (h keyCheck) Enabled(context.Context, slog.Level) bool { return true }

func (h keyCheck) Handle(_ context.Context, r slog.Record) error {
	keys := append([]string(nil), h.keys...)
	r.Attrs(func(a slog.Attr) bool { keys = append(keys, h.group+a.Key); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.records++
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] || k != strings.ToLower(k) || strings.Contains(k, "-") {
			*h.bad = append(*h.bad, r.Message+": "+strings.Join(keys, ","))
			break
		}
		seen[k] = true
	}
	if !seen["component"] {
		*h.bad = append(*h.bad, r.Message+": no component: "+strings.Join(keys, ","))
	}
	return nil
}

func (h keyCheck) WithAttrs(as []slog.Attr) slog.Handler {
	h.keys = append([]string(nil), h.keys...)
	for _, a := range as {
		h.keys = append(h.keys, h.group+a.Key)
	}
	return h
}

func (h keyCheck) WithGroup(name string) slog.Handler { h.group += name + "."; return h }

// TestLogVocabulary: the voice client's records carry component=voice
// once, snake_case keys, and no attribute twice (guild_id and channel_id
// come from the connection's logger only), through a join, a new session
// and a close.
func TestLogVocabulary(t *testing.T) {
	var (
		mu      sync.Mutex
		records int
		bad     []string
	)
	log := slog.New(keyCheck{mu: &mu, records: &records, bad: &bad})
	srv := startServer(t, voiceemu.Options{})
	sig := newMainGateway(t, srv, botID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := voice.NewClient(voice.Options{Signaler: sig, UserID: botID, TLSConfig: srv.TLSConfig(), Logger: log}).Join(ctx, guildID, channelID)
	if err != nil {
		t.Fatal(err)
	}
	evs := watchEvents(conn)
	srv.CloseSession(botID, 4006)
	i := evs.await(t, 0, "reconnecting", isState(voice.StateReconnecting))
	evs.await(t, i, "connected", isState(voice.StateConnected))
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	evs.wait()
	mu.Lock()
	defer mu.Unlock()
	if records == 0 || len(bad) > 0 {
		t.Fatalf("%d records; bad: %q", records, bad)
	}
}
