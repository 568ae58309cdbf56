package voice

import "time"

const (
	// reorderWindow is the span of sequence numbers the buffer tracks.
	reorderWindow = 64
	// reorderRestart is the forward jump treated as a restarted stream
	// rather than loss.
	reorderRestart = 1000
	// AudioReorderDepth and AudioReorderDelay bound how long received Opus
	// waits for a missing packet: 3 frames, 60 ms.
	AudioReorderDepth = 3
	AudioReorderDelay = 60 * time.Millisecond
)

// ReorderStats counts what a ReorderBuffer saw.
type ReorderStats struct {
	// Received counts packets accepted (not duplicate, not late).
	Received uint64
	// Lost counts sequence numbers given up on: a delivered packet's
	// Missing adds up to it.
	Lost uint64
	// Late counts packets that arrived after their place was given up.
	Late uint64
	// Duplicate counts packets received twice.
	Duplicate uint64
	// Reordered counts packets accepted after a higher sequence number.
	Reordered uint64
}

// Delivered is a packet released in sequence order. Missing is the number
// of sequence numbers given up on just before it, so a consumer can
// conceal the gap (Opus PLC) or abandon a video frame.
type Delivered[T any] struct {
	Seq     uint16
	Item    T
	Missing int
}

type slotState uint8

const (
	slotEmpty slotState = iota
	slotHeld
	slotDelivered
	slotLost
)

type reorderSlot[T any] struct {
	seq   uint16
	state slotState
	at    time.Time
	item  T
}

// ReorderBuffer puts one RTP stream back in sequence order. It holds at
// most Depth packets, none longer than MaxDelay, while waiting for a
// missing one, then gives the missing one up. Not safe for concurrent use.
type ReorderBuffer[T any] struct {
	depth    int
	maxDelay time.Duration
	slots    [reorderWindow]reorderSlot[T]
	started  bool
	next     uint16
	highest  uint16
	held     int
	missing  int
	ready    []Delivered[T]
	head     int
	stats    ReorderStats
}

// NewReorderBuffer returns a buffer holding at most depth packets (1..32)
// for at most maxDelay.
func NewReorderBuffer[T any](depth int, maxDelay time.Duration) *ReorderBuffer[T] {
	depth = max(1, min(depth, reorderWindow/2))
	return &ReorderBuffer[T]{depth: depth, maxDelay: maxDelay, ready: make([]Delivered[T], 0, reorderWindow)}
}

// Stats returns the counts so far.
func (r *ReorderBuffer[T]) Stats() ReorderStats { return r.stats }

// Push offers a packet that arrived at at. It reports false for a
// duplicate or late packet, which is counted and not kept.
func (r *ReorderBuffer[T]) Push(seq uint16, at time.Time, item T) bool {
	if !r.started {
		r.started, r.next, r.highest = true, seq, seq
	}
	diff := int(int16(seq - r.next))
	switch {
	case diff < 0:
		if diff > -reorderWindow {
			s := &r.slots[seq%reorderWindow]
			if s.seq == seq && s.state == slotDelivered {
				r.stats.Duplicate++
				return false
			}
		}
		r.stats.Late++
		return false
	case diff > reorderRestart:
		r.flush()
		r.next, r.highest, r.missing = seq, seq, 0
	case diff >= reorderWindow:
		for int(int16(seq-r.next)) >= reorderWindow {
			r.advance()
		}
	}
	s := &r.slots[seq%reorderWindow]
	if s.state == slotHeld && s.seq == seq {
		r.stats.Duplicate++
		return false
	}
	if int16(seq-r.highest) < 0 {
		r.stats.Reordered++
	} else {
		r.highest = seq
	}
	r.stats.Received++
	*s = reorderSlot[T]{seq: seq, state: slotHeld, at: at, item: item}
	r.held++
	r.release(at)
	return true
}

// Expire gives up on missing packets that have been waited for longer
// than MaxDelay at now; call it periodically while no packets arrive.
func (r *ReorderBuffer[T]) Expire(now time.Time) { r.release(now) }

// Pop returns the next packet released in order, if any.
func (r *ReorderBuffer[T]) Pop() (Delivered[T], bool) {
	if r.head == len(r.ready) {
		r.ready, r.head = r.ready[:0], 0
		var zero Delivered[T]
		return zero, false
	}
	d := r.ready[r.head]
	var zero Delivered[T]
	r.ready[r.head] = zero
	r.head++
	return d, true
}

// advance moves past r.next: delivers it if held, else counts it lost.
func (r *ReorderBuffer[T]) advance() {
	s := &r.slots[r.next%reorderWindow]
	if s.state == slotHeld && s.seq == r.next {
		r.ready = append(r.ready, Delivered[T]{Seq: r.next, Item: s.item, Missing: r.missing})
		var zero T
		s.item, s.state = zero, slotDelivered
		r.held--
		r.missing = 0
	} else {
		*s = reorderSlot[T]{seq: r.next, state: slotLost}
		r.stats.Lost++
		r.missing++
	}
	r.next++
}

// release delivers what is in order and gives up the missing head when
// too many packets or too old a packet wait behind it.
func (r *ReorderBuffer[T]) release(now time.Time) {
	for r.held > 0 {
		s := &r.slots[r.next%reorderWindow]
		if (s.state == slotHeld && s.seq == r.next) || r.held > r.depth || now.Sub(r.oldest()) >= r.maxDelay {
			r.advance()
			continue
		}
		return
	}
}

// flush delivers every held packet in order (a restarted stream).
func (r *ReorderBuffer[T]) flush() {
	for r.held > 0 {
		s := &r.slots[r.next%reorderWindow]
		if s.state == slotHeld && s.seq == r.next {
			r.advance()
			continue
		}
		// Gaps before the restart are not counted as loss.
		*s = reorderSlot[T]{seq: r.next, state: slotLost}
		r.next++
	}
}

// oldest is the arrival time of the longest-held packet.
func (r *ReorderBuffer[T]) oldest() time.Time {
	var t time.Time
	for i := range r.slots {
		s := &r.slots[i]
		if s.state == slotHeld && (t.IsZero() || s.at.Before(t)) {
			t = s.at
		}
	}
	return t
}
