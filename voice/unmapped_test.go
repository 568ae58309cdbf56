package voice_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/voicebridge/bridge/internal/audiotest"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/voice"
)

// TestUnmappedSSRCFramesAttributedLater: a member's first packets arrive
// before the op 5 that maps its SSRC to its user id. The client holds them
// (StreamStats.Unattributed counts any it had to drop) and, once the
// mapping arrives, delivers them attributed to the member, in order,
// before the rest.
func TestUnmappedSSRCFramesAttributedLater(t *testing.T) {
	r := join(t, voiceemu.Options{})
	member, err := r.srv.AddMember(voiceemu.MemberOptions{UserID: memberID, GuildID: guildID, ChannelID: channelID, SpeakLate: true})
	if err != nil {
		t.Fatal(err)
	}
	awaitE2EE(t, r.evs, r.conn, member)
	frames := audiotest.Tone(t, 440)[:8]
	for _, f := range frames[:3] {
		if err := member.SendOpus(f); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "an unattributed stream at the bot", func() bool {
		for _, s := range r.conn.Stats().Streams {
			if s.Kind == voice.Audio && s.UserID == "" {
				return true
			}
		}
		return false
	})
	if n := r.evs.count(func(ev voice.Event) bool { s, ok := ev.(voice.Speaking); return ok && s.UserID == memberID }); n != 0 {
		t.Fatalf("%d Speaking events before the member's op 5", n)
	}
	member.PlayOpus(context.Background(), frames[3:], false)
	got := collectFrames(r.conn, memberID, voice.Audio, len(frames), 10*time.Second)
	if len(got) != len(frames) {
		t.Fatalf("got %d of %d frames from the member", len(got), len(frames))
	}
	for i, f := range got {
		if !bytes.Equal(f.Payload, frames[i]) {
			t.Fatalf("frame %d differs: the early frames must come first, attributed", i)
		}
	}
	if s := memberStream(t, r.conn, voice.Audio); s.Unattributed != 0 {
		t.Fatalf("%d frames dropped unattributed", s.Unattributed)
	}
}
