package hub

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkBusDelivery is the hub's event delivery with 3,000 sockets, in
// one run: on one instance with the in-process bus (the default, no
// Redis), on one instance with a RedisBus (the cost of the stream alone),
// and spread over three instances sharing one Redis stream (1,000 sockets
// each, events published on the first). The instances are hub.Hub values
// in this process, each with its own RedisBus and Redis connection, on one
// real redis-server; the sockets are gorilla clients in three child
// processes of 1,000 (loadgen_test.go; with three instances one process
// per instance, with one all three on it), each checking it reads every
// event once and in order.
//
// paced publishes an event once every socket on every instance has the
// previous one (a lone event's fan-out latency); burst keeps up to two
// windows of 64 events in flight (throughput). Latency is from Publish to
// a socket's read (the payload carries the send time), p50/p99 over every
// delivery on every instance.
//
// sockets=3 (one per child process) is the floor: the bus's own round trip
// without the fan-out to many sockets.
func BenchmarkBusDelivery(b *testing.B) {
	for _, sockets := range []int{3, 3000} {
		benchBusDeliveries(b, sockets)
	}
}

func benchBusDeliveries(b *testing.B, sockets int) {
	for _, setup := range []struct {
		name      string
		instances int
		redis     bool
	}{
		{"bus=local/instances=1", 1, false},
		{"bus=redis/instances=1", 1, true},
		{"bus=redis/instances=3", 3, true},
	} {
		for _, mode := range []struct {
			name   string
			window int
		}{{"paced", 1}, {"burst", 64}} {
			b.Run(fmt.Sprintf("%s/sockets=%d/mode=%s", setup.name, sockets, mode.name), func(b *testing.B) {
				benchBusDelivery(b, setup.instances, setup.redis, sockets, mode.window)
			})
		}
	}
}

func benchBusDelivery(b *testing.B, instances int, useRedis bool, sockets, window int) {
	// This process holds the hub's end of each socket (the clients are in
	// children), plus Redis connections and the HTTP listeners.
	raiseFDLimit(b, uint64(sockets+1024))
	var envs []*env
	var buses []*RedisBus
	if !useRedis {
		envs = append(envs, newEnv(b, func(o *Options) { o.SocketsPerUser = 1 << 20 }))
	} else {
		rs := startRedis(b)
		for i := range instances {
			bus := newRedisBus(b, rs.URL(), fmt.Sprintf("i%d", i+1), nil)
			envs = append(envs, newEnv(b, func(o *Options) {
				o.Bus = bus
				o.SocketsPerUser = 1 << 20
			}))
			waitBusAtEnd(b, bus)
			buses = append(buses, bus)
		}
	}
	// The clients are in three child processes whatever the number of
	// instances, so that the client side costs the same in every setup:
	// with one instance all three connect to it.
	const groups = 3
	per := sockets / groups
	var gens []*loadgen
	for g := range groups {
		gens = append(gens, startLoadgen(b, envs[g%len(envs)], per, window))
	}
	waitAll := func(w int) {
		for _, lg := range gens {
			lg.waitWindow(b, w)
		}
	}
	// In burst mode the publisher runs one window ahead; paced, none.
	ahead := 1
	if window == 1 {
		ahead = 0
	}
	b.ResetTimer()
	start := time.Now()
	waited := -1
	for i := range b.N {
		envs[0].hub.Publish("bench", loadEvent{Seq: i, Sent: time.Now().UnixNano()})
		if w := i / window; (i+1)%window == 0 && w >= ahead {
			waitAll(w - ahead)
			waited = w - ahead
		}
	}
	// Pad to a window boundary so the last events are counted.
	last := b.N
	for last%window != 0 {
		envs[0].hub.Publish("bench", loadEvent{Seq: last, Sent: time.Now().UnixNano()})
		last++
	}
	for w := waited + 1; w <= last/window-1; w++ {
		waitAll(w)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	var hist latencyHist
	for _, lg := range gens {
		h := lg.stop(b)
		if h == nil {
			continue
		}
		for i := range h.buckets {
			hist.buckets[i].Add(h.buckets[i].Load())
		}
	}
	// Every instance queued every event for each of its sockets, and the
	// bus neither dropped nor duplicated one.
	for i, e := range envs {
		want := uint64(last * sockets / len(envs))
		if st := e.hub.Stats(); st.Delivered != want || st.Dropped != 0 {
			b.Errorf("instance %d: delivered %d, dropped %d; want %d, 0", i+1, st.Delivered, st.Dropped, want)
		}
	}
	for i, bus := range buses {
		if st := bus.Stats(); st.Delivered != uint64(last) || st.Duplicates != 0 || st.Dropped != 0 || st.Resyncs != 0 {
			b.Errorf("instance %d bus: %+v, want %d delivered and nothing dropped, duplicated or resynced", i+1, st, last)
		}
	}
	b.ReportMetric(float64(last)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(last)*float64(sockets)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(hist.quantile(0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(hist.quantile(0.99).Microseconds()), "p99-µs")
}
