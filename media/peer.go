package media

// Peer is the signal transport of one browser: what media needs from a hub
// client (*hub.Client satisfies it).
type Peer interface {
	// ID identifies the connection (one WebSocket).
	ID() string
	// UserID is the authenticated Discord user id.
	UserID() string
	// Name is the user's display name.
	Name() string
	// Send delivers one JSON-encodable message to the browser. It must not
	// block for long; media calls it from its own goroutines, never while
	// holding a lock.
	Send(v any) error
}

// sendTo sends v to p; a failing socket is the hub's to report.
func sendTo(p Peer, v any) {
	_ = p.Send(v)
}
