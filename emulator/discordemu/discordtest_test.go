package discordemu

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{GuildID: "guild"},
		{BotUserID: "-1"},
		{CategoryID: "200000000000000001"},
		{HeartbeatInterval: time.Microsecond},
		{IdentifyInterval: -time.Second},
	} {
		if s, err := Start(o); !errors.Is(err, ErrInvalidOptions) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Start(%+v) = %v, want ErrInvalidOptions", o, err)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o := s.Options()
	if o.Addr != "127.0.0.1:0" || o.Token != "emulator-bot-token" || o.BotUserID != "100000000000000001" ||
		o.BotName != "bridge-bot" || o.GuildID != "200000000000000001" || o.GuildName != "Emulated Guild" ||
		o.CategoryID != "300000000000000001" || o.HeartbeatInterval != 41250*time.Millisecond || o.IdentifyInterval != 5*time.Second {
		t.Fatalf("defaults = %+v", o)
	}
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || s.GatewayURL() != "ws"+strings.TrimPrefix(s.URL(), "http")+"/gateway" {
		t.Fatalf("URL %s, GatewayURL %s", s.URL(), s.GatewayURL())
	}
	s.Close()
	s.Close() // idempotent
}

func TestIdentifyReadyGuildCreate(t *testing.T) {
	s := startServer(t, nil)
	voiceCh, err := s.CreateChannel("Room A", channelTypeVoice, s.Options().CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	s.AddMember("400000000000000001", "alice")
	s.AddMember("400000000000000002", "bob")
	if err := s.SetVoiceState("400000000000000001", voiceCh.ID); err != nil {
		t.Fatal(err)
	}

	c := dialGateway(t, s)
	hello := c.next()
	if hello.Op != opHello {
		t.Fatalf("first frame op %d, want 10", hello.Op)
	}
	var hd map[string]json.RawMessage
	if err := json.Unmarshal(hello.D, &hd); err != nil {
		t.Fatal(err)
	}
	if string(hd["heartbeat_interval"]) != "5000" {
		t.Fatalf("heartbeat_interval = %s, want the integer 5000", hd["heartbeat_interval"])
	}
	// Old-style presence, compress false, large_threshold, $-less properties.
	d := identifyPayload(s.Options().Token, testIntents)
	d["large_threshold"] = 250
	d["compress"] = false
	d["presence"] = map[string]any{"since": nil, "activities": []any{}, "status": "online", "afk": false}
	c.send(opIdentify, d)

	r := c.expectDispatch("READY")
	if r.seq() != 1 {
		t.Fatalf("READY s=%d, want 1", r.seq())
	}
	ready := decodeMap(t, r.D)
	if ready["v"] != float64(10) {
		t.Errorf("READY v = %v", ready["v"])
	}
	user := ready["user"].(map[string]any)
	if user["id"] != s.Options().BotUserID || user["username"] != "bridge-bot" || user["bot"] != true {
		t.Errorf("READY user = %v", user)
	}
	guilds := ready["guilds"].([]any)
	if len(guilds) != 1 || guilds[0].(map[string]any)["unavailable"] != true || guilds[0].(map[string]any)["id"] != s.Options().GuildID {
		t.Errorf("READY guilds = %v", guilds)
	}
	sid, _ := ready["session_id"].(string)
	if len(sid) < 16 || sid != s.Stats().SessionID {
		t.Errorf("session_id %q, stats %q", sid, s.Stats().SessionID)
	}
	resumeURL, _ := ready["resume_gateway_url"].(string)
	ru, err := url.Parse(resumeURL)
	gu, _ := url.Parse(s.GatewayURL())
	if err != nil || ru.Host != gu.Host || ru.Path == gu.Path || ru.Scheme != "ws" {
		t.Errorf("resume_gateway_url %q must be another path on %s", resumeURL, gu.Host)
	}
	if app := ready["application"].(map[string]any); app["id"] == nil || app["flags"] == nil || app["flags_new"] != "0" {
		t.Errorf("READY application = %v", app)
	}

	g := c.expectDispatch("GUILD_CREATE")
	if g.seq() != 2 {
		t.Fatalf("GUILD_CREATE s=%d, want 2", g.seq())
	}
	guild := decodeMap(t, g.D)
	if guild["id"] != s.Options().GuildID || guild["name"] != "Emulated Guild" || guild["unavailable"] != false {
		t.Errorf("guild header = %v %v %v", guild["id"], guild["name"], guild["unavailable"])
	}
	for _, field := range []string{"hub_type", "incidents_data"} {
		if v, ok := guild[field]; !ok || v != nil {
			t.Errorf("GUILD_CREATE %s = %v (present %v), want null as Discord sends it", field, v, ok)
		}
	}
	chans := map[string]map[string]any{}
	for _, ch := range guild["channels"].([]any) {
		m := ch.(map[string]any)
		chans[m["id"].(string)] = m
	}
	cat := chans[s.Options().CategoryID]
	if cat == nil || cat["type"] != float64(4) || cat["name"] != "Rooms" || cat["parent_id"] != nil {
		t.Errorf("category = %v", cat)
	}
	vc := chans[voiceCh.ID]
	if vc == nil || vc["type"] != float64(2) || vc["parent_id"] != s.Options().CategoryID ||
		vc["user_limit"] != float64(0) || vc["bitrate"] != float64(64000) || vc["position"] == nil {
		t.Errorf("voice channel = %v", vc)
	}
	// Without GUILD_PRESENCES: the bot and members in voice only.
	var memberIDs []string
	for _, m := range guild["members"].([]any) {
		u := m.(map[string]any)["user"].(map[string]any)
		memberIDs = append(memberIDs, u["id"].(string))
	}
	if strings.Join(memberIDs, ",") != s.Options().BotUserID+",400000000000000001" {
		t.Errorf("members = %v, want the bot and alice (in voice)", memberIDs)
	}
	if guild["member_count"] != float64(3) {
		t.Errorf("member_count = %v", guild["member_count"])
	}
	vss := guild["voice_states"].([]any)
	if len(vss) != 1 {
		t.Fatalf("voice_states = %v", vss)
	}
	vs := vss[0].(map[string]any)
	if vs["user_id"] != "400000000000000001" || vs["channel_id"] != voiceCh.ID || vs["session_id"] == "" {
		t.Errorf("voice state = %v", vs)
	}
	if _, has := vs["guild_id"]; has {
		t.Errorf("GUILD_CREATE voice states lack guild_id, got %v", vs)
	}
	roles := guild["roles"].([]any)
	if len(roles) == 0 || roles[0].(map[string]any)["name"] != "@everyone" {
		t.Errorf("roles = %v", roles)
	}
	// The bridge decodes with discordgo's types: they must accept the shapes.
	var dgReady discordgo.Ready
	if err := json.Unmarshal(r.D, &dgReady); err != nil || dgReady.SessionID != sid || dgReady.User.ID != s.Options().BotUserID {
		t.Errorf("READY as discordgo.Ready: %+v, %v", dgReady, err)
	}
	var dgGuild discordgo.Guild
	if err := json.Unmarshal(g.D, &dgGuild); err != nil || len(dgGuild.Channels) != 2 || len(dgGuild.VoiceStates) != 1 ||
		len(dgGuild.Members) != 2 || dgGuild.Members[0].User == nil || dgGuild.JoinedAt.IsZero() {
		t.Errorf("GUILD_CREATE as discordgo.Guild: %+v, %v", dgGuild, err)
	}

	st := s.Stats()
	if st.Identifies != 1 || st.Connections != 1 || !st.Connected || st.LastSeq != 2 {
		t.Errorf("stats = %+v", st)
	}
	sent := s.Sent()
	if len(sent) != 1 || sent[0].Op != opIdentify || sent[0].Conn != 1 {
		t.Errorf("Sent = %+v", sent)
	}
}

func TestHeartbeatACK(t *testing.T) {
	s := startServer(t, nil)
	c := dialGateway(t, s)
	c.expectOp(opHello)
	c.send(opHeartbeat, nil) // before identify: allowed, d null
	if p := c.next(); p.Op != opHeartbeatACK {
		t.Fatalf("want ACK, got op %d", p.Op)
	}
	c.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
	c.expectDispatch("READY")
	c.expectDispatch("GUILD_CREATE")
	c.send(opHeartbeat, 2)
	if p := c.next(); p.Op != opHeartbeatACK {
		t.Fatalf("want ACK, got op %d", p.Op)
	}

	// Zombie: no ACK. The next frame after the heartbeat is the answer to
	// a later request, proving no ACK was queued in between.
	s.SetHeartbeatACK(false)
	c.send(opHeartbeat, 2)
	c.send(opRequestGuildMembers, map[string]any{"guild_id": s.Options().GuildID, "query": "", "limit": 0})
	p := c.next()
	if p.Op != opDispatch || p.event() != "GUILD_MEMBERS_CHUNK" {
		t.Fatalf("after an unACKed heartbeat got op %d %q", p.Op, p.event())
	}
	if s.Stats().Heartbeats != 3 {
		t.Fatalf("Heartbeats = %d, want 3", s.Stats().Heartbeats)
	}
	var ops []int
	for _, f := range s.Sent() {
		ops = append(ops, f.Op)
	}
	if want := []int{1, 2, 1, 1, 8}; !equalInts(ops, want) {
		t.Fatalf("Sent ops %v, want %v", ops, want)
	}
}

func TestRequestHeartbeat(t *testing.T) {
	s := startServer(t, nil)
	c := dialGateway(t, s)
	c.identify(s)
	probe := dialGateway(t, s) // a later, unidentified connection
	probe.expectOp(opHello)
	s.RequestHeartbeat() // goes to the connection carrying the session
	if p := c.expectOp(opHeartbeat); string(p.D) != "null" {
		t.Fatalf("op 1 d = %s", p.D)
	}
	c.send(opHeartbeat, 2)
	c.expectOp(opHeartbeatACK)
}

func TestHeartbeatTimeoutCloses4009(t *testing.T) {
	s := startServer(t, func(o *Options) { o.HeartbeatInterval = 100 * time.Millisecond })
	c := dialGateway(t, s)
	c.identify(s)
	sid := s.Stats().SessionID
	// No heartbeats: closed with 4009 after 1.5 intervals, which ends the
	// session as documented ("Reconnect and start a new one").
	c.expectClose(closeSessionTimedOut)
	waitFor(t, s, "disconnect", func(st Stats) bool { return !st.Connected })
	if st := s.Stats(); st.SessionID != "" || sid == "" {
		t.Fatalf("session after timeout = %q (was %q), want none: 4009 is not resumable", st.SessionID, sid)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProtocolViolationsClose(t *testing.T) {
	for _, tc := range []struct {
		name   string
		query  string
		script func(c *rawClient, s *Server)
		code   int
	}{
		{"wrong token", "", func(c *rawClient, s *Server) {
			c.send(opIdentify, identifyPayload("not-the-token", testIntents))
		}, closeAuthenticationFailed},
		{"resume with wrong token", "", func(c *rawClient, s *Server) {
			c.send(opResume, map[string]any{"token": "nope", "session_id": "x", "seq": 1})
		}, closeAuthenticationFailed},
		{"invalid intents", "", func(c *rawClient, s *Server) {
			c.send(opIdentify, identifyPayload(s.Options().Token, 1<<30))
		}, closeInvalidIntents},
		{"missing intents", "", func(c *rawClient, s *Server) {
			d := identifyPayload(s.Options().Token, 0)
			delete(d, "intents")
			c.send(opIdentify, d)
		}, closeInvalidIntents},
		{"privileged GUILD_MEMBERS", "", func(c *rawClient, s *Server) {
			c.send(opIdentify, identifyPayload(s.Options().Token, testIntents|1<<1))
		}, closeDisallowedIntents},
		{"privileged GUILD_PRESENCES", "", func(c *rawClient, s *Server) {
			c.send(opIdentify, identifyPayload(s.Options().Token, 1<<8))
		}, closeDisallowedIntents},
		{"privileged MESSAGE_CONTENT", "", func(c *rawClient, s *Server) {
			c.send(opIdentify, identifyPayload(s.Options().Token, 1<<15))
		}, closeDisallowedIntents},
		{"bad shard", "", func(c *rawClient, s *Server) {
			d := identifyPayload(s.Options().Token, testIntents)
			d["shard"] = []int{1, 1}
			c.send(opIdentify, d)
		}, closeInvalidShard},
		{"voice update before identify", "", func(c *rawClient, s *Server) {
			c.send(opVoiceStateUpdate, map[string]any{"guild_id": s.Options().GuildID, "channel_id": nil})
		}, closeNotAuthenticated},
		{"second identify", "", func(c *rawClient, s *Server) {
			c.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
			c.expectDispatch("READY")
			c.expectDispatch("GUILD_CREATE")
			c.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
		}, closeAlreadyAuthenticated},
		{"unknown opcode", "", func(c *rawClient, s *Server) {
			c.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
			c.expectDispatch("READY")
			c.expectDispatch("GUILD_CREATE")
			c.send(5, map[string]any{})
		}, closeUnknownOpcode},
		{"receive-only opcode sent", "", func(c *rawClient, s *Server) {
			c.send(opHello, map[string]any{})
		}, closeUnknownOpcode},
		{"undecodable JSON", "", func(c *rawClient, s *Server) {
			c.sendRaw([]byte(`{"op":2,"d":`))
		}, closeDecodeError},
		{"oversized payload", "", func(c *rawClient, s *Server) {
			d := identifyPayload(s.Options().Token, testIntents)
			d["properties"] = map[string]any{"os": strings.Repeat("x", 5000)}
			c.send(opIdentify, d)
		}, closeDecodeError},
		{"heartbeat d not a sequence", "", func(c *rawClient, s *Server) {
			c.send(opHeartbeat, "soon")
		}, closeUnknownOpcode},
		{"resume with a future seq", "", func(c *rawClient, s *Server) {
			c.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
			c.expectDispatch("READY")
			c.expectDispatch("GUILD_CREATE")
			sid := s.Stats().SessionID
			s.DropConnection()
			c.expectAbruptEnd()
			c2 := dial(c.t, s.ResumeGatewayURL())
			c2.expectOp(opHello)
			c2.send(opResume, map[string]any{"token": s.Options().Token, "session_id": sid, "seq": 99})
			*c = *c2
		}, closeInvalidSeq},
		{"more than 120 commands a minute", "", func(c *rawClient, s *Server) {
			for i := 0; i < commandLimit+1; i++ {
				c.send(opHeartbeat, nil)
			}
		}, closeRateLimited},
		{"API version 8", "?v=8&encoding=json", nil, closeInvalidAPIVersion},
		{"ETF encoding", "?v=10&encoding=etf", nil, closeDecodeError},
		{"zstd-stream", "?v=10&encoding=json&compress=zstd-stream", nil, closeDecodeError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, nil)
			query := tc.query
			if query == "" {
				query = "?v=10&encoding=json"
			}
			c := dial(t, s.GatewayURL()+query)
			if tc.script != nil {
				c.expectOp(opHello)
				tc.script(c, s)
			}
			c.expectClose(tc.code)
			conns := s.Connections()
			last := conns[len(conns)-1]
			if last.CloseCode != tc.code || !last.ClosedByServer {
				t.Errorf("Connections()[last] = %+v, want close %d by server", last, tc.code)
			}
		})
	}
}

func TestIdentifyFasterThanIntervalGetsInvalidSession(t *testing.T) {
	s := startServer(t, func(o *Options) { o.IdentifyInterval = time.Hour })
	c1 := dialGateway(t, s)
	c1.identify(s)
	c2 := dialGateway(t, s)
	c2.expectOp(opHello)
	c2.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
	p := c2.expectOp(opInvalidSession)
	if string(p.D) != "false" {
		t.Fatalf("op 9 d = %s, want false", p.D)
	}
	st := s.Stats()
	if st.IdentifyViolations != 1 || st.Identifies != 1 || st.InvalidSessions != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestResumeReplaysMissedDispatches is the essential property: dispatches
// made while the bot was away are replayed, exactly and in order, then
// RESUMED, then live events continue.
func TestResumeReplaysMissedDispatches(t *testing.T) {
	s := startServer(t, nil)
	s.AddMember("400000000000000001", "alice")
	c := dialGateway(t, s)
	c.identify(s)
	sid := s.Stats().SessionID
	s.DropConnection()
	c.expectAbruptEnd()
	waitFor(t, s, "disconnect", func(st Stats) bool { return !st.Connected })

	a, err := s.CreateChannel("missed-1", channelTypeVoice, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateChannel("missed-2", channelTypeText, s.Options().CategoryID); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVoiceState("400000000000000001", a.ID); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.LastSeq != 5 {
		t.Fatalf("LastSeq = %d, want 5", st.LastSeq)
	}

	c2 := dial(t, s.ResumeGatewayURL()+"?v=10&encoding=json")
	c2.expectOp(opHello)
	c2.send(opResume, map[string]any{"token": s.Options().Token, "session_id": sid, "seq": 2})
	want := []struct {
		seq   int64
		event string
	}{{3, "CHANNEL_CREATE"}, {4, "CHANNEL_CREATE"}, {5, "VOICE_STATE_UPDATE"}, {6, "RESUMED"}}
	var got []payload
	for _, w := range want {
		p := c2.expectOp(opDispatch)
		if p.seq() != w.seq || p.event() != w.event {
			t.Fatalf("replay: got s=%d %s, want s=%d %s", p.seq(), p.event(), w.seq, w.event)
		}
		got = append(got, p)
	}
	ch := decodeMap(t, got[0].D)
	if ch["name"] != "missed-1" || ch["guild_id"] != s.Options().GuildID {
		t.Errorf("CHANNEL_CREATE d = %v", ch)
	}
	vs := decodeMap(t, got[2].D)
	member, _ := vs["member"].(map[string]any)
	if vs["guild_id"] != s.Options().GuildID || vs["channel_id"] != a.ID || member == nil || member["user"].(map[string]any)["id"] != "400000000000000001" {
		t.Errorf("VOICE_STATE_UPDATE d = %v", vs)
	}

	// Live again.
	if _, err := s.CreateChannel("live", channelTypeText, ""); err != nil {
		t.Fatal(err)
	}
	if p := c2.expectDispatch("CHANNEL_CREATE"); p.seq() != 7 {
		t.Fatalf("live dispatch s=%d, want 7", p.seq())
	}
	st := s.Stats()
	if st.Resumes != 1 || st.Identifies != 1 || st.MisdirectedResumes != 0 || !st.Connected || st.SessionID != sid {
		t.Fatalf("stats = %+v", st)
	}
	conns := s.Connections()
	if len(conns) != 2 || conns[0].Path != gatewayPath || !conns[0].Identified || conns[0].CloseCode != 0 || !conns[0].ClosedByServer ||
		conns[0].Closed.IsZero() || conns[1].Path != resumePath || !conns[1].Resumed || conns[1].Query != "v=10&encoding=json" {
		t.Fatalf("Connections = %+v", conns)
	}
}

func TestResumeOnGatewayURLIsCountedAsMisdirected(t *testing.T) {
	s := startServer(t, nil)
	c := dialGateway(t, s)
	c.identify(s)
	sid := s.Stats().SessionID
	s.DropConnection()
	c.expectAbruptEnd()
	c2 := dial(t, s.GatewayURL()+"/?v=10&encoding=json") // trailing slash, as discordgo's Gateway() gives
	c2.expectOp(opHello)
	c2.send(opResume, map[string]any{"token": "Bot " + s.Options().Token, "session_id": sid, "seq": 2})
	if p := c2.expectDispatch("RESUMED"); p.seq() != 3 {
		t.Fatalf("RESUMED s=%d", p.seq())
	}
	if st := s.Stats(); st.MisdirectedResumes != 1 || st.Resumes != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestResumeOfUnknownSessionGetsInvalidSession(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.ResumeGatewayURL())
	c.expectOp(opHello)
	c.send(opResume, map[string]any{"token": s.Options().Token, "session_id": "no-such-session", "seq": 3})
	if p := c.expectOp(opInvalidSession); string(p.D) != "false" {
		t.Fatalf("op 9 d = %s", p.D)
	}
	// The same socket may identify afterwards.
	c.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
	c.expectDispatch("READY")
}

func TestInvalidSessionFalseLosesDispatches(t *testing.T) {
	s := startServer(t, nil)
	c := dialGateway(t, s)
	c.identify(s)
	oldSID := s.Stats().SessionID
	s.SendInvalidSession(false)
	if p := c.expectOp(opInvalidSession); string(p.D) != "false" {
		t.Fatalf("op 9 d = %s", p.D)
	}
	if st := s.Stats(); st.SessionID != "" || st.Connected {
		t.Fatalf("session not forgotten: %+v", st)
	}
	lost, err := s.CreateChannel("lost", channelTypeText, "")
	if err != nil {
		t.Fatal(err)
	}
	// Resume of the forgotten session fails.
	c2 := dial(t, s.ResumeGatewayURL())
	c2.expectOp(opHello)
	c2.send(opResume, map[string]any{"token": s.Options().Token, "session_id": oldSID, "seq": 2})
	c2.expectOp(opInvalidSession)
	// A fresh identify starts over at s=1; the lost channel only shows in
	// GUILD_CREATE's state, never as a CHANNEL_CREATE.
	c2.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
	if p := c2.expectDispatch("READY"); p.seq() != 1 {
		t.Fatalf("READY s=%d", p.seq())
	}
	g := c2.expectDispatch("GUILD_CREATE")
	if !strings.Contains(string(g.D), lost.ID) {
		t.Fatalf("GUILD_CREATE lacks channel %s", lost.ID)
	}
	if st := s.Stats(); st.SessionID == oldSID || st.Identifies != 2 || st.LastSeq != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestInvalidSessionTrueKeepsSession(t *testing.T) {
	s := startServer(t, nil)
	c := dialGateway(t, s)
	c.identify(s)
	sid := s.Stats().SessionID
	s.SendInvalidSession(true)
	if p := c.expectOp(opInvalidSession); string(p.D) != "true" {
		t.Fatalf("op 9 d = %s", p.D)
	}
	kept, err := s.CreateChannel("kept", channelTypeText, "")
	if err != nil {
		t.Fatal(err)
	}
	c.ws.Close()
	c2 := dial(t, s.ResumeGatewayURL())
	c2.expectOp(opHello)
	c2.send(opResume, map[string]any{"token": s.Options().Token, "session_id": sid, "seq": 2})
	p := c2.expectDispatch("CHANNEL_CREATE")
	if !strings.Contains(string(p.D), kept.ID) || p.seq() != 3 {
		t.Fatalf("replayed s=%d %s", p.seq(), p.D)
	}
	c2.expectDispatch("RESUMED")
}

func TestFaultsReconnectAndCloseWithCode(t *testing.T) {
	s := startServer(t, nil)
	c := dialGateway(t, s)
	c.identify(s)
	s.SendReconnect()
	if p := c.expectOp(opReconnect); string(p.D) != "null" {
		t.Fatalf("op 7 d = %s", p.D)
	}
	s.CloseWithCode(4000, "emulated failure")
	c.expectClose(4000)
	waitFor(t, s, "disconnect", func(st Stats) bool { return !st.Connected })
	if st := s.Stats(); st.SessionID == "" {
		t.Fatal("CloseWithCode must keep the session")
	}
}

func TestClientClose1000InvalidatesSession(t *testing.T) {
	s := startServer(t, nil)
	c := dialGateway(t, s)
	c.identify(s)
	if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "session invalidated", func(st Stats) bool { return st.SessionID == "" && !st.Connected })

	s2 := startServer(t, nil)
	c2 := dialGateway(t, s2)
	c2.identify(s2)
	if err := c2.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4999, "resume later"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s2, "disconnect", func(st Stats) bool { return !st.Connected })
	if s2.Stats().SessionID == "" {
		t.Fatal("close 4999 must keep the session resumable")
	}
}

func TestIntentsFilterDispatches(t *testing.T) {
	s := startServer(t, nil)
	s.AddMember("400000000000000001", "alice")
	vc, err := s.CreateChannel("v", channelTypeVoice, "")
	if err != nil {
		t.Fatal(err)
	}
	c := dialGateway(t, s)
	c.expectOp(opHello)
	c.send(opIdentify, identifyPayload(s.Options().Token, intentGuilds)) // no GUILD_VOICE_STATES
	c.expectDispatch("READY")
	c.expectDispatch("GUILD_CREATE")
	if err := s.SetVoiceState("400000000000000001", vc.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateChannel("after", channelTypeText, ""); err != nil {
		t.Fatal(err)
	}
	if p := c.expectOp(opDispatch); p.event() != "CHANNEL_CREATE" || p.seq() != 3 {
		t.Fatalf("got %s s=%d, want CHANNEL_CREATE s=3 (no VOICE_STATE_UPDATE without the intent)", p.event(), p.seq())
	}
}

func TestVoiceJoinMoveLeave(t *testing.T) {
	fv := newFakeVoice()
	s := startServer(t, func(o *Options) { o.Voice = fv })
	bot, guild := s.Options().BotUserID, s.Options().GuildID
	v1, err := s.CreateChannel("v1", channelTypeVoice, s.Options().CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.CreateChannel("stage", channelTypeStage, "")
	if err != nil {
		t.Fatal(err)
	}
	text, err := s.CreateChannel("text", channelTypeText, "")
	if err != nil {
		t.Fatal(err)
	}
	c := dialGateway(t, s)
	ready, _ := c.identify(s)

	c.send(opVoiceStateUpdate, map[string]any{"guild_id": guild, "channel_id": v1.ID, "self_mute": false, "self_deaf": true})
	vsu := decodeMap(t, c.expectDispatch("VOICE_STATE_UPDATE").D)
	voiceSID, _ := vsu["session_id"].(string)
	if vsu["user_id"] != bot || vsu["channel_id"] != v1.ID || vsu["guild_id"] != guild || vsu["self_deaf"] != true || voiceSID == "" {
		t.Fatalf("VOICE_STATE_UPDATE = %v", vsu)
	}
	if voiceSID == ready["session_id"] {
		t.Fatal("voice session_id must differ from the gateway session_id")
	}
	if m, _ := vsu["member"].(map[string]any); m == nil || m["user"].(map[string]any)["id"] != bot {
		t.Fatalf("VOICE_STATE_UPDATE member = %v", vsu["member"])
	}
	var dgVSU discordgo.VoiceStateUpdate
	if err := json.Unmarshal(mustJSON(t, vsu), &dgVSU); err != nil || dgVSU.VoiceState == nil || dgVSU.SessionID != voiceSID || dgVSU.Member == nil {
		t.Fatalf("VOICE_STATE_UPDATE as discordgo.VoiceStateUpdate: %+v, %v", dgVSU, err)
	}
	vserverRaw := c.expectDispatch("VOICE_SERVER_UPDATE").D
	var dgServer discordgo.VoiceServerUpdate
	if err := json.Unmarshal(vserverRaw, &dgServer); err != nil || dgServer.Endpoint != "127.0.0.1:4242" {
		t.Fatalf("VOICE_SERVER_UPDATE as discordgo.VoiceServerUpdate: %+v, %v", dgServer, err)
	}
	vserver := decodeMap(t, vserverRaw)
	if vserver["endpoint"] != "127.0.0.1:4242" || vserver["token"] != "voice-token-"+v1.ID || vserver["guild_id"] != guild {
		t.Fatalf("VOICE_SERVER_UPDATE = %v", vserver)
	}
	fv.expect(t, "state "+guild+" "+bot+" "+v1.ID)
	fv.expect(t, "allocate "+guild+" "+v1.ID+" "+bot+" "+voiceSID)
	if got := s.VoiceStates()[bot]; got != v1.ID {
		t.Fatalf("VoiceStates[bot] = %q", got)
	}

	// Move to the stage channel: new voice session, new allocation.
	c.send(opVoiceStateUpdate, map[string]any{"guild_id": guild, "channel_id": v2.ID, "self_mute": false, "self_deaf": false})
	moved := decodeMap(t, c.expectDispatch("VOICE_STATE_UPDATE").D)
	if moved["channel_id"] != v2.ID || moved["session_id"] == voiceSID {
		t.Fatalf("move VOICE_STATE_UPDATE = %v", moved)
	}
	c.expectDispatch("VOICE_SERVER_UPDATE")
	fv.expect(t, "state "+guild+" "+bot+" "+v2.ID)
	fv.expect(t, "allocate "+guild+" "+v2.ID+" "+bot+" "+moved["session_id"].(string))

	// A repeated join of the same channel: as on Discord, only a voice
	// state answers, with a new voice session id the backend is told of.
	c.send(opVoiceStateUpdate, map[string]any{"guild_id": guild, "channel_id": v2.ID, "self_mute": false, "self_deaf": false})
	again := decodeMap(t, c.expectDispatch("VOICE_STATE_UPDATE").D)
	if again["channel_id"] != v2.ID || again["session_id"] == moved["session_id"] {
		t.Fatalf("repeated join VOICE_STATE_UPDATE = %v", again)
	}
	fv.expect(t, "state "+guild+" "+bot+" "+v2.ID)
	fv.expect(t, "renew "+guild+" "+bot+" "+again["session_id"].(string))

	// A voice server move: a new allocation, then VOICE_SERVER_UPDATE
	// (the first dispatch after the repeated join's voice state).
	if err := s.MoveVoiceServer(); err != nil {
		t.Fatal(err)
	}
	fv.expect(t, "state "+guild+" "+bot+" "+v2.ID)
	fv.expect(t, "allocate "+guild+" "+v2.ID+" "+bot+" "+again["session_id"].(string))
	c.expectDispatch("VOICE_SERVER_UPDATE")

	// A text channel or another guild changes nothing.
	c.send(opVoiceStateUpdate, map[string]any{"guild_id": guild, "channel_id": text.ID, "self_mute": false, "self_deaf": false})
	c.send(opVoiceStateUpdate, map[string]any{"guild_id": "999", "channel_id": v1.ID, "self_mute": false, "self_deaf": false})
	waitFor(t, s, "two rejected op 4", func(st Stats) bool { return st.RejectedVoiceUpdates == 2 })

	// Voice server move scripted by the test: reallocating, then a new one.
	s.SendVoiceServerUpdate(guild, nil, "t1")
	if d := decodeMap(t, c.expectDispatch("VOICE_SERVER_UPDATE").D); d["endpoint"] != nil || d["token"] != "t1" {
		t.Fatalf("reallocating VOICE_SERVER_UPDATE = %v", d)
	}
	ep := "127.0.0.1:5000"
	s.SendVoiceServerUpdate(guild, &ep, "t2")
	if d := decodeMap(t, c.expectDispatch("VOICE_SERVER_UPDATE").D); d["endpoint"] != ep {
		t.Fatalf("moved VOICE_SERVER_UPDATE = %v", d)
	}

	// Leave.
	c.send(opVoiceStateUpdate, map[string]any{"guild_id": guild, "channel_id": nil, "self_mute": false, "self_deaf": false})
	left := decodeMap(t, c.expectDispatch("VOICE_STATE_UPDATE").D)
	if left["channel_id"] != nil || left["user_id"] != bot {
		t.Fatalf("leave VOICE_STATE_UPDATE = %v", left)
	}
	fv.expect(t, "state "+guild+" "+bot+" ")
	fv.expect(t, "release "+guild+" "+bot)
	if _, in := s.VoiceStates()[bot]; in {
		t.Fatal("bot still in voice")
	}
}

func TestDeleteChannelDisconnectsVoiceMembers(t *testing.T) {
	fv := newFakeVoice()
	s := startServer(t, func(o *Options) { o.Voice = fv })
	bot, guild := s.Options().BotUserID, s.Options().GuildID
	s.AddMember("400000000000000001", "alice")
	vc, err := s.CreateChannel("doomed", channelTypeVoice, "")
	if err != nil {
		t.Fatal(err)
	}
	c := dialGateway(t, s)
	c.identify(s)
	if err := s.SetVoiceState("400000000000000001", vc.ID); err != nil {
		t.Fatal(err)
	}
	c.expectDispatch("VOICE_STATE_UPDATE")
	fv.expect(t, "state "+guild+" 400000000000000001 "+vc.ID)
	c.send(opVoiceStateUpdate, map[string]any{"guild_id": guild, "channel_id": vc.ID, "self_mute": false, "self_deaf": false})
	c.expectDispatch("VOICE_STATE_UPDATE")
	c.expectDispatch("VOICE_SERVER_UPDATE")
	fv.expect(t, "state "+guild+" "+bot+" "+vc.ID)
	fv.expect(t, "allocate "+guild+" "+vc.ID+" "+bot+" "+voiceSessionOf(t, s, bot))

	if err := s.DeleteChannel(vc.ID); err != nil {
		t.Fatal(err)
	}
	del := decodeMap(t, c.expectDispatch("CHANNEL_DELETE").D)
	if del["id"] != vc.ID || del["guild_id"] != guild {
		t.Fatalf("CHANNEL_DELETE = %v", del)
	}
	// Members disconnect in user id order: the bot (1000...) before alice (4000...).
	for _, uid := range []string{bot, "400000000000000001"} {
		d := decodeMap(t, c.expectDispatch("VOICE_STATE_UPDATE").D)
		if d["user_id"] != uid || d["channel_id"] != nil {
			t.Fatalf("disconnect VOICE_STATE_UPDATE = %v, want %s leaving", d, uid)
		}
	}
	fv.expect(t, "state "+guild+" "+bot+" ")
	fv.expect(t, "release "+guild+" "+bot)
	fv.expect(t, "state "+guild+" 400000000000000001 ")
	if len(s.VoiceStates()) != 0 {
		t.Fatalf("VoiceStates = %v", s.VoiceStates())
	}
	if err := s.DeleteChannel(vc.ID); !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("second delete: %v", err)
	}
}

func voiceSessionOf(t *testing.T, s *Server, userID string) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	vs, ok := s.guild.voice[userID]
	if !ok {
		t.Fatalf("%s not in voice", userID)
	}
	return vs.sessionID
}

func TestStateErrors(t *testing.T) {
	s := startServer(t, nil)
	text, err := s.CreateChannel("text", channelTypeText, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetVoiceState("404", text.ID); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("unknown member: %v", err)
	}
	if err := s.SetVoiceState(s.Options().BotUserID, "123"); !errors.Is(err, ErrUnknownChannel) {
		t.Errorf("unknown channel: %v", err)
	}
	if err := s.SetVoiceState(s.Options().BotUserID, text.ID); !errors.Is(err, ErrNotVoiceChannel) {
		t.Errorf("text channel: %v", err)
	}
	for _, tc := range []struct {
		name   string
		typ    int
		parent string
	}{
		{"", channelTypeVoice, ""},
		{strings.Repeat("n", 101), channelTypeVoice, ""},
		{"x", 5, ""},
		{"x", channelTypeVoice, "123"},
		{"x", channelTypeVoice, text.ID},
		{"x", channelTypeCategory, s.Options().CategoryID},
	} {
		if _, err := s.CreateChannel(tc.name, tc.typ, tc.parent); !errors.Is(err, ErrInvalidChannel) {
			t.Errorf("CreateChannel(%q, %d, %q) = %v, want ErrInvalidChannel", tc.name, tc.typ, tc.parent, err)
		}
	}
	if got := len(s.Channels()); got != 2 {
		t.Errorf("%d channels after refused creates, want 2", got)
	}
	if ch, ok := s.Channel(text.ID); !ok || ch.Name != "text" || ch.GuildID != s.Options().GuildID {
		t.Errorf("Channel = %+v, %v", ch, ok)
	}
}

func TestPayloadCompression(t *testing.T) {
	s := startServer(t, nil)
	c := dialGateway(t, s)
	c.expectOp(opHello)
	d := identifyPayload(s.Options().Token, testIntents)
	d["compress"] = true
	c.send(opIdentify, d)
	c.expectDispatch("READY")
	_ = c.ws.SetReadDeadline(time.Now().Add(readDeadline))
	mt, data, err := c.ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if mt != websocket.BinaryMessage {
		t.Fatalf("GUILD_CREATE frame type %d, want binary", mt)
	}
	zr, err := zlib.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr) // one complete stream: no error at its end
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plain), `"t":"GUILD_CREATE"`) {
		t.Fatalf("decompressed %s", plain)
	}
}

