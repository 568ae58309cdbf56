package gateway_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

const (
	guildB, categoryB = "200000000000000002", "300000000000000002"
	guildC, categoryC = "200000000000000003", "300000000000000003"
	otherBotID        = "100000000000000009"
)

// One client serves several guilds on its one connection: each guild's
// rooms and events carry that guild, and a served guild the bot is not in
// is named in Status and not InGuild.
func TestClientServesSeveralGuilds(t *testing.T) {
	f := start(t, discordemu.Options{
		IdentifyInterval: time.Nanosecond,
		ExtraBots:        []discordemu.Bot{{Token: "other-token", UserID: otherBotID}},
		Guilds: []discordemu.Guild{
			{ID: guildB, CategoryID: categoryB},
			{ID: guildC, CategoryID: categoryC, Bots: []string{otherBotID}},
		},
	}, gateway.Options{Guilds: []gateway.Guild{{ID: guildB, CategoryID: categoryB}, {ID: guildC, CategoryID: categoryC}}})
	f.open(t)
	home := f.emu.Options().GuildID
	for g, want := range map[string]bool{home: true, guildB: true, guildC: false, "200000000000000009": false} {
		if got := f.client.InGuild(g); got != want {
			t.Errorf("InGuild(%s) = %v, want %v", g, got, want)
		}
	}
	if st := f.client.Status(); !strings.Contains(st.LastError, guildC) || strings.Contains(st.LastError, guildB) {
		t.Errorf("status says %q, want guild C named as missing", st.LastError)
	}

	a := f.room(t, "a-room")
	b, err := f.emu.CreateChannelIn(guildB, "b-room", 2, categoryB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.emu.CreateChannelIn(guildC, "c-room", 2, categoryC); err != nil {
		t.Fatal(err)
	}
	evs := f.rec.waitN(t, 2, 5*time.Second)
	want := map[string]string{a: home, b.ID: guildB}
	for _, e := range evs {
		p, ok := e.Payload.(gateway.RoomPayload)
		if !ok || e.Name != gateway.EventRoomCreated || want[p.ChannelID] != p.GuildID {
			t.Fatalf("event %s %+v, want the rooms of the home guild and guild B with their guilds", e.Name, e.Payload)
		}
	}
	rooms := map[string]string{}
	for _, r := range f.client.Rooms() {
		rooms[r.ChannelID] = r.GuildID
	}
	if len(rooms) != 2 || rooms[a] != home || rooms[b.ID] != guildB {
		t.Fatalf("Rooms() %v, want a-room of the home guild and b-room of guild B", rooms)
	}
}

func TestGuildsOptionsAreChecked(t *testing.T) {
	for name, o := range map[string]gateway.Options{
		"no guild":     {Token: "t"},
		"no category":  {Token: "t", Guilds: []gateway.Guild{{ID: guildB}}},
		"listed twice": {Token: "t", GuildID: guildB, CategoryID: categoryB, Guilds: []gateway.Guild{{ID: guildB, CategoryID: categoryC}}},
		"empty guild":  {Token: "t", Guilds: []gateway.Guild{{CategoryID: categoryB}}},
	} {
		if _, err := gateway.New(o); !errors.Is(err, gateway.ErrOptions) {
			t.Errorf("%s: New: %v, want ErrOptions", name, err)
		}
	}
	c, err := gateway.New(gateway.Options{Token: "t", GuildID: guildB, CategoryID: categoryB, Guilds: []gateway.Guild{{ID: guildB, CategoryID: categoryB}, {ID: guildC, CategoryID: categoryC}}})
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Guilds(); len(g) != 2 || g[0].ID != guildB || g[1].ID != guildC {
		t.Fatalf("Guilds() %v, want B (the one-guild form, once) then C", g)
	}
}
