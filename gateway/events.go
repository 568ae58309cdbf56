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
	// Session, Seq and Index place the event in the gateway session: the
	// session id, the sequence of the dispatch it came from and its place
	// among that dispatch's events. A resumed session replays dispatches
	// as they were, so an event seen before has the same place again.
	Session string
	Seq     int64
	Index   int
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
// Session changes travel in the same queue, behind the events of the
// dispatches they cover.
type eventQueue struct {
	mu     sync.Mutex
	items  []queued
	signal chan struct{} // capacity 1: "items is not empty"
}

// queued is an event or, with sess set, a session change.
type queued struct {
	ev   Event
	sess *Session
}

func newEventQueue() *eventQueue {
	return &eventQueue{signal: make(chan struct{}, 1)}
}

func (q *eventQueue) push(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	q.mu.Lock()
	for _, e := range evs {
		q.items = append(q.items, queued{ev: e})
	}
	q.mu.Unlock()
	q.wake()
}

// pushSession queues a session change behind the events queued so far.
func (q *eventQueue) pushSession(s Session) {
	q.mu.Lock()
	q.items = append(q.items, queued{sess: &s})
	q.mu.Unlock()
	q.wake()
}

func (q *eventQueue) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	q.items = nil
	return out
}

// run calls fn for every event in order until stop closes, then delivers
// what is still queued and returns. After each batch it calls onSession
// once with the batch's last session change, if any: that change covers
// every event of the batch. Neither is called with a lock held; either may
// be nil.
func (q *eventQueue) run(stop <-chan struct{}, fn func(Event), onSession func(Session)) {
	deliver := func() {
		var last *Session
		for _, it := range q.take() {
			switch {
			case it.sess != nil:
				last = it.sess
			case fn != nil:
				fn(it.ev)
			}
		}
		if last != nil && onSession != nil {
			onSession(*last)
		}
	}
	for {
		select {
		case <-q.signal:
			deliver()
		case <-stop:
			deliver()
			return
		}
	}
}
