package pool_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/gateway/pool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	secondToken = "second-bot-token"
	secondBotID = "100000000000000002"
)

// startPool runs an emulator with two bots and a pool of both, open.
func startPool(t *testing.T, onChange func()) (*discordemu.Server, *pool.Pool) {
	t.Helper()
	emu, p, bots := newPool(t, onChange)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Open(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range bots {
		if err := b.Client.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return emu, p
}

// newPool runs an emulator with two bots and a pool of both, not open.
func newPool(t *testing.T, onChange func()) (*discordemu.Server, *pool.Pool, []pool.Bot) {
	t.Helper()
	emu, err := discordemu.Start(discordemu.Options{
		IdentifyInterval: time.Nanosecond,
		ExtraBots:        []discordemu.Bot{{Token: secondToken, UserID: secondBotID}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	o := emu.Options()
	var bots []pool.Bot
	for i, token := range []string{o.Token, secondToken} {
		c, err := gateway.New(gateway.Options{
			Token: token, GuildID: o.GuildID, CategoryID: o.CategoryID,
			APIBase: emu.URL() + "/api/v10", HTTPClient: hc,
			BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
			IdentifyInterval: time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		bots = append(bots, pool.Bot{Name: []string{"bot 1", "bot 2"}[i], Client: c, Guilds: []string{o.GuildID}})
	}
	p, err := pool.New(pool.Options{Bots: bots, OnChange: onChange})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return emu, p, bots
}

// TestOpenBotAlone: OpenBot opens one bot's gateway and leaves the others
// idle (an instance holding one bot's lease); a bot out of range and a
// closed pool are refused.
func TestOpenBotAlone(t *testing.T) {
	changed := make(chan struct{}, 4)
	_, p, bots := newPool(t, func() { changed <- struct{}{} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.OpenBot(ctx, 2, gateway.Session{}); !errors.Is(err, pool.ErrOptions) {
		t.Fatalf("OpenBot(2) of two bots: %v", err)
	}
	guild := bots[0].Guilds[0]
	if r := p.Reporter(guild, nil); r != nil {
		t.Fatal("a bot reports the guild's events before any gateway connected")
	}
	if err := p.OpenBot(ctx, 1, gateway.Session{}); err != nil {
		t.Fatal(err)
	}
	if err := bots[1].Client.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	<-changed // bot 2 is ready: the pool's capacity changed
	if st := bots[0].Client.Status().State; st != gateway.StateIdle {
		t.Fatalf("bot 1 is %s, want idle", st)
	}
	// Bot 1 leads the pool, but only bot 2 sees the guild's events.
	if r := p.Reporter(guild, nil); r != bots[1].Client {
		t.Fatal("the guild's reporter is not bot 2, the one bot connected")
	}
	if !p.Healthy() {
		t.Fatal("the pool with bot 2 ready is not healthy")
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.OpenBot(ctx, 0, gateway.Session{}); !errors.Is(err, pool.ErrClosed) {
		t.Fatalf("OpenBot after Close: %v", err)
	}
}

func TestLeasesOneBotPerRoom(t *testing.T) {
	emu, p := startPool(t, nil)
	guild := emu.Options().GuildID
	if n := p.Capacity(guild); n != 2 {
		t.Fatalf("capacity %d, want 2", n)
	}
	l1, err := p.Acquire(guild, "301")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := p.Acquire(guild, "302")
	if err != nil {
		t.Fatal(err)
	}
	if l1.Bot == l2.Bot {
		t.Fatal("two rooms got the same bot")
	}
	// The reporter is the first bot in the guild, and stays whichever it
	// is while it holds the guild.
	first := st0Client(t, p, l1, l2)
	other := l1.Bot.Client
	if other == first {
		other = l2.Bot.Client
	}
	if r := p.Reporter(guild, nil); r != first {
		t.Fatal("with no reporter yet, the first bot is not chosen")
	}
	if r := p.Reporter(guild, other); r != other {
		t.Fatal("the reporter changed while it holds the guild")
	}
	if _, err := p.Acquire(guild, "303"); !errors.Is(err, pool.ErrNoFreeBot) {
		t.Fatalf("third room: %v, want ErrNoFreeBot", err)
	}
	if _, err := p.Acquire("999", "303"); !errors.Is(err, pool.ErrNoBot) {
		t.Fatalf("unknown guild: %v, want ErrNoBot", err)
	}
	l1.Release()
	l1.Release()
	l3, err := p.Acquire(guild, "303")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if l3.Bot != l1.Bot {
		t.Fatal("the released bot was not the one leased again")
	}
	st := p.Status()
	if len(st) != 2 || st[0].Rooms[0] != "303" || st[1].Rooms[0] != "302" || !st[0].InPool || !st[1].InPool {
		t.Fatalf("status %+v", st)
	}
}

// A bot closed with 4004 leaves the pool: its lease is lost, the capacity
// shrinks, Status says why, and the other bot goes on leading.
func TestBotWithRevokedTokenLeavesThePool(t *testing.T) {
	var changes atomic.Int32
	emu, p := startPool(t, func() { changes.Add(1) })
	guild := emu.Options().GuildID
	before := changes.Load()
	l1, err := p.Acquire(guild, "301")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := p.Acquire(guild, "302")
	if err != nil {
		t.Fatal(err)
	}
	second := l2
	if l1.Bot.Name == "bot 2" {
		second = l1
	}
	if !emu.CloseBotWithCode(secondBotID, 4004, "Authentication failed.") {
		t.Fatal("the second bot had no connection")
	}
	select {
	case <-second.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease of the failed bot was not lost")
	}
	if n := p.Capacity(guild); n != 1 {
		t.Fatalf("capacity %d after the failure, want 1", n)
	}
	st := p.Status()
	if st[1].InPool || !strings.Contains(st[1].Reason, "4004") || st[0].InPool != true {
		t.Fatalf("status after the failure %+v", st)
	}
	if changes.Load() == before {
		t.Fatal("OnChange was not called for the failure")
	}
	if p.Lead() != st0Client(t, p, l1, l2) {
		t.Fatal("the failed bot still leads")
	}
	if r := p.Reporter(guild, second.Bot.Client); r != st0Client(t, p, l1, l2) {
		t.Fatal("the failed bot still reports the guild's events")
	}
	if !p.Healthy() {
		t.Fatal("the pool is not healthy with one bot ready")
	}
}

// st0Client is the first bot's gateway client.
func st0Client(t *testing.T, _ *pool.Pool, leases ...*pool.Lease) *gateway.Client {
	for _, l := range leases {
		if l.Bot.Name == "bot 1" {
			return l.Bot.Client
		}
	}
	t.Fatal("no lease of bot 1")
	return nil
}

func TestOptionsNeedBots(t *testing.T) {
	if _, err := pool.New(pool.Options{}); !errors.Is(err, pool.ErrOptions) {
		t.Fatalf("no bots: %v", err)
	}
	if _, err := pool.New(pool.Options{Bots: []pool.Bot{{Name: "x"}}}); !errors.Is(err, pool.ErrOptions) {
		t.Fatalf("no client: %v", err)
	}
}

// Add checks its bot and refuses once the pool is closed; a bot added to
// an open pool is opened and counts (the bridge's runtime re-sharding is
// the test of a whole new shard).
func TestAdd(t *testing.T) {
	emu, p := startPool(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Add(ctx, pool.Bot{Name: "empty"}); !errors.Is(err, pool.ErrOptions) {
		t.Fatalf("Add of a bot without a client: %v, want ErrOptions", err)
	}
	o := emu.Options()
	c, err := gateway.New(gateway.Options{Token: o.Token, GuildID: o.GuildID, CategoryID: o.CategoryID,
		APIBase: emu.URL() + "/api/v10", IdentifyInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Add(ctx, pool.Bot{Name: "bot 1 again", Client: c, Guilds: []string{o.GuildID}}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("the added bot's gateway: %v", err)
	}
	if st := p.Status(); len(st) != 3 || st[2].Name != "bot 1 again" {
		t.Fatalf("status after Add %+v", st)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Status().State; st != gateway.StateStopped {
		t.Fatalf("the added bot's gateway is %s after Close, want stopped", st)
	}
	if err := p.Add(ctx, pool.Bot{Name: "late", Client: c, Guilds: []string{o.GuildID}}); !errors.Is(err, pool.ErrClosed) {
		t.Fatalf("Add after Close: %v, want ErrClosed", err)
	}
}
