// Package lease holds a bot's gateway connection (one shard) for one
// instance of a bridge spread over several: a lease in Redis with a
// fencing token. Discord gives a shard's events to one session, and a
// second identify ends the first, so exactly one instance may run a
// shard's gateway at a time; the lease says which. The holder renews it
// while healthy; when it dies the lease expires and another instance takes
// it, with a larger token. Every write the holder makes on the lease's
// behalf (the gateway session it saves, the events it publishes) is
// checked in Redis against the lease's current value, so a holder that
// lost the lease without knowing (paused, partitioned) cannot overwrite
// the state of the one that took over ("fencing", Kleppmann, "How to do
// distributed locking", 2016).
//
// Keys, for a lease named K: K holds "<token>/<owner>" with the TTL;
// K:fence is the counter tokens come from (INCR, never reset); K:session
// is a hash of the state the holder saved (field "session") and the token
// that saved it (field "token").
package lease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors of package lease.
var (
	// ErrOptions means Options were incomplete; the text names the field.
	ErrOptions = errors.New("lease: invalid options")
	// ErrNotHeld means the lease is not (or no longer) held with the
	// token given: another instance took it, or it expired.
	ErrNotHeld = errors.New("lease: not held")
)

// Options configure a Lease.
type Options struct {
	// Client is the Redis connection; the lease does not close it.
	Client redis.UniversalClient
	// Key names the lease, such as "bridge:<guild>:gateway:<bot>:<shard>".
	Key string
	// Owner names this instance in the lease's value (for operators).
	Owner string
	// TTL is how long the lease outlives its last renewal.
	TTL time.Duration
}

// Lease is one lease as seen by one instance. Its methods are safe for
// concurrent use; it keeps no state but its options: every answer comes
// from Redis.
type Lease struct{ o Options }

// Held is a lease this instance took: the token and the value the key
// holds while the lease is its.
type Held struct {
	Key   string
	Token int64
	Value string // "<token>/<owner>"
}

// New checks opts.
func New(o Options) (*Lease, error) {
	switch {
	case o.Client == nil:
		return nil, fmt.Errorf("%w: Client is required", ErrOptions)
	case o.Key == "":
		return nil, fmt.Errorf("%w: Key is required", ErrOptions)
	case o.Owner == "" || strings.Contains(o.Owner, "/"):
		return nil, fmt.Errorf("%w: Owner %q must be non-empty and without '/'", ErrOptions, o.Owner)
	case o.TTL < time.Millisecond:
		return nil, fmt.Errorf("%w: TTL %v is below 1ms", ErrOptions, o.TTL)
	}
	return &Lease{o: o}, nil
}

// Key is the lease's Redis key.
func (l *Lease) Key() string { return l.o.Key }

// acquire takes the lease if no one holds it: a new token from the fence
// counter, then SET PX. One script, so a token is drawn only for a lease
// actually taken.
var acquire = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
local t = redis.call("INCR", KEYS[2])
redis.call("SET", KEYS[1], t .. "/" .. ARGV[1], "PX", ARGV[2])
return t`)

// renew extends the lease if it still holds our value.
var renew = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end
return 0`)

// release gives the lease up if it still holds our value.
var release = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`)

// save writes the session hash if the lease still holds our value and no
// later token wrote it.
var save = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
local t = tonumber(redis.call("HGET", KEYS[2], "token") or "0")
if t > tonumber(ARGV[2]) then return 0 end
redis.call("HSET", KEYS[2], "token", ARGV[2], "session", ARGV[3])
return 1`)

// Acquire takes the lease if it is free. ok is false when another holds
// it.
func (l *Lease) Acquire(ctx context.Context) (h Held, ok bool, err error) {
	t, err := acquire.Run(ctx, l.o.Client, []string{l.o.Key, l.o.Key + ":fence"}, l.o.Owner, l.o.TTL.Milliseconds()).Int64()
	if err != nil || t == 0 {
		return Held{}, false, err
	}
	return Held{Key: l.o.Key, Token: t, Value: strconv.FormatInt(t, 10) + "/" + l.o.Owner}, true, nil
}

// Renew extends h by the TTL; ErrNotHeld if it was lost.
func (l *Lease) Renew(ctx context.Context, h Held) error {
	n, err := renew.Run(ctx, l.o.Client, []string{l.o.Key}, h.Value, l.o.TTL.Milliseconds()).Int()
	switch {
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("%w: %s (token %d)", ErrNotHeld, l.o.Key, h.Token)
	}
	return nil
}

// Release gives h up at once, so another instance need not wait for the
// TTL. Releasing a lease already lost is not an error.
func (l *Lease) Release(ctx context.Context, h Held) error {
	return release.Run(ctx, l.o.Client, []string{l.o.Key}, h.Value).Err()
}

// Holder reads who holds the lease now: its token and owner, or ok false
// when no one does.
func (l *Lease) Holder(ctx context.Context) (token int64, owner string, ok bool, err error) {
	v, err := l.o.Client.Get(ctx, l.o.Key).Result()
	if errors.Is(err, redis.Nil) {
		return 0, "", false, nil
	}
	if err != nil {
		return 0, "", false, err
	}
	ts, owner, _ := strings.Cut(v, "/")
	token, _ = strconv.ParseInt(ts, 10, 64)
	return token, owner, true, nil
}

// Save stores state (the gateway session) under h; ErrNotHeld when h is no
// longer the lease's holder, or a later holder wrote already.
func (l *Lease) Save(ctx context.Context, h Held, state []byte) error {
	n, err := save.Run(ctx, l.o.Client, []string{l.o.Key, l.o.Key + ":session"}, h.Value, h.Token, state).Int()
	switch {
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("%w: %s (token %d): the session was not saved", ErrNotHeld, l.o.Key, h.Token)
	}
	return nil
}

// Load reads the state last saved and the token that saved it; nil state
// when none was.
func (l *Lease) Load(ctx context.Context) (state []byte, token int64, err error) {
	v, err := l.o.Client.HMGet(ctx, l.o.Key+":session", "token", "session").Result()
	if err != nil {
		return nil, 0, err
	}
	ts, _ := v[0].(string)
	s, _ := v[1].(string)
	if s == "" {
		return nil, 0, nil
	}
	token, _ = strconv.ParseInt(ts, 10, 64)
	return []byte(s), token, nil
}
