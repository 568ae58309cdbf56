package discordemu

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Rate limits (developers/topics/rate-limits.mdx). Discord does not publish
// its per-route numbers ("should not be hard coded"); the emulator uses
// these, per route and top-level resource (guild or channel id):
//
//	POST   /guilds/{guild.id}/channels   Options.ChannelRateLimit (default 5) per 1 s
//	DELETE /channels/{channel.id}        Options.ChannelRateLimit (default 5) per 1 s
//	every other route                   50 per 1 s
//
// plus the documented global limit of 50 requests per second per bot.
const (
	globalLimit  = 50
	globalWindow = time.Second
)

// routeLimit is a per-route bucket's size.
type routeLimit struct {
	limit  int
	window time.Duration
}

var (
	limitDefault = routeLimit{limit: 50, window: time.Second}
)

// bucket is a fixed-window counter for one route and top-level resource.
type bucket struct {
	hash         string
	limit        int
	window       time.Duration
	count        int
	resetAt      time.Time
	blockedUntil time.Time
}

type scripted429 struct {
	method, prefix string
	retryAfter     time.Duration
	global         bool
}

// rateLimiter holds every bucket; guarded by Server.mu.
type rateLimiter struct {
	buckets            map[string]*bucket
	globalCount        int
	globalReset        time.Time
	globalBlockedUntil time.Time
	scripts            []scripted429
}

func newRateLimiter() *rateLimiter {
	return &rateLimiter{buckets: make(map[string]*bucket)}
}

func (rl *rateLimiter) script(method, prefix string, retryAfter time.Duration, global bool) {
	rl.scripts = append(rl.scripts, scripted429{method: strings.ToUpper(method), prefix: stripVersion(prefix), retryAfter: retryAfter, global: global})
}

// limitResult is the limiter's verdict on one request.
type limitResult struct {
	ok         bool
	header     http.Header
	retryAfter time.Duration
	global     bool
}

func bucketHash(route string) string {
	sum := sha256.Sum256([]byte(route))
	return hex.EncodeToString(sum[:8])
}

func (rl *rateLimiter) bucketFor(now time.Time, route, major string, lim routeLimit) *bucket {
	key := route + "\x00" + major
	b, ok := rl.buckets[key]
	if !ok {
		b = &bucket{hash: bucketHash(route), limit: lim.limit, window: lim.window}
		rl.buckets[key] = b
	}
	if !now.Before(b.resetAt) {
		b.count = 0
		b.resetAt = now.Add(b.window)
	}
	return b
}

// peek reports a bucket's headers without counting a request (for answers
// that never reach the limiter, such as 401).
func (rl *rateLimiter) peek(now time.Time, route, major string, lim routeLimit) http.Header {
	b := rl.bucketFor(now, route, major, lim)
	return b.headers(now)
}

// take counts a request against its bucket and the global limit, applying
// any scripted 429 first.
func (rl *rateLimiter) take(now time.Time, method, path, route, major string, lim routeLimit) limitResult {
	b := rl.bucketFor(now, route, major, lim)
	for i, sc := range rl.scripts {
		if (sc.method == "" || sc.method == method) && strings.HasPrefix(path, sc.prefix) {
			rl.scripts = append(rl.scripts[:i], rl.scripts[i+1:]...)
			if sc.global {
				rl.globalBlockedUntil = now.Add(sc.retryAfter)
			} else {
				b.blockedUntil = now.Add(sc.retryAfter)
			}
			break
		}
	}
	if !now.Before(rl.globalReset) {
		rl.globalCount = 0
		rl.globalReset = now.Add(globalWindow)
	}
	switch {
	case now.Before(rl.globalBlockedUntil):
		return rl.refuse(now, b, rl.globalBlockedUntil, true)
	case now.Before(b.blockedUntil):
		return rl.refuse(now, b, b.blockedUntil, false)
	case rl.globalCount >= globalLimit:
		return rl.refuse(now, b, rl.globalReset, true)
	case b.count >= b.limit:
		return rl.refuse(now, b, b.resetAt, false)
	}
	b.count++
	rl.globalCount++
	return limitResult{ok: true, header: b.headers(now)}
}

func (rl *rateLimiter) refuse(now time.Time, b *bucket, until time.Time, global bool) limitResult {
	retry := until.Sub(now)
	h := b.headers(now)
	h.Set("X-RateLimit-Remaining", "0")
	// Reset-After on a global 429 makes clients such as discordgo hold all
	// buckets, which is what the global limit means.
	h.Set("X-RateLimit-Reset", formatSeconds(float64(until.UnixMilli())/1000))
	h.Set("X-RateLimit-Reset-After", formatSecondsUp(retry))
	h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(retry.Seconds())), 10))
	if global {
		h.Set("X-RateLimit-Global", "true")
		h.Set("X-RateLimit-Scope", "global")
	} else {
		h.Set("X-RateLimit-Scope", "user")
	}
	return limitResult{header: h, retryAfter: retry, global: global}
}

// headers are the documented X-RateLimit-* headers ("Header Format").
func (b *bucket) headers(now time.Time) http.Header {
	reset := b.resetAt
	if b.blockedUntil.After(reset) {
		reset = b.blockedUntil
	}
	remaining := b.limit - b.count
	if remaining < 0 {
		remaining = 0
	}
	h := http.Header{}
	h.Set("X-RateLimit-Limit", strconv.Itoa(b.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", formatSeconds(float64(reset.UnixMilli())/1000))
	h.Set("X-RateLimit-Reset-After", formatSecondsUp(reset.Sub(now)))
	h.Set("X-RateLimit-Bucket", b.hash)
	return h
}

func formatSeconds(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

// formatSecondsUp rounds up to the millisecond so that a client waiting
// exactly that long is never early.
func formatSecondsUp(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return formatSeconds(float64(ms) / 1000)
}

// retryAfterSeconds is the 429 body's retry_after, in seconds, rounded up
// to the millisecond.
func retryAfterSeconds(d time.Duration) float64 {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return float64(ms) / 1000
}

// stripVersion removes a leading /api/vN from a path.
func stripVersion(p string) string {
	if rest, ok := strings.CutPrefix(p, "/api/v"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			return rest[i:]
		}
		return "/"
	}
	return p
}
