package main

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/voicebridge/bridge/emulator"
	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/internal/audiotest"
	"github.com/voicebridge/bridge/media/opusenc"
)

// One bridge, two guilds: guild A (the embedded default's) and guild B
// with its own room category.

const (
	guildB    = "200000000000000002"
	categoryB = "300000000000000002"
)

// guildsTuning is mediaTuning with three bots in guild A and guild B
// holding the bots listed (all when none).
func guildsTuning(bBots ...string) tuning {
	tune := poolTuning([]discordemu.Bot{
		{Token: emulator.DemoSecondBotToken, UserID: emulator.DemoSecondBotID},
		{Token: thirdBotToken, UserID: thirdBotID},
	})
	tune.demo.Discord.Guilds = []discordemu.Guild{{ID: guildB, Name: "Guild B", CategoryID: categoryB, Bots: bBots}}
	return tune
}

// newVoiceRoomIn is newVoiceRoom in guild B's category.
func newVoiceRoomIn(t testing.TB, ctx context.Context, ta *testApp, guildID, categoryID, name string) string {
	t.Helper()
	c, err := ta.demo.Discord.CreateChannelIn(guildID, name, 2, categoryID)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "the bridge knows room "+name, func() bool {
		r, ok := ta.bots.room(c.ID)
		return ok && r.GuildID == guildID
	})
	return c.ID
}

// addDiscordMemberIn is addDiscordMember in guildID.
func addDiscordMemberIn(t testing.TB, ta *testApp, guildID, userID, name, channelID string) *voiceemu.Member {
	t.Helper()
	if err := ta.demo.Discord.AddMemberTo(guildID, userID, name); err != nil {
		t.Fatal(err)
	}
	m, err := ta.demo.Voice.AddMember(voiceemu.MemberOptions{UserID: userID, GuildID: guildID, ChannelID: channelID})
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.demo.Discord.SetVoiceState(userID, channelID); err != nil {
		t.Fatal(err)
	}
	return m
}

// synthTone is 3 s of a sine at hz, half scale, as 20 ms Opus frames of
// the bridge's own encoder (audiotest embeds only 440 and 1000 Hz).
func synthTone(t testing.TB, hz float64) [][]byte {
	t.Helper()
	enc, err := opusenc.New(opusenc.Options{Bitrate: 32000})
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	pcm := make([]float32, opusenc.FrameSize)
	buf := make([]byte, 1500)
	for n := 0; n < 150; n++ {
		for i := range pcm {
			at := float64(n*opusenc.FrameSize+i) / opusenc.SampleRate
			pcm[i] = float32(0.5 * math.Sin(2*math.Pi*hz*at))
		}
		size, err := enc.EncodeFloat32(pcm, buf)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, append([]byte(nil), buf[:size]...))
	}
	return frames
}

// botIn is the bot user in channelID of guildID, "" when none.
func botIn(ta *testApp, guildID, channelID string, bots ...string) string {
	states := ta.demo.Discord.VoiceStatesIn(guildID)
	for _, b := range bots {
		if states[b] == channelID {
			return b
		}
	}
	return ""
}

// TestGuildsBridgeEveryRoomAtOnce (issue 14, test 1): three bots, two
// guilds, four rooms with a browser each, three in guild A and one in
// guild B: all four are bridged at once, guild B's by its own bot while
// that bot also holds a room of guild A, and in each room a Discord
// member hears its own room's browser tone and nothing of the others'.
func TestGuildsBridgeEveryRoomAtOnce(t *testing.T) {
	ta, ctx := startMediaE2E(t, guildsTuning(thirdBotID))
	bots := []string{primaryBotID, emulator.DemoSecondBotID, thirdBotID}
	tones := []float64{440, 1000, 660, 880}
	clips := make([][][]byte, len(tones))
	owner := map[string]int{} // frame bytes -> the clip they belong to, -1 when in several
	for i, f := range tones {
		clips[i] = synthTone(t, f)
		for _, fr := range clips[i] {
			if o, ok := owner[string(fr)]; ok && o != i {
				owner[string(fr)] = -1
				continue
			}
			owner[string(fr)] = i
		}
	}
	type room struct {
		guild, id string
		listener  *voiceemu.Member
	}
	var rooms []room
	for i := range tones {
		name := "table-" + string(rune('a'+i))
		var r room
		var opts browserOptions
		if i < 3 {
			r = room{guild: ta.demo.Discord.Options().GuildID, id: newVoiceRoom(t, ctx, ta, name)}
		} else {
			r = room{guild: guildB, id: newVoiceRoomIn(t, ctx, ta, guildB, categoryB, name)}
			opts.guilds = []string{guildB}
		}
		r.listener = addDiscordMemberIn(t, ta, r.guild, poolListenerID+string(rune('1'+i)), "Listener", r.id)
		rooms = append(rooms, r)
		b := newE2EBrowser(t, ta, "guest"+string(rune('1'+i)), opts)
		b.join(ctx, r.id)
		b.publishOpus(clips[i], loudLevel)
	}
	waitUntil(t, ctx, "a bot in each of the four rooms", func() bool {
		for _, r := range rooms {
			if botIn(ta, r.guild, r.id, bots...) == "" {
				return false
			}
		}
		return true
	})
	if b := botIn(ta, guildB, rooms[3].id, bots...); b != thirdBotID {
		t.Fatalf("guild B's room is held by %s, want its one bot %s", b, thirdBotID)
	}
	for i, r := range rooms {
		bot := botIn(ta, r.guild, r.id, bots...)
		waitUntil(t, ctx, "a second of the room's browser at its member", func() bool { return len(r.listener.ReceivedOpus(bot)) >= 50 })
		heard := r.listener.ReceivedOpus(bot)
		for j, f := range heard {
			if o, ok := owner[string(f)]; ok && o != -1 && o != i {
				t.Fatalf("room %d's member heard frame %d of room %d's browser", i, j, o)
			}
		}
		audiotest.RequireTone(t, "room "+r.id, heard, tones[i])
		for _, other := range bots {
			if other != bot && len(r.listener.ReceivedOpus(other)) > 0 {
				t.Fatalf("room %d's member heard bot %s, which holds another room", i, other)
			}
		}
	}
}

