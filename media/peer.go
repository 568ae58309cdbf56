package media

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

const (
	// sigQueueLen bounds signaling messages waiting for the session
	// goroutine; a browser that floods gets "busy" errors.
	sigQueueLen = 64
	// maxPendingCandidates bounds candidates held until the remote
	// description arrives.
	maxPendingCandidates = 64
	// keyframeMinInterval rate-limits PLIs sent to one publisher.
	keyframeMinInterval = 100 * time.Millisecond
	// vp8MaxLate is how many packets the VP8 frame assembler waits for a
	// late packet.
	vp8MaxLate = 64
)

// session is one browser in one room: its PeerConnection, the tracks it
// receives and publishes, and its signaling state.
type session struct {
	m      *Manager
	room   *room
	sig    Peer
	id     string // participant id, unique per join
	userID string
	name   string
	log    *slog.Logger
	pc     *webrtc.PeerConnection
	q      *sendQueue

	sigIn      chan clientMessage
	kickTracks chan struct{}
	kickNeg    chan struct{}
	kickFail   chan struct{}
	needOffer  atomic.Bool
	// welcomed is closed once the browser got its "joined" message;
	// before that the session sends no offer and no privacy code.
	welcomed    chan struct{}
	welcomeOnce sync.Once
	trackSeq    atomic.Uint64
	stop        chan struct{}
	stopOnce    sync.Once
	wg          sync.WaitGroup

	mu        sync.Mutex
	closed    bool // no new goroutines
	removed   bool
	desired   map[string]*downTrack
	muted     bool
	camera    bool
	discTimer *time.Timer

	// Owned by the run goroutine.
	senders      map[string]*webrtc.RTPSender
	ignoreOffer  bool
	restartICE   bool
	pendingCands []webrtc.ICECandidateInit

	// descMu puts each local description on the socket before the
	// candidates it brings: it is held from creating a description (an
	// ICE restart gathers from CreateOffer on) until it is sent, and the
	// candidate callback takes it too. Otherwise a new ufrag's candidates
	// can overtake the description, and the browser drops them as being
	// of an unknown ICE generation. Pion calls the callback from its own
	// goroutines (no candidate pool is configured), never inside these
	// calls.
	descMu sync.Mutex
}

// newSession creates the browser's PeerConnection and starts its
// goroutines. The session is not in its room yet.
func newSession(m *Manager, r *room, p Peer, id string) (*session, error) {
	pc, err := m.eng.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	s := &session{
		m: m, room: r, sig: p, id: id, userID: p.UserID(), name: p.Name(),
		log:        r.log.With("session", id, "user", p.UserID()),
		pc:         pc,
		q:          newSendQueue(sendQueueLen),
		sigIn:      make(chan clientMessage, sigQueueLen),
		kickTracks: make(chan struct{}, 1),
		kickNeg:    make(chan struct{}, 1),
		kickFail:   make(chan struct{}, 1),
		stop:       make(chan struct{}),
		welcomed:   make(chan struct{}),
		desired:    make(map[string]*downTrack),
		senders:    make(map[string]*webrtc.RTPSender),
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		s.descMu.Lock()
		defer s.descMu.Unlock()
		sendTo(p, candidateMessage{Type: msgCandidate, RoomID: r.id, Candidate: c.ToJSON()})
	})
	pc.OnNegotiationNeeded(func() {
		s.needOffer.Store(true)
		kick(s.kickNeg)
	})
	pc.OnTrack(func(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		r.addUpTrack(s, remote, recv)
	})
	pc.OnConnectionStateChange(s.onConnectionState)
	s.goSafe(s.run)
	s.goSafe(func() { s.q.run(s.stop) })
	return s, nil
}

// kick wakes a goroutine waiting on ch without blocking.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// goSafe runs fn on a goroutine owned by the session, unless it is closing.
func (s *session) goSafe(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// welcome marks the "joined" message sent. The room calls it with its lock
// held, so isWelcomed under that lock sees a consistent answer.
func (s *session) welcome() { s.welcomeOnce.Do(func() { close(s.welcomed) }) }

// isWelcomed reports whether the browser got its "joined" message.
func (s *session) isWelcomed() bool {
	select {
	case <-s.welcomed:
		return true
	default:
		return false
	}
}

// markRemoved reports whether this call is the one that removes s.
func (s *session) markRemoved() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return false
	}
	s.removed = true
	return true
}

