package discordemu

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
)

// checkRateLimitHeaders asserts the headers discordgo parses are present
// and well-formed.
func checkRateLimitHeaders(t *testing.T, h http.Header, what string) {
	t.Helper()
	limit, err1 := strconv.Atoi(h.Get("X-RateLimit-Limit"))
	remaining, err2 := strconv.ParseInt(h.Get("X-RateLimit-Remaining"), 10, 32)
	_, err3 := strconv.ParseFloat(h.Get("X-RateLimit-Reset"), 64)
	after, err4 := strconv.ParseFloat(h.Get("X-RateLimit-Reset-After"), 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil || h.Get("X-RateLimit-Bucket") == "" {
		t.Fatalf("%s: malformed rate-limit headers %v: %v", what, h, err)
	}
	if limit < 1 || remaining < 0 || int(remaining) > limit || after < 0 {
		t.Fatalf("%s: inconsistent rate-limit headers %v", what, h)
	}
	if _, err := http.ParseTime(h.Get("Date")); err != nil {
		t.Fatalf("%s: Date header: %v", what, err)
	}
}

func TestRESTShapes(t *testing.T) {
	// Many creates in a burst: a bucket larger than the default 5/s.
	s := startServer(t, func(o *Options) { o.ChannelRateLimit = 100 })
	g := s.Options().GuildID
	cat := s.Options().CategoryID
	for _, tc := range []struct {
		name         string
		method, path string
		auth         string
		body         any
		status       int
		code         int    // JSON error code, -1 when the answer is not an error
		contains     string // substring of the answer
	}{
		{"get gateway without auth", "GET", "/api/v10/gateway", "-", nil, 200, -1, `"url":"` + s.GatewayURL() + `"`},
		{"get gateway v9", "GET", "/api/v9/gateway", "-", nil, 200, -1, s.GatewayURL()},
		{"gateway bot", "GET", "/api/v10/gateway/bot", "", nil, 200, -1, `"max_concurrency":1`},
		{"gateway bot without auth", "GET", "/api/v10/gateway/bot", "-", nil, 401, 0, "401: Unauthorized"},
		{"users me", "GET", "/api/v10/users/@me", "", nil, 200, -1, `"id":"` + s.Options().BotUserID + `"`},
		{"wrong token", "GET", "/api/v10/users/@me", "Bot wrong", nil, 401, 0, "401: Unauthorized"},
		{"token without Bot prefix", "GET", "/api/v10/users/@me", s.Options().Token, nil, 401, 0, "401: Unauthorized"},
		{"guild", "GET", "/api/v10/guilds/" + g, "", nil, 200, -1, `"name":"Emulated Guild"`},
		{"unknown guild", "GET", "/api/v10/guilds/1", "", nil, 404, 10004, "Unknown Guild"},
		{"guild channels", "GET", "/api/v10/guilds/" + g + "/channels", "", nil, 200, -1, `"name":"Rooms"`},
		{"unknown channel", "GET", "/api/v10/channels/123", "", nil, 404, 10003, "Unknown Channel"},
		{"delete unknown channel", "DELETE", "/api/v10/channels/123", "", nil, 404, 10003, "Unknown Channel"},
		{"unknown route", "GET", "/api/v10/nothing/here", "", nil, 404, 0, "404: Not Found"},
		{"wrong method", "PUT", "/api/v10/channels/" + cat, "", nil, 405, 0, "405"},
		{"API v8", "GET", "/api/v8/gateway", "-", nil, 400, 50041, "Invalid API version"},
		{"invalid JSON", "POST", "/api/v10/guilds/" + g + "/channels", "", `{"name":`, 400, 50109, "invalid JSON"},
		{"missing name", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"type": 2}, 400, 50035, `"name":{"_errors":[{"code":"BASE_TYPE_REQUIRED"`},
		{"empty name", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"name": "", "type": 2}, 400, 50035, "BASE_TYPE_BAD_LENGTH"},
		{"long name", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"name": strings.Repeat("a", 101), "type": 2}, 400, 50035, "BASE_TYPE_BAD_LENGTH"},
		{"bad type", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"name": "x", "type": 3}, 400, 50035, `"type":{"_errors"`},
		{"low bitrate", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"name": "x", "type": 2, "bitrate": 7999}, 400, 50035, `"bitrate":{"_errors":[{"code":"NUMBER_TYPE_MIN"`},
		{"user limit 100", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"name": "x", "type": 2, "user_limit": 100}, 400, 50035, `"user_limit":{"_errors":[{"code":"NUMBER_TYPE_MAX"`},
		{"negative user limit", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"name": "x", "type": 2, "user_limit": -1}, 400, 50035, `"user_limit"`},
		{"unknown parent", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"name": "x", "type": 2, "parent_id": "1"}, 400, 50035, `"parent_id"`},
		{"string bitrate", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"name": "x", "type": 2, "bitrate": "fast"}, 400, 50035, "NUMBER_TYPE_COERCE"},
		{"create voice", "POST", "/api/v10/guilds/" + g + "/channels", "", map[string]any{"name": "Room", "type": 2, "user_limit": 99, "bitrate": 8000, "parent_id": cat}, 201, -1, `"parent_id":"` + cat + `"`},
		{"create text, default bitrate ignored", "POST", "/api/v9/guilds/" + g + "/channels", "", map[string]any{"name": "chat"}, 201, -1, `"type":0`},
		{"create without auth", "POST", "/api/v10/guilds/" + g + "/channels", "-", map[string]any{"name": "x"}, 401, 0, "401: Unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rest(t, s, tc.method, tc.path, tc.auth, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Fatalf("answer %s lacks %s", body, tc.contains)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			checkRateLimitHeaders(t, resp.Header, tc.name)
			if tc.code >= 0 {
				var e struct {
					Message *string `json:"message"`
					Code    *int    `json:"code"`
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Message == nil || e.Code == nil || *e.Code != tc.code {
					t.Fatalf("error body %s, want code %d", body, tc.code)
				}
			}
		})
	}
	// Refused creates changed nothing; the two accepted ones exist.
	if n := len(s.Channels()); n != 3 {
		t.Fatalf("%d channels, want 3", n)
	}
	calls := s.RESTCalls()
	if len(calls) == 0 || calls[0].Path != "/api/v10/gateway" || calls[0].Status != 200 {
		t.Fatalf("RESTCalls[0] = %+v", calls[0])
	}
}

