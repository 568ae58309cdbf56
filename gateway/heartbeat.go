package gateway

import (
	"math/rand/v2"
	"time"
)

// heartbeat is the liveness state of one connection, owned by the run
// goroutine (Discord docs, Gateway, Sending Heartbeats): the first beat
// goes after interval × jitter, then one every interval; a beat that comes
// due while the previous one is unacknowledged means a zombie connection.
type heartbeat struct {
	interval time.Duration
	timer    *time.Timer
	acked    bool
	sentAt   time.Time
	latency  time.Duration
}

// newHeartbeat arms the first beat after interval × jitter, jitter in [0,1).
func newHeartbeat(interval time.Duration, jitter float64) *heartbeat {
	return &heartbeat{
		interval: interval,
		timer:    time.NewTimer(time.Duration(float64(interval) * jitter)),
		acked:    true,
	}
}

// firstBeatJitter is the random factor of the first beat.
func firstBeatJitter() float64 { return rand.Float64() }

// due is called when the timer fired. It reports false when the last beat
// was never acknowledged: the connection is a zombie and must be closed.
func (h *heartbeat) due() bool { return h.acked }

// sent records a beat sent at now; a regular beat re-arms the timer.
func (h *heartbeat) sent(now time.Time, regular bool) {
	h.acked = false
	h.sentAt = now
	if regular {
		h.timer.Reset(h.interval)
	}
}

// ack records op 11 and returns the round-trip time of the last beat.
func (h *heartbeat) ack(now time.Time) time.Duration {
	if !h.acked && !h.sentAt.IsZero() {
		h.latency = now.Sub(h.sentAt)
	}
	h.acked = true
	return h.latency
}

func (h *heartbeat) stop() { h.timer.Stop() }
