package session

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/bwmarrin/discordgo"
)

// TestSaveRestore: a view saved, encoded and restored into a new State
// gives the same rooms and members (in join order, with names), and the
// next dispatches report against it as they would have on the original.
func TestSaveRestore(t *testing.T) {
	a := New(guild, category)
	a.SetSelf("9")
	a.Reconcile(Snapshot{
		Channels: []*discordgo.Channel{voiceCh("10", "Lobby"), voiceCh("11", "Table")},
		Members:  []*discordgo.Member{{User: &discordgo.User{ID: "2", Username: "bea"}}, {User: &discordgo.User{ID: "1", Username: "ann"}}},
	})
	for _, v := range []*discordgo.VoiceState{vs("2", "10"), vs("1", "10"), vs("3", "11")} {
		if _, err := a.VoiceState(v); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(a.Save())
	if err != nil {
		t.Fatal(err)
	}
	var v Saved
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	b := New(guild, category)
	b.SetSelf("9")
	b.Restore(v)
	if !reflect.DeepEqual(a.Rooms(), b.Rooms()) {
		t.Fatalf("restored rooms %+v, want %+v", b.Rooms(), a.Rooms())
	}
	if m := b.Members("10"); len(m) != 2 || m[0].UserID != "2" || m[0].Name != "bea" || m[1].Name != "ann" {
		t.Fatalf("restored members %+v", m)
	}
	steps := func(s *State) []string {
		var out []Change
		c, _ := s.VoiceState(vs("1", ""))
		out = append(out, c...)
		c, _ = s.ChannelDelete(voiceCh("11", "Table"))
		out = append(out, c...)
		c, _ = s.ChannelUpdate(voiceCh("10", "Lobby"))
		out = append(out, c...)
		return kinds(out)
	}
	want, got := steps(a), steps(b)
	if !slices.Equal(got, want) || len(want) != 3 {
		t.Fatalf("after restore %v, on the original %v", got, want)
	}
}
