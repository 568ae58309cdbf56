package session

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/bwmarrin/discordgo"
)

const (
	guild    = "200000000000000001"
	category = "300000000000000001"
)

func voiceCh(id, name string) *discordgo.Channel {
	return &discordgo.Channel{ID: id, Name: name, GuildID: guild, ParentID: category, Type: discordgo.ChannelTypeGuildVoice}
}

func vs(user, channel string) *discordgo.VoiceState {
	return &discordgo.VoiceState{GuildID: guild, UserID: user, ChannelID: channel}
}

func kinds(cs []Change) []string {
	var out []string
	for _, c := range cs {
		switch c.Kind {
		case RoomCreated, RoomDeleted:
			out = append(out, c.Kind.String()+" "+c.Room.ChannelID)
		default:
			out = append(out, c.Kind.String()+" "+c.UserID+"@"+c.ChannelID)
		}
	}
	return out
}

func TestVoiceStateMoveAndMute(t *testing.T) {
	s := New(guild, category)
	s.RememberName("1", "ann")
	steps := []struct {
		vs   *discordgo.VoiceState
		want []string
	}{
		{vs("1", "10"), []string{"voice.joined 1@10"}},
		{&discordgo.VoiceState{GuildID: guild, UserID: "1", ChannelID: "10", SelfMute: true}, nil}, // mute only
		{vs("1", "11"), []string{"voice.left 1@10", "voice.joined 1@11"}},                          // move
		{vs("1", ""), []string{"voice.left 1@11"}},
		{vs("1", ""), nil},
		{&discordgo.VoiceState{GuildID: "999", UserID: "1", ChannelID: "10"}, nil}, // other guild
	}
	for i, st := range steps {
		got, err := s.VoiceState(st.vs)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(kinds(got), st.want) {
			t.Fatalf("step %d: got %v, want %v", i, kinds(got), st.want)
		}
		for _, c := range got {
			if c.Username != "ann" {
				t.Fatalf("step %d: username %q, want ann", i, c.Username)
			}
		}
	}
	if _, err := s.VoiceState(&discordgo.VoiceState{GuildID: guild}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("voice state without user: err %v, want ErrInvalid", err)
	}
}

func TestChannelLifecycle(t *testing.T) {
	s := New(guild, category)
	text := &discordgo.Channel{ID: "20", GuildID: guild, ParentID: category, Type: discordgo.ChannelTypeGuildText}
	other := &discordgo.Channel{ID: "21", GuildID: guild, ParentID: "999", Type: discordgo.ChannelTypeGuildVoice}
	for _, ch := range []*discordgo.Channel{text, other} {
		if got, _ := s.ChannelCreate(ch); len(got) != 0 {
			t.Fatalf("channel %s is not a room but got %v", ch.ID, kinds(got))
		}
	}
	got, _ := s.ChannelCreate(voiceCh("10", "a"))
	if !slices.Equal(kinds(got), []string{"room.created 10"}) {
		t.Fatalf("create: %v", kinds(got))
	}
	if got, _ := s.ChannelUpdate(voiceCh("10", "renamed")); len(got) != 0 {
		t.Fatalf("rename emitted %v", kinds(got))
	}
	if r := s.Rooms(); len(r) != 1 || r[0].Name != "renamed" {
		t.Fatalf("rooms after rename: %+v", r)
	}
	s.VoiceState(vs("1", "10"))
	s.VoiceState(vs("2", "10"))
	got, _ = s.ChannelDelete(voiceCh("10", "renamed"))
	if want := []string{"voice.left 1@10", "voice.left 2@10", "room.deleted 10"}; !slices.Equal(kinds(got), want) {
		t.Fatalf("delete: got %v, want %v", kinds(got), want)
	}
	// Discord's later VOICE_STATE_UPDATE with a null channel is a no-op.
	if got, _ := s.VoiceState(vs("1", "")); len(got) != 0 {
		t.Fatalf("leave after delete emitted %v", kinds(got))
	}
	// Moved out of the category = deleted as a room.
	s.ChannelCreate(voiceCh("12", "b"))
	moved := voiceCh("12", "b")
	moved.ParentID = "999"
	if got, _ := s.ChannelUpdate(moved); !slices.Equal(kinds(got), []string{"room.deleted 12"}) {
		t.Fatalf("move out: %v", kinds(got))
	}
}

func TestReconcileNetDiff(t *testing.T) {
	s := New(guild, category)
	s.Reconcile(Snapshot{
		Channels:    []*discordgo.Channel{voiceCh("10", "a"), voiceCh("11", "b")},
		VoiceStates: []*discordgo.VoiceState{vs("1", "10"), vs("2", "10"), vs("3", "11")},
	})
	// While disconnected: 1 stayed, 2 moved to 11, 3 left, room 12 was
	// created and 4 joined it.
	got := s.Reconcile(Snapshot{
		Channels:    []*discordgo.Channel{voiceCh("10", "a"), voiceCh("11", "b"), voiceCh("12", "c")},
		VoiceStates: []*discordgo.VoiceState{vs("1", "10"), vs("2", "11"), vs("4", "12")},
		Members:     []*discordgo.Member{{User: &discordgo.User{ID: "4", Username: "dan"}}},
	})
	want := []string{"voice.left 2@10", "voice.left 3@11", "room.created 12", "voice.joined 2@11", "voice.joined 4@12"}
	if !slices.Equal(kinds(got), want) {
		t.Fatalf("got %v\nwant %v", kinds(got), want)
	}
	if m := s.Members("12"); len(m) != 1 || m[0] != (Member{UserID: "4", Name: "dan"}) {
		t.Fatalf("members of 12: %+v", m)
	}
	got = s.Reconcile(Snapshot{Channels: []*discordgo.Channel{voiceCh("12", "c")}})
	want = []string{"voice.left 1@10", "voice.left 2@11", "voice.left 4@12", "room.deleted 10", "room.deleted 11"}
	if !slices.Equal(kinds(got), want) {
		t.Fatalf("got %v\nwant %v", kinds(got), want)
	}
}

