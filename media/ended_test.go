package media

import (
	"fmt"
	"testing"
)

// The manager remembers the latest maxEndedRooms ended channels, however
// many rooms end over a bridge's life: the oldest is forgotten first, and
// ending a room twice counts once.
func TestEndedRoomsAreBounded(t *testing.T) {
	m := &Manager{ended: make(map[string]bool)}
	for i := range maxEndedRooms + 100 {
		m.rememberEndedLocked(fmt.Sprint(i))
		m.rememberEndedLocked(fmt.Sprint(i))
	}
	if len(m.ended) != maxEndedRooms || len(m.endedOrder) != maxEndedRooms {
		t.Fatalf("remembers %d (order %d) ended rooms, want %d", len(m.ended), len(m.endedOrder), maxEndedRooms)
	}
	if m.ended["0"] || m.ended["99"] {
		t.Fatal("the oldest ended rooms are still remembered")
	}
	if !m.ended["100"] || !m.ended[fmt.Sprint(maxEndedRooms+99)] {
		t.Fatal("a recent ended room was forgotten")
	}
}
