package media

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	// linkQueueLen bounds frames waiting for the Discord link; when full
	// the newest is dropped.
	linkQueueLen = 32
	// discordQuietAfter ends a Discord user's "speaking" state.
	discordQuietAfter = 500 * time.Millisecond
	// speakingCheckEvery is how often the link goroutine looks for Discord
	// users who went quiet.
	speakingCheckEvery = 250 * time.Millisecond
	// msgOtherRoom explains a room without Discord leg.
	msgOtherRoom = "the bot is in another room of this server"
)

// room is one Discord voice channel and the browsers in it.
type room struct {
	id  string
	m   *Manager
	log *slog.Logger

	mu          sync.Mutex
	sessions    map[string]*session
	pending     int // joins between room lookup and addSession
	ups         map[*upTrack]struct{}
	discord     map[string]*discordSource
	status      statusMessage
	privacy     string // the voice connection's privacy code, "" when none
	link        *linkRun
	graceCancel chan struct{}
	shut        bool

	spMu    sync.Mutex
	sp      *speakerSelector
	speaker atomic.Pointer[string] // session id of the forwarded speaker

	out atomic.Pointer[linkConn] // the connected link, nil when none
	wg  sync.WaitGroup
}

// linkRun is one running link goroutine.
type linkRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// linkItem is one frame toward Discord: Opus, or VP8 when vp8 is set.
type linkItem struct {
	opus     []byte
	vp8      []byte
	keyframe bool
}

// linkConn is a connected DiscordLink and its bounded send queue.
type linkConn struct {
	link         DiscordLink
	q            chan linkItem
	videoRefused atomic.Bool
}

func (lc *linkConn) push(it linkItem) {
	select {
	case lc.q <- it:
	default: // the link is slow: drop the newest frame
	}
}

// run sends queued frames until stop is closed.
func (lc *linkConn) run(stop <-chan struct{}, log *slog.Logger) {
	for {
		select {
		case <-stop:
			return
		case it := <-lc.q:
			if it.vp8 == nil {
				if err := lc.link.SendOpus(it.opus); err != nil {
					log.Debug("send opus to discord", "err", err)
				}
				continue
			}
			if lc.videoRefused.Load() {
				continue
			}
			if err := lc.link.SendVP8(it.vp8, it.keyframe); err != nil {
				lc.videoRefused.Store(true)
				log.Info("discord link refuses video; browser video stays browser to browser", "err", err)
			}
		}
	}
}

func newRoom(m *Manager, id string) *room {
	return &room{
		id:       id,
		m:        m,
		log:      m.log.With("room", id),
		sessions: make(map[string]*session),
		ups:      make(map[*upTrack]struct{}),
		discord:  make(map[string]*discordSource),
		sp:       newSpeakerSelector(),
	}
}

// hasSessions reports whether browsers are in the room.
func (r *room) hasSessions() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions) > 0
}

// idle reports whether the room can be forgotten. Called with m.mu held.
func (r *room) idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions) == 0 && r.pending == 0 && r.link == nil
}

func (r *room) sessionList() []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	return out
}

// subscribeLocked makes s receive a source. Called with r.mu held.
func (r *room) subscribeLocked(fan *fanout, c webrtc.RTPCodecCapability, id, streamID string, src keyframeSource, s *session) {
	dt, err := newDownTrack(c, id, streamID, s.q, src)
	if err != nil {
		r.log.Warn("new forwarded track", "track", id, "err", err)
		return
	}
	// Video no one can be asked a keyframe of waits for the next one.
	dt.keyGate = src == nil && c.MimeType == vp8Capability.MimeType
	dt.sub = s
	fan.add(dt)
	s.want(dt)
}

// unsubscribeFrom removes every track of fan that goes to s.
func unsubscribeFrom(fan *fanout, s *session) {
	for _, dt := range fan.list() {
		if dt.sub == s {
			fan.remove(dt)
			s.unwant(dt)
		}
	}
}

