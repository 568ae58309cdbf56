package media

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

const (
	// levelQueueLen bounds audio levels waiting for the room's goroutine;
	// when it is full a level is dropped (the next packet brings another).
	levelQueueLen = 256
	// msgNoBot explains a room without Discord leg because no bot of the
	// guild works (Options.Links is 0).
	msgNoBot = "waiting for a bot: no bot of this server is working now; this room will be bridged to Discord as soon as one is"
)

// room is one Discord voice channel and the browsers in it.
//
// One goroutine, run, owns the room's state: its members and what each
// receives, the published tracks, the Discord users heard, the speaker
// choice, the Discord link's lifecycle and the grace timer. Everyone else
// posts actions to its mailbox (mailbox.go) and, when they need the
// outcome, waits for it. The media path does not go through it: packets
// are forwarded by the publishers' goroutines through copy-on-write
// fanouts, and the browser speaker forwarded to Discord is read from
// route; run alone changes both.
type room struct {
	id     string
	guild  string // the Discord guild of the channel
	m      *Manager
	log    *slog.Logger
	box    *mailbox
	levels chan levelReport // audio levels from the publishers' readers
	done   chan struct{}    // closed when run returns

	// joining counts joins between the manager's registry lookup and their
	// post; guarded by the manager's lock, it keeps the room alive.
	joining int

	// route is what the media path needs from the room's state; run
	// replaces it, readers load it without locks.
	route atomic.Pointer[route]

	// Owned by run.
	members map[string]*member
	dirty   []*member // members whose desired set changed since the last flush
	ups     map[*upTrack]struct{}
	discord map[string]*discordSource
	status  statusMessage
	privacy string // the voice connection's privacy code, "" when none
	sp      *speakerSelector
	link    *linkRun    // the link goroutine, nil when none
	mix     *mixer      // the browsers' mix toward the link, nil when none
	grace   *time.Timer // counts down once the last browser left; nil otherwise
	shut    bool
}

// route is the part of a room's state the media path reads.
type route struct {
	speaker string    // session id of the browser forwarded to Discord, "" none
	out     *linkConn // the connected link's send queue, nil when none
	mix     *mixer    // the mix that browsers' audio goes to, nil when none
}

// member is one browser in the room as the room's goroutine keeps it.
type member struct {
	s       *session
	muted   bool
	camera  bool
	desired map[string]*downTrack // what the browser should receive, by track id
	dirty   bool                  // listed in room.dirty
}

// levelReport is one audio packet's RFC 6464 level from a publisher.
type levelReport struct {
	s     *session
	level uint8
	at    time.Time
}

// linkRun is one running link goroutine.
type linkRun struct {
	cancel   context.CancelFunc
	stopping bool // cancelled; linkDone follows
}

func newRoom(m *Manager, id string) *room {
	guild := m.guildOf(id)
	r := &room{
		id:      id,
		guild:   guild,
		m:       m,
		log:     m.log.With("guild_id", guild, "room_id", id),
		box:     newMailbox(),
		levels:  make(chan levelReport, levelQueueLen),
		done:    make(chan struct{}),
		members: make(map[string]*member),
		ups:     make(map[*upTrack]struct{}),
		discord: make(map[string]*discordSource),
		sp:      newSpeakerSelector(),
	}
	r.route.Store(&route{})
	return r
}

// run applies actions, audio levels and timers until the room is done:
// shut down with its link gone, or idle (no browsers, no link) and
// released by the manager.
func (r *room) run() {
	defer close(r.done)
	for {
		var graceC <-chan time.Time
		if r.grace != nil {
			graceC = r.grace.C
		}
		select {
		case <-r.box.wake:
			for _, a := range r.box.take() {
				a.apply(r)
			}
		case lv := <-r.levels:
			r.observeLevel(lv)
		case <-graceC:
			r.grace = nil
			r.graceOver()
		}
		r.flushDesired()
		if r.finished() {
			return
		}
	}
}

// finished reports whether run may return, and then takes the room out of
// the manager's registry.
func (r *room) finished() bool {
	switch {
	case r.link != nil:
		return false
	case r.shut:
		r.m.forgetRoom(r)
		return true
	case len(r.members) == 0:
		return r.m.retireRoom(r)
	}
	return false
}

// post hands a to the room's goroutine; false when the room is gone.
func (r *room) post(a action) bool { return r.box.post(a) }

// await posts a and waits until done is closed (a closes it when
// applied), ctx ends or the room is gone; it reports whether a was
// applied.
func (r *room) await(ctx context.Context, a action, done <-chan struct{}) bool {
	if !r.post(a) {
		return false
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	case <-r.done:
		return false
	}
}

// setRoute publishes a new route to the media path.
func (r *room) setRoute(speaker string, out *linkConn) {
	r.route.Store(&route{speaker: speaker, out: out, mix: r.mix})
}

// isSpeaker reports whether session id is forwarded to Discord.
func (r *room) isSpeaker(id string) bool { return r.route.Load().speaker == id }

// flushDesired hands each browser whose set of tracks changed its new set.
func (r *room) flushDesired() {
	dirty := r.dirty
	r.dirty = nil
	for _, mb := range dirty {
		mb.dirty = false
		set := make(map[string]*downTrack, len(mb.desired))
		for k, v := range mb.desired {
			set[k] = v
		}
		mb.s.setDesired(set)
	}
}

// graceOver closes the Discord link once the room stayed empty for Grace.
func (r *room) graceOver() {
	if len(r.members) > 0 || r.link == nil {
		return
	}
	r.log.Info("room empty for the grace period; leaving the voice channel")
	r.stopLink()
}

// stopGrace stops the grace timer, if it runs.
func (r *room) stopGrace() {
	if r.grace != nil {
		r.grace.Stop()
		r.grace = nil
	}
}

// shutdownAction ends the room for good (manager closed or channel
// deleted): the link is closed and the room goes once it is.
type shutdownAction struct{}

func (shutdownAction) apply(r *room) {
	r.shut = true
	r.stopGrace()
	r.stopLink()
}

// tryLinkAction asks the room to take the guild's voice link if it has
// browsers (another room let it go).
type tryLinkAction struct{}

func (tryLinkAction) apply(r *room) { r.ensureLink() }

// wakeAction makes the room look at its state again (a join it was
// counted for failed).
type wakeAction struct{}

func (wakeAction) apply(*room) {}
