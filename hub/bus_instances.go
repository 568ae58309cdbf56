package hub

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// Heartbeat timings of the instances sharing a RedisBus.
const (
	// InstanceHeartbeat is how often an instance renews its key and its
	// claim on the events source.
	InstanceHeartbeat = 2 * time.Second
	// InstanceTTL is how long an instance's key and claim outlive its
	// last heartbeat: another instance takes over the events source
	// within InstanceTTL + InstanceHeartbeat of the holder's death.
	InstanceTTL = 6 * time.Second
)

// Instance is what an instance announces about itself.
type Instance struct {
	ID        string `json:"id"`
	PublicURL string `json:"publicUrl,omitempty"`
	// Load is the instance's weight for placing rooms: its hub sockets
	// plus its browsers in rooms.
	Load int `json:"load"`
	// EventsSource is true for the instance whose gateway's events go on
	// the bus (see RedisBus.EventsSource).
	EventsSource bool      `json:"eventsSource"`
	Seen         time.Time `json:"seen"`
}

// renewClaim extends the events-source claim if this instance holds it.
var renewClaim = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)

// releaseClaim gives up the events-source claim if this instance holds it.
var releaseClaim = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// release hands the events source and this instance's key back at Close,
// so that another instance takes over at its next heartbeat rather than
// after InstanceTTL.
func (b *RedisBus) release(ctx context.Context) {
	if b.source.Swap(false) {
		b.result(releaseClaim.Run(ctx, b.opts.Client, []string{b.claimKey()}, b.producer).Err())
	}
	b.result(b.opts.Client.Del(ctx, b.instanceKey(b.opts.InstanceID)).Err())
}

// heartbeat announces this instance every InstanceHeartbeat and keeps or
// takes the events-source claim, until Close.
func (b *RedisBus) heartbeat() {
	for {
		b.beat()
		if !b.sleep(InstanceHeartbeat) {
			return
		}
	}
}

func (b *RedisBus) instanceKey(id string) string {
	return "bridge:" + b.opts.GuildID + ":instance:" + id
}
func (b *RedisBus) claimKey() string { return "bridge:" + b.opts.GuildID + ":events-source" }

func (b *RedisBus) beat() {
	ctx, cancel := b.opCtx(InstanceHeartbeat)
	defer cancel()
	ttl := InstanceTTL.Milliseconds()
	held, err := renewClaim.Run(ctx, b.opts.Client, []string{b.claimKey()}, b.producer, ttl).Int()
	b.result(err)
	if err != nil {
		// Without Redis this instance cannot know who holds the claim;
		// it keeps publishing as it did, so that a lone instance cut off
		// from Redis still serves its sockets once Redis returns.
		return
	}
	if held == 0 {
		took, err := b.opts.Client.SetNX(ctx, b.claimKey(), b.producer, InstanceTTL).Result()
		b.result(err)
		if err != nil {
			return
		}
		held = map[bool]int{true: 1}[took]
	}
	if was := b.source.Swap(held == 1); was != (held == 1) {
		b.log.Info("events source changed", "events_source", held == 1)
		if b.opts.OnEventsSource != nil {
			b.opts.OnEventsSource(held == 1)
		}
	}
	inst := Instance{ID: b.opts.InstanceID, EventsSource: held == 1, Seen: time.Now().UTC()}
	if b.opts.Announce != nil {
		a := b.opts.Announce()
		inst.PublicURL, inst.Load = a.PublicURL, a.Load
	}
	v, _ := json.Marshal(inst)
	b.result(b.opts.Client.Set(ctx, b.instanceKey(b.opts.InstanceID), v, InstanceTTL).Err())
}

// EventsSource reports whether this instance's gateway events are the ones
// published on the bus. Every instance runs a gateway connection and sees
// every Discord event; exactly one of them, holding a claim in Redis that
// it renews with its heartbeat, publishes them, so that sockets get each
// event once. (The bot pool replaces this with a lease per gateway
// connection and a fencing token.)
func (b *RedisBus) EventsSource() bool { return b.source.Load() }

// Instances lists the instances whose heartbeat has not expired, by id.
func (b *RedisBus) Instances(ctx context.Context) ([]Instance, error) {
	var keys []string
	iter := b.opts.Client.Scan(ctx, 0, b.instanceKey("*"), 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	b.result(iter.Err())
	if err := iter.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := b.opts.Client.MGet(ctx, keys...).Result()
	b.result(err)
	if err != nil {
		return nil, err
	}
	out := make([]Instance, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		var inst Instance
		if !ok || json.Unmarshal([]byte(s), &inst) != nil {
			continue // expired between SCAN and MGET, or not ours
		}
		out = append(out, inst)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ClusterStatus is the Redis part of GET /readyz.
type ClusterStatus struct {
	InstanceID   string     `json:"instanceId"`
	Redis        string     `json:"redis"` // "connected" or "unreachable"
	LastError    string     `json:"lastError,omitempty"`
	EventsSource bool       `json:"eventsSource"`
	Instances    []Instance `json:"instances"`
}

// Status reports Redis's state and the instances seen, for /readyz.
func (b *RedisBus) Status(ctx context.Context) ClusterStatus {
	st := ClusterStatus{InstanceID: b.opts.InstanceID, Redis: "unreachable", EventsSource: b.EventsSource()}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	insts, err := b.Instances(ctx)
	if err == nil && b.connected.Load() {
		st.Redis = "connected"
	}
	if err != nil {
		st.LastError = err.Error()
	} else if st.Redis != "connected" {
		st.LastError = b.lastErr.Load().(string)
	}
	st.Instances = insts
	return st
}
