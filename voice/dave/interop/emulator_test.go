package interop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/voice/dave"
)

const emuGuild = "1000000000000000009"

// talker is a simulated member of the call that sends a numbered Opus
// frame every 20 ms and records which of its frames went out.
type talker struct {
	m     *voiceemu.Member
	tag   byte
	davey *daveyEngine // nil for our dave.Session

	mu   sync.Mutex
	sent map[int]bool
}

// frame is talker tag's frame i: an Opus TOC byte, the tag and the index.
func frame(tag byte, i int) []byte {
	return []byte{0xFC, tag, byte(i >> 16), byte(i >> 8), byte(i), 0x5A, 0xA5, 0x3C}
}

// parseFrame returns the tag and index of a frame made by frame.
func parseFrame(f []byte) (tag byte, i int, ok bool) {
	if len(f) != 8 || f[0] != 0xFC || f[5] != 0x5A || f[6] != 0xA5 || f[7] != 0x3C {
		return 0, 0, false
	}
	return f[1], int(f[2])<<16 | int(f[3])<<8 | int(f[4]), true
}

// talk sends frames until ctx ends; frames refused for want of a key (the
// member is not in the group yet) are not sent and not expected.
func (tk *talker) talk(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := tk.m.SendOpus(frame(tk.tag, i))
		if errors.Is(err, voiceemu.ErrClosed) {
			return
		}
		if err == nil {
			tk.mu.Lock()
			tk.sent[i] = true
			tk.mu.Unlock()
		}
	}
}

// lostBetween checks what r received from s: every frame is one s sent,
// in order, none twice; it returns how many frames s sent between the
// first and the last one r received that r did not get.
func lostBetween(t *testing.T, r, s *talker) (got, lost int) {
	t.Helper()
	frames := r.m.ReceivedOpus(s.m.UserID())
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last := -1, -1
	for k, f := range frames {
		tag, i, ok := parseFrame(f)
		if !ok || tag != s.tag || !s.sent[i] {
			t.Fatalf("%s got frame %d from %s that %s never sent: % x", r.m.UserID(), k, s.m.UserID(), s.m.UserID(), f)
		}
		if i <= last {
			t.Fatalf("%s got %s's frame %d after its frame %d", r.m.UserID(), s.m.UserID(), i, last)
		}
		if first < 0 {
			first = i
		}
		last = i
	}
	if first < 0 {
		return 0, 0
	}
	for i := first; i <= last; i++ {
		if s.sent[i] {
			got++
		}
	}
	return len(frames), got - len(frames)
}

// TestEmulatorCallWithDavey runs davey members and our dave.Session
// members in one channel of the voice emulator, which requires DAVE and
// acts as the external sender: the group forms, a third member joins, the
// first leaves; each time the epoch advances on every side, all share one
// privacy code, and every member decrypts every other member's Opus
// frames throughout, losing at most one frame per transition.
//
// The emulator takes the first commit it receives for an epoch, and the
// members answer in the order they joined: "we commit" starts with our
// member first (ours creates the group and adds the third; davey commits
// the removal of ours), "davey commits" the other way round.
func TestEmulatorCallWithDavey(t *testing.T) {
	RequireDavey(t)
	for _, tc := range []struct {
		name  string
		davey [3]bool // which of the three members run davey
	}{
		{"we commit", [3]bool{false, true, false}},
		{"davey commits", [3]bool{true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) { emulatorCall(t, tc.davey) })
	}
}

