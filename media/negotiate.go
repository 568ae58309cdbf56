package media

import (
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// Negotiation follows perfect negotiation (signaling.go), the bridge being
// the impolite peer. Everything here runs on the session's goroutine.
// Local candidates are queued by pion's callback and sent by that
// goroutine too (sendCandidates), so each description reaches the browser
// before the candidates it brings.

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
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		s.failNegotiation(fmt.Errorf("%w: offer rejected: %v", ErrBadSDP, err))
		return
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err == nil {
		err = s.pc.SetLocalDescription(answer)
	}
	if err != nil {
		s.failNegotiation(fmt.Errorf("%w: cannot answer the offer: %v", ErrBadSDP, err))
		return
	}
	sendTo(s.sig, sdpMessage{Type: msgAnswer, RoomID: s.room.id, SDP: answer.SDP})
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
