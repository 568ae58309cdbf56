package session

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/bwmarrin/discordgo"
)

// Member is one user in a voice channel.
type Member struct {
	UserID string `json:"userId"`
	Name   string `json:"name"`
	// Bot is true for the bridge's own bot.
	Bot bool `json:"bot,omitempty"`
}

// Room is a voice channel under the configured category, with the users
// currently in it (in the order they joined, as far as this State saw).
type Room struct {
	ChannelID string   `json:"channelId"`
	Name      string   `json:"name"`
	GuildID   string   `json:"guildId"`
	UserLimit int      `json:"userLimit"`
	Members   []Member `json:"members"`
}

// Kind says what a Change is.
type Kind int

// The kinds of Change, in the order Reconcile reports them.
const (
	// VoiceLeft: UserID left ChannelID (a move is VoiceLeft then VoiceJoined).
	VoiceLeft Kind = iota + 1
	// RoomDeleted: the room Room.ChannelID is gone.
	RoomDeleted
	// RoomCreated: Room is a new room (Members empty).
	RoomCreated
	// VoiceJoined: UserID joined ChannelID.
	VoiceJoined
)

// String names the kind as the bridge's event names do.
func (k Kind) String() string {
	switch k {
	case VoiceLeft:
		return "voice.left"
	case RoomDeleted:
		return "room.deleted"
	case RoomCreated:
		return "room.created"
	case VoiceJoined:
		return "voice.joined"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Change is one step a consumer applies to its view of the guild.
type Change struct {
	Kind Kind
	// Room is set for RoomCreated and RoomDeleted (without Members).
	Room Room
	// ChannelID, UserID and Username are set for VoiceJoined and VoiceLeft.
	ChannelID string
	UserID    string
	Username  string
}

// Snapshot is the part of a GUILD_CREATE that State keeps.
type Snapshot struct {
	Channels    []*discordgo.Channel
	VoiceStates []*discordgo.VoiceState
	Members     []*discordgo.Member
}

// seat is where a user sits and when (in State's own join order).
type seat struct {
	channelID string
	order     uint64
}

// room is what State keeps of a room.
type room struct {
	name      string
	userLimit int
	position  int
}

// State is the guild view. The zero value is not usable; call New.
type State struct {
	guildID    string
	categoryID string

	mu    sync.Mutex
	rooms map[string]room   // channel id -> room under the category
	seats map[string]seat   // user id -> voice channel (any in the guild)
	names map[string]string // user id -> display name
	self  string            // the bot's user id
	order uint64            // join counter for seats
}

// New returns an empty State for one guild and its room category.
func New(guildID, categoryID string) *State {
	return &State{
		guildID:    guildID,
		categoryID: categoryID,
		rooms:      make(map[string]room),
		seats:      make(map[string]seat),
		names:      make(map[string]string),
	}
}

// SetSelf records the bot's own user id (from READY), so member lists can
// mark it.
func (s *State) SetSelf(userID string) {
	s.mu.Lock()
	s.self = userID
	s.mu.Unlock()
}

// IsRoom reports whether ch is a room: a voice channel (type 2) whose parent
// is the category, in the guild. A channel without guild_id (as inside
// GUILD_CREATE) counts as the guild's.
func (s *State) IsRoom(ch *discordgo.Channel) bool {
	return ch != nil && ch.Type == discordgo.ChannelTypeGuildVoice &&
		ch.ParentID == s.categoryID && s.categoryID != "" &&
		(ch.GuildID == "" || ch.GuildID == s.guildID)
}

// DisplayName picks the name the bridge shows for a user: the guild
// nickname, else the global display name, else the username.
func DisplayName(m *discordgo.Member, u *discordgo.User) string {
	if m != nil && m.Nick != "" {
		return m.Nick
	}
	if u == nil && m != nil {
		u = m.User
	}
	if u == nil {
		return ""
	}
	if u.GlobalName != "" {
		return u.GlobalName
	}
	return u.Username
}

// ChannelCreate applies CHANNEL_CREATE.
func (s *State) ChannelCreate(ch *discordgo.Channel) ([]Change, error) {
	return s.ChannelUpdate(ch)
}

// ChannelUpdate applies CHANNEL_UPDATE (and CHANNEL_CREATE): a channel that
// became a room is created, one that stopped being one (moved out of the
// category) is deleted; a rename only updates the stored name.
func (s *State) ChannelUpdate(ch *discordgo.Channel) ([]Change, error) {
	if ch == nil || ch.ID == "" {
		return nil, fmt.Errorf("%w: channel without id", ErrInvalid)
	}
	if ch.GuildID != "" && ch.GuildID != s.guildID {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, known := s.rooms[ch.ID]
	switch isRoom := s.IsRoom(ch); {
	case isRoom && !known:
		s.rooms[ch.ID] = room{name: ch.Name, userLimit: ch.UserLimit, position: ch.Position}
		return []Change{{Kind: RoomCreated, Room: s.roomLocked(ch.ID, false)}}, nil
	case isRoom:
		s.rooms[ch.ID] = room{name: ch.Name, userLimit: ch.UserLimit, position: ch.Position}
		return nil, nil
	case known:
		delete(s.rooms, ch.ID)
		return []Change{{Kind: RoomDeleted, Room: Room{ChannelID: ch.ID, Name: ch.Name, GuildID: s.guildID, UserLimit: ch.UserLimit}}}, nil
	}
	return nil, nil
}

// ChannelDelete applies CHANNEL_DELETE. Users still seated in the deleted
// channel leave it first (Discord disconnects them; their later
// VOICE_STATE_UPDATE with a null channel is then a no-op).
func (s *State) ChannelDelete(ch *discordgo.Channel) ([]Change, error) {
	if ch == nil || ch.ID == "" {
		return nil, fmt.Errorf("%w: channel without id", ErrInvalid)
	}
	if ch.GuildID != "" && ch.GuildID != s.guildID {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Change
	for _, m := range s.membersLocked(ch.ID) {
		delete(s.seats, m.UserID)
		out = append(out, Change{Kind: VoiceLeft, ChannelID: ch.ID, UserID: m.UserID, Username: m.Name})
	}
	if r, ok := s.rooms[ch.ID]; ok {
		delete(s.rooms, ch.ID)
		out = append(out, Change{Kind: RoomDeleted, Room: Room{ChannelID: ch.ID, Name: r.name, GuildID: s.guildID, UserLimit: r.userLimit}})
	}
	return out, nil
}

// VoiceState applies VOICE_STATE_UPDATE (Discord docs, Gateway Events,
// Voice State Update). A move is reported as VoiceLeft from the old
// channel then VoiceJoined to the new one; an update that keeps the
// channel (mute, deafen, video) reports nothing.
func (s *State) VoiceState(vs *discordgo.VoiceState) ([]Change, error) {
	if vs == nil || vs.UserID == "" {
		return nil, fmt.Errorf("%w: voice state without user_id", ErrInvalid)
	}
	if vs.GuildID != "" && vs.GuildID != s.guildID {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if name := DisplayName(vs.Member, nil); name != "" {
		s.names[vs.UserID] = name
	}
	old := s.seats[vs.UserID].channelID
	if old == vs.ChannelID {
		return nil, nil
	}
	var out []Change
	if old != "" {
		delete(s.seats, vs.UserID)
		out = append(out, Change{Kind: VoiceLeft, ChannelID: old, UserID: vs.UserID, Username: s.names[vs.UserID]})
	}
	if vs.ChannelID != "" {
		s.order++
		s.seats[vs.UserID] = seat{channelID: vs.ChannelID, order: s.order}
		out = append(out, Change{Kind: VoiceJoined, ChannelID: vs.ChannelID, UserID: vs.UserID, Username: s.names[vs.UserID]})
	}
	return out, nil
}

// RememberName stores a user's display name (from GUILD_CREATE members or
// GUILD_MEMBER_* events) for later voice events.
func (s *State) RememberName(userID, name string) {
	if userID == "" || name == "" {
		return
	}
	s.mu.Lock()
	s.names[userID] = name
	s.mu.Unlock()
}

// Reconcile replaces the held view by snap and returns the net Changes
// between them: VoiceLeft (sorted by user id), RoomDeleted, RoomCreated
// (sorted by channel id), then VoiceJoined (sorted by user id). Users who
// stayed in the same channel keep their join order.
func (s *State) Reconcile(snap Snapshot) []Change {
	rooms := make(map[string]room)
	for _, ch := range snap.Channels {
		if ch != nil && ch.ID != "" && s.IsRoom(ch) {
			rooms[ch.ID] = room{name: ch.Name, userLimit: ch.UserLimit, position: ch.Position}
		}
	}
	want := make(map[string]string)
	for _, vs := range snap.VoiceStates {
		if vs != nil && vs.UserID != "" && vs.ChannelID != "" && (vs.GuildID == "" || vs.GuildID == s.guildID) {
			want[vs.UserID] = vs.ChannelID
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range snap.Members {
		if m != nil && m.User != nil && m.User.ID != "" {
			if name := DisplayName(m, nil); name != "" {
				s.names[m.User.ID] = name
			}
		}
	}
	for _, vs := range snap.VoiceStates {
		if vs != nil && vs.UserID != "" {
			if name := DisplayName(vs.Member, nil); name != "" {
				s.names[vs.UserID] = name
			}
		}
	}

	var left, joined, deleted, created []Change
	for uid, st := range s.seats {
		if want[uid] != st.channelID {
			left = append(left, Change{Kind: VoiceLeft, ChannelID: st.channelID, UserID: uid, Username: s.names[uid]})
			delete(s.seats, uid)
		}
	}
	for id, r := range s.rooms {
		if _, ok := rooms[id]; !ok {
			deleted = append(deleted, Change{Kind: RoomDeleted, Room: Room{ChannelID: id, Name: r.name, GuildID: s.guildID, UserLimit: r.userLimit}})
		}
	}
	old := s.rooms
	s.rooms = rooms
	for id := range rooms {
		if _, ok := old[id]; !ok {
			created = append(created, Change{Kind: RoomCreated, Room: s.roomLocked(id, false)})
		}
	}
	uids := make([]string, 0, len(want))
	for uid := range want {
		if _, ok := s.seats[uid]; !ok {
			uids = append(uids, uid)
		}
	}
	slices.SortFunc(uids, CompareIDs)
	for _, uid := range uids {
		s.order++
		s.seats[uid] = seat{channelID: want[uid], order: s.order}
		joined = append(joined, Change{Kind: VoiceJoined, ChannelID: want[uid], UserID: uid, Username: s.names[uid]})
	}
	slices.SortFunc(left, func(a, b Change) int { return CompareIDs(a.UserID, b.UserID) })
	slices.SortFunc(deleted, func(a, b Change) int { return CompareIDs(a.Room.ChannelID, b.Room.ChannelID) })
	slices.SortFunc(created, func(a, b Change) int { return CompareIDs(a.Room.ChannelID, b.Room.ChannelID) })
	out := make([]Change, 0, len(left)+len(deleted)+len(created)+len(joined))
	out = append(out, left...)
	out = append(out, deleted...)
	out = append(out, created...)
	return append(out, joined...)
}

// Members returns the users in a voice channel, in join order.
func (s *State) Members(channelID string) []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.membersLocked(channelID)
}

// VoiceStates returns every seated user's channel (user id -> channel id).
func (s *State) VoiceStates() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.seats))
	for uid, st := range s.seats {
		out[uid] = st.channelID
	}
	return out
}

// Rooms returns every room with its members, by position then channel id.
func (s *State) Rooms() []Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.rooms))
	for id := range s.rooms {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Or(cmp.Compare(s.rooms[a].position, s.rooms[b].position), CompareIDs(a, b))
	})
	out := make([]Room, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.roomLocked(id, true))
	}
	return out
}

func (s *State) roomLocked(id string, withMembers bool) Room {
	r := s.rooms[id]
	out := Room{ChannelID: id, Name: r.name, GuildID: s.guildID, UserLimit: r.userLimit, Members: []Member{}}
	if withMembers {
		out.Members = s.membersLocked(id)
	}
	return out
}

func (s *State) membersLocked(channelID string) []Member {
	type entry struct {
		uid   string
		order uint64
	}
	var in []entry
	for uid, st := range s.seats {
		if st.channelID == channelID {
			in = append(in, entry{uid, st.order})
		}
	}
	slices.SortFunc(in, func(a, b entry) int { return cmp.Compare(a.order, b.order) })
	out := make([]Member, 0, len(in))
	for _, e := range in {
		out = append(out, Member{UserID: e.uid, Name: s.names[e.uid], Bot: e.uid == s.self})
	}
	return out
}

// CompareIDs orders Discord snowflakes numerically (shorter is smaller),
// falling back to string order for anything else.
func CompareIDs(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
}
