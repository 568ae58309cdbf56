package voice

import (
	"testing"
	"time"
)

type arrival struct {
	seq uint16
	dt  time.Duration // arrival offset from t0
}

func drain(r *ReorderBuffer[uint16]) []Delivered[uint16] {
	var out []Delivered[uint16]
	for {
		d, ok := r.Pop()
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

func TestReorderBuffer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	type want struct {
		seq     uint16
		missing int
	}
	cases := []struct {
		name   string
		in     []arrival
		expire time.Duration // Expire at t0+expire after all arrivals (0: none)
		want   []want
		stats  ReorderStats
	}{
		{"in order across wrap", []arrival{{65534, 0}, {65535, 20 * ms}, {0, 40 * ms}, {1, 60 * ms}}, 0,
			[]want{{65534, 0}, {65535, 0}, {0, 0}, {1, 0}}, ReorderStats{Received: 4}},
		{"swap", []arrival{{10, 0}, {12, 20 * ms}, {11, 25 * ms}, {13, 40 * ms}}, 0,
			[]want{{10, 0}, {11, 0}, {12, 0}, {13, 0}}, ReorderStats{Received: 4, Reordered: 1}},
		{"loss released by depth", []arrival{{1, 0}, {3, 20 * ms}, {4, 40 * ms}, {5, 60 * ms}, {6, 61 * ms}}, 0,
			[]want{{1, 0}, {3, 1}, {4, 0}, {5, 0}, {6, 0}}, ReorderStats{Received: 5, Lost: 1}},
		{"loss released by time", []arrival{{1, 0}, {3, 20 * ms}}, 80 * ms,
			[]want{{1, 0}, {3, 1}}, ReorderStats{Received: 2, Lost: 1}},
		{"held while young", []arrival{{1, 0}, {3, 20 * ms}}, 70 * ms,
			[]want{{1, 0}}, ReorderStats{Received: 2}},
		{"late after give-up", []arrival{{1, 0}, {3, 20 * ms}, {4, 21 * ms}, {5, 22 * ms}, {6, 23 * ms}, {2, 30 * ms}}, 0,
			[]want{{1, 0}, {3, 1}, {4, 0}, {5, 0}, {6, 0}}, ReorderStats{Received: 5, Lost: 1, Late: 1}},
		{"duplicates", []arrival{{1, 0}, {1, 1 * ms}, {3, 2 * ms}, {3, 3 * ms}, {2, 4 * ms}}, 0,
			[]want{{1, 0}, {2, 0}, {3, 0}}, ReorderStats{Received: 3, Duplicate: 2, Reordered: 1}},
		{"big jump counts loss", []arrival{{1, 0}, {101, 20 * ms}}, 200 * ms,
			[]want{{1, 0}, {101, 99}}, ReorderStats{Received: 2, Lost: 99}},
		{"restart", []arrival{{1, 0}, {30000, 20 * ms}, {30001, 40 * ms}}, 0,
			[]want{{1, 0}, {30000, 0}, {30001, 0}}, ReorderStats{Received: 3}},
		{"restart flushes held", []arrival{{1, 0}, {3, 20 * ms}, {30000, 30 * ms}, {30001, 40 * ms}}, 0,
			[]want{{1, 0}, {3, 0}, {30000, 0}, {30001, 0}}, ReorderStats{Received: 4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReorderBuffer[uint16](AudioReorderDepth, AudioReorderDelay)
			var got []Delivered[uint16]
			for _, a := range c.in {
				r.Push(a.seq, t0.Add(a.dt), a.seq)
				got = append(got, drain(r)...)
			}
			if c.expire > 0 {
				r.Expire(t0.Add(c.expire))
				got = append(got, drain(r)...)
			}
			if len(got) != len(c.want) {
				t.Fatalf("delivered %+v, want %+v", got, c.want)
			}
			for i, w := range c.want {
				if got[i].Seq != w.seq || got[i].Item != w.seq || got[i].Missing != w.missing {
					t.Fatalf("delivery %d = %+v, want %+v", i, got[i], w)
				}
			}
			if s := r.Stats(); s != c.stats {
				t.Fatalf("stats %+v, want %+v", s, c.stats)
			}
		})
	}
}
