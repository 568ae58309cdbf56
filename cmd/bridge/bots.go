package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/gateway/pool"
)

// bots is the wired pool: one gateway client and one REST client per bot
// token, and which of them leads (reports room events, makes REST calls).
type bots struct {
	pool    *pool.Pool
	rooms   map[*gateway.Client]*gateway.Rooms
	first   *gateway.Client
	clients []*gateway.Client // in the pool's order
	names   []string
	tokens  []string
}

// botSpec is what newBots needs of the deployment.
type botSpec struct {
	tokens                       []string
	shards                       int
	guildID, categoryID, apiBase string
	httpClient                   *http.Client // Discord REST, counted
	tune                         func(*gateway.Options)
	publish                      func(bot int, e gateway.Event)   // the lead's room events
	session                      func(bot int, s gateway.Session) // nil: sessions are not saved (one instance)
	onChange                     func()                           // the pool's capacity changed
	log                          *slog.Logger
}

// newBots builds a gateway client per token and the pool of them; Open
// (the pool's) connects them.
func newBots(spec botSpec) (*bots, error) {
	b := &bots{rooms: make(map[*gateway.Client]*gateway.Rooms)}
	var members []pool.Bot
	var mu sync.Mutex
	var lead *gateway.Client
	leads := func(c *gateway.Client) bool {
		mu.Lock()
		defer mu.Unlock()
		if b.pool != nil {
			lead = b.pool.Lead()
		}
		return c == lead
	}
	for i, token := range spec.tokens {
		name := "bot " + strconv.Itoa(i+1)
		log := spec.log.With("bot", name)
		var c *gateway.Client
		o := gateway.Options{
			HTTPClient: spec.httpClient,
			Shards:     spec.shards,
			Token:      token,
			GuildID:    spec.guildID,
			CategoryID: spec.categoryID,
			APIBase:    spec.apiBase,
			Logger:     log, // gateway names its component itself
			OnEvent: func(e gateway.Event) {
				// Every bot sees the guild's events; the lead alone
				// reports them, so each reaches the hub once.
				if leads(c) {
					spec.publish(i, e)
				}
			},
		}
		if spec.session != nil {
			o.OnSession = func(s gateway.Session) { spec.session(i, s) }
		}
		if spec.tune != nil {
			spec.tune(&o)
		}
		var err error
		if c, err = gateway.New(o); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r, err := gateway.NewRooms(gateway.RoomsOptions{
			HTTPClient: spec.httpClient,
			Token:      token,
			GuildID:    spec.guildID,
			CategoryID: spec.categoryID,
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
		b.rooms[c] = r
		b.clients, b.names, b.tokens = append(b.clients, c), append(b.names, name), append(b.tokens, token)
		members = append(members, pool.Bot{Name: name, Client: c, Guilds: []string{spec.guildID}})
	}
	p, err := pool.New(pool.Options{Bots: members, OnChange: spec.onChange, Logger: spec.log})
	if err != nil {
		return nil, err
	}
	mu.Lock()
	b.pool = p
	mu.Unlock()
	return b, nil
}

// lead is the gateway of the first healthy bot.
func (b *bots) lead() *gateway.Client { return b.pool.Lead() }

// leadRooms is the REST client of the first healthy bot: room calls use
// any working bot, and rate limits are each bot's own.
func (b *bots) leadRooms() *gateway.Rooms { return b.rooms[b.pool.Lead()] }

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
