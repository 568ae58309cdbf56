package session

import "sort"

// Saved is the guild view in a form to store, so that another process
// resuming the gateway session (which brings no GUILD_CREATE) starts from
// the view the session had at the sequence it resumes from.
type Saved struct {
	Rooms []SavedRoom       `json:"rooms"`
	Seats []SavedSeat       `json:"seats"` // in join order
	Names map[string]string `json:"names,omitempty"`
}

// SavedRoom is one room of a Saved view.
type SavedRoom struct {
	ChannelID string `json:"id"`
	Name      string `json:"name"`
	UserLimit int    `json:"userLimit,omitempty"`
	Position  int    `json:"position,omitempty"`
}

// SavedSeat is one user in a voice channel of a Saved view.
type SavedSeat struct {
	UserID    string `json:"user"`
	ChannelID string `json:"channel"`
}

// Save returns the current view.
func (s *State) Save() Saved {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Saved{Rooms: make([]SavedRoom, 0, len(s.rooms)), Seats: make([]SavedSeat, 0, len(s.seats)), Names: make(map[string]string)}
	for id, r := range s.rooms {
		out.Rooms = append(out.Rooms, SavedRoom{ChannelID: id, Name: r.name, UserLimit: r.userLimit, Position: r.position})
	}
	sort.Slice(out.Rooms, func(i, j int) bool { return CompareIDs(out.Rooms[i].ChannelID, out.Rooms[j].ChannelID) < 0 })
	type ordered struct {
		SavedSeat
		order uint64
	}
	seats := make([]ordered, 0, len(s.seats))
	for uid, st := range s.seats {
		seats = append(seats, ordered{SavedSeat{UserID: uid, ChannelID: st.channelID}, st.order})
		if n := s.names[uid]; n != "" {
			out.Names[uid] = n
		}
	}
	sort.Slice(seats, func(i, j int) bool { return seats[i].order < seats[j].order })
	for _, st := range seats {
		out.Seats = append(out.Seats, st.SavedSeat)
	}
	return out
}

// Restore replaces the view by v and reports nothing: what v holds is what
// the consumers were told already.
func (s *State) Restore(v Saved) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rooms = make(map[string]room, len(v.Rooms))
	for _, r := range v.Rooms {
		s.rooms[r.ChannelID] = room{name: r.Name, userLimit: r.UserLimit, position: r.Position}
	}
	s.seats = make(map[string]seat, len(v.Seats))
	for _, st := range v.Seats {
		s.order++
		s.seats[st.UserID] = seat{channelID: st.ChannelID, order: s.order}
	}
	for uid, n := range v.Names {
		s.names[uid] = n
	}
}