// wsStream feeds a connection's binary frames to one shared inflater.
type wsStream struct {
	ws  *websocket.Conn
	buf []byte
}

func (r *wsStream) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		_ = r.ws.SetReadDeadline(time.Now().Add(readDeadline))
		mt, data, err := r.ws.ReadMessage()
		if err != nil {
			return 0, err
		}
		if mt != websocket.BinaryMessage || !bytes.HasSuffix(data, []byte{0, 0, 0xff, 0xff}) {
			return 0, errors.New("zlib-stream frame is not binary with a Z_SYNC_FLUSH suffix")
		}
		r.buf = data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func TestTransportCompressionZlibStream(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.GatewayURL()+"?v=10&encoding=json&compress=zlib-stream")
	zr, err := zlib.NewReader(&wsStream{ws: c.ws})
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(zr)
	var hello payload
	if err := dec.Decode(&hello); err != nil || hello.Op != opHello {
		t.Fatalf("hello: %+v %v", hello, err)
	}
	c.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
	for _, want := range []string{"READY", "GUILD_CREATE"} {
		var p payload
		if err := dec.Decode(&p); err != nil || p.event() != want {
			t.Fatalf("want %s, got %+v %v", want, p, err)
		}
	}
}

func TestWaitForHonoursContext(t *testing.T) {
	s := startServer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WaitFor(ctx, func(st Stats) bool { return st.Identifies > 0 }); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor = %v, want context.Canceled", err)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.WaitFor(context.Background(), func(st Stats) bool { return st.Identifies > 0 })
	}()
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitFor after Close = %v, want ErrClosed", err)
	}
}

