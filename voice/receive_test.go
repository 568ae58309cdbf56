package voice

import (
	"log/slog"
	"testing"
	"time"
)

// The receive side keeps per-SSRC state only for users present: once a
// user left and its SSRC has been silent for departedGrace, its reorder
// buffer, assembler and counters are gone; present users' stay.
func TestReceiverForgetsDepartedUsers(t *testing.T) {
	c := &Conn{log: slog.New(slog.DiscardHandler), ssrcs: map[uint32]ssrcOwner{}, frames: make(chan Frame, 1024)}
	rx := newReceiver(c)
	key := make([]byte, 32)
	ci, err := NewCipher(ModeAES256GCMRTPSize, key)
	if err != nil {
		t.Fatal(err)
	}
	tr := &transport{c: c, log: c.log, opener: ci}
	seal := func(ssrc uint32, seq uint16) []byte {
		t.Helper()
		h := Header{PayloadType: PayloadTypeOpus, Sequence: seq, Timestamp: uint32(seq) * 960, SSRC: ssrc}
		pkt, err := ci.SealRTP(nil, &h, []byte{0xfc, byte(seq)})
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	const stays, leaves = 1001, 2002
	c.mapSSRC("100", Audio, stays)
	c.mapSSRC("200", Audio, leaves)
	t0 := time.Now()
	for i := range uint16(5) {
		now := t0.Add(time.Duration(i) * 20 * time.Millisecond)
		rx.packet(tr, seal(stays, i), now)
		rx.packet(tr, seal(leaves, i), now)
		rx.tick(now)
	}
	if len(rx.streams) != 2 || len(c.Stats().Streams) != 2 {
		t.Fatalf("%d streams, %d in stats, want 2", len(rx.streams), len(c.Stats().Streams))
	}
	c.unmapUser("200")
	// Within the grace the departed stream is kept (late packets still
	// count); after it, only the present user's remains, even though the
	// present one is silent too.
	rx.tick(t0.Add(departedGrace - time.Second))
	if len(rx.streams) != 2 {
		t.Fatalf("departed stream dropped within the grace: %d streams", len(rx.streams))
	}
	rx.tick(t0.Add(departedGrace + time.Second))
	if _, ok := rx.streams[leaves]; ok || len(rx.streams) != 1 {
		t.Fatalf("departed user's stream kept: %d streams", len(rx.streams))
	}
	st := c.Stats().Streams
	if len(st) != 1 || st[0].SSRC != stays || st[0].UserID != "100" {
		t.Fatalf("stats %+v, want only the present user's stream", st)
	}
	// A stream no user ever owned goes the same way.
	rx.packet(tr, seal(3003, 1), t0.Add(departedGrace+2*time.Second))
	rx.tick(t0.Add(2*departedGrace + 3*time.Second))
	if _, ok := rx.streams[3003]; ok {
		t.Fatal("an unowned, silent stream was kept")
	}
}
