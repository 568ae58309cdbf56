package emulator

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/emulator/voiceemu"
)

// TestDemoMembersTalkShowVideoAndEcho checks the embedded default's
// scenario from a listener in the Lobby: the talker's speech and the
// camera's VP8 frames arrive, and what the listener says comes back from
// the echo member no sooner than the echo delay.
func TestDemoMembersTalkShowVideoAndEcho(t *testing.T) {
	const delay = 300 * time.Millisecond
	d, err := StartDemo(DemoOptions{
		Discord:   discordemu.Options{HeartbeatInterval: 200 * time.Millisecond},
		Voice:     voiceemu.Options{HeartbeatInterval: 200 * time.Millisecond},
		EchoDelay: delay,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	states := d.Discord.VoiceStates()
	for _, id := range []string{DemoTalkerID, DemoCameraID, DemoEchoID} {
		if states[id] != d.Lobby.ID {
			t.Fatalf("member %s is in %q, want the Lobby %s", id, states[id], d.Lobby.ID)
		}
	}
	if d.Lobby.ParentID != d.Discord.Options().CategoryID {
		t.Fatalf("Lobby parent %q, want the rooms category", d.Lobby.ParentID)
	}

	o := d.Discord.Options()
	listener, err := d.Voice.AddMember(voiceemu.MemberOptions{UserID: "499", GuildID: o.GuildID, ChannelID: d.Lobby.ID})
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Leave()
	echoed := make(chan time.Time, 100)
	marker := []byte{0x78, 0x01, 0x02, 0x03} // a frame the listener says and expects back
	listener.OnOpus(func(from string, frame []byte) {
		if from == DemoEchoID && bytes.Equal(frame, marker) {
			echoed <- time.Now()
		}
	})
	sent := time.Now()
	if err := listener.SendOpus(marker); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case at := <-echoed:
		if at.Sub(sent) < delay {
			t.Fatalf("echo came back after %v, before the %v delay", at.Sub(sent), delay)
		}
	case <-ctx.Done():
		t.Fatal("the echo member never played back the listener's frame")
	}
	for ctx.Err() == nil {
		frames := listener.ReceivedVP8(DemoCameraID)
		speech := listener.ReceivedOpus(DemoTalkerID)
		keyframe := false
		for _, f := range frames {
			keyframe = keyframe || f.Keyframe
		}
		if len(speech) >= 25 && len(frames) >= 5 && keyframe {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("listener got %d speech frames and %d video frames in 10 s",
		len(listener.ReceivedOpus(DemoTalkerID)), len(listener.ReceivedVP8(DemoCameraID)))
}

// TestDemoHasTwoBotsAndASecondRoom: the embedded default is a guild with
// two bots and a second room whose own member talks there, heard by a
// listener in that room and not by one in the Lobby.
func TestDemoHasTwoBotsAndASecondRoom(t *testing.T) {
	d, err := StartDemo(DemoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	o := d.Discord.Options()
	if len(o.ExtraBots) != 1 || o.ExtraBots[0].UserID != DemoSecondBotID || o.ExtraBots[0].Token != DemoSecondBotToken {
		t.Fatalf("extra bots %+v, want the demo's second bot", o.ExtraBots)
	}
	if d.Table.ParentID != o.CategoryID || d.Table.Name != "Table 2" {
		t.Fatalf("second room %+v, want Table 2 under the rooms category", d.Table)
	}
	if got := d.Discord.VoiceStates()[DemoTableTalkerID]; got != d.Table.ID {
		t.Fatalf("the table talker is in %q, want %s", got, d.Table.ID)
	}
	inTable, err := d.Voice.AddMember(voiceemu.MemberOptions{UserID: "498", GuildID: o.GuildID, ChannelID: d.Table.ID})
	if err != nil {
		t.Fatal(err)
	}
	defer inTable.Leave()
	inLobby, err := d.Voice.AddMember(voiceemu.MemberOptions{UserID: "499", GuildID: o.GuildID, ChannelID: d.Lobby.ID})
	if err != nil {
		t.Fatal(err)
	}
	defer inLobby.Leave()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(inTable.ReceivedOpus(DemoTableTalkerID)) < 25 || len(inLobby.ReceivedOpus(DemoTalkerID)) < 25 {
		select {
		case <-ctx.Done():
			t.Fatalf("the table talker's speech did not arrive in the table (%d frames) or the Lobby's talker in the Lobby (%d)",
				len(inTable.ReceivedOpus(DemoTableTalkerID)), len(inLobby.ReceivedOpus(DemoTalkerID)))
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n := len(inLobby.ReceivedOpus(DemoTableTalkerID)); n != 0 {
		t.Fatalf("the Lobby heard %d frames of the table's talker", n)
	}
	if n := len(inTable.ReceivedOpus(DemoTalkerID)); n != 0 {
		t.Fatalf("the table heard %d frames of the Lobby's talker", n)
	}
}
