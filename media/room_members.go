package media

import (
	"sort"
	"time"

	"github.com/pion/webrtc/v4"
)

// The room's browsers: joining, leaving, publishing, their state and what
// everyone is told. Everything here runs on the room's goroutine.

// joinAction puts a new browser into the room: it receives every current
// source, learns the participants and the Discord status, and the others
// learn about it. ok tells the joiner whether it got in (a room shutting
// down takes nobody).
type joinAction struct {
	s    *session
	ok   bool
	done chan struct{}
}

func (a *joinAction) apply(r *room) {
	defer close(a.done)
	if r.shut {
		return
	}
	a.ok = true
	s := a.s
	mb := &member{s: s, desired: make(map[string]*downTrack)}
	r.members[s.id] = mb
	for u := range r.ups {
		r.subscribe(&u.fan, u.codec, u.info.TrackID, u.info.StreamID, u, mb)
	}
	for _, d := range r.discord {
		r.subscribe(&d.fan, opusCapability, discordTrackID(d.userID), discordStreamID(d.userID), nil, mb)
		if d.video != nil {
			r.subscribe(&d.video.fan, vp8Capability, discordVideoTrackID(d.userID), discordStreamID(d.userID), nil, mb)
		}
	}
	r.stopGrace()

	s.log.Info("browser joined")
	sendTo(s.sig, joinedMessage{Type: msgJoined, RoomID: r.id, Self: s.id,
		ICEServers: r.m.iceServers(s.userID), Participants: r.participants(s.id), PrivacyCode: r.privacy})
	// Only now may the session offer.
	s.welcome()
	kick(s.kickNeg)
	before := r.status
	r.ensureLink()
	if r.status == before && before.Discord != "" {
		sendTo(s.sig, before) // a changed status reached s already
	}
	self := r.participant(mb)
	r.announce(r.others(s.id), "joined", self)
	r.m.opts.Publish(EventParticipantJoined, ParticipantEvent{RoomID: r.id, Participant: self})
}

// leaveAction takes a browser out of the room; a non-nil reason is sent to
// it as an error first. The last browser starts the grace period of the
// Discord link.
type leaveAction struct {
	s      *session
	reason error
	done   chan struct{}
}

func (a *leaveAction) apply(r *room) {
	defer close(a.done)
	s := a.s
	mb := r.members[s.id]
	if mb == nil || mb.s != s {
		return
	}
	if a.reason != nil {
		sendTo(s.sig, newErrorMessage(a.reason))
	}
	self := r.participant(mb)
	delete(r.members, s.id)
	for u := range r.ups {
		if u.pub == s {
			r.dropUp(u)
			continue
		}
		unsubscribeFrom(&u.fan, s)
	}
	for _, d := range r.discord {
		unsubscribeFrom(&d.fan, s)
		if d.video != nil {
			unsubscribeFrom(&d.video.fan, s)
		}
	}
	s.log.Info("browser left")
	r.removeSpeaker(s.id)
	r.announce(r.others(""), "left", self)
	r.m.opts.Publish(EventParticipantLeft, ParticipantEvent{RoomID: r.id, Participant: self})
	if len(r.members) > 0 {
		return
	}
	switch {
	case r.link == nil:
		r.m.releaseGuild(r.guild, r.id)
	case !r.shut && !r.link.stopping && r.grace == nil:
		r.grace = time.NewTimer(r.m.opts.Grace)
	}
}

// publishAction starts forwarding a track a browser published (pion's
// OnTrack), and the goroutines that read it.
type publishAction struct {
	u    *upTrack
	recv *webrtc.RTPReceiver
}

func (a publishAction) apply(r *room) {
	u, s := a.u, a.u.pub
	mb := r.members[s.id]
	if mb == nil || mb.s != s {
		return
	}
	r.ups[u] = struct{}{}
	for _, sub := range r.members {
		if sub.s != s {
			r.subscribe(&u.fan, u.codec, u.info.TrackID, u.info.StreamID, u, sub)
		}
	}
	s.log.Info("browser publishes a track", "kind", u.info.Kind, "track_id", u.info.TrackID, "ssrc", uint32(u.remote.SSRC()))
	if u.isVideo {
		s.goSafe(func() { u.kfLoop(s.stop) })
	}
	// Sender reports from the browser feed the receiver-side interceptors
	// only when read.
	recv := a.recv
	s.goSafe(func() {
		for {
			if _, _, err := recv.ReadRTCP(); err != nil {
				return
			}
		}
	})
	if !s.goSafe(func() { s.readUp(u) }) {
		r.dropUp(u)
		return
	}
	r.announce(r.others(s.id), "updated", r.participant(mb))
}

// unpublishAction stops forwarding a track whose publisher stopped sending
// it.
type unpublishAction struct{ u *upTrack }

func (a unpublishAction) apply(r *room) {
	u := a.u
	if _, ok := r.ups[u]; !ok {
		return
	}
	r.dropUp(u)
	if mb := r.members[u.pub.id]; mb != nil && mb.s == u.pub {
		r.announce(r.others(u.pub.id), "updated", r.participant(mb))
	}
}

// muteAction records a browser's mute state; a muted browser does not
// compete for the bot's audio stream.
type muteAction struct {
	s     *session
	muted bool
}

func (a muteAction) apply(r *room) {
	mb := r.members[a.s.id]
	if mb == nil || mb.s != a.s {
		return
	}
	mb.muted = a.muted
	a.s.muted.Store(a.muted)
	if a.muted {
		r.removeSpeaker(a.s.id)
	}
	r.updateParticipant(mb, EventMute)
}

// cameraAction records a browser's camera state.
type cameraAction struct {
	s  *session
	on bool
}