func TestRequestGuildMembersAndSoundboard(t *testing.T) {
	s := startServer(t, nil)
	s.AddMember("400000000000000001", "alice")
	s.AddMember("400000000000000002", "albert")
	s.AddMember("400000000000000003", "bob")
	c := dialGateway(t, s)
	c.identify(s)
	c.send(opRequestGuildMembers, map[string]any{"guild_id": s.Options().GuildID, "query": "al", "limit": 10, "nonce": "n1"})
	chunk := decodeMap(t, c.expectDispatch("GUILD_MEMBERS_CHUNK").D)
	if len(chunk["members"].([]any)) != 2 || chunk["nonce"] != "n1" {
		t.Fatalf("chunk = %v", chunk)
	}
	c.send(opRequestGuildMembers, map[string]any{"guild_id": s.Options().GuildID, "user_ids": []string{"400000000000000003", "7"}})
	chunk = decodeMap(t, c.expectDispatch("GUILD_MEMBERS_CHUNK").D)
	if len(chunk["members"].([]any)) != 1 || len(chunk["not_found"].([]any)) != 1 {
		t.Fatalf("chunk = %v", chunk)
	}
	c.send(opRequestSoundboard, map[string]any{"guild_ids": []string{s.Options().GuildID}})
	c.expectDispatch("SOUNDBOARD_SOUNDS")
	c.send(opPresenceUpdate, map[string]any{"since": nil, "activities": []any{}, "status": "idle", "afk": false})
	c.send(opHeartbeat, 7)
	c.expectOp(opHeartbeatACK) // the presence update was accepted silently
}

