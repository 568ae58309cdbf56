package main

import (
	"slices"
	"sync"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/gateway/pool"
)

// reporter hands each guild's room events to the hub exactly once, though
// every bot in a guild sees them: one bot reports a guild's events (its
// reporter, pool.Reporter), chosen only among bots whose gateway holds the
// guild, and kept until it leaves the pool.
//
// The first reporter of a guild is chosen at the first event any bot
// delivers of it (or when a bot becomes ready), so none of the guild's
// events was delivered before: its events from its GUILD_CREATE (or from
// the saved session it resumed, see seed) on are the whole story. When a
// later reporter replaces one, its view of the guild is compared with what
// was published and the difference is published first, then its events
// that the difference covered are not sent again: what the old reporter
// never sent, or the new one saw before it reported, is neither lost nor
// sent twice.
type reporter struct {
	publish func(client int, e gateway.Event)
	index   map[*gateway.Client]int // the client's place in bots.clients; guarded by mu

	// mu orders a guild's publishing: it is held while publishing, so the
	// events of a reporter that is being replaced and the catch-up of its
	// successor never interleave. publish must not call into the
	// reporter.
	mu     sync.Mutex
	pool   *pool.Pool
	guilds map[string]*published

	leadMu sync.Mutex                 // guards leads; never held while publishing
	leads  map[string]*gateway.Client // by guild: its reporter
}

// published is what the hub was told of one guild.
type published struct {
	lead   *gateway.Client
	had    bool                           // the guild had a reporter before
	seeded bool                           // rooms and seats are a saved session's
	rooms  map[string]gateway.RoomPayload // by channel id
	seats  map[string]string              // user id -> voice channel id
}

func newReporter(publish func(int, gateway.Event)) *reporter {
	return &reporter{publish: publish, index: map[*gateway.Client]int{},
		guilds: map[string]*published{}, leads: map[string]*gateway.Client{}}
}

// add records client c's place in bots.clients.
func (r *reporter) add(c *gateway.Client, idx int) {
	r.mu.Lock()
	r.index[c] = idx
	r.mu.Unlock()
}

// start sets the pool reporters are chosen from; events before it are of
// no guild's reporter (no bot has connected yet).
func (r *reporter) start(p *pool.Pool) {
	r.mu.Lock()
	r.pool = p
	r.mu.Unlock()
}

// event takes an event client c saw.
func (r *reporter) event(c *gateway.Client, e gateway.Event) {
	g := eventGuild(e)
	r.mu.Lock()
	defer r.mu.Unlock()
	pub := r.follow(g)
	if pub == nil || pub.lead != c {
		return
	}
	if pub.apply(e) {
		r.publish(r.index[c], e)
	}
}

// recheck follows a change of the pool (a bot ready, or out of it): each
// guild whose reporter changed catches up at once, not at its next event.
func (r *reporter) recheck(guilds []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range guilds {
		r.follow(g)
	}
}

// lead is guild g's reporter, nil while none is chosen. It does not
// publish, so the hub may ask it while an event is being published.
func (r *reporter) lead(g string) *gateway.Client {
	r.leadMu.Lock()
	defer r.leadMu.Unlock()
	return r.leads[g]
}

// follow chooses guild g's reporter and, when it changed, publishes the
// new one's catch-up. Called with mu held.
func (r *reporter) follow(g string) *published {
	if r.pool == nil || g == "" {
		return nil
	}
	pub := r.guilds[g]
	if pub == nil {
		pub = &published{rooms: map[string]gateway.RoomPayload{}, seats: map[string]string{}}
		r.guilds[g] = pub
	}
	lead := r.pool.Reporter(g, pub.lead)
	if lead == pub.lead {
		return pub
	}
	pub.lead = lead
	r.leadMu.Lock()
	r.leads[g] = lead
	r.leadMu.Unlock()
	if lead == nil {
		return pub
	}
	if pub.had {
		for _, e := range pub.catchUp(g, lead) {
			r.publish(r.index[lead], e)
		}
	}
	pub.had = true
	return pub
}

