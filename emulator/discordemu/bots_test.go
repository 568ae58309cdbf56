package discordemu

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

const (
	secondToken = "second-bot-token"
	secondBotID = "100000000000000002"
)

func startTwoBots(t *testing.T, voice VoiceBackend) *Server {
	return startServer(t, func(o *Options) {
		o.ExtraBots = []Bot{{Token: secondToken, UserID: secondBotID, Name: "second"}}
		o.Voice = voice
	})
}

func identifyAs(t *testing.T, c *rawClient, token string) map[string]any {
	t.Helper()
	c.expectOp(opHello)
	c.send(opIdentify, identifyPayload(token, testIntents))
	var ready map[string]any
	if err := json.Unmarshal(c.expectDispatch("READY").D, &ready); err != nil {
		t.Fatal(err)
	}
	c.expectDispatch("GUILD_CREATE")
	return ready
}

// Each bot has its own session and identity; guild events reach both, a
// voice server reaches only the bot that joined.
func TestTwoBotsShareTheGuild(t *testing.T) {
	fv := newFakeVoice()
	s := startTwoBots(t, fv)
	a, b := dialGateway(t, s), dialGateway(t, s)
	readyA := identifyAs(t, a, s.Options().Token)
	readyB := identifyAs(t, b, secondToken)
	userOf := func(r map[string]any) string { return r["user"].(map[string]any)["id"].(string) }
	if userOf(readyA) != s.Options().BotUserID || userOf(readyB) != secondBotID {
		t.Fatalf("READY users %s and %s, want %s and %s", userOf(readyA), userOf(readyB), s.Options().BotUserID, secondBotID)
	}
	if readyA["session_id"] == readyB["session_id"] {
		t.Fatal("both bots got the same session")
	}

	ch, err := s.CreateChannel("room", channelTypeVoice, s.Options().CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	a.expectDispatch("CHANNEL_CREATE")
	b.expectDispatch("CHANNEL_CREATE")

	b.send(opVoiceStateUpdate, map[string]any{"guild_id": s.Options().GuildID, "channel_id": ch.ID})
	var vs map[string]any
	for _, c := range []*rawClient{a, b} {
		if err := json.Unmarshal(c.expectDispatch("VOICE_STATE_UPDATE").D, &vs); err != nil {
			t.Fatal(err)
		}
		if vs["user_id"] != secondBotID || vs["channel_id"] != ch.ID {
			t.Fatalf("voice state %v, want the second bot in %s", vs, ch.ID)
		}
	}
	fv.expect(t, "state "+s.Options().GuildID+" "+secondBotID+" "+ch.ID)
	b.expectDispatch("VOICE_SERVER_UPDATE")

	// The next thing the first bot sees is a later guild event, not the
	// second bot's voice server.
	if _, err := s.CreateChannel("room 2", channelTypeVoice, s.Options().CategoryID); err != nil {
		t.Fatal(err)
	}
	if p := a.next(); p.event() != "CHANNEL_CREATE" {
		t.Fatalf("first bot got %s (op %d), want CHANNEL_CREATE", p.event(), p.Op)
	}

	// REST answers as the calling bot.
	_, body := rest(t, s, http.MethodGet, "/api/v10/users/@me", "Bot "+secondToken, nil)
	if me := decodeMap(t, body); me["id"] != secondBotID {
		t.Fatalf("users/@me for the second token is %v", me["id"])
	}
}

// A bot closed with 4004 cannot identify again; the other bot goes on.
func TestCloseBotWithCodeRevokesItsToken(t *testing.T) {
	s := startTwoBots(t, nil)
	a, b := dialGateway(t, s), dialGateway(t, s)
	identifyAs(t, a, s.Options().Token)
	identifyAs(t, b, secondToken)
	if !s.CloseBotWithCode(secondBotID, closeAuthenticationFailed, "Authentication failed.") {
		t.Fatal("CloseBotWithCode found no connection of the second bot")
	}
	b.expectClose(closeAuthenticationFailed)
	again := dialGateway(t, s)
	again.expectOp(opHello)
	again.send(opIdentify, identifyPayload(secondToken, testIntents))
	again.expectClose(closeAuthenticationFailed)
	if resp, _ := rest(t, s, http.MethodGet, "/api/v10/users/@me", "Bot "+secondToken, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("REST with the revoked token: %d, want 401", resp.StatusCode)
	}

	if _, err := s.CreateChannel("room", channelTypeVoice, s.Options().CategoryID); err != nil {
		t.Fatal(err)
	}
	a.expectDispatch("CHANNEL_CREATE")
}

func TestExtraBotsNeedTheirOwnIdentity(t *testing.T) {
	for _, bots := range [][]Bot{
		{{Token: "", UserID: secondBotID}},
		{{Token: "emulator-bot-token", UserID: secondBotID}},
		{{Token: secondToken, UserID: "100000000000000001"}},
		{{Token: secondToken, UserID: "not-a-snowflake"}},
	} {
		if s, err := Start(Options{ExtraBots: bots}); err == nil {
			s.Close()
			t.Fatalf("Start accepted ExtraBots %+v", bots)
		}
	}
}

// Rate limits are each bot's: a global 429 of the primary bot leaves the
// second bot's requests alone.
func TestRateLimitsArePerBot(t *testing.T) {
	s := startTwoBots(t, nil)
	s.Script429("", "/users/@me", time.Minute, true)
	if resp, _ := rest(t, s, http.MethodGet, "/api/v10/users/@me", "", nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("primary bot after a scripted global 429: %d", resp.StatusCode)
	}
	if resp, _ := rest(t, s, http.MethodGet, "/api/v10/gateway/bot", "", nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("primary bot's other route under its global limit: %d, want 429", resp.StatusCode)
	}
	if resp, body := rest(t, s, http.MethodGet, "/api/v10/users/@me", "Bot "+secondToken, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("second bot: %d %s, want 200", resp.StatusCode, body)
	}
}