func (a cameraAction) apply(r *room) {
	mb := r.members[a.s.id]
	if mb == nil || mb.s != a.s {
		return
	}
	mb.camera = a.on
	r.updateParticipant(mb, EventCamera)
}

// subscribe makes mb receive a source.
func (r *room) subscribe(fan *fanout, c webrtc.RTPCodecCapability, id, streamID string, src keyframeSource, mb *member) {
	dt, err := newDownTrack(c, id, streamID, mb.s.q, src)
	if err != nil {
		r.log.Warn("new forwarded track", "track_id", id, "err", err)
		return
	}
	// Video no one can be asked a keyframe of waits for the next one.
	dt.keyGate = src == nil && c.MimeType == vp8Capability.MimeType
	dt.sub = mb.s
	fan.add(dt)
	mb.desired[dt.key] = dt
	r.markDirty(mb)
}

// markDirty lists mb for the next flushDesired.
func (r *room) markDirty(mb *member) {
	if !mb.dirty {
		mb.dirty = true
		r.dirty = append(r.dirty, mb)
	}
}

// unwant takes dt out of its subscriber's set, if the subscriber is here.
func (r *room) unwant(dt *downTrack) {
	mb := r.members[dt.sub.id]
	if mb == nil || mb.s != dt.sub || mb.desired[dt.key] != dt {
		return
	}
	delete(mb.desired, dt.key)
	r.markDirty(mb)
}

// unsubscribeFrom removes every track of fan that goes to s; s has left,
// so its set needs no update.
func unsubscribeFrom(fan *fanout, s *session) {
	for _, dt := range fan.list() {
		if dt.sub == s {
			fan.remove(dt)
		}
	}
}

// dropFan unsubscribes everyone from fan.
func (r *room) dropFan(fan *fanout) {
	for _, dt := range fan.list() {
		fan.remove(dt)
		r.unwant(dt)
	}
}

// dropUp stops forwarding u.
func (r *room) dropUp(u *upTrack) {
	delete(r.ups, u)
	r.dropFan(&u.fan)
}

// participant describes a browser.
func (r *room) participant(mb *member) Participant {
	s := mb.s
	p := Participant{ID: s.id, UserID: s.userID, Name: s.name, Kind: kindBrowser,
		Muted: mb.muted, Camera: mb.camera, Speaking: r.isSpeaker(s.id), Tracks: []TrackInfo{}}
	for u := range r.ups {
		if u.pub == s {
			p.Tracks = append(p.Tracks, u.info)
		}
	}
	sort.Slice(p.Tracks, func(i, j int) bool { return p.Tracks[i].TrackID < p.Tracks[j].TrackID })
	return p
}

// participants lists everyone but the session except.
func (r *room) participants(except string) []Participant {
	out := []Participant{}
	for id, mb := range r.members {
		if id != except {
			out = append(out, r.participant(mb))
		}
	}
	for _, d := range r.discord {
		out = append(out, r.discordParticipant(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// others lists the sessions other than except.
func (r *room) others(except string) []*session {
	out := make([]*session, 0, len(r.members))
	for id, mb := range r.members {
		if id != except {
			out = append(out, mb.s)
		}
	}
	return out
}

// announce sends a participant update to the given browsers.
func (r *room) announce(to []*session, event string, p Participant) {
	msg := participantMessage{Type: msgParticipant, RoomID: r.id, Event: event, Participant: p}
	for _, s := range to {
		sendTo(s.sig, msg)
	}
}

// updateParticipant tells every browser and the hub about a browser's new
// state.
func (r *room) updateParticipant(mb *member, event string) {
	p := r.participant(mb)
	r.announce(r.others(""), "updated", p)
	r.m.opts.Publish(event, ParticipantEvent{RoomID: r.id, Participant: p})
}

// observeLevel feeds one audio packet's level to the speaker selector.
func (r *room) observeLevel(lv levelReport) {
	mb := r.members[lv.s.id]
	if mb == nil || mb.s != lv.s || mb.muted {
		return
	}
	if cur, changed := r.sp.Observe(lv.s.id, lv.level, lv.at); changed {
		r.speakerChanged(cur)
	}
}

// removeSpeaker takes a browser out of the speaker selection.
func (r *room) removeSpeaker(id string) {
	cur, changed := r.sp.Remove(id, time.Now())
	if changed || (cur == "" && r.isSpeaker(id)) {
		r.speakerChanged(cur)
	}
}

// speakerChanged switches the forwarded speaker and reports it.
func (r *room) speakerChanged(cur string) {
	prev := r.route.Load()
	r.setRoute(cur, prev.out)
	r.log.Debug("active speaker", "session_id", cur)
	for _, id := range []string{prev.speaker, cur} {
		if mb := r.members[id]; id != "" && mb != nil {
			r.updateParticipant(mb, EventSpeaking)
		}
	}
}

// setStatus records the Discord leg's state and tells every browser.
func (r *room) setStatus(state, message string) {
	if r.status.Discord == state && r.status.Message == message {
		return
	}
	r.status = statusMessage{Type: msgStatus, RoomID: r.id, Discord: state, Message: message}
	for _, mb := range r.members {
		sendTo(mb.s.sig, r.status)
	}
}

// setPrivacy records the voice connection's privacy code and tells every
// browser when it changed.
func (r *room) setPrivacy(code string) {
	if r.privacy == code {
		return
	}
	r.privacy = code
	r.log.Info("voice privacy code", "code", code)
	msg := privacyMessage{Type: msgPrivacy, RoomID: r.id, Code: code}
	for _, mb := range r.members {
		sendTo(mb.s.sig, msg)
	}
}
