package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

// shardGuild is a guild id whose shard among 16 is not 0.
const shardGuild = "1577514940309176321"

func TestShardOf(t *testing.T) {
	for _, tc := range []struct {
		guild  string
		shards int
		want   int
	}{
		{"41771983423143937", 1, 0},  // one shard: always 0
		{"41771983423143937", 2, 0},  // 41771983423143937 >> 22 = 9959216934
		{"41771983423143937", 16, 6}, // 9959216934 % 16
		{shardGuild, 16, int((uint64(1577514940309176321) >> 22) % 16)},
		{"not-an-id", 16, 0},
	} {
		if got := gateway.ShardOf(tc.guild, tc.shards); got != tc.want {
			t.Errorf("ShardOf(%s, %d) = %d, want %d", tc.guild, tc.shards, got, tc.want)
		}
	}
}

// identifiedShard is the shard field of the latest Identify the emulator
// got; nil when absent.
func identifiedShard(t *testing.T, emu *discordemu.Server) []int {
	t.Helper()
	var last []int
	found := false
	for _, f := range emu.Sent() {
		if f.Op != 2 {
			continue
		}
		var d struct{ Shard []int }
		if err := json.Unmarshal(f.Data, &d); err != nil {
			t.Fatal(err)
		}
		last, found = d.Shard, true
	}
	if !found {
		t.Fatal("no identify")
	}
	return last
}

// A bot that must shard identifies the shard holding its guild, with the
// count GET /gateway/bot recommends, and gets the guild's events there.
func TestShardFromGatewayBot(t *testing.T) {
	f := start(t, discordemu.Options{GuildID: shardGuild, Shards: 16, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	want := []int{gateway.ShardOf(shardGuild, 16), 16}
	if got := identifiedShard(t, f.emu); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("identified shard %v, want %v", got, want)
	}
	f.room(t, "sharded room")
	if evs := f.rec.waitN(t, 1, 5*time.Second); evs[0].Name != gateway.EventRoomCreated {
		t.Fatalf("first event %s, want the room created", evs[0].Name)
	}
}

// Without sharding the identify has no shard field.
func TestOneShardSendsNoShard(t *testing.T) {
	f := start(t, discordemu.Options{IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	if got := identifiedShard(t, f.emu); got != nil {
		t.Fatalf("identify with one shard carries shard %v", got)
	}
}

// When Discord starts requiring shards, the 4011 makes the client ask
// GET /gateway/bot again and identify with the new count.
func TestShardingRequiredLater(t *testing.T) {
	f := start(t, discordemu.Options{GuildID: shardGuild, IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	f.emu.SetShards(16)
	f.emu.SendInvalidSession(false) // the next identify meets the new requirement
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.emu.WaitFor(ctx, func(s discordemu.Stats) bool { return s.Identifies == 2 }); err != nil {
		t.Fatalf("no identify with the new shard count: %v (stats %+v, status %+v)", err, f.emu.Stats(), f.client.Status())
	}
	if err := f.client.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got := identifiedShard(t, f.emu); len(got) != 2 || got[1] != 16 {
		t.Fatalf("identified shard %v after 4011, want 16 shards", got)
	}
}

// A configured count below what Discord requires stops the client with the
// fix in words.
func TestTooFewConfiguredShardsIsFatal(t *testing.T) {
	f := start(t, discordemu.Options{GuildID: shardGuild, Shards: 16, IdentifyInterval: time.Nanosecond}, gateway.Options{Shards: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.client.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer f.client.Close(ctx)
	err := f.client.WaitReady(ctx)
	if !errors.Is(err, gateway.ErrFatalClose) || !strings.Contains(err.Error(), "4011") || !strings.Contains(err.Error(), "DISCORD_SHARDS") {
		t.Fatalf("WaitReady with 2 of 16 shards: %v", err)
	}
}

func TestNegativeShardsRefused(t *testing.T) {
	_, err := gateway.New(gateway.Options{Token: "t", GuildID: "1", CategoryID: "2", Shards: -1})
	if !errors.Is(err, gateway.ErrOptions) {
		t.Fatalf("Shards -1: %v", err)
	}
}
