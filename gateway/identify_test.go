package gateway

import (
	"context"
	"testing"
	"time"
)

// Shards of different max_concurrency buckets identify at once; a second
// identify of one bucket waits for the bucket's window.
func TestIdentifyQueueBuckets(t *testing.T) {
	q := NewIdentifyQueue()
	const window = time.Hour
	for _, shard := range []int{0, 1} { // buckets 0 and 1 of 2
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := q.wait(ctx, shard, 2, window); err != nil {
			t.Fatalf("shard %d, the first of its bucket, waited: %v", shard, err)
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.wait(ctx, 2, 2, window); err == nil {
		t.Fatal("shard 2, in shard 0's bucket, identified within the bucket's window")
	}
	if err := q.wait(context.Background(), 3, 4, window); err != nil {
		t.Fatalf("shard 3, bucket 3 of 4, is free: %v", err)
	}
}
