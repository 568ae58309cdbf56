package gateway

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Gateway send limit (Discord docs, Gateway, Rate Limiting): 120 events per
// 60 seconds per connection.
const (
	sendLimit  = 120
	sendWindow = 60 * time.Second
)

// commandLimiter keeps the client's own commands (op 4) inside the gateway
// send limit while reserving room for what must always go out: heartbeats
// and one Identify or Resume. It is a sliding window over the send times
// of commands; heartbeats are not counted here, they are budgeted by
// the reserve instead. It is shared by all connections of a client, which
// only makes it stricter than the per-connection limit.
type commandLimiter struct {
	mu      sync.Mutex
	budget  int
	window  time.Duration
	sent    []time.Time // send times within the window, oldest first
	nowFunc func() time.Time
}

func newCommandLimiter() *commandLimiter {
	l := &commandLimiter{window: sendWindow, nowFunc: time.Now}
	l.setInterval(41250 * time.Millisecond)
	return l
}

// setInterval sizes the reserve from a connection's heartbeat interval:
// the beats that fit in a window, plus one server-requested beat and one
// Identify/Resume. At least half the limit stays for commands.
func (l *commandLimiter) setInterval(interval time.Duration) {
	reserve := sendLimit / 2
	if interval > 0 {
		reserve = min(int((sendWindow+interval-1)/interval)+2, sendLimit/2)
	}
	l.mu.Lock()
	l.budget = sendLimit - reserve
	l.mu.Unlock()
}

// reserve takes a slot now if one is free and returns 0, or returns how
// long to wait before trying again.
func (l *commandLimiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.nowFunc()
	cut := 0
	for cut < len(l.sent) && now.Sub(l.sent[cut]) >= l.window {
		cut++
	}
	l.sent = l.sent[cut:]
	if len(l.sent) < l.budget {
		l.sent = append(l.sent, now)
		return 0
	}
	return l.window - now.Sub(l.sent[0])
}

// wait blocks until a slot is taken or ctx ends.
func (l *commandLimiter) wait(ctx context.Context) error {
	for {
		d := l.reserve()
		if d <= 0 {
			return nil
		}
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

// backoff is capped, jittered exponential backoff: attempt n waits a
// random time in [d/2, d) with d = min(max, min×2^n).
type backoff struct {
	min, max time.Duration
}

func (b backoff) delay(attempt int) time.Duration {
	d := b.min
	for i := 0; i < attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// randBetween returns a uniformly random duration in [lo, hi].
func randBetween(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + rand.N(hi-lo+1)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
