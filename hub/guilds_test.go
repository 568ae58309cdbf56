package hub

import (
	"net/http"
	"testing"
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