// close stops every goroutine of the session and closes its connection.
func (s *session) close() {
	s.mu.Lock()
	s.closed = true
	if s.discTimer != nil {
		s.discTimer.Stop()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	if err := s.pc.Close(); err != nil {
		s.log.Debug("close peer connection", "err", err)
	}
	s.wg.Wait()
}

// post hands a signaling message to the session goroutine.
func (s *session) post(msg clientMessage) bool {
	select {
	case s.sigIn <- msg:
		return true
	default:
		return false
	}
}

// want and unwant change the set of tracks the browser should receive.
func (s *session) want(dt *downTrack) {
	s.mu.Lock()
	s.desired[dt.key] = dt
	s.mu.Unlock()
	kick(s.kickTracks)
}

func (s *session) unwant(dt *downTrack) {
	s.mu.Lock()
	if s.desired[dt.key] == dt {
		delete(s.desired, dt.key)
	}
	s.mu.Unlock()
	kick(s.kickTracks)
}

// onConnectionState removes a browser whose connection failed, or stayed
// disconnected longer than ICEFailTimeout.
func (s *session) onConnectionState(st webrtc.PeerConnectionState) {
	s.log.Debug("connection state", "state", st.String())
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		// Closed without our Close means the browser ended DTLS; after
		// our Close the run goroutine is gone and the kick is ignored.
		kick(s.kickFail)
	case webrtc.PeerConnectionStateDisconnected:
		if s.discTimer == nil && !s.closed {
			s.discTimer = time.AfterFunc(s.m.opts.ICEFailTimeout, func() { kick(s.kickFail) })
		}
	case webrtc.PeerConnectionStateConnected:
		if s.discTimer != nil {
			s.discTimer.Stop()
			s.discTimer = nil
		}
		// Media can reach the browser now. A keyframe asked for when a
		// track was bound may have been written before the transport was
		// up, and lost: ask the publishers again.
		for _, dt := range s.desired {
			if dt.src != nil {
				dt.src.requestKeyframe()
			}
		}
	}
}

// run owns the PeerConnection's signaling and track set.
func (s *session) run() {
	for {
		select {
		case <-s.stop:
			return
		case msg := <-s.sigIn:
			s.handle(msg)
		case <-s.kickTracks:
			s.reconcile()
		case <-s.kickNeg:
			s.negotiate()
		case <-s.kickFail:
			s.m.removeSessionAsync(s, fmt.Errorf("%w: no media path to your browser; rejoin to try again", ErrICEFailed))
		}
	}
}

func (s *session) sendErr(err error) { sendTo(s.sig, newErrorMessage(err)) }

// handle applies one offer, answer, candidate or restart-ice message.
func (s *session) handle(msg clientMessage) {
	switch msg.Type {
	case msgOffer:
		s.onOffer(msg.SDP)
	case msgAnswer:
		s.onAnswer(msg.SDP)
	case msgCandidate:
		s.onCandidate(*msg.Candidate)
	case msgRestartICE:
		s.restartICE = true
		kick(s.kickNeg)
	}
}

// onOffer answers a browser offer, or ignores it when it collides with the
// server's own pending offer (the server is the impolite peer).
func (s *session) onOffer(sdp string) {
	if s.pc.SignalingState() != webrtc.SignalingStateStable {
		s.ignoreOffer = true
		s.log.Debug("ignoring colliding offer")
		return
	}
	s.ignoreOffer = false
	s.descMu.Lock()
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		s.descMu.Unlock()
		s.failNegotiation(fmt.Errorf("%w: offer rejected: %v", ErrBadSDP, err))
		return
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err == nil {
		err = s.pc.SetLocalDescription(answer)
	}
	if err != nil {
		s.descMu.Unlock()
		s.failNegotiation(fmt.Errorf("%w: cannot answer the offer: %v", ErrBadSDP, err))
		return
	}
	sendTo(s.sig, sdpMessage{Type: msgAnswer, RoomID: s.room.id, SDP: answer.SDP})
	s.descMu.Unlock()
	s.flushCandidates()
	s.afterStable()
}

// onAnswer applies the browser's answer to the server's offer. A rejected
// answer leaves the offer pending, so the browser may answer it again.
func (s *session) onAnswer(sdp string) {
	if s.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		s.sendErr(fmt.Errorf("%w: the server has no offer waiting (state %s)", ErrUnexpectedAnswer, s.pc.SignalingState()))
		return
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		s.failNegotiation(fmt.Errorf("%w: answer rejected: %v; answer the pending offer again", ErrBadSDP, err))
		return
	}
	s.flushCandidates()
	s.afterStable()
}

// failNegotiation reports a rejected description. Pion cannot roll back
// (its signaling state machine has no rollback transitions), so a session
// left half-way through an offer/answer exchange it cannot finish is ended;
// one still stable, or still waiting for an answer, carries on.
func (s *session) failNegotiation(err error) {
	switch s.pc.SignalingState() {
	case webrtc.SignalingStateStable, webrtc.SignalingStateHaveLocalOffer:
		s.sendErr(err)
	default:
		s.m.removeSessionAsync(s, err)
	}
}

