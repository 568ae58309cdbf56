package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The room's Discord leg: joining and rejoining the voice channel, the
// Discord users heard and their tracks, and the queue toward Discord.

const (
	// linkQueueLen bounds frames waiting for the Discord link; when full
	// the newest is dropped.
	linkQueueLen = 32
	// discordQuietAfter ends a Discord user's "speaking" state.
	discordQuietAfter = 500 * time.Millisecond
	// speakingCheckEvery is how often the link's reader looks for Discord
	// users who went quiet.
	speakingCheckEvery = 250 * time.Millisecond
)

// ensureLink starts the Discord link if the room has browsers and the
// guild's one voice connection is free.
func (r *room) ensureLink() {
	if r.shut || len(r.members) == 0 || r.link != nil {
		return
	}
	if ok, busy := r.m.claimGuild(r.guild, r.id); !ok {
		r.setStatus(StatusUnavailable, r.m.waitingMessage(busy))
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.link = &linkRun{cancel: cancel}
	// The room's goroutine is counted too, so this Add never races the
	// manager's final Wait.
	r.m.wg.Add(1)
	go func() {
		defer r.m.wg.Done()
		r.runLink(ctx)
	}()
}

// waitingMessage tells browsers of a room that waits for a bot which rooms
// hold the bots, and that they will be bridged when one frees.
func (m *Manager) waitingMessage(busy []string) string {
	if len(busy) == 0 {
		return msgNoBot
	}
	names := make([]string, len(busy))
	for i, id := range busy {
		name := ""
		if m.opts.RoomName != nil {
			name = m.opts.RoomName(id)
		}
		if name == "" {
			name = id
		}
		names[i] = strconv.Quote(name)
	}
	bots := "the bot is"
	if len(busy) > 1 {
		bots = "every bot of this server is busy:"
	}
	return fmt.Sprintf("waiting for a bot: %s in %s; this room will be bridged to Discord as soon as one frees", bots, strings.Join(names, ", "))
}

// stopLink asks the link goroutine to leave the voice channel; linkDone
// follows once it has.
func (r *room) stopLink() {
	if r.link == nil || r.link.stopping {
		return
	}
	r.link.stopping = true
	r.link.cancel()
}

// runLink joins the voice channel, serves the link, and rejoins with
// capped exponential backoff until ctx ends. It tells the room of every
// change by posting actions; linkDone is its last.
func (r *room) runLink(ctx context.Context) {
	defer r.post(linkDone{})
	backoff := r.m.opts.RejoinBackoff
	state, message := StatusConnecting, "joining the voice channel"
	for {
		r.post(statusAction{state, message})
		link, err := r.m.opts.Joiner.Join(ctx, r.guild, r.id)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrNoFreeBot) {
				// Fewer bots than the room thought: give the claim back
				// (linkDone) and wait in line, after a pause, so that a
				// pool that disagrees with Options.Links cannot spin.
				r.log.Info("no bot free for the room; waiting in line", "err", err)
				t := time.NewTimer(backoff)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				return
			}
			r.log.Warn("joining the voice channel failed", "err", err, "retry_in", backoff)
			r.post(statusAction{StatusReconnecting, fmt.Sprintf("joining the voice channel failed (%v); retrying in %s", err, backoff)})
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
		r.post(statusAction{StatusConnected, "the bot is in the voice channel"})
		lc := startLinkConn(link, r.log)
		r.post(linkUpAction{lc})
		r.readLink(ctx, link)
		lc.stop()
		cctx, cancel := context.WithTimeout(context.Background(), linkCloseTimeout)
		if err := link.Close(cctx); err != nil {
			r.log.Debug("close discord link", "err", err)
		}
		cancel()
		r.post(linkDownAction{})
		if ctx.Err() != nil {
			r.log.Info("bot left the voice channel")
			return
		}
		r.log.Warn("voice connection ended; rejoining")
		state, message = StatusReconnecting, "the voice connection ended; rejoining"
	}
}

