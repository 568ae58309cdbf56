package main

import (
	"slices"
	"strings"
	"sync"

	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/media"
)

// presence keeps, from media's participant events, which browsers are in
// each room's call, so GET /api/rooms (the snapshot a client reads on
// sign-in and after every reconnect) lists them beside the Discord members.
type presence struct {
	mu    sync.Mutex
	rooms map[string]map[string]hub.Participant // room id -> participant id -> browser
}

func newPresence() *presence {
	return &presence{rooms: make(map[string]map[string]hub.Participant)}
}

// observe takes one event media publishes; others pass by.
func (p *presence) observe(event string, payload any) {
	e, ok := payload.(media.ParticipantEvent)
	if !ok || e.Participant.Kind != "browser" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch event {
	case media.EventParticipantJoined:
		room := p.rooms[e.RoomID]
		if room == nil {
			room = make(map[string]hub.Participant)
			p.rooms[e.RoomID] = room
		}
		room[e.Participant.ID] = hub.Participant{ID: e.Participant.ID, UserID: e.Participant.UserID, Name: e.Participant.Name}
	case media.EventParticipantLeft:
		delete(p.rooms[e.RoomID], e.Participant.ID)
		if len(p.rooms[e.RoomID]) == 0 {
			delete(p.rooms, e.RoomID)
		}
	}
}

// roomEnded forgets an ended room's call.
func (p *presence) roomEnded(roomID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.rooms, roomID)
}

// in lists the browsers in a room's call, by name.
func (p *presence) in(roomID string) []hub.Participant {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []hub.Participant
	for _, b := range p.rooms[roomID] {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b hub.Participant) int {
		return strings.Compare(a.Name+"\x00"+a.ID, b.Name+"\x00"+b.ID)
	})
	return out
}
