package media

import (
	"testing"
	"time"
)

// level is one browser's audio level over a stretch of time.
type level struct {
	id    string
	level uint8
}

// phase feeds the same levels every 20 ms for dur.
type phase struct {
	dur    time.Duration
	levels []level
}

// simulate runs phases through a selector and returns each switch with
// its time since the start.
func simulate(phases []phase) (switches []string, at []time.Duration) {
	s := newSpeakerSelector()
	start := time.Unix(1_700_000_000, 0)
	now := start
	for _, ph := range phases {
		end := now.Add(ph.dur)
		for ; now.Before(end); now = now.Add(20 * time.Millisecond) {
			for _, l := range ph.levels {
				if cur, changed := s.Observe(l.id, l.level, now); changed {
					switches = append(switches, cur)
					at = append(at, now.Sub(start))
				}
			}
		}
	}
	return switches, at
}

func TestSpeakerSelection(t *testing.T) {
	const loud, soft, silent = 20, 45, 127
	tests := []struct {
		name   string
		phases []phase
		want   []string
		// minAt/maxAt bound when each switch may happen.
		minAt, maxAt []time.Duration
	}{
		{
			name:   "first voice is taken at once",
			phases: []phase{{time.Second, []level{{"a", loud}, {"b", silent}}}},
			want:   []string{"a"},
			minAt:  []time.Duration{0},
			maxAt:  []time.Duration{0},
		},
		{
			name:   "background noise is nobody",
			phases: []phase{{time.Second, []level{{"a", 90}, {"b", silent}}}},
		},
		{
			name: "louder challenger takes over after 300 ms",
			phases: []phase{
				{time.Second, []level{{"a", soft}, {"b", silent}}},
				{time.Second, []level{{"a", soft}, {"b", loud}}},
			},
			want:  []string{"a", "b"},
			minAt: []time.Duration{0, time.Second + 300*time.Millisecond},
			maxAt: []time.Duration{0, time.Second + 400*time.Millisecond},
		},
		{
			name: "a short burst does not switch",
			phases: []phase{
				{time.Second, []level{{"a", soft}, {"b", silent}}},
				{200 * time.Millisecond, []level{{"a", soft}, {"b", loud}}},
				{time.Second, []level{{"a", soft}, {"b", silent}}},
			},
			want:  []string{"a"},
			minAt: []time.Duration{0},
			maxAt: []time.Duration{0},
		},
		{
			name: "equal voices do not flip-flop",
			phases: []phase{
				{time.Second, []level{{"a", loud}}},
				{3 * time.Second, []level{{"a", loud}, {"b", loud}}},
			},
			want:  []string{"a"},
			minAt: []time.Duration{0},
			maxAt: []time.Duration{0},
		},
		{
			name: "held for 500 ms even when the challenger was louder sooner",
			phases: []phase{
				{100 * time.Millisecond, []level{{"a", loud}}},
				{2 * time.Second, []level{{"a", silent}, {"b", loud}}},
			},
			want:  []string{"a", "b"},
			minAt: []time.Duration{0, 500 * time.Millisecond},
			maxAt: []time.Duration{0, 600 * time.Millisecond},
		},
		{
			name: "turns: each speaker in turn",
			phases: []phase{
				{time.Second, []level{{"a", loud}, {"b", silent}}},
				{time.Second, []level{{"a", silent}, {"b", loud}}},
				{time.Second, []level{{"a", loud}, {"b", silent}}},
			},
			want:  []string{"a", "b", "a"},
			minAt: []time.Duration{0, 1300 * time.Millisecond, 2300 * time.Millisecond},
			maxAt: []time.Duration{0, 1400 * time.Millisecond, 2400 * time.Millisecond},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, at := simulate(tc.phases)
			if len(got) != len(tc.want) {
				t.Fatalf("switches %v at %v, want %v", got, at, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] || at[i] < tc.minAt[i] || at[i] > tc.maxAt[i] {
					t.Fatalf("switch %d: %s at %v, want %s in [%v, %v]", i, got[i], at[i], tc.want[i], tc.minAt[i], tc.maxAt[i])
				}
			}
		})
	}
}

func TestSpeakerRemoveAndGone(t *testing.T) {
	s := newSpeakerSelector()
	t0 := time.Unix(1_700_000_000, 0)
	if cur, ch := s.Observe("a", 20, t0); cur != "a" || !ch {
		t.Fatalf("got %q %v, want a selected", cur, ch)
	}
	s.Observe("b", 30, t0)
	// a leaves: b takes over at once, without waiting out the hold.
	if cur, ch := s.Remove("a", t0.Add(20*time.Millisecond)); cur != "b" || !ch {
		t.Fatalf("after removing a: %q %v, want b", cur, ch)
	}
	// b stops sending; a returns much later and is taken once b is gone.
	later := t0.Add(2 * time.Second)
	cur, _ := s.Observe("a", 20, later)
	if cur != "b" {
		t.Fatalf("a replaced b at once (%q); want the 300 ms rule", cur)
	}
	cur, _ = s.Observe("a", 20, later.Add(300*time.Millisecond))
	if cur != "a" {
		t.Fatalf("a did not replace the gone speaker b: %q", cur)
	}
	if cur, ch := s.Remove("zzz", later); cur != "a" || ch {
		t.Fatalf("removing an unknown id changed the speaker: %q %v", cur, ch)
	}
}