// afterStable starts the next offer if changes waited for this one.
func (s *session) afterStable() {
	if s.needOffer.Load() || s.restartICE {
		kick(s.kickNeg)
	}
}

// onCandidate adds a browser's trickled candidate. One that comes before
// the description it belongs to is held until that description is
// applied: before any remote description, and after an ICE restart, when
// the browser's new candidates (a new ufrag) can overtake its answer or
// offer on the socket; added at once, pion would drop them as belonging to
// another generation.
func (s *session) onCandidate(c webrtc.ICECandidateInit) {
	if s.ignoreOffer {
		return // belongs to an offer we ignored
	}
	if s.pc.RemoteDescription() == nil || !s.matchesRemote(c) {
		if len(s.pendingCands) < maxPendingCandidates {
			s.pendingCands = append(s.pendingCands, c)
		}
		return
	}
	if err := s.pc.AddICECandidate(c); err != nil {
		s.sendErr(fmt.Errorf("%w: %v", ErrBadCandidate, err))
	}
}

// flushCandidates adds the held candidates once a remote description is
// applied; those of an older ICE generation than it are dropped.
func (s *session) flushCandidates() {
	cands := s.pendingCands
	s.pendingCands = nil
	for _, c := range cands {
		if !s.matchesRemote(c) {
			s.log.Debug("dropping a candidate of another ICE generation", "candidate", c.Candidate)
			continue
		}
		if err := s.pc.AddICECandidate(c); err != nil {
			s.sendErr(fmt.Errorf("%w: %v", ErrBadCandidate, err))
		}
	}
}

// matchesRemote reports whether a candidate belongs to the applied remote
// description: it names no ufrag, or the description's ufrag.
func (s *session) matchesRemote(c webrtc.ICECandidateInit) bool {
	ufrag := candidateUfrag(c)
	if ufrag == "" {
		return true
	}
	rd := s.pc.RemoteDescription()
	if rd == nil {
		return false
	}
	for _, line := range strings.Split(rd.SDP, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok && v == ufrag {
			return true
		}
	}
	return false
}

// candidateUfrag is the ICE username fragment a candidate belongs to: its
// usernameFragment, or the "ufrag" extension of its candidate line (which
// Chromium and pion write); "" when it names none.
func candidateUfrag(c webrtc.ICECandidateInit) string {
	if c.UsernameFragment != nil && *c.UsernameFragment != "" {
		return *c.UsernameFragment
	}
	fields := strings.Fields(c.Candidate)
	for i := 8; i+1 < len(fields); i += 2 { // extensions follow "typ <type>" (RFC 8839 §5.1)
		if fields[i] == "ufrag" {
			return fields[i+1]
		}
	}
	return ""
}

// negotiate sends the server's offer when tracks changed or an ICE restart
// was asked for, once the signaling state is stable.
func (s *session) negotiate() {
	if !s.needOffer.Load() && !s.restartICE {
		return
	}
	if !s.isWelcomed() {
		return // addSession kicks again after "joined"
	}
	if s.pc.SignalingState() != webrtc.SignalingStateStable {
		return // afterStable kicks again
	}
	s.needOffer.Store(false)
	opts := &webrtc.OfferOptions{ICERestart: s.restartICE}
	s.restartICE = false
	s.descMu.Lock()
	defer s.descMu.Unlock()
	offer, err := s.pc.CreateOffer(opts)
	if err == nil {
		err = s.pc.SetLocalDescription(offer)
	}
	if err != nil {
		if !errIsClosed(err) {
			s.log.Warn("create offer", "err", err)
		}
		return
	}
	sendTo(s.sig, sdpMessage{Type: msgOffer, RoomID: s.room.id, SDP: offer.SDP})
}

// reconcile adds and removes senders so the connection carries exactly the
// desired tracks.
func (s *session) reconcile() {
	s.mu.Lock()
	desired := make(map[string]*downTrack, len(s.desired))
	for k, v := range s.desired {
		desired[k] = v
	}
	s.mu.Unlock()
	for key, sender := range s.senders {
		if dt, ok := desired[key]; ok && sender.Track() == dt {
			continue
		}
		if err := s.pc.RemoveTrack(sender); err != nil && !errIsClosed(err) {
			s.log.Debug("remove track", "track", key, "err", err)
		}
		delete(s.senders, key)
	}
	for key, dt := range desired {
		if _, ok := s.senders[key]; ok {
			continue
		}
		sender, err := s.pc.AddTrack(dt)
		if err != nil {
			if !errIsClosed(err) {
				s.log.Warn("add track", "track", key, "err", err)
			}
			continue
		}
		s.senders[key] = sender
		s.goSafe(func() { s.readSenderRTCP(sender, dt) })
	}
}

