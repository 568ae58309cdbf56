package discordemu

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

const (
	guildB    = "200000000000000002"
	categoryB = "300000000000000002"
)

// Two guilds: the primary holds both bots, guild B only the second. Each
// bot's READY lists its guilds, a guild's events reach only its bots, and
// REST and op 4 for a guild a bot is not in are refused.
func TestGuildsSeenByTheirBots(t *testing.T) {
	fv := newFakeVoice()
	s := startServer(t, func(o *Options) {
		o.ExtraBots = []Bot{{Token: secondToken, UserID: secondBotID, Name: "second"}}
		o.Guilds = []Guild{{ID: guildB, CategoryID: categoryB, Bots: []string{secondBotID}}}
		o.Voice = fv
	})
	readyGuilds := func(r map[string]any) []string {
		var out []string
		for _, g := range r["guilds"].([]any) {
			out = append(out, g.(map[string]any)["id"].(string))
		}
		return out
	}
	a := dialGateway(t, s)
	readyA := identifyAs(t, a, s.Options().Token)
	if g := readyGuilds(readyA); len(g) != 1 || g[0] != s.Options().GuildID {
		t.Fatalf("the primary bot's READY lists %v, want only the primary guild", g)
	}
	b := dialGateway(t, s)
	b.expectOp(opHello)
	b.send(opIdentify, identifyPayload(secondToken, testIntents))
	var readyB map[string]any
	if err := json.Unmarshal(b.expectDispatch("READY").D, &readyB); err != nil {
		t.Fatal(err)
	}
	if g := readyGuilds(readyB); len(g) != 2 || g[0] != s.Options().GuildID || g[1] != guildB {
		t.Fatalf("the second bot's READY lists %v, want both guilds", g)
	}
	var created []string
	for range 2 {
		var g map[string]any
		if err := json.Unmarshal(b.expectDispatch("GUILD_CREATE").D, &g); err != nil {
			t.Fatal(err)
		}
		created = append(created, g["id"].(string))
	}
	if created[1] != guildB {
		t.Fatalf("GUILD_CREATEs for %v, want guild B second", created)
	}

	ch, err := s.CreateChannelIn(guildB, "b-room", channelTypeVoice, categoryB)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b.expectDispatch("CHANNEL_CREATE").D, &c); err != nil {
		t.Fatal(err)
	}
	if c["guild_id"] != guildB || c["id"] != ch.ID {
		t.Fatalf("CHANNEL_CREATE %v, want %s in guild B", c, ch.ID)
	}
	// The primary bot is not in guild B: the next thing it sees is a
	// primary-guild event.
	if _, err := s.CreateChannel("a-room", channelTypeVoice, s.Options().CategoryID); err != nil {
		t.Fatal(err)
	}
	var next map[string]any
	if err := json.Unmarshal(a.expectDispatch("CHANNEL_CREATE").D, &next); err != nil {
		t.Fatal(err)
	}
	if next["guild_id"] != s.Options().GuildID {
		t.Fatalf("the primary bot got a channel of guild %v", next["guild_id"])
	}
	b.expectDispatch("CHANNEL_CREATE")

	// A voice join in guild B by its bot: the voice backend hears guild B.
	b.send(opVoiceStateUpdate, map[string]any{"guild_id": guildB, "channel_id": ch.ID})
	var vs map[string]any
	if err := json.Unmarshal(b.expectDispatch("VOICE_STATE_UPDATE").D, &vs); err != nil {
		t.Fatal(err)
	}
	if vs["guild_id"] != guildB || vs["channel_id"] != ch.ID {
		t.Fatalf("voice state %v, want guild B's room", vs)
	}
	fv.expect(t, "state "+guildB+" "+secondBotID+" "+ch.ID)
	var vsu map[string]any
	if err := json.Unmarshal(b.expectDispatch("VOICE_SERVER_UPDATE").D, &vsu); err != nil {
		t.Fatal(err)
	}
	if vsu["guild_id"] != guildB {
		t.Fatalf("voice server update for guild %v, want B", vsu["guild_id"])
	}
	if got := s.VoiceStatesIn(guildB)[secondBotID]; got != ch.ID {
		t.Fatalf("guild B's voice states put the bot in %q", got)
	}
	if _, in := s.VoiceStates()[secondBotID]; in {
		t.Fatal("the bot's voice in guild B shows in the primary guild")
	}
	// The primary bot's op 4 for guild B is ignored.
	a.send(opVoiceStateUpdate, map[string]any{"guild_id": guildB, "channel_id": ch.ID})
	waitFor(t, s, "the op 4 for a guild the bot is not in refused", func(st Stats) bool { return st.RejectedVoiceUpdates == 1 })

	// REST: guild B for its bot, 403 for the other, 404 for no guild.
	if resp, body := rest(t, s, http.MethodGet, "/api/v10/guilds/"+guildB+"/channels", "Bot "+secondToken, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("guild B's channels for its bot: %d %s", resp.StatusCode, body)
	}
	if resp, _ := rest(t, s, http.MethodGet, "/api/v10/guilds/"+guildB+"/channels", "", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("guild B's channels for a bot not in it: %d, want 403", resp.StatusCode)
	}
	if resp, _ := rest(t, s, http.MethodDelete, "/api/v10/channels/"+ch.ID, "", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("deleting guild B's room as a bot not in it: %d, want 403", resp.StatusCode)
	}
	if resp, _ := rest(t, s, http.MethodGet, "/api/v10/guilds/200000000000000009/channels", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an unknown guild: %d, want 404", resp.StatusCode)
	}
	if _, err := s.CreateChannelIn("200000000000000009", "x", channelTypeVoice, ""); !errors.Is(err, ErrUnknownGuild) {
		t.Fatalf("CreateChannelIn an unknown guild: %v, want ErrUnknownGuild", err)
	}
}

func TestGuildsNeedIDsOfTheirOwn(t *testing.T) {
	for _, g := range []Guild{
		{ID: "200000000000000001", CategoryID: categoryB},             // the primary's id
		{ID: guildB, CategoryID: "300000000000000001"},                // the primary's category
		{ID: "not-a-snowflake", CategoryID: categoryB},                // not an id
		{ID: guildB, CategoryID: categoryB, Bots: []string{"123456"}}, // no such bot
	} {
		if s, err := Start(Options{Guilds: []Guild{g}}); err == nil {
			s.Close()
			t.Fatalf("Start accepted Guilds %+v", g)
		} else if !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("Start with Guilds %+v: %v, want ErrInvalidOptions", g, err)
		}
	}
}
