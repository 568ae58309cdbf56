package hub

import "sync/atomic"

// Bus carries the hub's published events to every instance of one bridge,
// this one included. The hub encodes an event once and hands the bytes to
// Publish; the bus hands them back, in one order for every instance, to
// the deliver function given to Start, which fans them out to the
// instance's sockets. Without Options.Bus the hub uses an in-process bus
// that delivers at once: one process, nothing to install.
type Bus interface {
	// Start begins delivering: deliver is called with each event's
	// encoded message on one goroutine, in order, exactly once per
	// instance; resync is called when the bus knows events were lost
	// (an outage outlasted its retention), so that the hub can tell its
	// sockets. Start is called once, by New.
	Start(deliver func(msg []byte), resync func())
	// Publish queues msg for every instance. It must not block on the
	// network, and must not keep msg beyond delivering it (it is not
	// changed afterwards).
	Publish(msg []byte)
}

// localBus is the default Bus: Publish delivers at once, on the caller's
// goroutine, as a hub without instances always did.
type localBus struct{ deliver func([]byte) }

func (b *localBus) Start(deliver func([]byte), _ func()) { b.deliver = deliver }
func (b *localBus) Publish(msg []byte)                   { b.deliver(msg) }

// fanout queues msg for every authenticated client. It never blocks on a
// client: a client whose queue would overflow closes itself.
func (h *Hub) fanout(msg []byte) {
	var delivered, dropped uint64
	h.mu.RLock()
	for c := range h.clients {
		if c.enqueue(msg) == nil {
			delivered++
		} else {
			dropped++
		}
	}
	h.mu.RUnlock()
	h.stats.delivered.Add(delivered)
	h.stats.dropped.Add(dropped)
}

// hubStats are the counters behind Hub.Stats.
type hubStats struct{ delivered, dropped atomic.Uint64 }

// HubStats are a hub's counters since New.
type HubStats struct {
	// Sockets is the number of authenticated sockets now.
	Sockets int
	// Delivered counts event messages queued for a socket; Dropped those
	// refused because the socket was closed, or too slow and closed for
	// it.
	Delivered, Dropped uint64
}

// Stats returns the hub's counters.
func (h *Hub) Stats() HubStats {
	return HubStats{Sockets: h.Clients(), Delivered: h.stats.delivered.Load(), Dropped: h.stats.dropped.Load()}
}

// resync closes every socket with CloseServiceRestart: the bus lost events
// these sockets would have received, so their clients must reconnect and
// fetch the state afresh (GET /api/rooms) rather than trust a stream with
// a hole in it.
func (h *Hub) resync() {
	h.mu.RLock()
	clients := make([]*Client, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.RUnlock()
	h.log.Warn("events were lost between instances; closing sockets so that clients resync", "sockets", len(clients))
	for _, c := range clients {
		c.close(CloseServiceRestart, "events missed during an outage: reconnect and resync")
	}
}

// CloseServiceRestart (RFC 6455 §7.4.1's 1012, registered by IANA) closes
// the sockets of an instance that missed events: reconnect and fetch the
// state again.
const CloseServiceRestart = 1012