// addSession puts a new browser into the room: it receives every current
// source, learns the participants and the Discord status, and the others
// learn about it.
func (r *room) addSession(s *session) {
	r.mu.Lock()
	r.pending--
	r.sessions[s.id] = s
	for u := range r.ups {
		r.subscribeLocked(&u.fan, u.codec, u.info.TrackID, u.info.StreamID, u, s)
	}
	for _, d := range r.discord {
		r.subscribeLocked(&d.fan, opusCapability, discordTrackID(d.userID), discordStreamID(d.userID), nil, s)
		if d.video != nil {
			r.subscribeLocked(&d.video.fan, vp8Capability, discordVideoTrackID(d.userID), discordStreamID(d.userID), nil, s)
		}
	}
	if r.graceCancel != nil {
		close(r.graceCancel)
		r.graceCancel = nil
	}
	participants := r.participantsLocked(s.id)
	self := r.participantLocked(s)
	others := r.othersLocked(s.id)
	code := r.privacy
	r.mu.Unlock()

	s.log.Info("browser joined")
	sendTo(s.sig, joinedMessage{Type: msgJoined, RoomID: r.id, Self: s.id,
		ICEServers: r.m.iceServers(s.userID), Participants: participants, PrivacyCode: code})
	// Only now may the session offer, and SetPrivacyCode reach it; a code
	// that changed since the snapshot above is sent after "joined".
	r.mu.Lock()
	s.welcome()
	latest := r.privacy
	r.mu.Unlock()
	kick(s.kickNeg)
	if latest != code {
		sendTo(s.sig, privacyMessage{Type: msgPrivacy, RoomID: r.id, Code: latest})
	}
	r.ensureLink()
	r.mu.Lock()
	st := r.status
	r.mu.Unlock()
	if st.Discord != "" {
		sendTo(s.sig, st)
	}
	r.announce(others, "joined", self)
	r.m.opts.Publish(EventParticipantJoined, ParticipantEvent{RoomID: r.id, Participant: self})
}

