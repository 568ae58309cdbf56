package voice_test

import (
	"context"
	"slices"
	"testing"

	"github.com/voicebridge/bridge/internal/audiotest"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/voice"
)

// botSession is the emulator's record of the bot's live voice session.
func botSession(t *testing.T, srv *voiceemu.Server) voiceemu.SessionStats {
	t.Helper()
	for _, s := range srv.Stats().Sessions {
		if s.UserID == botID && !s.Ended {
			return s
		}
	}
	t.Fatal("the bot has no live voice session")
	return voiceemu.SessionStats{}
}

// talk sends a short talk spurt and waits for the bot's speaking 0 that
// ends it, as the emulator saw it.
func talk(t *testing.T, r *rig, wantFlags []int) {
	t.Helper()
	for _, f := range audiotest.Tone(t, 1000)[:10] {
		if err := r.conn.SendOpus(f); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the bot's op 5 flags to be "+flagString(wantFlags), func() bool {
		return slices.Equal(botSession(t, r.srv).Speaking, wantFlags)
	})
}

func flagString(f []int) string {
	b := []byte{'['}
	for i, v := range f {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, byte('0'+v))
	}
	return string(append(b, ']'))
}

// TestSpeakingAroundTalkSpurts: op 5 speaking 1 precedes the audio of
// every talk spurt, after the first connect and after a resume, and
// speaking 0 follows the five silence frames that end it, so Discord users
// do not see the bot speaking forever. The emulator refuses media before
// op 5 (TestMediaBeforeSpeakingRefused); the client never triggers it.
// A member that stops playing says speaking 0 too.
func TestSpeakingAroundTalkSpurts(t *testing.T) {
	r := join(t, voiceemu.Options{})
	member := addMember(t, r.srv)
	awaitE2EE(t, r.evs, r.conn, member)
	talk(t, r, []int{1, 0})
	talk(t, r, []int{1, 0, 1, 0})

	r.evs.mu.Lock()
	from := len(r.evs.events)
	r.evs.mu.Unlock()
	r.srv.DropSockets()
	i := r.evs.await(t, from, "resuming", isState(voice.StateResuming))
	r.evs.await(t, i, "connected after the resume", isState(voice.StateConnected))
	talk(t, r, []int{1, 0, 1, 0, 1, 0})
	if st := botSession(t, r.srv); st.Ended {
		t.Fatalf("the emulator disconnected the bot: %+v", st)
	}

	// A new session starts without op 5 too.
	r.srv.CloseSession(botID, 4006)
	i = r.evs.await(t, i, "reconnecting", isState(voice.StateReconnecting))
	r.evs.await(t, i, "connected in a new session", isState(voice.StateConnected))
	awaitE2EE(t, r.evs, r.conn, member)
	talk(t, r, []int{1, 0})
	for _, s := range r.srv.Stats().Sessions {
		if s.UserID == botID && s.Ended && len(s.Speaking) != 6 {
			t.Fatalf("the bot's ended session %+v: refused or cut short", s)
		}
	}

	member.PlayOpus(context.Background(), audiotest.Tone(t, 440)[:5], false)
	r.evs.await(t, 0, "the member's speaking 0", func(ev voice.Event) bool {
		s, ok := ev.(voice.Speaking)
		return ok && s.UserID == memberID && !s.Speaking
	})
}
