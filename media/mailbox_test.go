package media

import "testing"

// recordAction notes its number when applied.
type recordAction struct {
	n   int
	got *[]int
}

func (a recordAction) apply(*room) { *a.got = append(*a.got, a.n) }

func TestMailboxKeepsOrderAndClosesOnlyWhenEmpty(t *testing.T) {
	b := newMailbox()
	var got []int
	for i := range 3 {
		if !b.post(recordAction{i, &got}) {
			t.Fatalf("post %d refused by an open mailbox", i)
		}
	}
	select {
	case <-b.wake:
	default:
		t.Fatal("posting did not wake the owner")
	}
	if b.closeIfEmpty() {
		t.Fatal("closed with actions waiting")
	}
	for _, a := range b.take() {
		a.apply(nil)
	}
	if len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 2 {
		t.Fatalf("applied %v, want [0 1 2]", got)
	}
	if !b.closeIfEmpty() {
		t.Fatal("an empty mailbox did not close")
	}
	if b.post(recordAction{9, &got}) {
		t.Fatal("a closed mailbox took an action")
	}
	if q := b.take(); len(q) != 0 {
		t.Fatalf("a closed mailbox holds %d actions", len(q))
	}
}