// seed takes the guild views of a saved session a client resumes (another
// instance published them) as what the hub was told, for each guild that
// has had no reporter yet here: its events, replayed from there, then
// follow on.
func (r *reporter) seed(s gateway.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for g, v := range s.Guilds {
		if v == nil || r.guilds[g] != nil && (r.guilds[g].had || r.guilds[g].seeded) {
			continue
		}
		pub := &published{rooms: map[string]gateway.RoomPayload{}, seats: map[string]string{}, seeded: true}
		for _, rm := range v.Rooms {
			pub.rooms[rm.ChannelID] = gateway.RoomPayload{ChannelID: rm.ChannelID, Name: rm.Name, GuildID: g, UserLimit: rm.UserLimit}
		}
		for _, st := range v.Seats {
			pub.seats[st.UserID] = st.ChannelID
		}
		r.guilds[g] = pub
	}
}

// apply records e and reports whether it changed what the hub knows: an
// event the catch-up already covered is not sent again.
func (p *published) apply(e gateway.Event) bool {
	switch v := e.Payload.(type) {
	case gateway.RoomPayload:
		_, had := p.rooms[v.ChannelID]
		switch e.Name {
		case gateway.EventRoomCreated:
			p.rooms[v.ChannelID] = v
			return !had
		case gateway.EventRoomDeleted:
			delete(p.rooms, v.ChannelID)
			return had
		}
	case gateway.VoicePayload:
		at := p.seats[v.UserID]
		switch e.Name {
		case gateway.EventVoiceJoined:
			p.seats[v.UserID] = v.ChannelID
			return at != v.ChannelID
		case gateway.EventVoiceLeft:
			if at != v.ChannelID {
				return false
			}
			delete(p.seats, v.UserID)
			return true
		}
	}
	return true // not a state event: passed on as it is
}

// catchUp brings p to lead's view of guild g and returns the events that
// do it, in the order a GUILD_CREATE reports them: members who left, rooms
// deleted, rooms created, members who joined.
func (p *published) catchUp(g string, lead *gateway.Client) []gateway.Event {
	rooms := map[string]gateway.RoomPayload{}
	for _, rm := range lead.Rooms() {
		if rm.GuildID == g {
			rooms[rm.ChannelID] = gateway.RoomPayload{ChannelID: rm.ChannelID, Name: rm.Name, GuildID: g, UserLimit: rm.UserLimit}
		}
	}
	seats := lead.VoiceStatesIn(g)
	self := lead.Status().BotUserID
	voice := func(name, user, channel string) gateway.Event {
		username := ""
		for _, m := range lead.Members(channel) {
			if m.UserID == user {
				username = m.Name
			}
		}
		return gateway.Event{Name: name, Payload: gateway.VoicePayload{GuildID: g, ChannelID: channel, UserID: user,
			Username: username, Bot: user != "" && user == self}}
	}
	var out []gateway.Event
	for _, u := range sortedKeys(p.seats) {
		if seats[u] != p.seats[u] {
			out = append(out, voice(gateway.EventVoiceLeft, u, p.seats[u]))
			delete(p.seats, u)
		}
	}
	for _, id := range sortedKeys(p.rooms) {
		if _, ok := rooms[id]; !ok {
			out = append(out, gateway.Event{Name: gateway.EventRoomDeleted, Payload: p.rooms[id]})
			delete(p.rooms, id)
		}
	}
	for _, id := range sortedKeys(rooms) {
		if _, ok := p.rooms[id]; !ok {
			out = append(out, gateway.Event{Name: gateway.EventRoomCreated, Payload: rooms[id]})
			p.rooms[id] = rooms[id]
		}
	}
	for _, u := range sortedKeys(seats) {
		if _, ok := p.seats[u]; !ok {
			out = append(out, voice(gateway.EventVoiceJoined, u, seats[u]))
			p.seats[u] = seats[u]
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
