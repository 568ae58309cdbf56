package hub

import (
	"context"
	"encoding/json"
	"sort"
	"time"
)

// Heartbeat timings of the instances sharing a RedisBus.
const (
	// InstanceHeartbeat is how often an instance renews its key.
	InstanceHeartbeat = 2 * time.Second
	// InstanceTTL is how long an instance's key outlives its last
	// heartbeat.
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

// release deletes this instance's key at Close, so that the others stop
// listing it at once rather than after InstanceTTL.
func (b *RedisBus) release(ctx context.Context) {
	b.result(b.opts.Client.Del(ctx, b.instanceKey(b.opts.InstanceID)).Err())
}

// heartbeat announces this instance every InstanceHeartbeat, until Close.
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

func (b *RedisBus) beat() {
	ctx, cancel := b.opCtx(InstanceHeartbeat)
	defer cancel()
	inst := Instance{ID: b.opts.InstanceID, EventsSource: b.EventsSource(), Seen: time.Now().UTC()}
	if b.opts.Announce != nil {
		a := b.opts.Announce()
		inst.PublicURL, inst.Load = a.PublicURL, a.Load
	}
	v, _ := json.Marshal(inst)
	b.result(b.opts.Client.Set(ctx, b.instanceKey(b.opts.InstanceID), v, InstanceTTL).Err())
}

// EventsSource reports whether this instance's gateway events are the ones
// published on the bus: RedisBusOptions.EventsSource's answer (the holder
// of the leading bot's gateway lease), false without it.
func (b *RedisBus) EventsSource() bool {
	return b.opts.EventsSource != nil && b.opts.EventsSource()
}

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