func TestRESTCreateDeleteDispatchAndPermissions(t *testing.T) {
	s := startServer(t, nil)
	g := s.Options().GuildID
	c := dialGateway(t, s)
	c.identify(s)

	resp, body := rest(t, s, "POST", "/api/v10/guilds/"+g+"/channels", "", map[string]any{"name": "Room 1", "type": 2, "parent_id": s.Options().CategoryID})
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	created := decodeMap(t, body)
	id := created["id"].(string)
	if !isSnowflake(id) || created["bitrate"] != float64(64000) || created["user_limit"] != float64(0) || created["guild_id"] != g {
		t.Fatalf("created = %v", created)
	}
	if p := decodeMap(t, c.expectDispatch("CHANNEL_CREATE").D); p["id"] != id || p["guild_id"] != g {
		t.Fatalf("CHANNEL_CREATE = %v", p)
	}
	resp, body = rest(t, s, "GET", "/api/v10/channels/"+id, "", nil)
	if resp.StatusCode != 200 || decodeMap(t, body)["name"] != "Room 1" {
		t.Fatalf("get: %d %s", resp.StatusCode, body)
	}

	s.SetManageChannels(false)
	for _, req := range [][2]string{{"POST", "/api/v10/guilds/" + g + "/channels"}, {"DELETE", "/api/v10/channels/" + id}} {
		resp, body := rest(t, s, req[0], req[1], "", map[string]any{"name": "nope", "type": 2})
		if resp.StatusCode != 403 || decodeMap(t, body)["code"] != float64(50013) || decodeMap(t, body)["message"] != "Missing Permissions" {
			t.Fatalf("%s without Manage Channels: %d %s", req[0], resp.StatusCode, body)
		}
	}
	if _, ok := s.Channel(id); !ok {
		t.Fatal("a refused delete deleted the channel")
	}
	s.SetManageChannels(true)

	resp, body = rest(t, s, "DELETE", "/api/v10/channels/"+id, "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	if d := decodeMap(t, body); d["id"] != id || d["name"] != "Room 1" || d["type"] != float64(2) {
		t.Fatalf("delete answered %v, want the deleted channel", d)
	}
	if p := decodeMap(t, c.expectDispatch("CHANNEL_DELETE").D); p["id"] != id {
		t.Fatalf("CHANNEL_DELETE = %v", p)
	}
	if _, ok := s.Channel(id); ok {
		t.Fatal("channel still exists")
	}
}

