package hub

import (
	"bytes"
	"sync/atomic"
)

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

// frameEvent is what the hub hands the bus: "<guild id>\n<event JSON>"
// for an event of one guild (encoded JSON holds no raw newline), the JSON
// alone for an event of every guild. The bus carries the bytes as they
// are, so the guild travels with the event to every instance.
func frameEvent(guildID string, msg []byte) []byte {
	if guildID == "" {
		return msg
	}
	out := make([]byte, 0, len(guildID)+1+len(msg))
	out = append(out, guildID...)
	out = append(out, '\n')
	return append(out, msg...)
}

// unframeEvent splits what frameEvent made.
func unframeEvent(framed []byte) (guildID string, msg []byte) {
	if len(framed) == 0 || framed[0] == '{' {
		return "", framed
	}
	if i := bytes.IndexByte(framed, '\n'); i >= 0 {
		return string(framed[:i]), framed[i+1:]
	}
	return "", framed
}

// fanout queues an event for every authenticated client allowed its
// guild. It never blocks on a client: a client whose queue would overflow
// closes itself.
func (h *Hub) fanout(framed []byte) {
	guildID, msg := unframeEvent(framed)
	var delivered, dropped uint64
	h.mu.RLock()
	for c := range h.clients {
		if guildID != "" && !c.allows(guildID) {
			continue
		}
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
