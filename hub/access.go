package hub

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of the per-user limits and the admin role (Options).
const (
	DefaultAdminClaim     = "roles"
	DefaultAdminRole      = "admin"
	DefaultRoomsPerHour   = 10
	DefaultSocketsPerUser = 8
	// roomWindow is the window RoomsPerHour counts in.
	roomWindow = time.Hour
)

// IsAdmin reports whether the token carries the admin role: its
// Options.AdminClaim claim is AdminRole or a list holding it. A claim
// name with dots is a path into nested objects ("realm_access.roles", as
// Keycloak puts them).
func (h *Hub) IsAdmin(c Claims) bool {
	var v any = c.private
	for _, part := range strings.Split(h.opts.AdminClaim, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[part]; !ok {
			return false
		}
	}
	switch roles := v.(type) {
	case string:
		return roles == h.opts.AdminRole
	case []any:
		return slices.ContainsFunc(roles, func(r any) bool { s, ok := r.(string); return ok && s == h.opts.AdminRole })
	case []string:
		return slices.Contains(roles, h.opts.AdminRole)
	}
	return false
}

// access is the hub's bookkeeping of who may do what: the creator of each
// room this process created, the room creations of each user within the
// last hour, and the open sockets of each user. Each map holds only live
// entries: rooms that exist, users with a creation in the window or an
// open socket.
type access struct {
	mu       sync.Mutex
	creators map[string]string      // channel id → subject
	created  map[string][]time.Time // subject → creations (or reservations) in the window, oldest first
	sockets  map[string]int         // subject → authenticated sockets
	swept    time.Time
}

func newAccess() *access {
	return &access{creators: map[string]string{}, created: map[string][]time.Time{}, sockets: map[string]int{}}
}

// reserveRoom takes one of subject's room creations at now, unless limit
// are taken within the window; then it returns how long until one frees.
func (a *access) reserveRoom(subject string, limit int, now time.Time) (ok bool, retry time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.swept) >= time.Minute {
		a.sweepLocked(now)
	}
	times := a.created[subject]
	cut := 0
	for cut < len(times) && now.Sub(times[cut]) >= roomWindow {
		cut++
	}
	times = times[cut:]
	if len(times) >= limit {
		a.created[subject] = times
		return false, roomWindow - now.Sub(times[0])
	}
	a.created[subject] = append(times, now)
	return true, 0
}

// unreserveRoom gives back a reservation of reserveRoom whose creation
// failed.
func (a *access) unreserveRoom(subject string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	times := a.created[subject]
	if i := slices.Index(times, at); i >= 0 {
		times = slices.Delete(times, i, i+1)
	}
	if len(times) == 0 {
		delete(a.created, subject)
	} else {
		a.created[subject] = times
	}
}

// sweepLocked forgets users whose creations all left the window.
func (a *access) sweepLocked(now time.Time) {
	a.swept = now
	for s, times := range a.created {
		if len(times) == 0 || now.Sub(times[len(times)-1]) >= roomWindow {
			delete(a.created, s)
		}
	}
}

func (a *access) setCreator(channelID, subject string) {
	a.mu.Lock()
	a.creators[channelID] = subject
	a.mu.Unlock()
}

func (a *access) creator(channelID string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creators[channelID]
}

func (a *access) roomEnded(channelID string) {
	a.mu.Lock()
	delete(a.creators, channelID)
	a.mu.Unlock()
}

// addSocket counts one more socket of subject, unless it holds limit.
func (a *access) addSocket(subject string, limit int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sockets[subject] >= limit {
		return false
	}
	a.sockets[subject]++
	return true
}

func (a *access) removeSocket(subject string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sockets[subject]--; a.sockets[subject] <= 0 {
		delete(a.sockets, subject)
	}
}

// sizes are the entries of each map, for tests and the operator's view.
func (a *access) sizes() (creators, creatorsByUser, socketUsers int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.creators), len(a.created), len(a.sockets)
}

// RoomEnded forgets a room's creator once the room is gone, however it
// went (ended here, deleted in Discord).
func (h *Hub) RoomEnded(channelID string) { h.access.roomEnded(channelID) }
