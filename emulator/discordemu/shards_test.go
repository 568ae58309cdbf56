package discordemu

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
)

func identifyShard(token string, shard, shards int) map[string]any {
	p := identifyPayload(token, testIntents)
	p["shard"] = []int{shard, shards}
	return p
}

// shardOf is (guild_id >> 22) % shards.
func shardOf(t *testing.T, guildID string, shards int) int {
	id, err := strconv.ParseUint(guildID, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return int((id >> 22) % uint64(shards))
}

// With sharding required, GET /gateway/bot says how many shards, fewer
// get 4011, the guild's shard gets the guild and its events, and another
// shard gets neither.
func TestShardingRequired(t *testing.T) {
	const shards = 16
	s := startServer(t, func(o *Options) {
		o.Shards = shards
		o.MaxConcurrency = 4
		o.GuildID = "1577514940309176321" // a real-looking snowflake: its shard is not 0
	})
	_, body := rest(t, s, http.MethodGet, "/api/v10/gateway/bot", "", nil)
	gb := decodeMap(t, body)
	if gb["shards"] != float64(shards) || gb["session_start_limit"].(map[string]any)["max_concurrency"] != float64(4) {
		t.Fatalf("GET /gateway/bot %v, want %d shards and max_concurrency 4", gb, shards)
	}

	unsharded := dialGateway(t, s)
	unsharded.expectOp(opHello)
	unsharded.send(opIdentify, identifyPayload(s.Options().Token, testIntents))
	unsharded.expectClose(closeShardingRequired)

	home := shardOf(t, s.Options().GuildID, shards)
	if home == 0 {
		t.Fatal("the test guild must not be on shard 0")
	}
	other := dialGateway(t, s)
	other.expectOp(opHello)
	other.send(opIdentify, identifyShard(s.Options().Token, 0, shards))
	var ready map[string]any
	if err := json.Unmarshal(other.expectDispatch("READY").D, &ready); err != nil {
		t.Fatal(err)
	}
	if g := ready["guilds"].([]any); len(g) != 0 {
		t.Fatalf("shard 0 READY lists guilds %v, want none", g)
	}
	// One session a shard: the home shard's identify leaves shard 0's alone.
	c := dialGateway(t, s)
	c.expectOp(opHello)
	c.send(opIdentify, identifyShard(s.Options().Token, home, shards))
	if err := json.Unmarshal(c.expectDispatch("READY").D, &ready); err != nil {
		t.Fatal(err)
	}
	if g := ready["guilds"].([]any); len(g) != 1 || ready["shard"].([]any)[0] != float64(home) {
		t.Fatalf("home shard READY %v", ready)
	}
	c.expectDispatch("GUILD_CREATE")
	if _, err := s.CreateChannel("room", channelTypeVoice, s.Options().CategoryID); err != nil {
		t.Fatal(err)
	}
	c.expectDispatch("CHANNEL_CREATE")
}

// Identifies of shards in different max_concurrency buckets may come
// together; a second in the same bucket within the interval is refused.
func TestIdentifyBucketsByMaxConcurrency(t *testing.T) {
	s := startServer(t, func(o *Options) {
		o.Shards = 4
		o.MaxConcurrency = 2
		o.IdentifyInterval = 1 << 40 // no second identify of a bucket in this test
		o.ExtraBots = []Bot{{Token: "t2", UserID: "100000000000000002"}}
	})
	for i, shard := range []int{0, 1} { // buckets 0 and 1
		c := dialGateway(t, s)
		c.expectOp(opHello)
		c.send(opIdentify, identifyShard(s.Options().Token, shard, 4))
		c.expectDispatch("READY")
		if n := s.Stats().IdentifyViolations; n != 0 {
			t.Fatalf("identify %d (shard %d) refused", i, shard)
		}
	}
	c := dialGateway(t, s)
	c.expectOp(opHello)
	c.send(opIdentify, identifyShard(s.Options().Token, 2, 4)) // bucket 0 again
	c.expectOp(opInvalidSession)
	if n := s.Stats().IdentifyViolations; n != 1 {
		t.Fatalf("%d identify violations, want 1", n)
	}
	// Another bot has buckets of its own.
	o := dialGateway(t, s)
	o.expectOp(opHello)
	o.send(opIdentify, identifyShard("t2", 2, 4))
	o.expectDispatch("READY")
}

// shardGuild is the id of a guild on shard k % n: (id >> 22) == k.
func shardGuild(k uint64) string { return strconv.FormatUint(k<<22, 10) }

// Past GuildsPerShard a bot must shard: GET /gateway/bot says how many,
// fewer get 4011, and the bot's shards run side by side, each with the
// guilds it carries and their events alone.
func TestGuildsPerShardAndSessionsPerShard(t *testing.T) {
	var guilds []Guild
	for k := uint64(300); k < 304; k++ { // shards 0, 1, 2, 0 of 3
		guilds = append(guilds, Guild{ID: shardGuild(k), CategoryID: strconv.FormatUint(k<<22+1, 10)})
	}
	s := startServer(t, func(o *Options) {
		o.Guilds = guilds // with the primary (shard 2 of 3): 5 guilds
		o.GuildsPerShard = 2
		o.MaxConcurrency = 3
		o.IdentifyInterval = 1 << 40 // one identify a bucket in this test
	})
	_, body := rest(t, s, http.MethodGet, "/api/v10/gateway/bot", "", nil)
	if gb := decodeMap(t, body); gb["shards"] != float64(3) {
		t.Fatalf("GET /gateway/bot %v, want 3 shards for 5 guilds at 2 a shard", gb)
	}
	few := dialGateway(t, s)
	few.expectOp(opHello)
	few.send(opIdentify, identifyShard(s.Options().Token, 0, 2))
	few.expectClose(closeShardingRequired)

	conns := make([]*rawClient, 3)
	for shard := range conns {
		c := dialGateway(t, s)
		c.expectOp(opHello)
		c.send(opIdentify, identifyShard(s.Options().Token, shard, 3))
		var ready map[string]any
		if err := json.Unmarshal(c.expectDispatch("READY").D, &ready); err != nil {
			t.Fatal(err)
		}
		for _, g := range ready["guilds"].([]any) {
			id := g.(map[string]any)["id"].(string)
			if got := shardOf(t, id, 3); got != shard {
				t.Fatalf("shard %d's READY lists guild %s of shard %d", shard, id, got)
			}
			c.expectDispatch("GUILD_CREATE")
		}
		conns[shard] = c
	}
	if n := len(s.Connections()); n != 4 {
		t.Fatalf("%d connections, want the refused one and three shards", n)
	}
	all := append([]Guild{{ID: s.Options().GuildID, CategoryID: s.Options().CategoryID}}, guilds...)
	for _, g := range all {
		ch, err := s.CreateChannelIn(g.ID, "room", channelTypeVoice, g.CategoryID)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(conns[shardOf(t, g.ID, 3)].expectDispatch("CHANNEL_CREATE").D, &got); err != nil {
			t.Fatal(err)
		}
		if got["id"] != ch.ID {
			t.Fatalf("guild %s's shard got channel %v, want %s", g.ID, got["id"], ch.ID)
		}
	}
	// No shard got another's event: the next thing each sees is its
	// heartbeat answer.
	for shard, c := range conns {
		c.send(opHeartbeat, nil)
		if p := c.next(); p.Op != opHeartbeatACK {
			t.Fatalf("shard %d got %s (op %d), want only its heartbeat ACK", shard, p.event(), p.Op)
		}
	}
}