// TestReconcileConverges replays random histories: a consumer that applies
// every Change (incremental ones and reconciliations) must end with exactly
// the truth, whatever was missed in between.
func TestReconcileConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	chans := []string{"10", "11", "12", "13"}
	users := []string{"1", "2", "3", "4", "5", "6"}
	for round := range 200 {
		s := New(guild, category)
		view := map[string]string{} // consumer's user -> channel
		rooms := map[string]bool{}  // consumer's rooms
		truthRooms := map[string]bool{"10": true}
		truthVoice := map[string]string{}
		apply := func(cs []Change) {
			for _, c := range cs {
				switch c.Kind {
				case VoiceJoined:
					if _, dup := view[c.UserID]; dup {
						t.Fatalf("round %d: %s joined twice", round, c.UserID)
					}
					view[c.UserID] = c.ChannelID
				case VoiceLeft:
					if view[c.UserID] != c.ChannelID {
						t.Fatalf("round %d: %s left %s but was in %q", round, c.UserID, c.ChannelID, view[c.UserID])
					}
					delete(view, c.UserID)
				case RoomCreated:
					rooms[c.Room.ChannelID] = true
				case RoomDeleted:
					delete(rooms, c.Room.ChannelID)
				}
			}
		}
		snapshot := func() Snapshot {
			var snap Snapshot
			for id := range truthRooms {
				snap.Channels = append(snap.Channels, voiceCh(id, "r"+id))
			}
			for u, c := range truthVoice {
				snap.VoiceStates = append(snap.VoiceStates, vs(u, c))
			}
			return snap
		}
		apply(s.Reconcile(snapshot()))
		for range 50 {
			connected := rng.IntN(3) != 0
			switch rng.IntN(4) {
			case 0: // a room appears
				id := chans[rng.IntN(len(chans))]
				if !truthRooms[id] {
					truthRooms[id] = true
					if connected {
						cs, _ := s.ChannelCreate(voiceCh(id, "r"+id))
						apply(cs)
					}
				}
			case 1: // a room goes, its members are disconnected
				id := chans[rng.IntN(len(chans))]
				if truthRooms[id] {
					delete(truthRooms, id)
					for u, c := range truthVoice {
						if c == id {
							delete(truthVoice, u)
						}
					}
					if connected {
						cs, _ := s.ChannelDelete(voiceCh(id, "r"+id))
						apply(cs)
					}
				}
			default: // a user joins, moves or leaves
				u := users[rng.IntN(len(users))]
				var target string
				var open []string
				for id := range truthRooms {
					open = append(open, id)
				}
				slices.Sort(open)
				if len(open) > 0 && rng.IntN(3) != 0 {
					target = open[rng.IntN(len(open))]
				}
				if target == "" {
					delete(truthVoice, u)
				} else {
					truthVoice[u] = target
				}
				if connected {
					cs, _ := s.VoiceState(vs(u, target))
					apply(cs)
				}
			}
			if rng.IntN(10) == 0 {
				apply(s.Reconcile(snapshot()))
			}
		}
		apply(s.Reconcile(snapshot()))
		if !maps.Equal(view, truthVoice) || !maps.Equal(rooms, truthRooms) {
			t.Fatalf("round %d: consumer view %v rooms %v, truth %v rooms %v", round, view, rooms, truthVoice, truthRooms)
		}
		if !maps.Equal(s.VoiceStates(), truthVoice) {
			t.Fatalf("round %d: state %v, truth %v", round, s.VoiceStates(), truthVoice)
		}
	}
}

func TestMembersJoinOrderAndNames(t *testing.T) {
	s := New(guild, category)
	for i, u := range []string{"9", "3", "7"} {
		st := vs(u, "10")
		st.Member = &discordgo.Member{Nick: fmt.Sprintf("nick%d", i), User: &discordgo.User{ID: u, Username: "user" + u}}
		s.VoiceState(st)
	}
	want := []Member{{"9", "nick0", false}, {"3", "nick1", false}, {"7", "nick2", false}}
	if got := s.Members("10"); !reflect.DeepEqual(got, want) {
		t.Fatalf("members %+v, want %+v", got, want)
	}
	s.SetSelf("3")
	want[1].Bot = true
	if got := s.Members("10"); !reflect.DeepEqual(got, want) {
		t.Fatalf("with the bot marked: members %+v, want %+v", got, want)
	}
	if got := s.Members("nope"); got == nil || len(got) != 0 {
		t.Fatalf("empty channel: %#v, want empty non-nil", got)
	}
}

func TestDisplayName(t *testing.T) {
	u := &discordgo.User{Username: "u", GlobalName: "g"}
	cases := []struct {
		m    *discordgo.Member
		u    *discordgo.User
		want string
	}{
		{&discordgo.Member{Nick: "n", User: u}, nil, "n"},
		{&discordgo.Member{User: u}, nil, "g"},
		{nil, &discordgo.User{Username: "u"}, "u"},
		{nil, nil, ""},
	}
	for i, c := range cases {
		if got := DisplayName(c.m, c.u); got != c.want {
			t.Errorf("case %d: %q, want %q", i, got, c.want)
		}
	}
}

func TestCompareIDs(t *testing.T) {
	ids := []string{"100", "99", "1000", "101"}
	slices.SortFunc(ids, CompareIDs)
	if want := []string{"99", "100", "101", "1000"}; !slices.Equal(ids, want) {
		t.Fatalf("%v, want %v", ids, want)
	}
}