// readSenderRTCP drains RTCP for one forwarded track (the interceptors need
// it read) and relays keyframe requests to the publisher.
func (s *session) readSenderRTCP(sender *webrtc.RTPSender, dt *downTrack) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		if dt.src == nil {
			// Discord video: no keyframe request can reach its sender;
			// the sender's next keyframe answers (see discordVideo).
			continue
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				dt.src.requestKeyframe()
			}
		}
	}
}

// nextTrackID names the session's next published track as subscribers see it.
func (s *session) nextTrackID(kind webrtc.RTPCodecType) string {
	return "browser-" + s.id + "-" + kind.String() + "-" + strconv.FormatUint(s.trackSeq.Add(1), 10)
}

// streamID is the stream all of the session's tracks belong to.
func (s *session) streamID() string { return "browser-" + s.id }

func (s *session) isMuted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.muted
}

// upTrack is one track a browser publishes.
type upTrack struct {
	info     TrackInfo
	pub      *session
	remote   *webrtc.TrackRemote
	codec    webrtc.RTPCodecCapability
	levelID  uint8 // audio-level extension id, 0 when not negotiated
	fan      fanout
	kf       chan struct{}
	lastPLI  time.Time // kfLoop only
	sb       *samplebuilder.SampleBuilder
	waitKF   bool
	isVideo  bool
	isActive atomic.Bool
}

// requestKeyframe asks the publisher for a keyframe without blocking.
func (u *upTrack) requestKeyframe() {
	if u.isVideo {
		kick(u.kf)
	}
}

// kfLoop sends PLIs (RFC 4585 §6.3.1) to the publisher, at most one per
// keyframeMinInterval: a request that comes sooner is sent when the
// interval is over, together with any others that came meanwhile.
func (u *upTrack) kfLoop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-u.kf:
		}
		if wait := keyframeMinInterval - time.Since(u.lastPLI); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			select { // requests that came while waiting are answered by this PLI
			case <-u.kf:
			default:
			}
		}
		u.lastPLI = time.Now()
		err := u.pub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(u.remote.SSRC())}})
		if err != nil && !errIsClosed(err) {
			u.pub.log.Debug("send PLI", "err", err)
		}
	}
}

// audioLevelID finds the negotiated id of the audio-level extension.
func audioLevelID(recv *webrtc.RTPReceiver) uint8 {
	for _, e := range recv.GetParameters().HeaderExtensions {
		if e.URI == audioLevelURI {
			return uint8(e.ID)
		}
	}
	return 0
}

// readUp forwards one published track until it ends.
func (s *session) readUp(u *upTrack) {
	defer s.room.removeUpTrack(u)
	r := s.room
	for {
		pkt, _, err := u.remote.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		if u.isVideo {
			s.videoToDiscord(u, pkt)
		} else {
			level := uint8(127)
			if u.levelID != 0 {
				var ext rtp.AudioLevelExtension
				if b := pkt.GetExtension(u.levelID); b != nil && ext.Unmarshal(b) == nil {
					level = ext.Level
				}
			}
			r.observeLevel(s, level, now)
			if r.isSpeaker(s.id) {
				r.toDiscordOpus(pkt.Payload)
			}
		}
		// Extension ids are per connection: subscribers get none of the
		// publisher's, their own interceptors add what they negotiated.
		pkt.Header.Extension = false
		pkt.Header.Extensions = nil
		u.fan.send(pkt, now)
	}
}

// videoToDiscord reassembles the active speaker's VP8 frames and offers
// them to the Discord link, starting at a keyframe.
func (s *session) videoToDiscord(u *upTrack, pkt *rtp.Packet) {
	lc := s.room.out.Load()
	if lc == nil || lc.videoRefused.Load() || !s.room.isSpeaker(s.id) {
		u.sb = nil
		return
	}
	if u.sb == nil {
		u.sb = samplebuilder.New(vp8MaxLate, &codecs.VP8Packet{}, u.codec.ClockRate)
		u.waitKF = true
		u.requestKeyframe()
	}
	cp := *pkt // the samplebuilder keeps packets; the fanout strips extensions
	u.sb.Push(&cp)
	for sample := u.sb.Pop(); sample != nil; sample = u.sb.Pop() {
		// VP8 frame tag, RFC 6386 §9.1: bit 0 clear means keyframe.
		key := len(sample.Data) > 0 && sample.Data[0]&0x01 == 0
		if u.waitKF && !key {
			continue
		}
		u.waitKF = false
		lc.push(linkItem{vp8: sample.Data, keyframe: key})
	}
}