func TestDeleteCategoryOrphansChildren(t *testing.T) {
	s := startServer(t, nil)
	child, err := s.CreateChannel("child", channelTypeVoice, s.Options().CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	c := dialGateway(t, s)
	c.identify(s)
	if err := s.DeleteChannel(s.Options().CategoryID); err != nil {
		t.Fatal(err)
	}
	if d := decodeMap(t, c.expectDispatch("CHANNEL_DELETE").D); d["id"] != s.Options().CategoryID {
		t.Fatalf("CHANNEL_DELETE = %v", d)
	}
	if d := decodeMap(t, c.expectDispatch("CHANNEL_UPDATE").D); d["id"] != child.ID || d["parent_id"] != nil {
		t.Fatalf("CHANNEL_UPDATE = %v", d)
	}
	if ch, _ := s.Channel(child.ID); ch.ParentID != "" {
		t.Fatalf("child still has parent %q", ch.ParentID)
	}
}

func TestFailedAllocationSendsNoVoiceServer(t *testing.T) {
	fv := newFakeVoice()
	fv.fail = true
	s := startServer(t, func(o *Options) { o.Voice = fv })
	bot, guild := s.Options().BotUserID, s.Options().GuildID
	s.AddMember("400000000000000001", "alice")
	vc, err := s.CreateChannel("v", channelTypeVoice, "")
	if err != nil {
		t.Fatal(err)
	}
	c := dialGateway(t, s)
	c.identify(s)
	c.send(opVoiceStateUpdate, map[string]any{"guild_id": guild, "channel_id": vc.ID, "self_mute": false, "self_deaf": false})
	c.expectDispatch("VOICE_STATE_UPDATE")
	fv.expect(t, "state "+guild+" "+bot+" "+vc.ID)
	<-fv.ch // the failing allocate
	// Backend calls are ordered: once alice's state reaches the backend,
	// the failed allocation has been fully handled.
	if err := s.SetVoiceState("400000000000000001", vc.ID); err != nil {
		t.Fatal(err)
	}
	fv.expect(t, "state "+guild+" 400000000000000001 "+vc.ID)
	if _, err := s.CreateChannel("marker", channelTypeText, ""); err != nil {
		t.Fatal(err)
	}
	for {
		p := c.expectOp(opDispatch)
		if p.event() == "VOICE_SERVER_UPDATE" {
			t.Fatalf("VOICE_SERVER_UPDATE after a failed allocation: %s", p.D)
		}
		if p.event() == "CHANNEL_CREATE" {
			return
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
