package media

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/voicebridge/bridge/media/mediatest"
)

// churnPeer is a browser that negotiates without sending candidates (so
// no media flows): it joins, changes its state, renegotiates and maybe
// leaves, from one goroutine that reads its own messages.
type churnPeer struct {
	*fakePeer
	self string
	pc   *webrtc.PeerConnection
}

// step reads p's next message and answers negotiation with neg; it
// returns the message.
func (p *churnPeer) step(neg *mediatest.Negotiator) (serverMsg, error) {
	select {
	case raw := <-p.out:
		var m serverMsg
		if err := json.Unmarshal(raw, &m); err != nil {
			return m, err
		}
		var err error
		switch m.Type {
		case "error":
			err = fmt.Errorf("error %s", raw)
		case "offer":
			err = neg.OnOffer(m.SDP)
		case "answer":
			err = neg.OnAnswer(m.SDP)
		}
		if err == nil && neg.OfferDue() {
			err = neg.Offer()
		}
		return m, err
	case <-time.After(waitLong):
		return serverMsg{}, fmt.Errorf("nothing within %s", waitLong)
	}
}

// nextMsg waits for a message of type typ, skipping others.
func (p *churnPeer) nextMsg(typ string) (serverMsg, error) {
	deadline := time.After(waitLong)
	for {
		select {
		case raw := <-p.out:
			var m serverMsg
			if err := json.Unmarshal(raw, &m); err != nil {
				return m, err
			}
			if m.Type == typ {
				return m, nil
			}
		case <-deadline:
			return serverMsg{}, fmt.Errorf("peer %s: no %s within %s", p.id, typ, waitLong)
		}
	}
}

// signal sends one message as p.
func (p *churnPeer) signal(m *Manager, v map[string]any) {
	raw, _ := json.Marshal(v)
	m.HandleSignal(context.Background(), p, v["type"].(string), raw)
}

// TestRoomOwnerUnderConcurrentChurn drives 50 browsers into one room at
// once: each joins, mutes, turns its camera on, renegotiates (its own offer
// and an ICE restart) and every other one leaves, by "leave" or by its
// socket closing, while a Discord user talks and the voice connection
// fails and is rejoined. In the end the room holds exactly the browsers
// that stayed, each told of itself first, and closing the manager leaves
// no goroutine behind.
func TestRoomOwnerUnderConcurrentChurn(t *testing.T) {
	before := goleak.IgnoreCurrent()
	j := newFakeJoiner()
	ev := &events{}
	m, err := NewManager(Options{
		Joiner:          j,
		GuildID:         testGuild,
		ICEUDPListen:    "127.0.0.1:0",
		IPFilter:        loopbackOnly,
		NetworkTypes:    []webrtc.NetworkType{webrtc.NetworkTypeUDP4},
		IncludeLoopback: true,
		Grace:           time.Minute,
		RejoinBackoff:   20 * time.Millisecond,
		Publish:         ev.publish,
		Logger:          testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}

	const n = 50
	api := newBrowserAPI(t)
	peers := make([]*churnPeer, n)
	for i := range peers {
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		peers[i] = &churnPeer{fakePeer: newFakePeer("c"+strconv.Itoa(i), strconv.Itoa(5000+i)), pc: pc}
	}
	stay := func(i int) bool { return i%2 == 0 }

	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := churn(m, p, stay(i), i%4 == 1); err != nil {
				errs <- fmt.Errorf("peer %s: %w", p.id, err)
			}
		}()
	}
	// A Discord user talks, and the voice connection fails midway.
	link := waitLink(t, j)
	talkStop, talkDone := make(chan struct{}), make(chan struct{})
	go feedDiscord(link, "400", readOggOpus(t, tone440), talkStop, talkDone)
	ev.wait(t, EventParticipantJoined, "discord-400")
	link.die()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	close(talkStop)
	<-talkDone
	waitClosed(t, link)
	ev.wait(t, EventParticipantLeft, "discord-400") // the link took its users along
	if t.Failed() {
		t.FailNow()
	}
	waitLink(t, j) // rejoined

	// A late browser sees exactly those who stayed.
	obs := &churnPeer{fakePeer: newFakePeer("obs", "6000")}
	obs.signal(m, map[string]any{"type": "join", "roomId": "300"})
	joined, err := obs.nextMsg("joined")
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, p := range joined.Participants {
		if p.Kind == kindBrowser {
			got = append(got, p.ID)
			if !p.Muted || !p.Camera {
				t.Errorf("participant %s: muted %v camera %v, want both true", p.ID, p.Muted, p.Camera)
			}
		}
	}
	for i, p := range peers {
		if stay(i) {
			want = append(want, p.self)
		} else if !ev.has(EventParticipantLeft, p.self) {
			t.Errorf("no participant.left event for %s", p.self)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("room holds %v, want %v", got, want)
	}
	m.mu.Lock()
	sessions, rooms := len(m.byPeer), len(m.rooms)
	m.mu.Unlock()
	if sessions != n/2+1 || rooms != 1 {
		t.Fatalf("manager has %d sessions in %d rooms, want %d in 1", sessions, rooms, n/2+1)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if err := p.pc.Close(); err != nil {
			t.Error(err)
		}
	}
	goleak.VerifyNone(t, before)
}

// churn is one browser's life in TestRoomOwnerUnderConcurrentChurn: it
// renegotiates twice, its own offer (for a receive-only audio section)
// and an ICE restart the bridge offers, answering whatever the bridge
// offers meanwhile, before it stays, leaves or hangs up.
func churn(m *Manager, p *churnPeer, stay, hangUp bool) error {
	p.signal(m, map[string]any{"type": "join", "roomId": "300"})
	raw := <-p.out
	var first serverMsg
	if err := json.Unmarshal(raw, &first); err != nil || first.Type != "joined" {
		return fmt.Errorf("first message %s, want joined", raw)
	}
	p.self = first.Self
	p.signal(m, map[string]any{"type": "mute", "muted": true})
	p.signal(m, map[string]any{"type": "camera", "on": true})
	neg := mediatest.NewNegotiator(p.pc, func(typ, sdp string) {
		p.signal(m, map[string]any{"type": typ, "sdp": sdp})
	})
	if _, err := p.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return err
	}
	if err := neg.Offer(); err != nil {
		return err
	}
	p.signal(m, map[string]any{"type": "restart-ice"})
	answered, offered := false, false
	for !answered || !offered || p.pc.SignalingState() != webrtc.SignalingStateStable {
		msg, err := p.step(neg)
		if err != nil {
			return err
		}
		answered = answered || msg.Type == "answer"
		offered = offered || msg.Type == "offer"
	}
	switch {
	case stay:
	case hangUp:
		m.PeerClosed(p)
	default:
		p.signal(m, map[string]any{"type": "leave"})
	}
	return nil
}
