package media

import "time"

// Speaker selection for the bot's single audio stream toward Discord.
//
// Browsers tag each audio packet with the RFC 6464 audio level (§3: 0 is
// the loudest, 127 dBov below overload is silence). The selector smooths
// each browser's loudness, and switches the forwarded speaker only when a
// challenger has been louder than the current speaker for switchAfter and
// the current speaker has been held for at least holdFor. Time is always
// passed in, so tests drive it with a fake clock.
const (
	defaultSwitchAfter = 300 * time.Millisecond
	defaultHoldFor     = 500 * time.Millisecond
	// defaultGoneAfter: a browser that sent no audio for this long no
	// longer competes (muted track, packet loss, left).
	defaultGoneAfter = 400 * time.Millisecond
	// defaultActiveLevel: levels at or below 60 dBov below overload count
	// as voice; quieter is background.
	defaultActiveLevel = 60
	// defaultSmoothing is the weight of a new level in the moving average.
	defaultSmoothing = 0.25
	// louderMargin: a challenger must be this much louder (in dB) to count
	// as louder, so two equal voices do not flip-flop.
	louderMargin = 3
)

// speakerCandidate is one browser's recent loudness.
type speakerCandidate struct {
	loud     float64 // smoothed 127-level: higher is louder
	lastSeen time.Time
}

// speakerSelector picks the loudest browser with hysteresis. It is not
// safe for concurrent use; the room serialises calls.
type speakerSelector struct {
	switchAfter, holdFor, goneAfter time.Duration
	activeLoud                      float64
	smoothing                       float64

	cands map[string]*speakerCandidate

	current      string
	currentSince time.Time

	challenger      string
	challengerSince time.Time
}

// newSpeakerSelector returns a selector with the documented defaults.
func newSpeakerSelector() *speakerSelector {
	return &speakerSelector{
		switchAfter: defaultSwitchAfter,
		holdFor:     defaultHoldFor,
		goneAfter:   defaultGoneAfter,
		activeLoud:  127 - defaultActiveLevel,
		smoothing:   defaultSmoothing,
		cands:       make(map[string]*speakerCandidate),
	}
}

// Current returns the selected speaker, "" when none.
func (s *speakerSelector) Current() string { return s.current }

// active reports whether c is speaking at now.
func (s *speakerSelector) active(c *speakerCandidate, now time.Time) bool {
	return c != nil && now.Sub(c.lastSeen) <= s.goneAfter && c.loud >= s.activeLoud
}

// Observe records one audio packet's level (dBov below overload, 0..127)
// from browser id at now and returns the selected speaker and whether the
// selection changed.
func (s *speakerSelector) Observe(id string, level uint8, now time.Time) (string, bool) {
	if level > 127 {
		level = 127
	}
	loud := float64(127 - level)
	c := s.cands[id]
	if c == nil || now.Sub(c.lastSeen) > s.goneAfter {
		// A browser that was gone restarts from its current level.
		c = &speakerCandidate{loud: loud}
		s.cands[id] = c
	} else {
		c.loud += s.smoothing * (loud - c.loud)
	}
	c.lastSeen = now
	return s.decide(now)
}

// Remove forgets browser id (left or muted) and returns the selection.
func (s *speakerSelector) Remove(id string, now time.Time) (string, bool) {
	delete(s.cands, id)
	if s.challenger == id {
		s.challenger = ""
	}
	if s.current == id {
		s.current = ""
		return s.decide(now)
	}
	return s.current, false
}

// decide applies the hysteresis rules at now.
func (s *speakerSelector) decide(now time.Time) (string, bool) {
	// The loudest active candidate other than the current speaker.
	best, bestLoud := "", 0.0
	for id, c := range s.cands {
		if id == s.current || !s.active(c, now) {
			continue
		}
		if best == "" || c.loud > bestLoud || (c.loud == bestLoud && id < best) {
			best, bestLoud = id, c.loud
		}
	}
	if s.current == "" {
		// Nobody holds the stream: the first voice takes it at once.
		s.challenger = ""
		if best == "" {
			return "", false
		}
		s.current, s.currentSince = best, now
		return best, true
	}
	cur := s.cands[s.current]
	curLoud := 0.0
	if s.active(cur, now) {
		curLoud = cur.loud
	}
	if best == "" || bestLoud < curLoud+louderMargin {
		s.challenger = ""
		return s.current, false
	}
	if s.challenger != best {
		s.challenger, s.challengerSince = best, now
	}
	if now.Sub(s.challengerSince) >= s.switchAfter && now.Sub(s.currentSince) >= s.holdFor {
		s.current, s.currentSince = best, now
		s.challenger = ""
		return best, true
	}
	return s.current, false
}
