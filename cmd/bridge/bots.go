package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/gateway/pool"
)

// bots is the wired pool: per bot token a gateway client (one per shard
// that carries served guilds, with DISCORD_SHARDS) and a REST client per
// guild, and which of them leads each guild (reports its room events,
// makes its REST calls).
type bots struct {
	pool   *pool.Pool
	rooms  map[*gateway.Client]map[string]*gateway.Rooms // by client, then guild
	guilds []gateway.Guild                               // every served guild, in order
	first  *gateway.Client
	report *reporter // which client reports each guild's events
	// Per gateway client, in the pool's order: the client, its name, its
	// bot's token and its home guild (the first of those it serves; with
	// the token, what names its lease among instances).
	clients []*gateway.Client
	names   []string
	tokens  []string
	homes   []string
}

// botSpec is what newBots needs of the deployment.
type botSpec struct {
	tokens []string
	shards int
	// shardsOf is the shard count to split a token's guilds by (0 or 1:
	// one client); nil uses shards.
	shardsOf   func(token string) int
	guilds     []gateway.Guild // served guilds with their room categories
	apiBase    string
	httpClient *http.Client // Discord REST, counted
	tune       func(*gateway.Options)
	// publish takes each guild's lead's room events, with the index of
	// the gateway client (bots.clients) that reported them.
	publish  func(client int, e gateway.Event)
	session  func(client int, s gateway.Session) // nil: sessions are not saved (one instance)
	onChange func()                              // the pool's capacity changed
	log      *slog.Logger
}

// eventGuild is the guild an event is of.
func eventGuild(e gateway.Event) string {
	switch p := e.Payload.(type) {
	case gateway.RoomPayload:
		return p.GuildID
	case gateway.VoicePayload:
		return p.GuildID
	}
	return ""
}

// shardGroups splits the served guilds by the shard that carries them
// when the shard count is configured; otherwise one group (the client
// identifies its home guild's shard).
func shardGroups(guilds []gateway.Guild, shards int) [][]gateway.Guild {
	if shards <= 1 {
		return [][]gateway.Guild{guilds}
	}
	at := map[int]int{}
	var out [][]gateway.Guild
	for _, g := range guilds {
		sh := gateway.ShardOf(g.ID, shards)
		i, ok := at[sh]
		if !ok {
			i = len(out)
			at[sh] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], g)
	}
	return out
}

// newBots builds the gateway clients of every token and the pool of them;
// Open (the pool's) connects them.
func newBots(spec botSpec) (*bots, error) {
	if len(spec.guilds) == 0 {
		return nil, fmt.Errorf("%w: no guild to serve", gateway.ErrOptions)
	}
	rep := newReporter(spec.publish)
	b := &bots{rooms: make(map[*gateway.Client]map[string]*gateway.Rooms), guilds: spec.guilds, report: rep}
	var members []pool.Bot
	for i, token := range spec.tokens {
		shards := spec.shards
		if spec.shardsOf != nil {
			shards = spec.shardsOf(token)
		}
		groups := shardGroups(spec.guilds, shards)
		var identify *gateway.IdentifyQueue
		if len(groups) > 1 {
			identify = gateway.NewIdentifyQueue() // the bot's shards share max_concurrency
		}
		for _, group := range groups {
			name := "bot " + strconv.Itoa(i+1)
			if len(groups) > 1 {
				name += " shard " + strconv.Itoa(gateway.ShardOf(group[0].ID, shards))
			}
			log := spec.log.With("bot", name)
			var c *gateway.Client
			idx := len(b.clients)
			o := gateway.Options{
				HTTPClient: spec.httpClient,
				Shards:     spec.shards,
				Token:      token,
				Guilds:     group,
				Identify:   identify,
				APIBase:    spec.apiBase,
				Logger:     log, // gateway names its component itself
				// Every bot in a guild sees its events; the guild's
				// reporter alone passes them on, so each reaches the hub
				// once.
				OnEvent: func(e gateway.Event) { rep.event(c, e) },
			}
			if spec.session != nil {
				o.OnSession = func(s gateway.Session) { spec.session(idx, s) }
			}
			if spec.tune != nil {
				spec.tune(&o)
			}
			var err error
			if c, err = gateway.New(o); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			rep.index[c] = idx
			r, err := gateway.NewRooms(gateway.RoomsOptions{
				HTTPClient: spec.httpClient,
				Token:      token,
				GuildID:    group[0].ID,
				CategoryID: group[0].CategoryID,
				APIBase:    spec.apiBase,
				Logger:     log,
				Members:    c.Members,
			})
			if err != nil {
				return nil, fmt.Errorf("%s rooms: %w", name, err)
			}
			if b.first == nil {
				b.first = c
			}
			byGuild := map[string]*gateway.Rooms{}
			ids := make([]string, len(group))
			for k, g := range group {
				byGuild[g.ID] = r.ForGuild(g.ID, g.CategoryID)
				ids[k] = g.ID
			}
			b.rooms[c] = byGuild
			b.clients, b.names, b.tokens = append(b.clients, c), append(b.names, name), append(b.tokens, token)
			b.homes = append(b.homes, group[0].ID)
			members = append(members, pool.Bot{Name: name, Client: c, Guilds: ids})
		}
	}
	ids := b.guildIDs()
	onChange := func() {
		rep.recheck(ids) // a bot ready or gone: a guild's reporter may change
		if spec.onChange != nil {
			spec.onChange()
		}
	}
	p, err := pool.New(pool.Options{Bots: members, OnChange: onChange, Logger: spec.log})
	if err != nil {
		return nil, err
	}
	b.pool = p
	rep.start(p)
	return b, nil
}

