package voiceemu

import (
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"
	"sync"
	"time"
)

// faults decides, packet by packet, whether relayed media towards a real
// client is dropped, held back behind the next packet, or sent twice.
type faults struct {
	mu                   sync.Mutex
	rng                  *mrand.Rand
	loss, reorder, dupes float64
	welcomes             map[string]int // user id → Welcomes to corrupt
}

func (f *faults) init(seed uint64) {
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	f.rng = mrand.New(mrand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
}

// SetLoss makes the relay drop this fraction (0..1) of the media packets
// it sends to real clients.
func (s *Server) SetLoss(rate float64) { s.faults.set(&s.faults.loss, rate) }

// SetReorder makes the relay hold back this fraction (0..1) of the media
// packets it sends to real clients and send each after the next packet to
// the same client.
func (s *Server) SetReorder(rate float64) { s.faults.set(&s.faults.reorder, rate) }

// SetDuplicate makes the relay send this fraction (0..1) of the media
// packets it sends to real clients twice.
func (s *Server) SetDuplicate(rate float64) { s.faults.set(&s.faults.dupes, rate) }

func (f *faults) set(field *float64, rate float64) {
	f.mu.Lock()
	*field = min(max(rate, 0), 1)
	f.mu.Unlock()
}

// CorruptNextWelcome flips the last byte of the next DAVE Welcome (op 30)
// sent to a user, inside its encrypted group info, so that the member
// cannot process it and must recover with op 31 and a new key package
// (DAVE whitepaper, "Recovery from Invalid Commit or Welcome").
func (s *Server) CorruptNextWelcome(userID string) {
	s.faults.mu.Lock()
	if s.faults.welcomes == nil {
		s.faults.welcomes = map[string]int{}
	}
	s.faults.welcomes[userID]++
	s.faults.mu.Unlock()
}

// takeWelcomeCorruption reports, once per CorruptNextWelcome, whether the
// Welcome for userID must be corrupted.
func (f *faults) takeWelcomeCorruption(userID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.welcomes[userID] == 0 {
		return false
	}
	f.welcomes[userID]--
	return true
}

// decide draws the three faults for one packet; it always draws three
// numbers so that a seed gives the same sequence whatever the rates.
func (f *faults) decide() (drop, reorder, dup bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, b, c := f.rng.Float64(), f.rng.Float64(), f.rng.Float64()
	return a < f.loss, b < f.reorder, c < f.dupes
}

// applyFaults turns one sealed packet for ss into the datagrams to send
// now, recording what it did.
func (s *Server) applyFaults(ss *session, pkt []byte) [][]byte {
	drop, reorder, dup := s.faults.decide()
	if drop {
		ss.counters.dropped.Add(1)
		return nil
	}
	var out [][]byte
	ss.mu.Lock()
	switch {
	case ss.held != nil:
		out = [][]byte{pkt, ss.held}
		ss.held = nil
	case reorder:
		ss.held, ss.heldAt = pkt, time.Now()
		ss.counters.reordered.Add(1)
	default:
		out = [][]byte{pkt}
	}
	ss.mu.Unlock()
	if dup && out != nil {
		out = append(out, pkt)
		ss.counters.duplicated.Add(1)
	}
	return out
}

// flushHeld sends packets the reorder fault has held longer than maxAge,
// so that a held packet is late rather than lost when no other follows.
func (s *Server) flushHeld(now time.Time, maxAge time.Duration) {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.mu.Lock()
		held, addr := ss.held, ss.addr
		if held != nil && now.Sub(ss.heldAt) >= maxAge {
			ss.held = nil
		} else {
			held = nil
		}
		ss.mu.Unlock()
		if held != nil && s.writeUDP(held, addr) {
			ss.counters.packetsOut.Add(1)
		}
	}
}
