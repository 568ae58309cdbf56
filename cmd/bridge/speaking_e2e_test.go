package main

import (
	"slices"
	"testing"

	"github.com/voicebridge/bridge/internal/audiotest"

	"github.com/voicebridge/bridge/emulator/voiceemu"
)

// TestMediaE2EBotSpeakingFollowsBrowserAudio: the bot's Speaking (op 5)
// follows browser audio through the bridge: speaking 1 before the first
// audio, speaking 0 once the browser audio ends (after the five silence
// frames), speaking 1 again when another browser talks. The emulator,
// which refuses audio before op 5, keeps the bot connected throughout.
func TestMediaE2EBotSpeakingFollowsBrowserAudio(t *testing.T) {
	ta, ctx := startMediaE2E(t, mediaTuning())
	room := newVoiceRoom(t, ctx, ta, "speaking-room")
	addDiscordMember(t, ta, "460000000000000011", "Listener", room)
	ann := newE2EBrowser(t, ta, "ann", browserOptions{})
	ben := newE2EBrowser(t, ta, "ben", browserOptions{}) // keeps the room open
	ann.join(ctx, room)
	ben.join(ctx, room)
	ann.publishOpus(audiotest.Tone(t, 1000), loudLevel)

	bot := ta.gw.Status().BotUserID
	botSession := func() (voiceemu.SessionStats, bool) {
		for _, s := range ta.demo.Voice.Stats().Sessions {
			if s.UserID == bot && !s.Ended {
				return s, true
			}
		}
		return voiceemu.SessionStats{}, false
	}
	flags := func(want ...int) func() bool {
		return func() bool { s, ok := botSession(); return ok && slices.Equal(s.Speaking, want) }
	}
	waitUntil(t, ctx, "the bot's speaking 1", flags(1))
	ann.hangUp()
	waitUntil(t, ctx, "the bot's speaking 0 once the browser audio ended", flags(1, 0))
	ben.publishOpus(audiotest.Tone(t, 440), loudLevel)
	waitUntil(t, ctx, "the bot's speaking 1 again", flags(1, 0, 1))
	if s, ok := botSession(); !ok || s.MediaIn == 0 {
		t.Fatalf("bot session %+v: want it live and carrying audio", s)
	}
}
