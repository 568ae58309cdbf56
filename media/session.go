package media

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

const (
	// sigQueueLen bounds signaling messages waiting for the session
	// goroutine; a browser that floods gets "busy" errors.
	sigQueueLen = 64
	// maxPendingCandidates bounds candidates held until the remote
	// description arrives.
	maxPendingCandidates = 64
)

// session is one browser in one room: its PeerConnection, the tracks it
// receives and publishes, and its signaling state.
//
// One goroutine, run, owns the PeerConnection's signaling and its set of
// senders. The room decides what the browser receives (setDesired); pion's
// callbacks only queue what they report and wake run.
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
	kickState  chan struct{}
	kickCands  chan struct{}
	needOffer  atomic.Bool
	// state is pion's latest connection state, for run.
	state atomic.Int32
	// welcomed is closed once the browser got its "joined" message;
	// before that the session sends no offer.
	welcomed    chan struct{}
	welcomeOnce sync.Once
	// desired is the set of tracks the browser should receive, by track
	// id; the room replaces it, run reads it.
	desired  atomic.Pointer[map[string]*downTrack]
	trackSeq atomic.Uint64
	// muted mirrors the room's mute state for the mix, read per packet.
	muted    atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu     sync.Mutex
	closed bool // no new goroutines

	// candMu guards the local candidates gathered and not yet sent. run
	// sends them, so each goes out after the description that brought it:
	// otherwise a new ufrag's candidates can overtake the description and
	// the browser drops them as being of an unknown ICE generation.
	candMu sync.Mutex
	cands  []webrtc.ICECandidateInit

	// Owned by run.
	senders      map[string]*webrtc.RTPSender
	ignoreOffer  bool
	restartICE   bool
	pendingCands []webrtc.ICECandidateInit
	discTimer    *time.Timer // counts ICEFailTimeout while disconnected
	failedICE    atomic.Bool // counted in Manager.Stats' ICEFailures
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
		log:        r.log.With("session_id", id, "user_id", p.UserID()),
		pc:         pc,
		q:          newSendQueue(sendQueueLen),
		sigIn:      make(chan clientMessage, sigQueueLen),
		kickTracks: make(chan struct{}, 1),
		kickNeg:    make(chan struct{}, 1),
		kickState:  make(chan struct{}, 1),
		kickCands:  make(chan struct{}, 1),
		stop:       make(chan struct{}),
		welcomed:   make(chan struct{}),
		senders:    make(map[string]*webrtc.RTPSender),
	}
	s.setDesired(map[string]*downTrack{})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		s.candMu.Lock()
		s.cands = append(s.cands, c.ToJSON())
		s.candMu.Unlock()
		kick(s.kickCands)
	})
	pc.OnNegotiationNeeded(func() {
		s.needOffer.Store(true)
		kick(s.kickNeg)
	})
	pc.OnTrack(func(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		r.post(publishAction{u: newUpTrack(s, remote, recv), recv: recv})
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.state.Store(int32(st))
		kick(s.kickState)
	})
	if m.eng.inlineWrites {
		// The queue until a pair is selected; inline while it is one of
		// the batched socket's, the queue again when ICE moves the browser
		// to TCP or a relay.
		pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(pair *webrtc.ICECandidatePair) {
			inline := m.eng.inlinePair(pair)
			s.log.Debug("selected candidate pair", "pair", pair.String(), "inline", inline)
			s.q.setInline(inline)
		})
	}
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

// welcome marks the "joined" message sent; the room calls it.
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

// close stops every goroutine of the session and closes its connection.
// It is idempotent.
func (s *session) close() {
	s.mu.Lock()
	s.closed = true
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

// setDesired replaces the set of tracks the browser should receive; the
// room calls it with a set it no longer changes.
func (s *session) setDesired(set map[string]*downTrack) {
	s.desired.Store(&set)
	kick(s.kickTracks)
}

// run owns the PeerConnection's signaling and track set.
func (s *session) run() {
	for {
		var discC <-chan time.Time
		if s.discTimer != nil {
			discC = s.discTimer.C
		}
		select {
		case <-s.stop:
			if s.discTimer != nil {
				s.discTimer.Stop()
			}
			return
		case msg := <-s.sigIn:
			s.handle(msg)
		case <-s.kickCands:
			s.sendCandidates()
		case <-s.kickTracks:
			s.reconcile()
		case <-s.kickNeg:
			s.negotiate()
		case <-s.kickState:
			s.onConnectionState(webrtc.PeerConnectionState(s.state.Load()))
		case <-discC:
			s.discTimer = nil
			s.iceFailed() // disconnected past ICEFailTimeout
			s.fail()
		}
	}
}

// iceFailed counts the session's connection failure, once.
func (s *session) iceFailed() {
	if s.failedICE.CompareAndSwap(false, true) {
		s.m.iceFailures.Add(1)
	}
}

// fail removes a browser the bridge has no media path to.
func (s *session) fail() {
	s.m.removeSessionAsync(s, fmt.Errorf("%w: no media path to your browser; rejoin to try again", ErrICEFailed))
}

// onConnectionState removes a browser whose connection failed, or stayed
// disconnected longer than ICEFailTimeout.
func (s *session) onConnectionState(st webrtc.PeerConnectionState) {
	s.log.Debug("connection state", "state", st.String())
	if st == webrtc.PeerConnectionStateFailed {
		s.iceFailed()
	}
	switch st {
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		// Closed without our Close means the browser ended DTLS; after
		// our Close run is gone and nothing is reported.
		s.fail()
	case webrtc.PeerConnectionStateDisconnected:
		if s.discTimer == nil {
			s.discTimer = time.NewTimer(s.m.opts.ICEFailTimeout)
		}
	case webrtc.PeerConnectionStateConnected:
		if s.discTimer != nil {
			s.discTimer.Stop()
			s.discTimer = nil
		}
		// Media can reach the browser now. A keyframe asked for when a
		// track was bound may have been written before the transport was
		// up, and lost: ask the publishers again.
		for _, dt := range *s.desired.Load() {
			if dt.src != nil {
				dt.src.requestKeyframe()
			}
		}
	}
}

// sendCandidates sends the local candidates gathered so far.
func (s *session) sendCandidates() {
	s.candMu.Lock()
	cands := s.cands
	s.cands = nil
	s.candMu.Unlock()
	for _, c := range cands {
		sendTo(s.sig, candidateMessage{Type: msgCandidate, RoomID: s.room.id, Candidate: c})
	}
}

// reconcile adds and removes senders so the connection carries exactly the
// desired tracks.
func (s *session) reconcile() {
	desired := *s.desired.Load()
	for key, sender := range s.senders {
		if dt, ok := desired[key]; ok && sender.Track() == dt {
			continue
		}
		if err := s.pc.RemoveTrack(sender); err != nil && !errIsClosed(err) {
			s.log.Debug("remove track", "track_id", key, "err", err)
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
				s.log.Warn("add track", "track_id", key, "err", err)
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
