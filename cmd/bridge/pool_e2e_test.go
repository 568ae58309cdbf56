package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/emulator"
	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/internal/audiotest"
	bridgemedia "github.com/voicebridge/bridge/media"
)

// The pool of bots through the whole stack: several bots of one guild,
// each bridging its own room at once.

const (
	primaryBotID   = "100000000000000001"
	thirdBotID     = "100000000000000003"
	thirdBotToken  = "emulator-bot-token-3"
	poolListenerID = "470000000000000000"
)

// poolTuning is mediaTuning with the given bots besides the primary
// (nil keeps the demo's second bot).
func poolTuning(extra []discordemu.Bot) tuning {
	tune := mediaTuning()
	tune.demo.Discord.ExtraBots = extra
	return tune
}

// botRoom is the voice channel each bot of the guild is in.
func botRoom(ta *testApp, bots ...string) map[string]string {
	states := ta.demo.Discord.VoiceStates()
	out := map[string]string{}
	for _, b := range bots {
		if ch := states[b]; ch != "" {
			out[ch] = b
		}
	}
	return out
}

// TestPoolBridgesEveryRoomAtOnce: three bots, three rooms with a browser
// each: all three rooms are bridged at once, each by its own bot, and in
// each a Discord member hears its own room's browser and nothing of the
// others'.
func TestPoolBridgesEveryRoomAtOnce(t *testing.T) {
	ta, ctx := startMediaE2E(t, poolTuning([]discordemu.Bot{
		{Token: emulator.DemoSecondBotToken, UserID: emulator.DemoSecondBotID},
		{Token: thirdBotToken, UserID: thirdBotID},
	}))
	speech, err := voiceemu.LoadOpusSample("speech")
	if err != nil {
		t.Fatal(err)
	}
	clips := [][][]byte{audiotest.Tone(t, 440), audiotest.Tone(t, 1000), speech}
	owner := map[string]int{} // frame bytes -> the clip they belong to, -1 when in several
	for i, clip := range clips {
		for _, f := range clip {
			if o, ok := owner[string(f)]; ok && o != i {
				owner[string(f)] = -1
				continue
			}
			owner[string(f)] = i
		}
	}
	var rooms []string
	var listeners []*voiceemu.Member
	for i := range clips {
		room := newVoiceRoom(t, ctx, ta, "table-"+string(rune('a'+i)))
		rooms = append(rooms, room)
		listeners = append(listeners, addDiscordMember(t, ta, poolListenerID+string(rune('1'+i)), "Listener", room))
		b := newE2EBrowser(t, ta, "guest"+string(rune('1'+i)), browserOptions{})
		b.join(ctx, room)
		b.publishOpus(clips[i], loudLevel)
	}
	bots := []string{primaryBotID, emulator.DemoSecondBotID, thirdBotID}
	waitUntil(t, ctx, "a bot in each of the three rooms", func() bool { return len(botRoom(ta, bots...)) == 3 })
	holders := botRoom(ta, bots...)
	for i, l := range listeners {
		bot := holders[rooms[i]]
		waitUntil(t, ctx, "a second of the room's browser at its member", func() bool { return len(l.ReceivedOpus(bot)) >= 50 })
		heard := l.ReceivedOpus(bot)
		for j, f := range heard {
			if o, ok := owner[string(f)]; ok && o != -1 && o != i {
				t.Fatalf("room %d's member heard frame %d of room %d's browser", i, j, o)
			}
		}
		if i < 2 {
			audiotest.RequireTone(t, "room "+rooms[i], heard, []float64{440, 1000}[i])
		}
		for _, other := range bots {
			if other != bot && len(l.ReceivedOpus(other)) > 0 {
				t.Fatalf("room %d's member heard bot %s, which holds another room", i, other)
			}
		}
	}
}

