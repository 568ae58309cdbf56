package hub

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkBusDelivery is the hub's event delivery latency with 3,000
// sockets, on one instance (the in-process bus) and spread over three
// instances sharing a Redis stream (1,000 sockets each, events published
// on the first), in one run. Each event is published once every socket
// has the previous one (paced): p50/p99 are a lone event's latency from
// Publish to a socket's read, on every instance.
func BenchmarkBusDelivery(b *testing.B) {
	const sockets = 3000
	for _, instances := range []int{1, 3} {
		b.Run(fmt.Sprintf("instances=%d/sockets=%d", instances, sockets), func(b *testing.B) {
			var envs []*env
			if instances == 1 {
				envs = append(envs, newEnv(b, nil))
			} else {
				rs := startRedis(b)
				for i := range instances {
					bus := newRedisBus(b, rs.URL(), fmt.Sprintf("i%d", i+1), nil)
					envs = append(envs, newEnv(b, func(o *Options) { o.Bus = bus }))
					waitBusAtEnd(b, bus)
				}
			}
			var gens []*loadgen
			for _, e := range envs {
				gens = append(gens, startLoadgen(b, e, sockets/instances, 1))
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				envs[0].hub.Publish("bench", loadEvent{Seq: i, Sent: time.Now().UnixNano()})
				for _, lg := range gens {
					lg.waitWindow(b, i)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			var hist latencyHist
			for _, lg := range gens {
				h := lg.stop(b)
				for i := range h.buckets {
					hist.buckets[i].Add(h.buckets[i].Load())
				}
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(hist.quantile(0.50).Microseconds()), "p50-µs")
			b.ReportMetric(float64(hist.quantile(0.99).Microseconds()), "p99-µs")
		})
	}
}
