package hub

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/voicebridge/bridge/internal/redistest"
)

// startRedis starts a redis-server for one test.
func startRedis(t testing.TB) *redistest.Server {
	t.Helper()
	srv, err := redistest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// newRedisBus makes a bus on its own client, closed with the test.
func newRedisBus(t testing.TB, url, instance string, mutate func(*RedisBusOptions)) *RedisBus {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	o.MinRetryBackoff, o.MaxRetryBackoff = 10*time.Millisecond, 100*time.Millisecond
	client := redis.NewClient(o)
	opts := RedisBusOptions{Client: client, GuildID: testGuild, InstanceID: instance}
	if mutate != nil {
		mutate(&opts)
	}
	b, err := NewRedisBus(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bus close: %v", err)
		}
		_ = client.Close()
	})
	return b
}

// waitBusAtEnd waits until the bus's reader has found its place in the
// stream, so that it sees everything published from now on.
func waitBusAtEnd(t testing.TB, b *RedisBus) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for b.Stats().LastID == "" {
		if time.Now().After(deadline) {
			t.Fatalf("bus never reached the stream: %+v", b.Stats())
		}
		time.Sleep(5 * time.Millisecond) // polling a counter with a deadline
	}
}

// readEvents reads n events from c and returns their payloads' "n".
func readEvents(t testing.TB, c *websocket.Conn, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for len(out) < n {
		m := readMsg(t, c)
		if m["type"] != "event" {
			t.Fatalf("want an event, got %v", m)
		}
		p, _ := m["payload"].(map[string]any)
		s, _ := p["n"].(string)
		out = append(out, s)
	}
	return out
}

// TestRedisBusThreeInstances: events published on any of three hubs reach
// every socket on every hub exactly once and in one order, across a Redis
// restart in the middle of the run.
func TestRedisBusThreeInstances(t *testing.T) {
	rs := startRedis(t)
	var envs []*env
	var buses []*RedisBus
	for i := range 3 {
		b := newRedisBus(t, rs.URL(), fmt.Sprintf("i%d", i+1), nil)
		buses = append(buses, b)
		envs = append(envs, newEnv(t, func(o *Options) { o.Bus = b }))
		waitBusAtEnd(t, b)
	}
	var socks []*websocket.Conn
	for _, e := range envs {
		for range 2 {
			c, _ := e.connect(t, e.idp.token(t, tokenSpec{sub: "ann"}))
			socks = append(socks, c)
		}
	}

	const perPhase = 60
	var want []string
	publish := func(phase string) {
		for i := range perPhase {
			n := fmt.Sprintf("%s-%d", phase, i)
			want = append(want, n)
			envs[i%3].hub.Publish("room.updated", map[string]any{"n": n})
		}
	}
	publish("before")
	got := make([][]string, len(socks))
	for i, c := range socks {
		got[i] = readEvents(t, c, perPhase)
	}
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	publish("after")
	for i, c := range socks {
		got[i] = append(got[i], readEvents(t, c, perPhase)...)
	}

	for i, g := range got {
		if !slices.Equal(g, got[0]) {
			t.Fatalf("socket %d saw another order than socket 0:\n%v\n%v", i, g, got[0])
		}
		sorted := slices.Clone(g)
		slices.Sort(sorted)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(sorted, w) {
			t.Fatalf("socket %d: events %v, want each of %v once", i, g, want)
		}
	}
	// Each instance's own events keep its publish order.
	for inst := range 3 {
		var mine []string
		for i, n := range want {
			if i%perPhase%3 == inst {
				mine = append(mine, n)
			}
		}
		var seen []string
		for _, n := range got[0] {
			if slices.Contains(mine, n) {
				seen = append(seen, n)
			}
		}
		if !slices.Equal(seen, mine) {
			t.Fatalf("instance %d's events out of order: %v, want %v", inst+1, seen, mine)
		}
	}
	// Nothing more arrives: a ping is answered before any extra event.
	for i, c := range socks {
		writeJSONMsg(t, c, map[string]any{"type": "ping"})
		if m := readMsg(t, c); m["type"] != "pong" {
			t.Fatalf("socket %d: after the events, want pong, got %v", i, m)
		}
	}
	for i, b := range buses {
		if s := b.Stats(); s.Delivered != 2*perPhase || s.Dropped != 0 || s.Resyncs != 0 {
			t.Fatalf("bus %d stats %+v", i+1, s)
		}
	}
}