// readLink forwards what Discord users send to the browsers until the link
// ends or ctx is cancelled. It owns the per-frame state of the Discord
// users it heard (users); the room learns who appears, shows video, speaks
// and leaves through actions.
func (r *room) readLink(ctx context.Context, link DiscordLink) {
	users := make(map[string]*discordSource)
	for {
		// Receive waits at most until the next quiet check.
		wctx, cancel := context.WithTimeout(ctx, speakingCheckEvery)
		for {
			ev, err := link.Receive(wctx)
			if err != nil {
				cancel()
				if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
					if ctx.Err() == nil && !errors.Is(err, ErrLinkEnded) {
						r.log.Warn("discord link", "err", err)
					}
					return
				}
				break
			}
			switch ev := ev.(type) {
			case DiscordFrame:
				if !r.onDiscordFrame(ctx, users, ev, time.Now()) {
					cancel()
					return
				}
			case UserLeft:
				if d := users[ev.UserID]; d != nil {
					delete(users, ev.UserID)
					r.post(discordLeftAction{d})
				}
			case PrivacyCode:
				r.post(privacyAction{ev.Code})
			}
		}
		now := time.Now()
		for _, d := range users {
			if d.heard && now.Sub(d.lastSeen) >= discordQuietAfter {
				d.heard = false
				r.post(discordSpeakingAction{d, false})
			}
		}
	}
}

// onDiscordFrame forwards one frame from a Discord user to every browser:
// audio as one track per user, video (from the user's first keyframe on)
// as a second track in the same stream. A new user, or a user's first
// video, waits for the room to subscribe the browsers, so that no frame is
// sent to nobody. It reports false when ctx ended meanwhile.
func (r *room) onDiscordFrame(ctx context.Context, users map[string]*discordSource, f DiscordFrame, now time.Time) bool {
	if f.UserID == "" || len(f.Payload) == 0 {
		return true
	}
	video := f.Kind == FrameVideo
	d := users[f.UserID]
	if d == nil {
		d = newDiscordSource(f.UserID, uint16(rand.Uint32()), rand.Uint32(), r.m.opts.ObserveDiscordAudio)
		a := &discordJoinedAction{d: d, video: video, done: make(chan struct{})}
		if !r.await(ctx, a, a.done) {
			return false
		}
		users[f.UserID] = d
	}
	if video {
		if d.video == nil {
			if !f.Keyframe {
				return true
			}
			a := &discordVideoAction{d: d, v: newDiscordVideo(uint16(rand.Uint32()), rand.Uint32(), now), done: make(chan struct{})}
			if !r.await(ctx, a, a.done) {
				return false
			}
		}
		r.m.eng.burst(func() { d.video.forward(f.Payload, now) })
		return true
	}
	r.m.eng.burst(func() { d.forward(f.Payload, f.Missing, f.Received, now) })
	if !d.heard {
		d.heard = true
		r.post(discordSpeakingAction{d, true})
	}
	return true
}

// statusAction records the Discord leg's state and tells every browser.
type statusAction struct{ state, message string }

func (a statusAction) apply(r *room) { r.setStatus(a.state, a.message) }

// privacyAction records the voice connection's new privacy code.
type privacyAction struct{ code string }

func (a privacyAction) apply(r *room) { r.setPrivacy(a.code) }

// linkUpAction opens the path from the forwarded speaker to Discord.
type linkUpAction struct{ lc *linkConn }

func (a linkUpAction) apply(r *room) {
	r.startMix(a.lc)
	r.setRoute(r.route.Load().speaker, a.lc)
}

// linkDownAction closes that path once the voice connection ended: every
// Discord user's tracks go, and the privacy code, which belonged to that
// connection's DAVE session, is cleared.
type linkDownAction struct{}

func (linkDownAction) apply(r *room) {
	r.stopMix()
	r.setRoute(r.route.Load().speaker, nil)
	for _, d := range r.discord {
		r.dropDiscord(d)
	}
	r.setPrivacy("")
}

// linkDone: the link goroutine is gone. The guild's voice connection is
// free for another room, or for this one again if browsers came back.
type linkDone struct{}

func (linkDone) apply(r *room) {
	r.link = nil
	r.m.releaseGuild(r.guild, r.id)
	r.ensureLink()
}

// discordJoinedAction adds a Discord user heard for the first time.
type discordJoinedAction struct {
	d     *discordSource
	video bool
	done  chan struct{}
}

func (a *discordJoinedAction) apply(r *room) {
	defer close(a.done)
	d := a.d
	r.discord[d.userID] = d
	for _, mb := range r.members {
		r.subscribe(&d.fan, opusCapability, discordTrackID(d.userID), discordStreamID(d.userID), nil, mb)
	}
	r.log.Info("discord user appears in the room", "user_id", d.userID, "video", a.video)
	r.discordUpdate(d, "joined", EventParticipantJoined)
}

