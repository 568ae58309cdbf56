package gateway_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/gateway/session"
)

// sessions records OnSession calls.
type sessions struct {
	mu   sync.Mutex
	last gateway.Session
	n    int
}

func (s *sessions) on(v gateway.Session) {
	s.mu.Lock()
	s.last, s.n = v, s.n+1
	s.mu.Unlock()
}

func (s *sessions) get() gateway.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// TestHandoverResumesSavedSession: a client abandons its session; a second
// client, built afresh, starts from the session the first reported and
// resumes it (no new identify), receives the room created while no one was
// connected once, and knows the rooms that existed before (read over REST,
// not reported again).
func TestHandoverResumesSavedSession(t *testing.T) {
	var saved sessions
	f := start(t, discordemu.Options{HeartbeatInterval: 200 * time.Millisecond, IdentifyInterval: time.Nanosecond},
		gateway.Options{OnSession: saved.on})
	before, err := f.emu.CreateChannel("before", int(discordgo.ChannelTypeGuildVoice), f.emu.Options().CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	f.open(t)
	f.rec.waitN(t, 1, 5*time.Second) // room.created of "before"
	waitStats(t, f.emu, "the session's last dispatch saved", func(s discordemu.Stats) bool {
		return saved.get().Seq == s.LastSeq && s.LastSeq > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.client.Abandon(ctx); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.emu, "the first connection gone", func(s discordemu.Stats) bool { return !s.Connected && s.SessionID != "" })
	during, err := f.emu.CreateChannel("during", int(discordgo.ChannelTypeGuildVoice), f.emu.Options().CategoryID)
	if err != nil {
		t.Fatal(err)
	}

	st := saved.get()
	if st.ID != f.emu.Stats().SessionID || st.ResumeURL == "" || st.BotUserID == "" {
		t.Fatalf("saved session %+v, emulator session %q", st, f.emu.Stats().SessionID)
	}
	rec := newRecorder()
	var saved2 sessions
	o := f.emu.Options()
	next, err := gateway.New(gateway.Options{Token: o.Token, GuildID: o.GuildID, CategoryID: o.CategoryID,
		APIBase: f.emu.URL() + "/api/v10", HTTPClient: f.hc, OnEvent: rec.on, OnSession: saved2.on,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond, IdentifyInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := next.OpenSession(ctx, st); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := next.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	if err := next.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitN(t, 1, 5*time.Second)
	got := describe(evs)
	if ev := evs[0]; ev.Session != st.ID || ev.Seq <= st.Seq || ev.Index != 0 {
		t.Fatalf("the replayed event's place %q %d %d, want session %q past seq %d", ev.Session, ev.Seq, ev.Index, st.ID, st.Seq)
	}
	if es := f.emu.Stats(); es.Identifies != 1 || es.Resumes != 1 || es.SessionID != st.ID {
		t.Fatalf("emulator stats %+v: want the one session resumed, not a new identify", es)
	}
	if want := []string{"room.created " + during.ID}; !slices.Equal(got, want) {
		t.Fatalf("events after the handover %v, want %v", got, want)
	}
	var ids []string
	for _, r := range next.Rooms() {
		ids = append(ids, r.ChannelID)
	}
	if !slices.Contains(ids, before.ID) || !slices.Contains(ids, during.ID) {
		t.Fatalf("rooms after the handover %v, want %s and %s", ids, before.ID, during.ID)
	}
	if s := next.Status(); s.SessionID != st.ID || s.BotUserID != st.BotUserID {
		t.Fatalf("status %+v after resuming %+v", s, st)
	}
	if s2 := saved2.get(); s2.ID != st.ID || s2.Seq <= st.Seq {
		t.Fatalf("the resumed client reported %+v, want the same session past seq %d", s2, st.Seq)
	}
}

// TestHandoverRefusedIdentifies: a saved session Discord no longer knows is
// refused (op 9 not resumable) and the client identifies a new session.
func TestHandoverRefusedIdentifies(t *testing.T) {
	f := start(t, discordemu.Options{HeartbeatInterval: 200 * time.Millisecond, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.client.OpenSession(ctx, gateway.Session{ID: "gone", ResumeURL: f.emu.ResumeGatewayURL(), Seq: 7}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.client.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	if err := f.client.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	es := f.emu.Stats()
	if es.Identifies != 1 || es.Resumes != 0 || es.InvalidSessions != 1 {
		t.Fatalf("emulator stats %+v: want the resume refused once, then one identify", es)
	}
	if s := f.client.Status(); s.SessionID != es.SessionID || s.SessionID == "gone" {
		t.Fatalf("client session %q, emulator's %q", s.SessionID, es.SessionID)
	}
}

// TestOpenSessionNeedsID: a session to resume without its id is refused.
func TestOpenSessionNeedsID(t *testing.T) {
	c, err := gateway.New(gateway.Options{Token: "t", GuildID: "1", CategoryID: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.OpenSession(context.Background(), gateway.Session{Seq: 3}); err == nil {
		t.Fatal("OpenSession without a session id: no error")
	}
}

// TestHandoverRefusedReconcilesSavedView: when the saved session cannot be
// resumed, the new session's guild is reconciled with the saved view, so
// only the net changes since it are reported: a room the view held that
// is gone is deleted, a room created since is created, a room both know
// is not reported again.
func TestHandoverRefusedReconcilesSavedView(t *testing.T) {
	f := start(t, discordemu.Options{HeartbeatInterval: 200 * time.Millisecond, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	cat := f.emu.Options().CategoryID
	kept, err := f.emu.CreateChannel("kept", int(discordgo.ChannelTypeGuildVoice), cat)
	if err != nil {
		t.Fatal(err)
	}
	added, err := f.emu.CreateChannel("added", int(discordgo.ChannelTypeGuildVoice), cat)
	if err != nil {
		t.Fatal(err)
	}
	view := &session.Saved{Rooms: []session.SavedRoom{{ChannelID: kept.ID, Name: "kept"}, {ChannelID: "399999999999999999", Name: "gone"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.client.OpenSession(ctx, gateway.Session{ID: "expired", ResumeURL: f.emu.ResumeGatewayURL(), Seq: 3, Guilds: map[string]*session.Saved{f.emu.Options().GuildID: view}}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.client.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	if err := f.client.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	got := describe(f.rec.waitN(t, 2, 5*time.Second))
	want := []string{"room.deleted 399999999999999999", "room.created " + added.ID}
	if !slices.Equal(got, want) {
		t.Fatalf("events after the refused resume %v, want %v", got, want)
	}
}
