package gateway

import (
	"context"
	"testing"
	"time"
)

// Shards of different max_concurrency buckets identify at once; an
// identify of a bucket waits while another of it is under way, and for
// the window after one was sent; an attempt that sent none frees the
// bucket at once.
func TestIdentifyQueueBuckets(t *testing.T) {
	q := NewIdentifyQueue()
	const window = time.Hour
	take := func(shard, maxConcurrency int) (func(bool), error) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return q.wait(ctx, shard, maxConcurrency, window)
	}
	first, err := take(0, 2)
	if err != nil {
		t.Fatalf("shard 0, the first of bucket 0: %v", err)
	}
	if _, err := take(1, 2); err != nil {
		t.Fatalf("shard 1, bucket 1, is free: %v", err)
	}
	if _, err := take(2, 2); err == nil {
		t.Fatal("shard 2 took bucket 0 while shard 0's identify was under way")
	}
	first(false) // shard 0's attempt ended before its identify
	again, err := take(2, 2)
	if err != nil {
		t.Fatalf("bucket 0 after an attempt without identify: %v", err)
	}
	again(true)
	if _, err := take(0, 2); err == nil {
		t.Fatal("bucket 0 taken again within the window of an identify sent")
	}
}