// TestRedisBusDuplicateEntrySkipped: an entry a retried XADD left twice in
// the stream reaches sockets once.
func TestRedisBusDuplicateEntrySkipped(t *testing.T) {
	rs := startRedis(t)
	b := newRedisBus(t, rs.URL(), "i1", nil)
	e := newEnv(t, func(o *Options) { o.Bus = b })
	waitBusAtEnd(t, b)
	c, _ := e.connect(t, e.idp.token(t, tokenSpec{sub: "ann"}))

	raw := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer raw.Close()
	ctx := context.Background()
	add := func(seq, n string) {
		msg := fmt.Sprintf(`{"v":1,"type":"event","event":"room.updated","payload":{"n":%q},"ts":1}`, n)
		if err := raw.XAdd(ctx, &redis.XAddArgs{Stream: b.Stream(), Values: []any{"p", "other/1", "s", seq, "m", msg}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	add("1", "a")
	add("1", "a") // the retry of an XADD whose answer was lost
	add("2", "b")
	if got := readEvents(t, c, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("events %v, want [a b]", got)
	}
	if s := b.Stats(); s.Duplicates != 1 || s.Delivered != 2 {
		t.Fatalf("stats %+v, want 1 duplicate and 2 delivered", s)
	}
}

// TestRedisBusResyncAfterTrim: an instance that could not read while the
// stream was trimmed past its place closes its sockets with
// CloseServiceRestart instead of delivering a stream with a hole.
func TestRedisBusResyncAfterTrim(t *testing.T) {
	rs := startRedis(t)
	raw := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer raw.Close()
	ctx := context.Background()
	// The bus signs in as its own user, so that the test can shut it out
	// while the other instances go on publishing.
	if err := raw.Do(ctx, "ACL", "SETUSER", "bus", "on", ">pw", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	b := newRedisBus(t, "redis://bus:pw@"+rs.Addr()+"/0", "i1", nil)
	e := newEnv(t, func(o *Options) { o.Bus = b })
	waitBusAtEnd(t, b)
	c, _ := e.connect(t, e.idp.token(t, tokenSpec{sub: "ann"}))
	e.hub.Publish("room.updated", map[string]any{"n": "first"})
	if got := readEvents(t, c, 1); got[0] != "first" {
		t.Fatalf("event %v", got)
	}

	for _, cmd := range [][]any{{"ACL", "SETUSER", "bus", "off"}, {"CLIENT", "KILL", "USER", "bus"}} {
		if err := raw.Do(ctx, cmd...).Err(); err != nil {
			t.Fatal(cmd, err)
		}
	}
	deadline := time.Now().Add(waitLimit)
	for b.Stats().Connected {
		if time.Now().After(deadline) {
			t.Fatal("bus never noticed it was shut out")
		}
		time.Sleep(10 * time.Millisecond) // polling a counter with a deadline
	}
	// Meanwhile the other instances publish so much that the stream is
	// trimmed past this instance's place.
	for i := range 3 {
		if err := raw.XAdd(ctx, &redis.XAddArgs{Stream: b.Stream(), Values: []any{"p", "other/1", "s", fmt.Sprint(i + 1), "m", "{}"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.XTrimMaxLen(ctx, b.Stream(), 1).Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.Do(ctx, "ACL", "SETUSER", "bus", "on").Err(); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, CloseServiceRestart, true)
	if s := b.Stats(); s.Resyncs != 1 {
		t.Fatalf("stats %+v, want one resync", s)
	}
}

func TestNewRedisBusOptions(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for _, o := range []RedisBusOptions{{GuildID: "g"}, {Client: client}, {Client: client, GuildID: "g", Outbox: -1}} {
		if _, err := NewRedisBus(o); err == nil {
			t.Errorf("NewRedisBus(%+v) accepted", o)
		}
	}
}

// TestRedisBusInstances: each instance announces itself with its URL,
// load and whether it is the events source, /readyz reports Redis and the
// instances, and a closed instance's key is gone at once.
func TestRedisBusInstances(t *testing.T) {
	rs := startRedis(t)
	a := newRedisBus(t, rs.URL(), "a", func(o *RedisBusOptions) {
		o.Announce = func() Instance { return Instance{PublicURL: "https://a.example", Load: 7} }
		o.EventsSource = func() bool { return true }
	})
	b := newRedisBus(t, rs.URL(), "b", nil)
	e := newEnv(t, func(o *Options) {
		o.Bus = a
		o.Cluster = func(ctx context.Context) any { return a.Status(ctx) }
		o.OperatorToken = []byte(busOperatorToken)
	})
	newEnv(t, func(o *Options) { o.Bus = b })

	deadline := time.Now().Add(waitLimit)
	var st ClusterStatus
	for {
		st = a.Status(context.Background())
		if len(st.Instances) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instances never both announced: %+v", st)
		}
		time.Sleep(20 * time.Millisecond) // polling heartbeats with a deadline
	}
	if st.Redis != "connected" || !st.EventsSource || st.Instances[0].ID != "a" || st.Instances[0].PublicURL != "https://a.example" ||
		st.Instances[0].Load != 7 || !st.Instances[0].EventsSource || st.Instances[1].ID != "b" || st.Instances[1].EventsSource {
		t.Fatalf("status %+v", st)
	}
	if !a.Stats().EventsSource || b.Stats().EventsSource {
		t.Fatalf("stats' events source: a %v, b %v", a.Stats().EventsSource, b.Stats().EventsSource)
	}
	// The cluster is the operator's view of /readyz.
	_, body := doJSON(t, "GET", e.srv.URL+"/readyz", "", "")
	if _, ok := body["operator"]; ok {
		t.Fatalf("/readyz without the operator token shows %v", body)
	}
	_, body = doJSON(t, "GET", e.srv.URL+"/readyz", busOperatorToken, "")
	op, _ := body["operator"].(map[string]any)
	cl, _ := op["cluster"].(map[string]any)
	if cl["redis"] != "connected" || cl["instanceId"] != "a" {
		t.Fatalf("/readyz cluster %v", body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(ctx); len(st.Instances) != 1 || st.Instances[0].ID != "a" {
		t.Fatalf("after b closed: %+v", st.Instances)
	}

	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	_, body = doJSON(t, "GET", e.srv.URL+"/readyz", busOperatorToken, "")
	op, _ = body["operator"].(map[string]any)
	if cl, _ := op["cluster"].(map[string]any); cl["redis"] != "unreachable" || cl["lastError"] == "" {
		t.Fatalf("/readyz with Redis down: %v", body)
	}
}

// busOperatorToken is the operator token of the cluster tests' hubs.
const busOperatorToken = "bus-test-operator-token-0123456789abcdef"

// TestRedisBusFenced: an event tied to a lease is appended only while the
// lease holds its holder's value, a stale token's entry that got into the
// stream is skipped behind a newer one, and AfterPublished runs once the
// events published before it are in Redis.
func TestRedisBusFenced(t *testing.T) {
	rs := startRedis(t)
	b := newRedisBus(t, rs.URL(), "i1", nil)
	e := newEnv(t, func(o *Options) { o.Bus = b })
	waitBusAtEnd(t, b)
	c, _ := e.connect(t, e.idp.token(t, tokenSpec{sub: "ann"}))
	raw := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer raw.Close()
	ctx := context.Background()
	const key = "bridge:g:gateway:bot1:0"
	old, cur := Fence{Key: key, Token: 1, Value: "1/a"}, Fence{Key: key, Token: 2, Value: "2/b"}

	raw.Set(ctx, key, old.Value, 0)
	e.hub.PublishFenced(old, "", "room.updated", map[string]any{"n": "a"})
	inRedis := make(chan int64, 1)
	b.AfterPublished(func() { inRedis <- raw.XLen(ctx, b.Stream()).Val() })
	if n := <-inRedis; n != 1 {
		t.Fatalf("AfterPublished ran with %d entries in the stream, want the one published before it", n)
	}
	raw.Set(ctx, key, cur.Value, 0) // another instance took the lease
	e.hub.PublishFenced(old, "", "room.updated", map[string]any{"n": "stale"})
	e.hub.PublishFenced(cur, "", "room.updated", map[string]any{"n": "b"})
	if got := readEvents(t, c, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("events %v, want [a b]", got)
	}
	// A stale holder's entry that reached the stream (appended before
	// Redis saw the takeover, read after) is skipped behind token 2.
	if err := raw.XAdd(ctx, &redis.XAddArgs{Stream: b.Stream(), Values: []any{"p", "other/1", "s", "1", "m",
		`{"v":1,"type":"event","event":"room.updated","payload":{"n":"late"},"ts":1}`, "f", key, "t", "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	e.hub.PublishFenced(cur, "", "room.updated", map[string]any{"n": "c"})
	if got := readEvents(t, c, 1); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("events %v, want [c]", got)
	}
	if s := b.Stats(); s.Fenced != 2 || s.Delivered != 3 {
		t.Fatalf("stats %+v, want 2 fenced and 3 delivered", s)
	}
}

// TestRedisBusFencedReplaySkipped: a new holder that resumed its source
// from before the old holder's last events publishes them again; readers
// skip each event whose place in the session is not after the last seen
// under the lease, and take a new session's events from its start.
func TestRedisBusFencedReplaySkipped(t *testing.T) {
	rs := startRedis(t)
	b := newRedisBus(t, rs.URL(), "i1", nil)
	e := newEnv(t, func(o *Options) { o.Bus = b })
	waitBusAtEnd(t, b)
	c, _ := e.connect(t, e.idp.token(t, tokenSpec{sub: "ann"}))
	raw := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer raw.Close()
	ctx := context.Background()
	const key = "bridge:g:gateway:bot1:0"
	at := func(tok int64, sess string, seq, idx int64) Fence {
		return Fence{Key: key, Token: tok, Value: fmt.Sprintf("%d/x", tok), Session: sess, Seq: seq, Index: idx}
	}
	pub := func(f Fence, n string) { e.hub.PublishFenced(f, "", "room.updated", map[string]any{"n": n}) }
	raw.Set(ctx, key, "1/x", 0)
	pub(at(1, "S", 5, 0), "5.0")
	pub(at(1, "S", 5, 1), "5.1")
	pub(at(1, "S", 6, 0), "6.0")
	if got := readEvents(t, c, 3); !slices.Equal(got, []string{"5.0", "5.1", "6.0"}) {
		t.Fatalf("events %v", got)
	}
	raw.Set(ctx, key, "2/x", 0) // the new holder resumed S from seq 4
	pub(at(2, "S", 5, 0), "5.0 again")
	pub(at(2, "S", 5, 1), "5.1 again")
	pub(at(2, "S", 6, 0), "6.0 again")
	pub(at(2, "S", 7, 0), "7.0")
	pub(at(2, "T", 1, 0), "T1.0") // a session identified anew
	if got := readEvents(t, c, 2); !slices.Equal(got, []string{"7.0", "T1.0"}) {
		t.Fatalf("events after the replay %v, want [7.0 T1.0]", got)
	}
	if s := b.Stats(); s.Duplicates != 3 || s.Delivered != 5 {
		t.Fatalf("stats %+v, want 3 duplicates and 5 delivered", s)
	}
}