// removeSession takes s out of the room. The last browser starts the grace
// period of the Discord link.
func (r *room) removeSession(s *session) {
	r.mu.Lock()
	if r.sessions[s.id] != s {
		r.mu.Unlock()
		return
	}
	self := r.participantLocked(s)
	delete(r.sessions, s.id)
	for u := range r.ups {
		if u.pub == s {
			r.dropUpLocked(u)
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
	empty := len(r.sessions) == 0
	hasLink := r.link != nil
	if empty && hasLink && !r.shut && r.graceCancel == nil {
		cancel := make(chan struct{})
		r.graceCancel = cancel
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.graceWait(cancel)
		}()
	}
	others := r.othersLocked("")
	r.mu.Unlock()

	s.log.Info("browser left")
	r.removeSpeaker(s.id)
	r.announce(others, "left", self)
	r.m.opts.Publish(EventParticipantLeft, ParticipantEvent{RoomID: r.id, Participant: self})
	if empty && !hasLink {
		r.m.releaseGuild(r.id)
		r.m.dropRoomIfIdle(r)
	}
}

// graceWait closes the Discord link once the room stayed empty for Grace.
func (r *room) graceWait(cancel chan struct{}) {
	t := time.NewTimer(r.m.opts.Grace)
	defer t.Stop()
	select {
	case <-cancel:
		return
	case <-t.C:
	}
	r.mu.Lock()
	if r.graceCancel != cancel || len(r.sessions) > 0 {
		r.mu.Unlock()
		return
	}
	r.graceCancel = nil
	r.mu.Unlock()
	r.log.Info("room empty for the grace period; leaving the voice channel")
	r.stopLink()
	r.m.dropRoomIfIdle(r)
}

// dropUpLocked stops forwarding u. Called with r.mu held.
func (r *room) dropUpLocked(u *upTrack) {
	delete(r.ups, u)
	for _, dt := range u.fan.list() {
		u.fan.remove(dt)
		dt.sub.unwant(dt)
	}
}

// addUpTrack starts forwarding a track a browser published.
func (r *room) addUpTrack(s *session, remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	kind := remote.Kind()
	u := &upTrack{
		info:    TrackInfo{TrackID: s.nextTrackID(kind), StreamID: s.streamID(), Kind: kind.String()},
		pub:     s,
		remote:  remote,
		codec:   remote.Codec().RTPCodecCapability,
		kf:      make(chan struct{}, 1),
		isVideo: kind == webrtc.RTPCodecTypeVideo,
	}
	if !u.isVideo {
		u.levelID = audioLevelID(recv)
	}
	r.mu.Lock()
	if r.sessions[s.id] != s {
		r.mu.Unlock()
		return
	}
	r.ups[u] = struct{}{}
	for _, sub := range r.sessions {
		if sub != s {
			r.subscribeLocked(&u.fan, u.codec, u.info.TrackID, u.info.StreamID, u, sub)
		}
	}
	self := r.participantLocked(s)
	others := r.othersLocked(s.id)
	r.mu.Unlock()

	s.log.Info("browser publishes a track", "kind", kind.String(), "track", u.info.TrackID, "ssrc", uint32(remote.SSRC()))
	if u.isVideo {
		s.goSafe(func() { u.kfLoop(s.stop) })
	}
	// Sender reports from the browser feed the receiver-side interceptors
	// only when read.
	s.goSafe(func() {
		for {
			if _, _, err := recv.ReadRTCP(); err != nil {
				return
			}
		}
	})
	if !s.goSafe(func() { s.readUp(u) }) {
		r.removeUpTrack(u)
		return
	}
	r.announce(others, "updated", self)
}

// removeUpTrack stops forwarding u after its publisher stopped sending it.
func (r *room) removeUpTrack(u *upTrack) {
	r.mu.Lock()
	if _, ok := r.ups[u]; !ok {
		r.mu.Unlock()
		return
	}
	r.dropUpLocked(u)
	var others []*session
	var self Participant
	if r.sessions[u.pub.id] == u.pub {
		self = r.participantLocked(u.pub)
		others = r.othersLocked(u.pub.id)
	}
	r.mu.Unlock()
	if others != nil {
		r.announce(others, "updated", self)
	}
}

// participantLocked describes a browser. Called with r.mu held.
func (r *room) participantLocked(s *session) Participant {
	s.mu.Lock()
	p := Participant{ID: s.id, UserID: s.userID, Name: s.name, Kind: kindBrowser,
		Muted: s.muted, Camera: s.camera, Tracks: []TrackInfo{}}
	s.mu.Unlock()
	p.Speaking = r.isSpeaker(s.id)
	for u := range r.ups {
		if u.pub == s {
			p.Tracks = append(p.Tracks, u.info)
		}
	}
	sort.Slice(p.Tracks, func(i, j int) bool { return p.Tracks[i].TrackID < p.Tracks[j].TrackID })
	return p
}

// discordParticipant describes a Discord user.
// Called with r.mu held or from the link goroutine (d.video is set under
// r.mu by the link goroutine only).
func (r *room) discordParticipant(d *discordSource) Participant {
	p := Participant{
		ID: discordStreamID(d.userID), UserID: d.userID, Name: r.m.opts.MemberName(d.userID),
		Kind: kindDiscord, Speaking: d.speakingFlag.Load(),
		Tracks: []TrackInfo{{TrackID: discordTrackID(d.userID), StreamID: discordStreamID(d.userID), Kind: "audio"}},
	}
	if d.video != nil {
		p.Camera = true
		p.Tracks = append(p.Tracks, TrackInfo{TrackID: discordVideoTrackID(d.userID), StreamID: discordStreamID(d.userID), Kind: "video"})
	}
	return p
}

// participantsLocked lists everyone but the session except. Called with
// r.mu held.
func (r *room) participantsLocked(except string) []Participant {
	out := []Participant{}
	for id, s := range r.sessions {
		if id != except {
			out = append(out, r.participantLocked(s))
		}
	}
	for _, d := range r.discord {
		out = append(out, r.discordParticipant(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// othersLocked lists the sessions other than except. Called with r.mu held.
func (r *room) othersLocked(except string) []*session {
	out := make([]*session, 0, len(r.sessions))
	for id, s := range r.sessions {
		if id != except {
			out = append(out, s)
		}
	}
	return out
}

// welcomedLocked lists the sessions that got their "joined" message (the
// others get the room's state after it). Called with r.mu held.
func (r *room) welcomedLocked() []*session {
	out := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		if s.isWelcomed() {
			out = append(out, s)
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
func (r *room) updateParticipant(s *session, event string) {
	r.mu.Lock()
	if r.sessions[s.id] != s {
		r.mu.Unlock()
		return
	}
	p := r.participantLocked(s)
	others := r.othersLocked("")
	r.mu.Unlock()
	r.announce(others, "updated", p)
	r.m.opts.Publish(event, ParticipantEvent{RoomID: r.id, Participant: p})
}

// setMuted records a browser's mute state; a muted browser does not compete
// for the bot's audio stream.
func (r *room) setMuted(s *session, muted bool) {
	s.mu.Lock()
	s.muted = muted
	s.mu.Unlock()
	if muted {
		r.removeSpeaker(s.id)
	}
	r.updateParticipant(s, EventMute)
}

// setCamera records a browser's camera state.
func (r *room) setCamera(s *session, on bool) {
	s.mu.Lock()
	s.camera = on
	s.mu.Unlock()
	r.updateParticipant(s, EventCamera)
}

// isSpeaker reports whether session id is forwarded to Discord.
func (r *room) isSpeaker(id string) bool {
	p := r.speaker.Load()
	return p != nil && *p == id
}

// observeLevel feeds one audio packet's level to the speaker selector.
func (r *room) observeLevel(s *session, level uint8, now time.Time) {
	if s.isMuted() {
		return
	}
	r.spMu.Lock()
	cur, changed := r.sp.Observe(s.id, level, now)
	r.spMu.Unlock()
	if changed {
		r.speakerChanged(cur)
	}
}

// removeSpeaker takes a browser out of the speaker selection.
func (r *room) removeSpeaker(id string) {
	r.spMu.Lock()
	cur, changed := r.sp.Remove(id, time.Now())
	r.spMu.Unlock()
	if changed || (cur == "" && r.isSpeaker(id)) {
		r.speakerChanged(cur)
	}
}

// speakerChanged switches the forwarded speaker and reports it.
func (r *room) speakerChanged(cur string) {
	next := cur
	prev := r.speaker.Swap(&next)
	r.log.Debug("active speaker", "session", cur)
	for _, id := range []string{deref(prev), cur} {
		if id == "" {
			continue
		}
		r.mu.Lock()
		s := r.sessions[id]
		r.mu.Unlock()
		if s != nil {
			r.updateParticipant(s, EventSpeaking)
		}
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// toDiscordOpus queues the active speaker's Opus payload for the link.
func (r *room) toDiscordOpus(payload []byte) {
	if lc := r.out.Load(); lc != nil {
		lc.push(linkItem{opus: payload})
	}
}

// setStatus records the Discord leg's state and tells every browser.
func (r *room) setStatus(state, message string) {
	r.mu.Lock()
	if r.status.Discord == state && r.status.Message == message {
		r.mu.Unlock()
		return
	}
	r.status = statusMessage{Type: msgStatus, RoomID: r.id, Discord: state, Message: message}
	st := r.status
	to := r.welcomedLocked()
	r.mu.Unlock()
	for _, s := range to {
		sendTo(s.sig, st)
	}
}

// setPrivacy records the voice connection's privacy code and tells every
// browser that got its "joined" message when it changed.
func (r *room) setPrivacy(code string) {
	r.mu.Lock()
	if r.privacy == code {
		r.mu.Unlock()
		return
	}
	r.privacy = code
	to := r.welcomedLocked()
	r.mu.Unlock()
	r.log.Info("voice privacy code", "code", code)
	msg := privacyMessage{Type: msgPrivacy, RoomID: r.id, Code: code}
	for _, s := range to {
		sendTo(s.sig, msg)
	}
}

// ensureLink starts the Discord link if the room has browsers and the
// guild's one voice connection is free.
func (r *room) ensureLink() {
	if !r.hasSessions() {
		return
	}
	if !r.m.claimGuild(r.id) {
		r.setStatus(StatusUnavailable, msgOtherRoom)
		return
	}
	r.mu.Lock()
	if r.link != nil {
		r.mu.Unlock()
		return
	}
	if len(r.sessions) == 0 || r.shut {
		r.mu.Unlock()
		r.m.releaseGuild(r.id)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	lr := &linkRun{cancel: cancel, done: make(chan struct{})}
	r.link = lr
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(lr.done)
		r.linkLoop(ctx)
	}()
	r.mu.Unlock()
}

// stopLink closes the Discord link, waits for its goroutine and frees the
// guild's voice connection for another room.
func (r *room) stopLink() {
	r.mu.Lock()
	lr := r.link
	r.link = nil
	r.mu.Unlock()
	if lr == nil {
		return
	}
	lr.cancel()
	<-lr.done
	r.m.releaseGuild(r.id)
}

// shutdown ends the room for good (manager closed or channel deleted).
func (r *room) shutdown() {
	r.mu.Lock()
	r.shut = true
	if r.graceCancel != nil {
		close(r.graceCancel)
		r.graceCancel = nil
	}
	r.mu.Unlock()
	r.stopLink()
	r.wg.Wait()
}

// linkLoop joins the voice channel, serves the link, and rejoins with
// capped exponential backoff until ctx ends.
func (r *room) linkLoop(ctx context.Context) {
	backoff := r.m.opts.RejoinBackoff
	state, message := StatusConnecting, "joining the voice channel"
	for {
		r.setStatus(state, message)
		link, err := r.m.opts.Joiner.Join(ctx, r.m.opts.GuildID, r.id)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("joining the voice channel failed", "err", err, "retry_in", backoff)
			r.setStatus(StatusReconnecting, fmt.Sprintf("joining the voice channel failed (%v); retrying in %s", err, backoff))
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxRejoinBackoff)
			state, message = StatusReconnecting, "joining the voice channel again"
			continue
		}
		backoff = r.m.opts.RejoinBackoff
		r.log.Info("bot joined the voice channel")
		r.setStatus(StatusConnected, "the bot is in the voice channel")
		r.serveLink(ctx, link)
		cctx, cancel := context.WithTimeout(context.Background(), linkCloseTimeout)
		if err := link.Close(cctx); err != nil {
			r.log.Debug("close discord link", "err", err)
		}
		cancel()
		r.dropDiscordSources()
		// The code belonged to that voice connection's DAVE session.
		r.setPrivacy("")
		if ctx.Err() != nil {
			r.log.Info("bot left the voice channel")
			return
		}
		r.log.Warn("voice connection ended; rejoining")
		state, message = StatusReconnecting, "the voice connection ended; rejoining"
	}
}

// serveLink forwards Discord frames to browsers until the link ends or ctx
// is cancelled.
func (r *room) serveLink(ctx context.Context, link DiscordLink) {
	lc := &linkConn{link: link, q: make(chan linkItem, linkQueueLen)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		lc.run(stop, r.log)
	}()
	r.out.Store(lc)
	defer func() {
		r.out.Store(nil)
		close(stop)
		wg.Wait()
	}()
	tick := time.NewTicker(speakingCheckEvery)
	defer tick.Stop()
	frames := link.Frames()
	for {
		select {
		case <-ctx.Done():
			return
		case f, ok := <-frames:
			if !ok {
				return
			}
			r.onDiscordFrame(f, time.Now())
		case now := <-tick.C:
			r.checkDiscordQuiet(now)
		}
	}
}

// onDiscordFrame forwards one frame from a Discord user to every browser:
// audio as one track per user, video (from the user's first keyframe on)
// as a second track in the same stream.
func (r *room) onDiscordFrame(f DiscordFrame, now time.Time) {
	if f.UserID == "" {
		return
	}
	if f.Kind == FrameUserLeft {
		r.dropDiscordUser(f.UserID)
		return
	}
	if len(f.Payload) == 0 {
		return
	}
	video := f.Kind == FrameVideo
	r.mu.Lock()
	d := r.discord[f.UserID]
	created, videoStarted := false, false
	if d == nil {
		d = newDiscordSource(f.UserID, uint16(rand.Uint32()), rand.Uint32(), r.m.opts.ObserveDiscordAudio)
		r.discord[f.UserID] = d
		for _, s := range r.sessions {
			r.subscribeLocked(&d.fan, opusCapability, discordTrackID(d.userID), discordStreamID(d.userID), nil, s)
		}
		created = true
	}
	if video && d.video == nil && f.Keyframe {
		d.video = newDiscordVideo(uint16(rand.Uint32()), rand.Uint32(), now)
		for _, s := range r.sessions {
			r.subscribeLocked(&d.video.fan, vp8Capability, discordVideoTrackID(d.userID), discordStreamID(d.userID), nil, s)
		}
		videoStarted = true
	}
	v := d.video
	r.mu.Unlock()
	switch {
	case created:
		r.log.Info("discord user appears in the room", "user", f.UserID, "video", video)
		r.discordUpdate(d, "joined", EventParticipantJoined)
	case videoStarted:
		r.log.Info("discord user shows video", "user", f.UserID)
		r.discordUpdate(d, "updated", EventCamera)
	}
	if video {
		if v != nil {
			v.forward(f.Payload, now)
		}
		return
	}
	d.forward(f.Payload, f.Missing, f.Received, now)
	if !d.speakingFlag.Load() {
		d.speakingFlag.Store(true)
		r.discordUpdate(d, "updated", EventSpeaking)
	}
}

// checkDiscordQuiet ends the speaking state of Discord users who stopped.
func (r *room) checkDiscordQuiet(now time.Time) {
	r.mu.Lock()
	var quiet []*discordSource
	for _, d := range r.discord {
		if d.speakingFlag.Load() && now.Sub(d.lastSeen) >= discordQuietAfter {
			quiet = append(quiet, d)
		}
	}
	r.mu.Unlock()
	for _, d := range quiet {
		d.speakingFlag.Store(false)
		r.discordUpdate(d, "updated", EventSpeaking)
	}
}

// discordUpdate tells browsers and the hub about a Discord participant.
func (r *room) discordUpdate(d *discordSource, event, hubEvent string) {
	p := r.discordParticipant(d)
	r.mu.Lock()
	to := r.othersLocked("")
	r.mu.Unlock()
	r.announce(to, event, p)
	r.m.opts.Publish(hubEvent, ParticipantEvent{RoomID: r.id, Participant: p})
}

// dropDiscordSources removes every Discord user's tracks when the link ends.
func (r *room) dropDiscordSources() {
	r.mu.Lock()
	gone := make([]*discordSource, 0, len(r.discord))
	for _, d := range r.discord {
		r.dropDiscordLocked(d)
		gone = append(gone, d)
	}
	r.mu.Unlock()
	for _, d := range gone {
		r.discordLeft(d)
	}
}

// dropDiscordUser removes one Discord user's tracks when they leave the
// voice channel.
func (r *room) dropDiscordUser(userID string) {
	r.mu.Lock()
	d := r.discord[userID]
	if d != nil {
		r.dropDiscordLocked(d)
	}
	r.mu.Unlock()
	if d != nil {
		r.log.Info("discord user left the voice channel", "user", userID)
		r.discordLeft(d)
	}
}

// dropDiscordLocked unsubscribes every browser from d's audio and video and
// forgets d. Called with r.mu held.
func (r *room) dropDiscordLocked(d *discordSource) {
	fans := []*fanout{&d.fan}
	if d.video != nil {
		fans = append(fans, &d.video.fan)
	}
	for _, fan := range fans {
		for _, dt := range fan.list() {
			fan.remove(dt)
			dt.sub.unwant(dt)
		}
	}
	delete(r.discord, d.userID)
}

// discordLeft reports a removed Discord user.
func (r *room) discordLeft(d *discordSource) {
	d.speakingFlag.Store(false)
	r.discordUpdate(d, "left", EventParticipantLeft)
}
