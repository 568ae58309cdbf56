package hub

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A token whose guilds claim lacks the bridge's guild gets 403 on REST and
// is refused by the hub (so no event or signaling of the guild reaches
// it), and Rooms sees nothing; one that lists it, or carries no claim when
// the guild is the default, gets in.
func TestGuildsClaimScopesTheGuild(t *testing.T) {
	e := newEnv(t, nil)
	other := e.idp.token(t, tokenSpec{sub: "outsider", claims: map[string]any{"guilds": []string{"999999999999999999"}}})
	none := e.idp.token(t, tokenSpec{sub: "nobody", claims: map[string]any{"guilds": []string{}}})
	for name, tok := range map[string]string{"other guild": other, "empty claim": none} {
		resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", tok, `{"name":"x"}`)
		if resp.StatusCode != http.StatusForbidden || errCode(body) != "forbidden" {
			t.Fatalf("%s: create-room %d %v, want 403 forbidden", name, resp.StatusCode, body)
		}
		if resp, _ := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, ""); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: GET rooms %d, want 403", name, resp.StatusCode)
		}
		c := e.dial(t, nil)
		writeJSONMsg(t, c, map[string]any{"type": "auth", "token": tok})
		if reason := expectClose(t, c, CloseUnauthorized, false); reason == "" {
			t.Fatalf("%s: hub refused without a reason", name)
		}
	}
	if calls := e.rooms.Calls(); len(calls) != 0 {
		t.Fatalf("Rooms saw calls for tokens not allowed the guild: %v", calls)
	}
	if n := e.hub.Clients(); n != 0 {
		t.Fatalf("%d clients admitted", n)
	}

	member := e.idp.token(t, tokenSpec{sub: "member", claims: map[string]any{"guilds": []string{"999999999999999999", testGuild}}})
	for name, tok := range map[string]string{"listed": member, "default guild": e.idp.token(t, tokenSpec{})} {
		if resp, body := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: GET rooms %d %v", name, resp.StatusCode, body)
		}
		e.connect(t, tok)
	}
}

// Without a default guild, a token needs the claim.
func TestNoClaimNoDefaultGuildIsForbidden(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.DefaultGuildID = "" })
	resp, body := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", e.idp.token(t, tokenSpec{}), "")
	if resp.StatusCode != http.StatusForbidden || errCode(body) != "forbidden" {
		t.Fatalf("GET rooms without a guilds claim: %d %v", resp.StatusCode, body)
	}
}

// A guilds claim that is not an array of strings is a bad token.
func TestMalformedGuildsClaimIsInvalid(t *testing.T) {
	e := newEnv(t, nil)
	for name, v := range map[string]any{"number ids": []int{1, 2}, "a string": testGuild} {
		tok := e.idp.token(t, tokenSpec{claims: map[string]any{"guilds": v}})
		resp, body := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, "")
		if resp.StatusCode != http.StatusUnauthorized || errCode(body) != "invalid_token" {
			t.Fatalf("%s: %d %v, want 401 invalid_token", name, resp.StatusCode, body)
		}
	}
}

// VerifierOptions.GuildsClaim renames the claim.
func TestGuildsClaimName(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Auth.guildsClaim = "servers" })
	tok := e.idp.token(t, tokenSpec{claims: map[string]any{"servers": []string{"999999999999999999"}, "guilds": []string{testGuild}}})
	if resp, body := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("servers claim without the guild: %d %v, want 403", resp.StatusCode, body)
	}
}

// secondGuild is the other guild of a two-guild hub.
const secondGuild = "888888888888888888"

