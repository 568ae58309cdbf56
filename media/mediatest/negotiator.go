package mediatest

import (
	"errors"
	"fmt"

	"github.com/pion/webrtc/v4"
)

// Negotiator is a test browser's side of perfect negotiation (WebRTC 1.0
// §10.7): the polite peer, the bridge being the impolite one. Pion has no
// rollback, so the browser's own offer stays out of the PeerConnection
// until the bridge answers it; a colliding offer from the bridge replaces
// it, and the browser offers again once stable. Candidates that come
// before a remote description are held until one is applied.
//
// A Negotiator belongs to the goroutine that owns the PeerConnection's
// signaling; it is not safe for concurrent use.
type Negotiator struct {
	pc      *webrtc.PeerConnection
	send    func(typ, sdp string)
	mine    *webrtc.SessionDescription // our offer, waiting for the answer
	pending []webrtc.ICECandidateInit
	again   bool // an offer was wanted while one could not be made
}

// NewNegotiator negotiates pc, sending offers and answers with send.
func NewNegotiator(pc *webrtc.PeerConnection, send func(typ, sdp string)) *Negotiator {
	return &Negotiator{pc: pc, send: send}
}

// Offer sends an offer now, or once the exchange under way is over.
func (n *Negotiator) Offer() error {
	if n.mine != nil || n.pc.SignalingState() != webrtc.SignalingStateStable {
		n.again = true
		return nil
	}
	offer, err := n.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	n.mine = &offer
	n.send("offer", offer.SDP)
	return nil
}

// OnOffer answers the bridge's offer; ours, if one is out, gives way.
func (n *Negotiator) OnOffer(sdp string) error {
	if n.mine != nil {
		n.mine, n.again = nil, true
	}
	if err := n.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return fmt.Errorf("set the bridge's offer: %w", err)
	}
	n.Flush()
	answer, err := n.pc.CreateAnswer(nil)
	if err == nil {
		err = n.pc.SetLocalDescription(answer)
	}
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	n.send("answer", answer.SDP)
	return nil
}

// OnAnswer applies the bridge's answer to our offer.
func (n *Negotiator) OnAnswer(sdp string) error {
	if n.mine == nil {
		return errors.New("answer without an offer")
	}
	err := n.pc.SetLocalDescription(*n.mine)
	n.mine = nil
	if err == nil {
		err = n.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
	}
	n.Flush()
	if err != nil {
		return fmt.Errorf("apply the bridge's answer: %w", err)
	}
	return nil
}

// OnCandidate adds the bridge's candidate, or holds it until a remote
// description is applied.
func (n *Negotiator) OnCandidate(c webrtc.ICECandidateInit) error {
	if n.pc.RemoteDescription() == nil {
		n.pending = append(n.pending, c)
		return nil
	}
	return n.pc.AddICECandidate(c)
}

// Flush adds the held candidates; call it after setting a remote
// description outside the Negotiator.
func (n *Negotiator) Flush() {
	for _, c := range n.pending {
		_ = n.pc.AddICECandidate(c)
	}
	n.pending = nil
}

// OfferDue reports, once, that an offer was put off and can be made now;
// the caller then calls Offer (or wakes whatever does).
func (n *Negotiator) OfferDue() bool {
	if n.again && n.mine == nil && n.pc.SignalingState() == webrtc.SignalingStateStable {
		n.again = false
		return true
	}
	return false
}
