package media

import "sync"

// action is one change to a room, applied by the room's owner goroutine
// (room.run), which alone reads and writes the room's state. Signaling,
// the voice link, the sessions' goroutines and timers post actions rather
// than touch that state. A new kind of change is a new action type.
type action interface {
	apply(r *room)
}

// mailbox is a room's queue of actions: unbounded, so posting never
// blocks (a poster may be a pion callback or hold the manager's registry
// lock), and closed once the room's goroutine is gone. Only signaling
// volume fills it; per-packet work never goes through it.
type mailbox struct {
	mu     sync.Mutex
	q      []action
	closed bool
	wake   chan struct{} // capacity 1: there is something to take
}

func newMailbox() *mailbox { return &mailbox{wake: make(chan struct{}, 1)} }

// post queues a; it reports false when the room is gone.
func (b *mailbox) post(a action) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	b.q = append(b.q, a)
	b.mu.Unlock()
	kick(b.wake)
	return true
}

// take returns the queued actions, oldest first.
func (b *mailbox) take() []action {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.q
	b.q = nil
	return q
}

// closeIfEmpty closes the mailbox unless actions are waiting; it reports
// whether it closed.
func (b *mailbox) closeIfEmpty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.q) > 0 {
		return false
	}
	b.closed = true
	return true
}

// close closes the mailbox for good; actions still queued are dropped
// (their posters wait on the room's done channel, not on them).
func (b *mailbox) close() {
	b.mu.Lock()
	b.closed = true
	b.q = nil
	b.mu.Unlock()
}