// TestPoolWaitingRoomGetsTheFreedBot: two bots, three rooms with browsers:
// the third room's browsers meet each other, are told which rooms hold the
// bots, and are bridged within the grace period plus 3 s after one of
// those rooms empties.
func TestPoolWaitingRoomGetsTheFreedBot(t *testing.T) {
	const grace = 300 * time.Millisecond // mediaTuning's
	ta, ctx := startMediaE2E(t, poolTuning(nil))
	bots := []string{primaryBotID, emulator.DemoSecondBotID}
	names := []string{"game-one", "game-two", "game-three"}
	var rooms []string
	var guests []*e2eBrowser
	for i, name := range names {
		rooms = append(rooms, newVoiceRoom(t, ctx, ta, name))
		b := newE2EBrowser(t, ta, "guest"+name, browserOptions{})
		b.join(ctx, rooms[i])
		guests = append(guests, b)
		if i < 2 {
			waitUntil(t, ctx, "a bot in "+name, func() bool { _, ok := botRoom(ta, bots...)[rooms[i]]; return ok })
		}
	}
	third := guests[2]
	st := third.waitMessage(ctx, 0, "the waiting status", func(m serverMessage) bool {
		return m.Type == "status" && m.Discord == bridgemedia.StatusUnavailable
	})
	for _, want := range []string{`"game-one"`, `"game-two"`, "as soon as one frees"} {
		if !strings.Contains(st.Status, want) {
			t.Fatalf("the waiting room was told %q; it does not say %s", st.Status, want)
		}
	}
	// The waiting room's browsers meet each other meanwhile.
	peer := newE2EBrowser(t, ta, "guest-three-b", browserOptions{})
	peerSelf := peer.join(ctx, rooms[2])
	third.publishOpus(audiotest.Tone(t, 440), loudLevel)
	peer.publishOpus(audiotest.Tone(t, 1000), loudLevel)
	tr := third.track(ctx, "browser-"+peerSelf, webrtc.RTPCodecTypeAudio)
	third.waitPackets(ctx, tr, 25)

	from := third.mark()
	guests[0].hangUp()
	freed := time.Now()
	wctx, cancel := context.WithTimeout(ctx, grace+3*time.Second)
	defer cancel()
	third.waitMessage(wctx, from, "the freed bot bridging the third room", func(m serverMessage) bool {
		return m.Type == "status" && m.Discord == bridgemedia.StatusConnected
	})
	if _, ok := botRoom(ta, bots...)[rooms[2]]; !ok {
		t.Fatalf("the third room is told it is connected, but no bot is in it (%v)", ta.demo.Discord.VoiceStates())
	}
	t.Logf("the third room was bridged %v after the first emptied", time.Since(freed).Round(time.Millisecond))
}

// TestPoolBotWithRevokedTokenHandsItsRoomOver: the bot holding a room is
// closed with 4004; it leaves the pool, /readyz's operator view names
// it, and the room's Discord member hears the browser again through the
// other bot within 5 s.
func TestPoolBotWithRevokedTokenHandsItsRoomOver(t *testing.T) {
	// The bots are in the gateway's status, the operator's view of /readyz.
	const operator = "operator-token-of-at-least-32-bytes-0123456789"
	checkLeaks(t)
	ta := startTestApp(t, poolTuning(nil), map[string]string{"OPERATOR_TOKEN": operator})
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	t.Cleanup(cancel)
	if err := ta.gw.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	bots := []string{primaryBotID, emulator.DemoSecondBotID}
	room := newVoiceRoom(t, ctx, ta, "support-desk")
	listener := addDiscordMember(t, ta, poolListenerID+"9", "Listener", room)
	b := newE2EBrowser(t, ta, "caller", browserOptions{})
	b.join(ctx, room)
	b.publishOpus(audiotest.Tone(t, 440), loudLevel)
	waitUntil(t, ctx, "a bot in the room", func() bool { _, ok := botRoom(ta, bots...)[room]; return ok })
	first := botRoom(ta, bots...)[room]
	waitUntil(t, ctx, "the member hears the browser", func() bool { return len(listener.ReceivedOpus(first)) >= 25 })
	other := bots[0]
	if other == first {
		other = bots[1]
	}

	if !ta.demo.Discord.CloseBotWithCode(first, 4004, "Authentication failed.") {
		t.Fatalf("bot %s has no gateway connection to close", first)
	}
	failed := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	waitUntil(t, wctx, "the member hears the browser through the other bot", func() bool { return len(listener.ReceivedOpus(other)) >= 25 })
	audiotest.RequireTone(t, "the member after the move", listener.ReceivedOpus(other), 440)
	t.Logf("audio resumed through the other bot %v after the 4004", time.Since(failed).Round(time.Millisecond))

	req, _ := http.NewRequest(http.MethodGet, ta.base+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+operator)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ready struct {
		Ready    bool
		Operator struct {
			Gateway struct {
				Bots []struct {
					Name    string
					InPool  bool
					Reason  string
					Rooms   []string
					Gateway struct{ BotUserID string }
				}
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !ready.Ready || len(ready.Operator.Gateway.Bots) != 2 {
		t.Fatalf("/readyz: %d %+v", resp.StatusCode, ready)
	}
	for _, bs := range ready.Operator.Gateway.Bots {
		switch bs.Gateway.BotUserID {
		case first:
			if bs.InPool || !strings.Contains(bs.Reason, "4004") || len(bs.Rooms) != 0 {
				t.Fatalf("/readyz for the failed bot: %+v", bs)
			}
		case other:
			if !bs.InPool || len(bs.Rooms) != 1 || bs.Rooms[0] != room {
				t.Fatalf("/readyz for the bot that took over: %+v", bs)
			}
		default:
			t.Fatalf("/readyz names a bot %+v", bs)
		}
	}
}