// lead is the gateway of the first healthy bot.
func (b *bots) lead() *gateway.Client { return b.pool.Lead() }

// roomsOf is the REST client for guildID of the guild's lead bot (nil
// for a guild no bot serves): room calls use any working bot in the
// guild, and rate limits are each bot's own.
func (b *bots) roomsOf(guildID string) *gateway.Rooms {
	c := b.reporterOf(guildID)
	if c == nil {
		c = b.pool.LeadOf(guildID) // no bot has the guild yet: the first serving it
	}
	if c == nil {
		return nil
	}
	return b.rooms[c][guildID]
}

// reporterOf is the client that reports guildID's events, or, before
// its first event, the one that will; nil while no bot holds the guild.
func (b *bots) reporterOf(guildID string) *gateway.Client {
	if c := b.report.lead(guildID); c != nil {
		return c
	}
	return b.pool.Reporter(guildID, nil)
}

// knownRooms are the rooms of every served guild as the gateway that
// reports each guild's events last saw them.
func (b *bots) knownRooms() []gateway.Room {
	var out []gateway.Room
	leads := map[string]*gateway.Client{} // guild -> its reporter, asked once
	for c := range b.rooms {
		for _, r := range c.Rooms() {
			lead, ok := leads[r.GuildID]
			if !ok {
				lead = b.reporterOf(r.GuildID)
				leads[r.GuildID] = lead
			}
			if lead == c {
				out = append(out, r)
			}
		}
	}
	slices.SortStableFunc(out, func(x, y gateway.Room) int { return b.guildIndex(x.GuildID) - b.guildIndex(y.GuildID) })
	return out
}

// guildIndex is a guild's place among the served guilds.
func (b *bots) guildIndex(id string) int {
	return slices.IndexFunc(b.guilds, func(g gateway.Guild) bool { return g.ID == id })
}

// room is a known room by channel id.
func (b *bots) room(channelID string) (gateway.Room, bool) {
	for _, r := range b.knownRooms() {
		if r.ChannelID == channelID {
			return r, true
		}
	}
	return gateway.Room{}, false
}

// guildName is a served guild's name as a gateway in it received it
// (GUILD_CREATE), "" while none has.
func (b *bots) guildName(guildID string) string {
	if c := b.reporterOf(guildID); c != nil {
		if n := c.GuildName(guildID); n != "" {
			return n
		}
	}
	for _, c := range b.clients {
		if n := c.GuildName(guildID); n != "" {
			return n
		}
	}
	return ""
}

// guildIDs are the served guilds' ids, in order.
func (b *bots) guildIDs() []string {
	out := make([]string, len(b.guilds))
	for i, g := range b.guilds {
		out[i] = g.ID
	}
	return out
}

// own reports whether userID is one of the pool's bots, which member
// lists mark as the bridge's own (each gateway marks only itself).
func (b *bots) own(userID string) bool {
	for c := range b.rooms {
		if id := c.Status().BotUserID; id != "" && id == userID {
			return true
		}
	}
	return false
}

// readiness is /readyz's gateway verdict: ready while some bot is, else
// why the lead is not.
func (b *bots) readiness() error {
	if b.pool.Healthy() {
		return nil
	}
	return gatewayReadiness(b.lead().Status())
}

// readyStatus is the gateway part of /readyz: the leading bot's gateway
// status (the fields of the protocol's GatewayStatus), and beside them
// every bot with the rooms it holds and, once it left the pool, why.
type readyStatus struct {
	lead gateway.Status
	bots []pool.BotStatus
}

func (b *bots) status() readyStatus {
	return readyStatus{lead: b.lead().Status(), bots: b.pool.Status()}
}

// MarshalJSON writes the lead's status with a "bots" field added.
func (r readyStatus) MarshalJSON() ([]byte, error) {
	lead, err := json.Marshal(r.lead)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(lead, &out); err != nil {
		return nil, err
	}
	out["bots"] = r.bots
	return json.Marshal(out)
}
