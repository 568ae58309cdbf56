package lease

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voicebridge/bridge/internal/redistest"
)

func newClient(t *testing.T) *redis.Client {
	t.Helper()
	srv, err := redistest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	o, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newLease(t *testing.T, c redis.UniversalClient, owner string, ttl time.Duration) *Lease {
	t.Helper()
	l, err := New(Options{Client: c, Key: "bridge:g:gateway:bot1:0", Owner: owner, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestTakeRenewRelease: one instance takes the free lease, a second cannot
// while it is held or renewed, and takes it (with a larger token) at once
// after a release.
func TestTakeRenewRelease(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	a, b := newLease(t, c, "a", time.Minute), newLease(t, c, "b", time.Minute)
	ha, ok, err := a.Acquire(ctx)
	if err != nil || !ok || ha.Token != 1 || ha.Value != "1/a" {
		t.Fatalf("first acquire: %+v %v %v", ha, ok, err)
	}
	if _, ok, err := b.Acquire(ctx); err != nil || ok {
		t.Fatalf("second acquire while held: ok=%v err=%v", ok, err)
	}
	if err := a.Renew(ctx, ha); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, a.Key()).Val(); ttl < 59*time.Second {
		t.Fatalf("TTL after renew %v, want about a minute", ttl)
	}
	if tok, owner, ok, err := b.Holder(ctx); err != nil || !ok || tok != 1 || owner != "a" {
		t.Fatalf("holder %d %q %v %v", tok, owner, ok, err)
	}
	if err := a.Release(ctx, ha); err != nil {
		t.Fatal(err)
	}
	hb, ok, err := b.Acquire(ctx)
	if err != nil || !ok || hb.Token != 2 {
		t.Fatalf("acquire after release: %+v %v %v", hb, ok, err)
	}
	// A release of a lease lost changes nothing.
	if err := a.Release(ctx, ha); err != nil {
		t.Fatal(err)
	}
	if tok, owner, ok, _ := a.Holder(ctx); !ok || tok != 2 || owner != "b" {
		t.Fatalf("after a stale release the holder is %d %q %v", tok, owner, ok)
	}
	if err := a.Renew(ctx, ha); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("renew of a lost lease: %v, want ErrNotHeld", err)
	}
}

// TestLostOnExpiryAndFenced: a holder that stops renewing loses the lease
// when its TTL passes; another takes it with a larger token; the first
// can then neither renew nor save over the second's state, even though it
// still believes itself the holder.
func TestLostOnExpiryAndFenced(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	a, b := newLease(t, c, "a", 200*time.Millisecond), newLease(t, c, "b", 200*time.Millisecond)
	ha, ok, err := a.Acquire(ctx)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := a.Save(ctx, ha, []byte(`{"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var hb Held
	for {
		if hb, ok, err = b.Acquire(ctx); err != nil {
			t.Fatal(err)
		} else if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease never expired")
		}
		time.Sleep(20 * time.Millisecond) // polling Redis for the expiry
	}
	if hb.Token <= ha.Token {
		t.Fatalf("token after takeover %d, want above %d", hb.Token, ha.Token)
	}
	if err := a.Renew(ctx, ha); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("renew after expiry: %v, want ErrNotHeld", err)
	}
	state, tok, err := b.Load(ctx)
	if err != nil || string(state) != `{"seq":1}` || tok != ha.Token {
		t.Fatalf("the new holder loads %q (token %d) %v, want what the first saved", state, tok, err)
	}
	if err := b.Save(ctx, hb, []byte(`{"seq":5}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(ctx, ha, []byte(`{"seq":2}`)); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("stale holder's save: %v, want ErrNotHeld", err)
	}
	if state, tok, _ := b.Load(ctx); string(state) != `{"seq":5}` || tok != hb.Token {
		t.Fatalf("after the stale save the state is %q (token %d), want the new holder's", state, tok)
	}
	// Even with the lease free again, an old token writes nothing: the
	// value it holds is not the old holder's.
	if err := b.Release(ctx, hb); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(ctx, ha, []byte(`{"seq":3}`)); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("save of a released lease: %v, want ErrNotHeld", err)
	}
}

// TestSaveRefusesOlderToken: a holder whose token is below the one that
// last saved cannot write, even holding the key (a lease re-taken after a
// Redis restart lost the newer value but kept the session hash).
func TestSaveRefusesOlderToken(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	a := newLease(t, c, "a", time.Minute)
	c.HSet(ctx, a.Key()+":session", "token", "9", "session", "newer")
	h, ok, err := a.Acquire(ctx)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := a.Save(ctx, h, []byte("older")); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("save with token %d over token 9: %v", h.Token, err)
	}
	if s, _, _ := a.Load(ctx); string(s) != "newer" {
		t.Fatalf("state %q", s)
	}
}

// TestOptions: missing options are named.
func TestOptions(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, o := range []Options{
		{Key: "k", Owner: "a", TTL: time.Second},
		{Client: c, Owner: "a", TTL: time.Second},
		{Client: c, Key: "k", Owner: "a/b", TTL: time.Second},
		{Client: c, Key: "k", Owner: "a"},
	} {
		if _, err := New(o); !errors.Is(err, ErrOptions) {
			t.Errorf("New(%+v): %v, want ErrOptions", o, err)
		}
	}
}