// discordVideoAction starts a Discord user's video track at its first
// keyframe.
type discordVideoAction struct {
	d    *discordSource
	v    *discordVideo
	done chan struct{}
}

func (a *discordVideoAction) apply(r *room) {
	defer close(a.done)
	d := a.d
	d.video = a.v
	for _, mb := range r.members {
		r.subscribe(&d.video.fan, vp8Capability, discordVideoTrackID(d.userID), discordStreamID(d.userID), nil, mb)
	}
	r.log.Info("discord user shows video", "user_id", d.userID)
	r.discordUpdate(d, "updated", EventCamera)
}

// discordSpeakingAction reports a Discord user starting or stopping to
// send audio.
type discordSpeakingAction struct {
	d        *discordSource
	speaking bool
}

func (a discordSpeakingAction) apply(r *room) {
	if r.discord[a.d.userID] != a.d || a.d.speaking == a.speaking {
		return
	}
	a.d.speaking = a.speaking
	r.discordUpdate(a.d, "updated", EventSpeaking)
}

// discordLeftAction removes a Discord user who left the voice channel.
type discordLeftAction struct{ d *discordSource }

func (a discordLeftAction) apply(r *room) {
	if r.discord[a.d.userID] != a.d {
		return
	}
	r.log.Info("discord user left the voice channel", "user_id", a.d.userID)
	r.dropDiscord(a.d)
}

// dropDiscord unsubscribes every browser from d's audio and video, forgets
// d and reports it gone.
func (r *room) dropDiscord(d *discordSource) {
	r.dropFan(&d.fan)
	if d.video != nil {
		r.dropFan(&d.video.fan)
	}
	delete(r.discord, d.userID)
	d.speaking = false
	r.discordUpdate(d, "left", EventParticipantLeft)
}

// discordParticipant describes a Discord user.
func (r *room) discordParticipant(d *discordSource) Participant {
	p := Participant{
		ID: discordStreamID(d.userID), UserID: d.userID, Name: r.m.opts.MemberName(d.userID),
		Kind: kindDiscord, Speaking: d.speaking,
		Tracks: []TrackInfo{{TrackID: discordTrackID(d.userID), StreamID: discordStreamID(d.userID), Kind: "audio"}},
	}
	if d.video != nil {
		p.Camera = true
		p.Tracks = append(p.Tracks, TrackInfo{TrackID: discordVideoTrackID(d.userID), StreamID: discordStreamID(d.userID), Kind: "video"})
	}
	return p
}

// discordUpdate tells browsers and the hub about a Discord participant.
func (r *room) discordUpdate(d *discordSource, event, hubEvent string) {
	p := r.discordParticipant(d)
	r.announce(r.others(""), event, p)
	r.m.opts.Publish(hubEvent, ParticipantEvent{RoomID: r.id, Participant: p})
}

// linkItem is one frame toward Discord: Opus, or VP8 when vp8 is set.
type linkItem struct {
	opus     []byte
	vp8      []byte
	keyframe bool
}

// linkConn is a connected DiscordLink's bounded send queue and the
// goroutine that drains it.
type linkConn struct {
	link         DiscordLink
	q            chan linkItem
	videoRefused atomic.Bool
	quit         chan struct{}
	wg           sync.WaitGroup
}

// startLinkConn starts sending queued frames to link.
func startLinkConn(link DiscordLink, log *slog.Logger) *linkConn {
	lc := &linkConn{link: link, q: make(chan linkItem, linkQueueLen), quit: make(chan struct{})}
	lc.wg.Add(1)
	go func() {
		defer lc.wg.Done()
		lc.run(log)
	}()
	return lc
}

// push queues it without blocking; the link is slow when the queue is
// full, and the newest frame is dropped.
func (lc *linkConn) push(it linkItem) {
	select {
	case lc.q <- it:
	default:
	}
}

// stop ends the sending goroutine and waits for it.
func (lc *linkConn) stop() {
	close(lc.quit)
	lc.wg.Wait()
}

// run sends queued frames until stop.
func (lc *linkConn) run(log *slog.Logger) {
	for {
		select {
		case <-lc.quit:
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
