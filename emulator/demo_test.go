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
