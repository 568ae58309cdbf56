package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"

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
	spec   botSpec

	// mu guards rooms, first and the per-client slices, which grow when
	// a bot gets another shard (reshard).
	mu sync.Mutex
	// reshardMu serializes reshard; identify is each bot's identify
	// queue for the shards it adds.
	reshardMu sync.Mutex
	identify  map[int]*gateway.IdentifyQueue
	// Per gateway client, in the pool's order: the client, its name, its
	// bot's token and its home guild (the first of those it serves; with
	// the token, what names its lease among instances).
	clients []*gateway.Client
	names   []string
	tokens  []string
	homes   []string
	bot     []int // the bot's index in botSpec.tokens
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
	// reshard lets a bot that Discord asks for more shards (close 4011)
	// get a gateway client for each shard its servers moved to; false
	// with several instances, whose gateways are leased one each.
	reshard bool
	log     *slog.Logger
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
	b := &bots{rooms: make(map[*gateway.Client]map[string]*gateway.Rooms), guilds: spec.guilds, report: rep, spec: spec,
		identify: map[int]*gateway.IdentifyQueue{}}
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
			b.identify[i] = identify
		}
		for _, group := range groups {
			name := "bot " + strconv.Itoa(i+1)
			if len(groups) > 1 {
				name += " shard " + strconv.Itoa(gateway.ShardOf(group[0].ID, shards))
			}
			m, err := b.newClient(i, name, group, identify)
			if err != nil {
				return nil, err
			}
			members = append(members, m)
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

// newClient builds the gateway client (and REST client) of bot i (its
// index in spec.tokens) serving group, and records it. It does not
// connect it.
func (b *bots) newClient(i int, name string, group []gateway.Guild, identify *gateway.IdentifyQueue) (pool.Bot, error) {
	spec, token := b.spec, b.spec.tokens[i]
	log := spec.log.With("bot", name)
	var c *gateway.Client
	b.mu.Lock()
	idx := len(b.clients)
	b.mu.Unlock()
	o := gateway.Options{
		HTTPClient: spec.httpClient,
		Shards:     spec.shards,
		Token:      token,
		Guilds:     group,
		Identify:   identify,
		APIBase:    spec.apiBase,
		Logger:     log, // gateway names its component itself
		// Every bot in a guild sees its events; the guild's reporter
		// alone passes them on, so each reaches the hub once.
		OnEvent: func(e gateway.Event) { b.report.event(c, e) },
	}
	if spec.session != nil {
		o.OnSession = func(s gateway.Session) { spec.session(idx, s) }
	}
	if spec.reshard {
		o.OnReshard = func(shards int) { b.reshard(i, shards) }
	}
	if spec.tune != nil {
		spec.tune(&o)
	}
	var err error
	if c, err = gateway.New(o); err != nil {
		return pool.Bot{}, fmt.Errorf("%s: %w", name, err)
	}
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
		return pool.Bot{}, fmt.Errorf("%s rooms: %w", name, err)
	}
	byGuild := map[string]*gateway.Rooms{}
	ids := make([]string, len(group))
	for k, g := range group {
		byGuild[g.ID] = r.ForGuild(g.ID, g.CategoryID)
		ids[k] = g.ID
	}
	b.report.add(c, idx)
	b.mu.Lock()
	if b.first == nil {
		b.first = c
	}
	b.rooms[c] = byGuild
	b.clients, b.names, b.tokens = append(b.clients, c), append(b.names, name), append(b.tokens, token)
	b.homes, b.bot = append(b.homes, group[0].ID), append(b.bot, i)
	b.mu.Unlock()
	return pool.Bot{Name: name, Client: c, Guilds: ids}, nil
}

// reshard follows Discord asking bot i for shards shards (close 4011):
// the client that was told identifies its home guild's shard with the
// new count, and so does each of the bot's clients as Discord closes it
// in turn; the served guilds none of them carries then get a client of
// their shard, added to the pool and connected, so that they are served
// again without a restart. Only one instance runs the gateways
// (spec.reshard): with several, a new client would need a lease of its
// own.
func (b *bots) reshard(i, shards int) {
	b.reshardMu.Lock()
	defer b.reshardMu.Unlock()
	b.mu.Lock()
	covered := map[string]bool{} // guilds on a shard one of the bot's clients identifies
	for k, c := range b.clients {
		if b.bot[k] != i {
			continue
		}
		home := gateway.ShardOf(b.homes[k], shards)
		for _, g := range c.Guilds() {
			if gateway.ShardOf(g.ID, shards) == home {
				covered[g.ID] = true
			}
		}
	}
	identify := b.identify[i]
	if identify == nil {
		identify = gateway.NewIdentifyQueue()
		b.identify[i] = identify
	}
	b.mu.Unlock()
	var missing []gateway.Guild
	for _, g := range b.guilds {
		if !covered[g.ID] {
			missing = append(missing, g)
		}
	}
	for _, group := range shardGroups(missing, shards) {
		if len(group) == 0 {
			continue
		}
		name := "bot " + strconv.Itoa(i+1) + " shard " + strconv.Itoa(gateway.ShardOf(group[0].ID, shards)) + " of " + strconv.Itoa(shards)
		m, err := b.newClient(i, name, group, identify)
		if err == nil {
			err = b.pool.Add(context.Background(), m)
		}
		if err != nil {
			if !errors.Is(err, pool.ErrClosed) {
				b.spec.log.Error("connecting a new shard after Discord asked for more", "bot", name, "err", err)
			}
			return
		}
		b.spec.log.Warn("Discord asked for more shards: connecting a new shard for the servers that moved to it", "bot", name, "shards", shards, "guilds", len(group))
	}
}

// homeOf is a gateway client's home guild (the first it serves).
func (b *bots) homeOf(c *gateway.Client) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.clients, c); i >= 0 {
		return b.homes[i]
	}
	return ""
}

// allClients are the gateway clients, in the pool's order.
func (b *bots) allClients() []*gateway.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.clients)
}

// lead is the gateway of the first healthy bot.
func (b *bots) lead() *gateway.Client { return b.pool.Lead() }

// roomsOf is the REST client for guildID of the first bot in the pool
// whose gateway has received the guild, else of the first serving it (nil
// for a guild no bot serves): room calls use any working bot in the
// guild, and rate limits are each bot's own.
func (b *bots) roomsOf(guildID string) *gateway.Rooms {
	c := b.pool.Reporter(guildID, nil) // the first bot in the pool's order that has the guild
	if c == nil {
		c = b.pool.LeadOf(guildID) // no bot has the guild yet: the first serving it
	}
	if c == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
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
	for _, c := range b.allClients() {
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
	for _, c := range b.allClients() {
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
	for _, c := range b.allClients() {
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
