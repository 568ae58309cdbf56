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
// one bucket one after the other, a window apart counted from Discord's
// answer to the identify (a gateway times an identify when it reads it,
// which may be well after the send). The clients of one bot's shards share one queue
// (Options.Identify). The zero value is not usable; call
// NewIdentifyQueue.
type IdentifyQueue struct {
	mu      sync.Mutex
	buckets map[int]*identifyBucket
	changed chan struct{} // closed and replaced when a bucket frees
}

// identifyBucket is one max_concurrency bucket. Guarded by
// IdentifyQueue.mu.
type identifyBucket struct {
	next time.Time // the earliest time its next identify may be sent
	busy bool      // an identify of the bucket is under way (dial, Hello)
}

// NewIdentifyQueue returns an empty queue.
func NewIdentifyQueue() *IdentifyQueue {
	return &IdentifyQueue{buckets: make(map[int]*identifyBucket), changed: make(chan struct{})}
}

// wait blocks until shard's bucket is free (no identify of it under way,
// the window since the last one over), takes it and returns the function
// that gives it back: sent true once an identify went out and was
// answered or its connection ended (the window starts then), false when
// the attempt ended before sending one. It returns ctx's error if ctx
// ends first.
func (q *IdentifyQueue) wait(ctx context.Context, shard, maxConcurrency int, window time.Duration) (func(sent bool), error) {
	key := shard % max(1, maxConcurrency)
	for {
		q.mu.Lock()
		b := q.buckets[key]
		if b == nil {
			b = &identifyBucket{}
			q.buckets[key] = b
		}
		now := time.Now()
		if !b.busy && !now.Before(b.next) {
			b.busy = true
			q.mu.Unlock()
			var once sync.Once
			return func(sent bool) { once.Do(func() { q.release(b, sent, window) }) }, nil
		}
		changed := q.changed
		var timer *time.Timer
		var due <-chan time.Time // nil while busy: wait for the release
		if !b.busy {
			timer = time.NewTimer(b.next.Sub(now))
			due = timer.C
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			err := ctx.Err()
			if timer != nil {
				timer.Stop()
			}
			return nil, err
		case <-changed:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

func (q *IdentifyQueue) release(b *identifyBucket, sent bool, window time.Duration) {
	q.mu.Lock()
	b.busy = false
	if sent {
		b.next = time.Now().Add(window)
	}
	close(q.changed)
	q.changed = make(chan struct{})
	q.mu.Unlock()
}
