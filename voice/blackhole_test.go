package voice_test

import (
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/voice"
)

// TestBlackholedVoiceGatewayResumes: the voice emulator blackholes the
// bot's voice websocket (nothing arrives, nothing gets through, the close
// frame is lost). The client notices by its heartbeat, resumes the same
// session, and a member who joined meanwhile is announced exactly once,
// by replay.
func TestBlackholedVoiceGatewayResumes(t *testing.T) {
	r := join(t, voiceemu.Options{HeartbeatInterval: 100 * time.Millisecond})
	r.evs.await(t, 0, "connected", isState(voice.StateConnected))
	r.srv.Blackhole(botID)
	const lateID = "400000000000000044"
	late, err := r.srv.AddMember(voiceemu.MemberOptions{UserID: lateID, GuildID: guildID, ChannelID: channelID})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Leave()
	i := r.evs.await(t, 0, "resuming", isState(voice.StateResuming))
	r.evs.await(t, i, "connected after the resume", isState(voice.StateConnected))
	r.evs.await(t, 0, "the late member announced", func(ev voice.Event) bool { m, ok := ev.(voice.MemberJoined); return ok && m.UserID == lateID })
	if n := r.evs.count(func(ev voice.Event) bool { m, ok := ev.(voice.MemberJoined); return ok && m.UserID == lateID }); n != 1 {
		t.Fatalf("the late member announced %d times, want once", n)
	}
	if r.evs.count(isState(voice.StateReconnecting)) != 0 {
		t.Fatal("a new session instead of a resume")
	}
	if joins, _ := r.sig.counts(t); joins != 1 {
		t.Fatalf("%d op 4 joins; a resume needs none", joins)
	}
}