func TestRESTRouteBucketAnswers429(t *testing.T) {
	s := startServer(t, nil)
	path := "/api/v10/guilds/" + s.Options().GuildID + "/channels"
	var last http.Header
	for i := 0; i < 60; i++ {
		resp, body := rest(t, s, "POST", path, "", map[string]any{"name": "burst-" + strconv.Itoa(i), "type": 0})
		checkRateLimitHeaders(t, resp.Header, "burst")
		if resp.StatusCode == 201 {
			last = resp.Header
			continue
		}
		if resp.StatusCode != 429 {
			t.Fatalf("burst %d: %d %s", i, resp.StatusCode, body)
		}
		var rl struct {
			Message    string   `json:"message"`
			RetryAfter *float64 `json:"retry_after"`
			Global     *bool    `json:"global"`
		}
		if err := json.Unmarshal(body, &rl); err != nil || rl.RetryAfter == nil || rl.Global == nil {
			t.Fatalf("429 body %s: %v", body, err)
		}
		if rl.Message != "You are being rate limited." || *rl.Global || *rl.RetryAfter <= 0 || *rl.RetryAfter > 1 {
			t.Fatalf("429 body %s", body)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
		if resp.Header.Get("X-RateLimit-Scope") != "user" || resp.Header.Get("X-RateLimit-Remaining") != "0" || resp.Header.Get("X-RateLimit-Limit") != "5" {
			t.Fatalf("429 headers %v", resp.Header)
		}
		if last == nil || last.Get("X-RateLimit-Remaining") != "0" || last.Get("X-RateLimit-Bucket") != resp.Header.Get("X-RateLimit-Bucket") {
			t.Fatalf("the answer before the 429 said %v", last)
		}
		// The refused request created nothing.
		for _, ch := range s.Channels() {
			if ch.Name == "burst-"+strconv.Itoa(i) {
				t.Fatal("a 429 answer created its channel")
			}
		}
		// Another top-level resource has its own bucket.
		resp, _ = rest(t, s, "GET", "/api/v10/channels/"+s.Options().CategoryID, "", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("other bucket: %d", resp.StatusCode)
		}
		return
	}
	t.Fatal("60 creates never met the 5 per second limit")
}

func TestScript429(t *testing.T) {
	s := startServer(t, nil)
	s.Script429("GET", "/users/@me", 2*time.Second, false)
	resp, _ := rest(t, s, "GET", "/api/v10/gateway", "-", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("unmatched request answered %d", resp.StatusCode)
	}
	for i := 0; i < 2; i++ { // scripted, then still limited
		resp, body := rest(t, s, "GET", "/api/v9/users/@me", "", nil)
		if resp.StatusCode != 429 || !strings.Contains(string(body), `"retry_after":`) || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		checkRateLimitHeaders(t, resp.Header, "scripted")
	}

	s.Script429("", "/api/v10/gateway", 2*time.Second, true)
	resp, body := rest(t, s, "GET", "/api/v10/gateway", "-", nil)
	if resp.StatusCode != 429 || resp.Header.Get("X-RateLimit-Global") != "true" || resp.Header.Get("X-RateLimit-Scope") != "global" || !strings.Contains(string(body), `"global":true`) {
		t.Fatalf("global: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// A global limit holds every route.
	if resp, _ := rest(t, s, "GET", "/api/v10/guilds/"+s.Options().GuildID, "", nil); resp.StatusCode != 429 {
		t.Fatalf("other route during a global limit: %d", resp.StatusCode)
	}
}

// rewriteTransport sends every request to the emulator, keeping the path.
type rewriteTransport struct{ target *url.URL }

func (rt rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme = rt.target.Scheme
	r.URL.Host = rt.target.Host
	r.Host = rt.target.Host
	return http.DefaultTransport.RoundTrip(r)
}

func newDiscordgo(t *testing.T, s *Server) *discordgo.Session {
	t.Helper()
	dg, err := discordgo.New("Bot " + s.Options().Token)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	dg.Client = &http.Client{Transport: rewriteTransport{target: target}, Timeout: 10 * time.Second}
	return dg
}

// TestDiscordgoREST runs discordgo's REST client, paths untouched
// (/api/v9/...), against the emulator.
func TestDiscordgoREST(t *testing.T) {
	s := startServer(t, nil)
	dg := newDiscordgo(t, s)
	g := s.Options().GuildID

	ch, err := dg.GuildChannelCreateComplex(g, discordgo.GuildChannelCreateData{
		Name: "Voice Room", Type: discordgo.ChannelTypeGuildVoice, ParentID: s.Options().CategoryID, UserLimit: 8, Bitrate: 96000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Type != discordgo.ChannelTypeGuildVoice || ch.ParentID != s.Options().CategoryID || ch.UserLimit != 8 || ch.Bitrate != 96000 || ch.GuildID != g {
		t.Fatalf("created %+v", ch)
	}
	chans, err := dg.GuildChannels(g)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range chans {
		found = found || c.ID == ch.ID
	}
	if len(chans) != 2 || !found {
		t.Fatalf("GuildChannels = %d channels, created one found: %v", len(chans), found)
	}
	guild, err := dg.Guild(g)
	if err != nil || guild.Name != "Emulated Guild" || len(guild.Roles) != 2 || guild.Roles[1].Permissions != BotRolePermissions {
		t.Fatalf("Guild = %+v, %v", guild, err)
	}
	me, err := dg.User("@me")
	if err != nil || me.ID != s.Options().BotUserID || !me.Bot {
		t.Fatalf("User(@me) = %+v, %v", me, err)
	}
	gw, err := dg.Gateway()
	// discordgo appends a slash; the emulator serves both.
	if err != nil || strings.TrimSuffix(gw, "/") != s.GatewayURL() {
		t.Fatalf("Gateway = %q, %v", gw, err)
	}
	gb, err := dg.GatewayBot()
	if err != nil || strings.TrimSuffix(gb.URL, "/") != s.GatewayURL() || gb.Shards != 1 || gb.SessionStartLimit.MaxConcurrency != 1 {
		t.Fatalf("GatewayBot = %+v, %v", gb, err)
	}

	// A scripted 429: discordgo waits retry_after and retries, once.
	s.Script429("DELETE", "/channels/"+ch.ID, 150*time.Millisecond, false)
	deleted, err := dg.ChannelDelete(ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if deleted.ID != ch.ID || deleted.Name != "Voice Room" {
		t.Fatalf("ChannelDelete = %+v", deleted)
	}
	var statuses []int
	for _, c := range s.RESTCalls() {
		if c.Method == "DELETE" {
			statuses = append(statuses, c.Status)
		}
	}
	if !equalInts(statuses, []int{429, 200}) {
		t.Fatalf("DELETE statuses %v, want [429 200]", statuses)
	}

	_, err = dg.ChannelDelete(ch.ID)
	var re *discordgo.RESTError
	if !errors.As(err, &re) || re.Message == nil || re.Message.Code != discordgo.ErrCodeUnknownChannel || re.Response.StatusCode != 404 {
		t.Fatalf("second delete: %v", err)
	}
	s.SetManageChannels(false)
	_, err = dg.GuildChannelCreate(g, "x", discordgo.ChannelTypeGuildVoice)
	if !errors.As(err, &re) || re.Message == nil || re.Message.Code != discordgo.ErrCodeMissingPermissions || re.Response.StatusCode != 403 {
		t.Fatalf("create without permission: %v", err)
	}
	bad := newDiscordgo(t, s)
	bad.Token = "Bot wrong"
	if _, err := bad.GuildChannels(g); !errors.As(err, &re) || re.Response.StatusCode != 401 {
		t.Fatalf("wrong token: %v", err)
	}
	// 429 (scripted delete), 404 (not counted), 403, 401.
	if st := s.Stats(); st.InvalidRequests != 3 || st.RESTRequests != len(s.RESTCalls()) {
		t.Fatalf("stats = %+v", st)
	}
}

// FuzzCreateChannelBody feeds arbitrary JSON bodies to Create Guild
// Channel's parser and validator: they must never panic, and whatever they
// accept must satisfy Discord's limits.
func FuzzCreateChannelBody(f *testing.F) {
	for _, seed := range []string{
		`{"name":"Room","type":2,"user_limit":5,"bitrate":64000,"parent_id":"300000000000000001"}`,
		`{"name":"","type":13}`,
		`{"name":"x","type":4,"parent_id":"300000000000000001"}`,
		`{"name":null,"bitrate":"1"}`,
		`{"name":"t","topic":"hello","nsfw":true,"rate_limit_per_user":5}`,
	} {
		f.Add([]byte(seed))
	}
	opts := Options{}
	if err := opts.fill(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		g := newGuildState(Guild{ID: opts.GuildID, CategoryID: opts.CategoryID}, opts, time.Unix(1700000000, 0))
		var fields map[string]json.RawMessage
		if json.Unmarshal(body, &fields) != nil || fields == nil {
			return
		}
		spec, ferrs := decodeChannelSpec(fields)
		if len(ferrs) > 0 {
			return
		}
		c, verrs := g.validateLocked(spec)
		if verrs != nil {
			if c != nil {
				t.Fatal("validation returned a channel and errors")
			}
			return
		}
		if n := len([]rune(c.name)); n < 1 || n > maxNameLen {
			t.Fatalf("accepted name of %d runes", n)
		}
		if isVoiceType(c.typ) && (c.bitrate < minBitrate || c.bitrate > maxBitrate || c.userLimit < 0) {
			t.Fatalf("accepted voice channel %+v", c)
		}
		if c.parentID != "" && g.channels[c.parentID].typ != channelTypeCategory {
			t.Fatalf("accepted parent %s", c.parentID)
		}
		if _, err := json.Marshal(g.channelJSON(c)); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkDispatchBuffered measures numbering, encoding and buffering one
// dispatch while no connection is live (the resume path's cost).
func BenchmarkDispatchBuffered(b *testing.B) {
	s := startServer(b, nil)
	s.mu.Lock()
	s.bots[0].sess = &session{bot: s.bots[0], id: "bench", intents: testIntents}
	payload := s.guild.channelJSON(s.guild.channels[s.opts.CategoryID])
	s.mu.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.mu.Lock()
		s.dispatchLocked(s.guild, "CHANNEL_UPDATE", intentGuilds, payload)
		s.mu.Unlock()
	}
}