func emulatorCall(t *testing.T, daveyAt [3]bool) {
	srv, err := voiceemu.Start(voiceemu.Options{RequireDAVE: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ids := [3]string{userA, userB, userC}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()

	var talkers []*talker
	join := func(k int) *talker {
		t.Helper()
		tk := &talker{tag: byte('A' + k), sent: map[int]bool{}}
		o := voiceemu.MemberOptions{UserID: ids[k], GuildID: emuGuild, ChannelID: channelID}
		if daveyAt[k] {
			tk.davey = newDaveyEngine(StartPeer(t), ids[k], channelID)
			o.DAVE = tk.davey
		}
		m, err := srv.AddMember(o)
		if err != nil {
			t.Fatalf("add member %s: %v", ids[k], err)
		}
		tk.m = m
		talkers = append(talkers, tk)
		wg.Add(1)
		go tk.talk(ctx, &wg)
		return tk
	}
	name := func(tk *talker) string {
		if tk.davey != nil {
			return tk.m.UserID() + " (davey)"
		}
		return tk.m.UserID() + " (ours)"
	}

	// settled waits until the server's group has the members and epoch,
	// every member is at that epoch with one privacy code, and each has
	// heard 25 more frames (half a second) from each other member since the change.
	settled := func(step string, epoch uint64, in ...*talker) {
		t.Helper()
		mark := map[[2]int]int{}
		for i, r := range in {
			for j, s := range in {
				mark[[2]int{i, j}] = len(r.m.ReceivedOpus(s.m.UserID()))
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			why := ""
			info, _ := srv.DAVE(emuGuild, channelID)
			code := in[0].m.PrivacyCode()
			switch {
			case info.Epoch != epoch || len(info.Members) != len(in):
				why = fmt.Sprintf("server group at epoch %d with %v", info.Epoch, info.Members)
			case len(code) != dave.PrivacyCodeDigits:
				why = fmt.Sprintf("%s has privacy code %q", name(in[0]), code)
			}
			for i, r := range in {
				if why != "" {
					break
				}
				if r.m.Epoch() != epoch || r.m.PrivacyCode() != code {
					why = fmt.Sprintf("%s at epoch %d with code %q; %s has %q", name(r), r.m.Epoch(), r.m.PrivacyCode(), name(in[0]), code)
				}
				for j, s := range in {
					if i != j && len(r.m.ReceivedOpus(s.m.UserID())) < mark[[2]int{i, j}]+25 {
						why = fmt.Sprintf("%s has not heard %s since %s", name(r), name(s), step)
					}
				}
			}
			if why == "" {
				t.Logf("%s: epoch %d, privacy code %s, %d transitions so far", step, epoch, code, info.Transitions)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s", step, why)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	a := join(0)
	b := join(1)
	settled("the second member joined", 1, a, b)
	c := join(2)
	settled("the third member joined", 2, a, b, c)
	a.m.Leave()
	settled("the first member left", 3, b, c)
	stop()
	wg.Wait()

	info, _ := srv.DAVE(emuGuild, channelID)
	for _, r := range talkers {
		for _, s := range talkers {
			if r == s {
				continue
			}
			got, lost := lostBetween(t, r, s)
			t.Logf("%s heard %d frames of %s, lost %d", name(r), got, name(s), lost)
			if got == 0 {
				t.Fatalf("%s never heard %s", name(r), name(s))
			}
			if lost > info.Transitions {
				t.Fatalf("%s lost %d of %s's frames over %d transitions: more than one per transition", name(r), lost, name(s), info.Transitions)
			}
		}
		if r.davey != nil {
			if err := r.davey.Err(); err != nil {
				t.Fatalf("%s: %v", name(r), err)
			}
		}
	}
	if st := srv.Stats(); st.PlaintextOpusSeen != 0 {
		t.Fatalf("the relay saw %d plaintext Opus frames", st.PlaintextOpusSeen)
	}
	// Who committed: the member that answered first, every time.
	want := []string{ids[0], ids[0], ids[1]}
	if !slices.Equal(info.Committers, want) {
		t.Fatalf("the server accepted commits from %v, want %v (creation and the third's add by the first member, the removal by the second)", info.Committers, want)
	}
	t.Logf("commits accepted from %v; %d losing commits refused", info.Committers, info.CommitsRefused)
}