// TestGuildsClaimKeepsGuildBOut (issue 14, test 4): a token whose guilds
// claim lacks guild B sees none of B's events on its socket, and REST and
// signaling for B get 403 (error forbidden on the socket).
func TestGuildsClaimKeepsGuildBOut(t *testing.T) {
	ta, ctx := startMediaE2E(t, guildsTuning())
	guildA := ta.demo.Discord.Options().GuildID
	onlyA := ta.devTokenFor(t, "ann", []string{guildA})
	both := ta.devTokenFor(t, "bob", []string{guildA, guildB})
	watchA, watchBoth := ta.dialHub(t, onlyA), ta.dialHub(t, both)

	bRoom := newVoiceRoomIn(t, ctx, ta, guildB, categoryB, "b-room")
	addDiscordMemberIn(t, ta, guildB, poolListenerID+"7", "Bea", bRoom)
	aRoom := newVoiceRoom(t, ctx, ta, "a-room")
	roomsIn := func(c *hubClient) map[string]bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := map[string]bool{}
		for _, e := range c.events {
			var p struct{ ChannelID, GuildID string }
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				t.Fatalf("event payload %s: %v", e.Payload, err)
			}
			out[p.ChannelID] = true
			out["guild "+p.GuildID] = true
		}
		return out
	}
	// The two-guild socket sees both guilds' events; by the time it has
	// A's room (created after B's), the A-only socket has it too and
	// must have nothing of B.
	if err := watchBoth.waitFor(ctx, func() bool { r := roomsIn(watchBoth); return r[bRoom] && r[aRoom] }); err != nil {
		t.Fatalf("the two-guild socket did not see both rooms: %v (%v)", err, watchBoth.eventNames())
	}
	if err := watchA.waitFor(ctx, func() bool { return roomsIn(watchA)[aRoom] }); err != nil {
		t.Fatalf("the guild-A socket did not see guild A's room: %v", err)
	}
	if got := roomsIn(watchA); got[bRoom] || got["guild "+guildB] {
		t.Fatalf("the guild-A socket got guild B's events: %v", watchA.eventNames())
	}

	var errBody struct {
		Error struct{ Code, Message string }
	}
	ta.doJSON(t, http.MethodPost, "/api/create-room", onlyA, map[string]any{"name": "sneaky", "guildId": guildB}, http.StatusForbidden, &errBody)
	if errBody.Error.Code != "forbidden" || !strings.Contains(errBody.Error.Message, guildB) {
		t.Fatalf("create-room in guild B: %+v, want forbidden naming the guild", errBody.Error)
	}
	ta.doJSON(t, http.MethodGet, "/api/rooms?guildId="+guildB, onlyA, nil, http.StatusForbidden, nil)
	ta.doJSON(t, http.MethodDelete, "/api/end-room/"+bRoom, onlyA, nil, http.StatusForbidden, nil)
	var list struct {
		Rooms []struct{ ChannelID, GuildID string }
	}
	ta.doJSON(t, http.MethodGet, "/api/rooms", onlyA, nil, http.StatusOK, &list)
	for _, r := range list.Rooms {
		if r.GuildID != guildA {
			t.Fatalf("GET /api/rooms for a guild-A token lists %+v of another guild", r)
		}
	}
	ta.doJSON(t, http.MethodGet, "/api/rooms?guildId="+guildB, both, nil, http.StatusOK, &list)
	if len(list.Rooms) != 1 || list.Rooms[0].ChannelID != bRoom {
		t.Fatalf("guild B's rooms for a two-guild token: %+v, want b-room", list.Rooms)
	}

	// Signaling: the join of B's room is refused, and nothing of the room
	// reaches the browser before its next join, of A's room, is answered.
	b := newE2EBrowser(t, ta, "ann", browserOptions{guilds: []string{guildA}})
	from := b.mark()
	b.mustSend(map[string]string{"type": "join", "roomId": bRoom})
	m := b.waitMessage(ctx, from, "the answer to the join", func(m serverMessage) bool { return m.Type == "joined" || m.Type == "error" })
	if m.Type != "error" || m.Error.Code != "forbidden" || !strings.Contains(m.Error.Message, guildB) {
		t.Fatalf("join of guild B's room with a guild-A token: %+v, want error forbidden naming the guild", m)
	}
	b.join(ctx, aRoom)
	for _, m := range b.messages(from) {
		if m.RoomID == bRoom || (m.Participant != nil && m.Type == "joined" && m.RoomID != aRoom) {
			t.Fatalf("the refused browser got %+v of guild B's room", m)
		}
	}
	if calls := ta.calls.in(bRoom); len(calls) != 0 {
		t.Fatalf("guild B's room lists the refused browser: %v", calls)
	}
}