// Two served guilds and a token whose claim lists only the first: the
// second guild's events never reach its socket (the first's do), its
// ack names only the first, and REST for the second gets 403 naming it,
// while a token allowed both sees both and must pick one to create.
func TestGuildsClaimScopesEventsAndREST(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Guilds = []string{testGuild, secondGuild}
		// The first guild's name is known, the second's not yet.
		o.GuildName = func(id string) string {
			if id == testGuild {
				return "Guild A"
			}
			return ""
		}
	})
	e.rooms.rooms = []Room{
		{ChannelID: "111111111111111111", Name: "a-room", GuildID: testGuild},
		{ChannelID: "111111111111111112", Name: "b-room", GuildID: secondGuild},
	}
	onlyA := e.idp.token(t, tokenSpec{sub: "ann", claims: map[string]any{"guilds": []string{testGuild}}})
	both := e.idp.token(t, tokenSpec{sub: "bob", claims: map[string]any{"guilds": []string{secondGuild, testGuild}}})
	onlyB := e.idp.token(t, tokenSpec{sub: "cy", claims: map[string]any{"guilds": []string{secondGuild}}})

	a, ackA := e.connect(t, onlyA)
	if g, _ := ackA["guilds"].([]any); len(g) != 1 || g[0] != testGuild || ackA["guildId"] != testGuild {
		t.Fatalf("ack of the guild-A token %v, want guilds [A]", ackA)
	}
	ab, ackAB := e.connect(t, both)
	if g, _ := ackAB["guilds"].([]any); len(g) != 2 || g[0] != testGuild || g[1] != secondGuild {
		t.Fatalf("ack of the two-guild token %v, want both in the bridge's order", ackAB)
	}
	servers, _ := json.Marshal(ackAB["servers"])
	if want := `[{"id":"` + testGuild + `","name":"Guild A"},{"id":"` + secondGuild + `"}]`; string(servers) != want {
		t.Fatalf("ack servers %s, want %s: each guild with its name, none while unknown", servers, want)
	}
	b, ackB := e.connect(t, onlyB)
	if ackB["guildId"] != secondGuild {
		t.Fatalf("ack of the guild-B token %v", ackB)
	}

	e.hub.PublishGuild(secondGuild, "room.created", map[string]any{"channelId": "b1", "guildId": secondGuild})
	e.hub.PublishGuild(testGuild, "room.created", map[string]any{"channelId": "a1", "guildId": testGuild})
	// Guild A's socket's next event is A's: B's never reached it.
	if m := readMsg(t, a); m["payload"].(map[string]any)["channelId"] != "a1" {
		t.Fatalf("the guild-A socket got %v first, want guild A's event", m)
	}
	for want, c := range map[string]*websocket.Conn{"b1": b} {
		if m := readMsg(t, c); m["payload"].(map[string]any)["channelId"] != want {
			t.Fatalf("the guild-B socket got %v, want %s", m, want)
		}
	}
	for _, want := range []string{"b1", "a1"} {
		if m := readMsg(t, ab); m["payload"].(map[string]any)["channelId"] != want {
			t.Fatalf("the two-guild socket got %v, want %s", m, want)
		}
	}
	// The guild-B socket never sees A's event: its next message is a pong.
	writeJSONMsg(t, b, map[string]any{"type": "ping", "id": "p"})
	if m := readMsg(t, b); m["type"] != "pong" {
		t.Fatalf("the guild-B socket got %v, want only its pong", m)
	}

	resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", onlyA, `{"name":"x","guildId":"`+secondGuild+`"}`)
	if resp.StatusCode != http.StatusForbidden || errCode(body) != "forbidden" || !strings.Contains(body["error"].(map[string]any)["message"].(string), secondGuild) {
		t.Fatalf("create-room in guild B with a guild-A token: %d %v, want 403 naming the guild", resp.StatusCode, body)
	}
	if resp, body := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms?guildId="+secondGuild, onlyA, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET rooms of guild B with a guild-A token: %d %v, want 403", resp.StatusCode, body)
	}
	if resp, body := doJSON(t, http.MethodDelete, e.srv.URL+"/api/end-room/111111111111111112", onlyA, ""); resp.StatusCode != http.StatusForbidden || errCode(body) != "forbidden" {
		t.Fatalf("ending guild B's room with a guild-A token: %d %v, want 403 forbidden", resp.StatusCode, body)
	}
	resp, body = doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", onlyA, "")
	if rooms, _ := body["rooms"].([]any); resp.StatusCode != http.StatusOK || len(rooms) != 1 || rooms[0].(map[string]any)["guildId"] != testGuild {
		t.Fatalf("GET rooms with a guild-A token: %d %v, want guild A's room only", resp.StatusCode, body)
	}
	for _, c := range e.rooms.Calls() {
		if c == "end:111111111111111112" {
			t.Fatal("Rooms was asked to end guild B's room for a guild-A token")
		}
	}

	// A token allowed both must say which guild; one it names is used.
	resp, body = doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", both, `{"name":"x"}`)
	if resp.StatusCode != http.StatusBadRequest || errField(body) != "guildId" {
		t.Fatalf("create-room without a guild by a two-guild token: %d %v, want 400 on guildId", resp.StatusCode, body)
	}
	resp, body = doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", both, `{"name":"x","guildId":"`+secondGuild+`"}`)
	if resp.StatusCode != http.StatusCreated || body["guildId"] != secondGuild {
		t.Fatalf("create-room in guild B by a two-guild token: %d %v", resp.StatusCode, body)
	}
	resp, body = doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", both, `{"name":"x","guildId":"777777777777777777"}`)
	if resp.StatusCode != http.StatusBadRequest || errField(body) != "guildId" {
		t.Fatalf("create-room in a guild the bridge does not serve: %d %v, want 400", resp.StatusCode, body)
	}
	// The one-guild token needs no guildId.
	if resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", onlyA, `{"name":"y"}`); resp.StatusCode != http.StatusCreated || body["guildId"] != testGuild {
		t.Fatalf("create-room by a guild-A token: %d %v", resp.StatusCode, body)
	}
}

// An internal event whose payload names a guild reaches only the sockets
// allowed that guild; a guild the bridge does not serve is refused.
func TestInternalEventOfAGuild(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Guilds = []string{testGuild, secondGuild}
		o.HMACSecret = testSecret
	})
	a, _ := e.connect(t, e.idp.token(t, tokenSpec{sub: "ann", claims: map[string]any{"guilds": []string{testGuild}}}))
	post := func(body string) (*http.Response, map[string]any) {
		now := strconv.FormatInt(time.Now().Unix(), 10)
		return postEvent(t, e, now, sign(testSecret, now, body), body)
	}
	for _, g := range []string{secondGuild, testGuild} {
		if resp, body := post(`{"event":"voice.joined","payload":{"guildId":"` + g + `","channelId":"5","userId":"` + g + `"}}`); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("event of guild %s: %d %v", g, resp.StatusCode, body)
		}
	}
	if m := readMsg(t, a); m["payload"].(map[string]any)["guildId"] != testGuild {
		t.Fatalf("the guild-A socket got %v first, want guild A's event", m)
	}
	for _, bad := range []string{`"777777777777777777"`, `7`} {
		if resp, body := post(`{"event":"voice.left","payload":{"guildId":` + bad + `}}`); resp.StatusCode != http.StatusBadRequest || errField(body) != "payload.guildId" {
			t.Errorf("event naming guild %s: %d %v, want 400 on payload.guildId", bad, resp.StatusCode, body)
		}
	}
}
