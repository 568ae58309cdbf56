package gateway

import (
	"sync"

	"github.com/voicebridge/bridge/gateway/session"
)

// Event names reported through Options.OnEvent.
const (
	EventRoomCreated = "room.created"
	EventRoomDeleted = "room.deleted"
	EventVoiceJoined = "voice.joined"
	EventVoiceLeft   = "voice.left"
)

// Event is one room event. Payload is a RoomPayload for room.* events and
// a VoicePayload for voice.* events.
type Event struct {
	Name    string
	Payload any
}

// RoomPayload is the payload of room.created and room.deleted.
type RoomPayload struct {
	ChannelID string `json:"channelId"`
	Name      string `json:"name"`
	GuildID   string `json:"guildId"`
	UserLimit int    `json:"userLimit"`
}

// VoicePayload is the payload of voice.joined and voice.left.
type VoicePayload struct {
	GuildID   string `json:"guildId"`
	ChannelID string `json:"channelId"`
	UserID    string `json:"userId"`
	Username  string `json:"username"`
	// Bot is true for the bridge's own bot, so a UI can leave it out.
	Bot bool `json:"bot,omitempty"`
}

// Member is one user in a voice channel.
type Member = session.Member

// toEvent turns a state change into the event consumers see.
func toEvent(guildID, botUserID string, ch session.Change) Event {
	switch ch.Kind {
	case session.RoomCreated, session.RoomDeleted:
		return Event{Name: ch.Kind.String(), Payload: RoomPayload{
			ChannelID: ch.Room.ChannelID, Name: ch.Room.Name, GuildID: ch.Room.GuildID, UserLimit: ch.Room.UserLimit,
		}}
	default:
		return Event{Name: ch.Kind.String(), Payload: VoicePayload{
			GuildID: guildID, ChannelID: ch.ChannelID, UserID: ch.UserID, Username: ch.Username,
			Bot: ch.UserID != "" && ch.UserID == botUserID,
		}}
	}
}

// eventQueue hands events from the run goroutine to the one goroutine that
// calls OnEvent, so a slow consumer never stalls the gateway (heartbeats
// keep flowing). The queue is unbounded: room events are few and each is
// needed (a dropped voice.left leaves a ghost member in every browser).
type eventQueue struct {
	mu     sync.Mutex
	items  []Event
	signal chan struct{} // capacity 1: "items is not empty"
}

func newEventQueue() *eventQueue {
	return &eventQueue{signal: make(chan struct{}, 1)}
}

func (q *eventQueue) push(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, evs...)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	q.items = nil
	return out
}

// run calls fn for every event in order until stop closes, then delivers
// what is still queued and returns. fn is called without any lock held.
func (q *eventQueue) run(stop <-chan struct{}, fn func(Event)) {
	for {
		select {
		case <-q.signal:
			for _, e := range q.take() {
				fn(e)
			}
		case <-stop:
			for _, e := range q.take() {
				fn(e)
			}
			return
		}
	}
}
