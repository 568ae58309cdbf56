package gateway

import (
	"context"
	"sync"
	"time"
)

// IdentifyQueue paces the identifies of one bot's shards. Discord lets a
// bot start max_concurrency sessions per 5 s, one per rate-limit bucket,
// the bucket of shard shard_id % max_concurrency (Gateway, "Max
// Concurrency"): shards of different buckets identify together, those of
// one bucket one after the other. The clients of one bot's shards share
// one queue (Options.Identify). The zero value is not usable; call
// NewIdentifyQueue.
type IdentifyQueue struct {
	mu   sync.Mutex
	next map[int]time.Time // bucket -> the earliest time its next identify may go
}

// NewIdentifyQueue returns an empty queue.
func NewIdentifyQueue() *IdentifyQueue {
	return &IdentifyQueue{next: make(map[int]time.Time)}
}

// wait reserves shard's next identify slot in its bucket and sleeps until
// it comes: now when the bucket is free, else window after the bucket's
// previous identify. It returns ctx's error if ctx ends first (the slot
// stays taken: a lost slot only delays the bucket by one window).
func (q *IdentifyQueue) wait(ctx context.Context, shard, maxConcurrency int, window time.Duration) error {
	bucket := shard % max(1, maxConcurrency)
	now := time.Now()
	q.mu.Lock()
	at := now
	if n := q.next[bucket]; n.After(at) {
		at = n
	}
	q.next[bucket] = at.Add(window)
	q.mu.Unlock()
	return sleepCtx(ctx, time.Until(at))
}
