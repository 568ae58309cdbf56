package gateway_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

// fullRoom creates a room with a user limit of one and puts a member in it.
func fullRoom(t *testing.T, ctx context.Context, f *fixture) string {
	t.Helper()
	room, err := newRooms(t, f).CreateRoom(ctx, "full", 1)
	if err != nil {
		t.Fatal(err)
	}
	const alice = "700000000000000001"
	f.emu.AddMember(alice, "alice")
	if err := f.emu.SetVoiceState(alice, room.ChannelID); err != nil {
		t.Fatal(err)
	}
	deadline := time.NewTicker(5 * time.Millisecond)
	defer deadline.Stop()
	for {
		for _, r := range f.client.Rooms() {
			if r.ChannelID == room.ChannelID && len(r.Members) == 1 {
				return room.ChannelID
			}
		}
		select {
		case <-deadline.C:
		case <-ctx.Done():
			t.Fatal("the client never saw the member in the room")
		}
	}
}

// TestPermissionsReportedAndFullRoomRefused: the bot's role lacks Move
// Members and the category denies @everyone Connect: the status reports
// both missing, with the fix, and joining a full room fails with
// ErrRoomFull, as Discord would ignore the op 4 (the emulator does).
func TestPermissionsReportedAndFullRoomRefused(t *testing.T) {
	eo := discordemu.Options{IdentifyInterval: time.Nanosecond,
		BotPermissions: discordemu.PermViewChannel | discordemu.PermManageChannels | discordemu.PermSpeak}
	eo.CategoryOverwrites = []discordemu.PermissionOverwrite{{ID: "200000000000000001", Type: 0, Deny: discordemu.PermConnect}}
	f := start(t, eo, gateway.Options{})
	f.open(t)
	st := f.client.Status()
	if st.Permissions == nil || len(st.Permissions.Missing) != 2 ||
		!strings.HasPrefix(st.Permissions.Missing[0], "Connect") || !strings.HasPrefix(st.Permissions.Missing[1], "Move Members") ||
		!strings.Contains(st.Permissions.Fix, "oauth2/authorize") {
		t.Fatalf("permission report %+v", st.Permissions)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	room := fullRoom(t, ctx, f)
	if err := f.client.CheckJoin(room); !errors.Is(err, gateway.ErrRoomFull) || !strings.Contains(err.Error(), "Move Members") {
		t.Fatalf("CheckJoin of a full room: %v, want ErrRoomFull naming Move Members", err)
	}
	// What Discord does with the join: nothing.
	if err := f.client.UpdateVoiceState(ctx, f.emu.Options().GuildID, room, false, false); err != nil {
		t.Fatal(err)
	}
	waitStats(t, f.emu, "the join refused", func(s discordemu.Stats) bool { return s.RefusedFullJoins == 1 })
	if _, in := f.emu.VoiceStates()[f.emu.Options().BotUserID]; in {
		t.Fatal("the bot joined a full room without Move Members")
	}
}

// TestPermissionsCompleteFullRoomJoins: with every needed permission the
// report lists nothing missing and the bot joins a full room.
func TestPermissionsCompleteFullRoomJoins(t *testing.T) {
	f := start(t, discordemu.Options{IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	if p := f.client.Status().Permissions; p == nil || len(p.Missing) != 0 || p.Fix != "" {
		t.Fatalf("permission report %+v", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	room := fullRoom(t, ctx, f)
	if err := f.client.CheckJoin(room); err != nil {
		t.Fatalf("CheckJoin with Move Members: %v", err)
	}
	if err := f.client.UpdateVoiceState(ctx, f.emu.Options().GuildID, room, false, false); err != nil {
		t.Fatal(err)
	}
	bot := f.emu.Options().BotUserID
	waitStats(t, f.emu, "the bot in the full room", func(discordemu.Stats) bool { return f.emu.VoiceStates()[bot] == room })
}
