package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/gateway/lease"
	"github.com/voicebridge/bridge/hub"
)

// loadScale reads the settings of a bridge spread over several instances.
func loadScale(c *Config, get func(string) string, bad func(v, problem, fix string)) {
	c.VoiceCAFile, c.RedisURL, c.InstanceID, c.PublicURL = get("VOICE_CA_FILE"), get("REDIS_URL"), get("INSTANCE_ID"), get("PUBLIC_URL")
	if c.VoiceCAFile != "" {
		if _, err := voiceRoots(c.VoiceCAFile); err != nil {
			bad("VOICE_CA_FILE", err.Error(), "give a readable PEM file of CA certificates, such as the one go run ./cmd/emulator writes")
		}
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			bad("REDIS_URL", fmt.Sprintf("%q: %v", redactURL(c.RedisURL), err), "use redis://[user:password@]host:port/db or rediss:// for TLS")
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("PUBLIC_URL", fmt.Sprintf("%q is not an http(s) URL", c.PublicURL), "give the URL browsers open this instance at, e.g. https://bridge-2.example.com")
		}
	}
}

// redactURL hides a URL's password, for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// voiceRoots reads VOICE_CA_FILE into the system roots plus its
// certificates.
func voiceRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// voiceTLS is the TLS configuration of voice connections: the embedded
// emulator's, VOICE_CA_FILE's roots, or nil for the system roots.
func (a *app) voiceTLS() *tls.Config {
	if a.demo != nil {
		return a.demo.Voice.TLSConfig()
	}
	if a.cfg.VoiceCAFile == "" {
		return nil
	}
	pool, err := voiceRoots(a.cfg.VoiceCAFile) // checked in loadScale
	if err != nil {
		a.log.Error("VOICE_CA_FILE", "err", err)
		return nil
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// instanceID is INSTANCE_ID, or the host name and listen port.
func (c *Config) instanceID() string {
	if c.InstanceID != "" {
		return c.InstanceID
	}
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(c.ListenAddr)
	return host + ":" + port
}

// The gateway leases' timings (gateway/lease): a holder renews every
// leaseRenew; a lease not renewed for leaseTTL expires, and the other
// instances, trying every leaseRenew, take it within leaseTTL +
// leaseRenew of the holder's last renewal. A holder that could not renew
// for leaseTTL - leaseRenew gives the gateway up first, so that it has
// stopped before anyone else can take over.
const (
	leaseTTL   = 3 * time.Second
	leaseRenew = time.Second
)

// cluster is this instance's part in a bridge spread over instances: the
// Redis client, the hub's bus on it and the bots' gateway leases. Its
// zero value (no REDIS_URL) is one instance on its own.
type cluster struct {
	client     *redis.Client
	bus        *hub.RedisBus
	instanceID string
	guildID    string
	publicURL  atomic.Value // string: PUBLIC_URL, or the listen URL once known
	hub        atomic.Pointer[hub.Hub]
	log        *slog.Logger
	onChange   func(change string) // a lease was acquired, lost or released (metrics)

	// The gateway leases, one per bot; openGateway starts keeping them.
	bots   *bots
	leases []*botLease
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	// closeOnce makes close idempotent (Shutdown may be called again).
	closeOnce sync.Once
}

// botLease is one bot's gateway lease as this instance holds it (or not).
type botLease struct {
	bot    int
	name   string
	lease  *lease.Lease
	client *gateway.Client

	mu        sync.Mutex
	held      lease.Held
	holding   bool
	lost      bool      // held, then lost: this instance gave the gateway up for good
	renewedAt time.Time // when the last successful renewal was sent
	// Saving the session: at most one save waits behind the bus's
	// events at a time (inFlight); a newer session waits in pending.
	inFlight bool
	pending  *savedSession
	last     *savedSession

	saveMu  sync.Mutex // orders the saves themselves (Redis round trips)
	savedAt int64      // the sequence last saved, under saveMu
}

// savedSession is a gateway session encoded for the lease's hash.
type savedSession struct {
	seq  int64
	data []byte
}

// redisLogger passes go-redis's own messages (reconnect attempts) to slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

// startCluster connects to REDIS_URL; with none it returns the zero
// cluster. A Redis that is down at start is not fatal: the bus waits for
// it, and /readyz says so.
func startCluster(cfg *Config, guildID string, b *bots, announce func() hub.Instance, log *slog.Logger) (*cluster, error) {
	if cfg.RedisURL == "" {
		return &cluster{}, nil
	}
	o, err := redis.ParseURL(cfg.RedisURL) // checked in loadConfig
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	o.MinRetryBackoff, o.MaxRetryBackoff = 50*time.Millisecond, time.Second
	redis.SetLogger(redisLogger{log.With("component", "redis")})
	cl := &cluster{client: redis.NewClient(o), instanceID: cfg.instanceID(), guildID: guildID, stop: make(chan struct{}),
		log: log.With("component", "cluster", "instance_id", cfg.instanceID())}
	cl.publicURL.Store(cfg.PublicURL)
	cl.bots = b
	for i, c := range b.clients {
		l, err := lease.New(lease.Options{Client: cl.client, Key: leaseKey(b.homes[i], b.tokens[i]), Owner: strings.ReplaceAll(cl.instanceID, "/", "_"), TTL: leaseTTL})
		if err != nil {
			_ = cl.client.Close()
			return nil, err
		}
		cl.leases = append(cl.leases, &botLease{bot: i, name: b.names[i], lease: l, client: c})
	}
	cl.bus, err = hub.NewRedisBus(hub.RedisBusOptions{
		Client:       cl.client,
		GuildID:      guildID,
		InstanceID:   cfg.instanceID(),
		Announce:     announce,
		EventsSource: cl.eventsSource,
		Logger:       log.With("component", "hub", "instance_id", cfg.instanceID()),
	})
	if err != nil {
		_ = cl.client.Close()
		return nil, err
	}
	return cl, nil
}

// hubBus is the hub's Bus: nil (in process) without Redis.
func (cl *cluster) hubBus() hub.Bus {
	if cl == nil || cl.bus == nil {
		return nil
	}
	return cl.bus
}

// leaseKey names a bot's gateway lease: the guild and the bot (a digest of
// its token, the same on every instance; never the token). The bot
// connects the one shard that carries the guild, so this is the shard's
// lease.
func leaseKey(guildID, token string) string {
	sum := sha256.Sum256([]byte(strings.TrimPrefix(token, "Bot ")))
	return "bridge:" + guildID + ":gateway:" + hex.EncodeToString(sum[:8])
}

// openGateway opens the bots' gateways now when alone. With other
// instances, each bot's gateway (its shard) is held by the instance
// holding its lease: this instance opens a bot's gateway when it takes
// the bot's lease, resuming the session the previous holder saved. The
// first bot's lease comes first: the other bots' leases are taken by its
// holder only, so that the pool's bots (and the calls they carry) stay on
// one instance. An instance that loses a lease abandons that gateway (its
// session stays resumable for the new holder) and reports unready until
// restarted.
func (cl *cluster) openGateway(ctx context.Context, b *bots) error {
	if cl == nil || cl.bus == nil {
		return b.pool.Open(ctx)
	}
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		cl.keepLeases()
	}()
	return nil
}

// keepLeases renews the leases held and tries the others, every
// leaseRenew, until handOver.
func (cl *cluster) keepLeases() {
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		for _, bl := range cl.leases {
			cl.keepLease(bl)
		}
		select {
		case <-cl.stop:
			return
		case <-t.C:
		}
	}
}

func (cl *cluster) keepLease(bl *botLease) {
	ctx, cancel := context.WithTimeout(context.Background(), leaseRenew)
	defer cancel()
	bl.mu.Lock()
	holding, held, renewedAt := bl.holding, bl.held, bl.renewedAt
	bl.mu.Unlock()
	if holding {
		sent := time.Now()
		err := bl.lease.Renew(ctx, held)
		switch {
		case err == nil:
			bl.mu.Lock()
			bl.renewedAt = sent
			bl.mu.Unlock()
		case errors.Is(err, lease.ErrNotHeld):
			cl.lose(bl, "another instance holds it now")
		case time.Since(renewedAt) >= leaseTTL-leaseRenew:
			cl.lose(bl, fmt.Sprintf("not renewed for %v (%v)", time.Since(renewedAt).Round(time.Millisecond), err))
		}
		return
	}
	if cl.gaveUp() || (bl.bot > 0 && !cl.leases[0].isHolding()) {
		return
	}
	sent := time.Now()
	h, ok, err := bl.lease.Acquire(ctx)
	if err != nil || !ok {
		return
	}
	var sess gateway.Session
	if raw, _, err := bl.lease.Load(ctx); err != nil {
		cl.log.Warn("reading the saved gateway session failed: identifying anew", "bot", bl.name, "err", err)
	} else if raw != nil {
		if err := json.Unmarshal(raw, &sess); err != nil {
			cl.log.Warn("the saved gateway session is unreadable: identifying anew", "bot", bl.name, "err", err)
			sess = gateway.Session{}
		}
	}
	bl.mu.Lock()
	bl.held, bl.holding, bl.renewedAt = h, true, sent
	bl.mu.Unlock()
	cl.changed("acquired")
	if sess.ID != "" {
		cl.log.Info("this instance holds the bot's gateway lease: resuming the saved session", "bot", bl.name, "token", h.Token, "session_id", sess.ID, "seq", sess.Seq)
	} else {
		cl.log.Info("this instance holds the bot's gateway lease: identifying", "bot", bl.name, "token", h.Token)
	}
	cl.bots.report.seed(sess) // the previous holder published the saved view
	if err := cl.bots.pool.OpenBot(context.Background(), bl.bot, sess); err != nil {
		cl.log.Error("opening the gateway of a lease taken", "bot", bl.name, "err", err)
	}
}

// lose gives up a lease this instance held: the gateway is abandoned (its
// session stays resumable for the next holder) and the instance reports
// unready until restarted, since its gateway client cannot be reopened.
func (cl *cluster) lose(bl *botLease, why string) {
	bl.mu.Lock()
	bl.holding, bl.lost = false, true
	token := bl.held.Token
	bl.mu.Unlock()
	cl.changed("lost")
	cl.log.Error("this instance lost the bot's gateway lease: abandoning its gateway; restart it to serve as a standby", "bot", bl.name, "token", token, "reason", why)
	cl.wg.Add(1) // the keeper, calling, holds the group open
	go func() {
		defer cl.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := bl.client.Abandon(ctx); err != nil {
			cl.log.Warn("abandoning the gateway", "bot", bl.name, "err", err)
		}
	}()
}

func (cl *cluster) changed(change string) {
	if cl.onChange != nil {
		cl.onChange(change)
	}
}

// leasesHeld counts the leases this instance holds.
func (cl *cluster) leasesHeld() int {
	n := 0
	for _, bl := range cl.leases {
		if bl.isHolding() {
			n++
		}
	}
	return n
}

func (bl *botLease) isHolding() bool {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	return bl.holding
}

// gaveUp reports whether this instance lost a lease it held.
func (cl *cluster) gaveUp() bool {
	for _, bl := range cl.leases {
		bl.mu.Lock()
		lost := bl.lost
		bl.mu.Unlock()
		if lost {
			return true
		}
	}
	return false
}

// fence is the fence of bot's lease, false when this instance does not
// hold it.
func (cl *cluster) fence(bot int) (hub.Fence, bool) {
	if bot < 0 || bot >= len(cl.leases) {
		return hub.Fence{}, false
	}
	bl := cl.leases[bot]
	bl.mu.Lock()
	defer bl.mu.Unlock()
	return hub.Fence{Key: bl.held.Key, Token: bl.held.Token, Value: bl.held.Value}, bl.holding
}

// publish hands a bot's room event to the hub: alone at once; with other
// instances only while this instance holds the bot's lease, fenced by it.
func (cl *cluster) publish(h *hub.Hub, bot int, e gateway.Event) {
	if cl == nil || cl.bus == nil {
		h.PublishGuild(eventGuild(e), e.Name, e.Payload)
		return
	}
	if f, ok := cl.fence(bot); ok {
		f.Session, f.Seq, f.Index = e.Session, e.Seq, int64(e.Index)
		h.PublishFenced(f, eventGuild(e), e.Name, e.Payload)
	}
}

// saveSession stores a bot's gateway session in its lease, behind the
// events published before it (so the saved sequence never runs ahead of
// what reached the bus) and fenced by the lease.
func (cl *cluster) saveSession(bot int, s gateway.Session) {
	if cl == nil || cl.bus == nil || bot >= len(cl.leases) {
		return
	}
	data, err := json.Marshal(s)
	if err != nil {
		return
	}
	bl := cl.leases[bot]
	v := &savedSession{seq: s.Seq, data: data}
	bl.mu.Lock()
	if !bl.holding {
		bl.mu.Unlock()
		return
	}
	bl.last = v
	if bl.inFlight {
		bl.pending = v
		bl.mu.Unlock()
		return
	}
	bl.inFlight = true
	h := bl.held
	bl.mu.Unlock()
	cl.queueSave(bl, h, v)
}

// queueSave saves v once the bus has written what was published before;
// a newer session that came meanwhile follows behind the events published
// before it.
func (cl *cluster) queueSave(bl *botLease, h lease.Held, v *savedSession) {
	queued := cl.bus.AfterPublished(func() {
		cl.writeSession(bl, h, v)
		bl.mu.Lock()
		next := bl.pending
		bl.pending = nil
		bl.inFlight = next != nil
		bl.mu.Unlock()
		if next != nil {
			cl.queueSave(bl, h, next)
		}
	})
	if !queued {
		bl.mu.Lock()
		bl.inFlight = false
		bl.mu.Unlock()
	}
}

// writeSession saves v under h unless a later sequence was saved already.
func (cl *cluster) writeSession(bl *botLease, h lease.Held, v *savedSession) {
	bl.saveMu.Lock()
	defer bl.saveMu.Unlock()
	if v.seq < bl.savedAt {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseRenew)
	defer cancel()
	if err := bl.lease.Save(ctx, h, v.data); err != nil {
		cl.log.Warn("saving the gateway session failed", "bot", bl.name, "token", h.Token, "err", err)
		return
	}
	bl.savedAt = v.seq
}

// handOver, at shutdown, stops taking leases and hands the held ones on:
// each gateway is abandoned (its session stays resumable), its last
// session saved behind its last events, and the lease released, so that
// another instance resumes it at its next try rather than after the TTL.
func (cl *cluster) handOver(ctx context.Context) {
	if cl == nil || cl.bus == nil || cl.leases == nil {
		return
	}
	cl.once.Do(func() { close(cl.stop) })
	cl.wg.Wait()
	for _, bl := range cl.leases {
		if !bl.isHolding() {
			continue
		}
		if err := bl.client.Abandon(ctx); err != nil {
			cl.log.Warn("abandoning the gateway", "bot", bl.name, "err", err)
		}
		flushed := make(chan struct{})
		if cl.bus.AfterPublished(func() { close(flushed) }) {
			select {
			case <-flushed:
			case <-ctx.Done():
			}
		}
		bl.mu.Lock()
		h, last := bl.held, bl.last
		bl.holding = false
		bl.mu.Unlock()
		if last != nil {
			cl.writeSession(bl, h, last)
		}
		if err := bl.lease.Release(ctx, h); err != nil {
			cl.log.Warn("releasing the gateway lease", "bot", bl.name, "err", err)
		}
		cl.changed("released")
		cl.log.Info("gateway lease released for another instance to resume", "bot", bl.name, "token", h.Token)
	}
}

// readiness is /readyz's verdict and its reason: alone or holding the
// gateway, the gateway's; a standby instance is ready while Redis is
// reachable (it serves sockets and REST); one that lost a gateway lease
// is not.
func (cl *cluster) readiness(gatewayErr error) error {
	if cl == nil || cl.bus == nil {
		return gatewayErr
	}
	switch {
	case cl.gaveUp():
		return errors.New("this instance lost a bot's gateway lease to another instance; restart it to serve as a standby")
	case len(cl.leases) > 0 && cl.leases[0].isHolding():
		return gatewayErr
	case !cl.bus.Stats().Connected:
		return errors.New("the Redis of REDIS_URL is unreachable")
	}
	return nil
}

// eventsSource reports whether this instance publishes the Discord events
// for all: always when alone, else when it holds the first bot's lease.
func (cl *cluster) eventsSource() bool {
	if cl == nil || cl.bus == nil {
		return true
	}
	return len(cl.leases) > 0 && cl.leases[0].isHolding()
}

// listening records the listen URL, announced when PUBLIC_URL is unset,
// and the hub whose sockets are this instance's load.
func (cl *cluster) listening(url string, h *hub.Hub) {
	if cl == nil || cl.bus == nil {
		return
	}
	if cl.publicURL.Load().(string) == "" {
		cl.publicURL.Store(url)
	}
	cl.hub.Store(h)
}

// clusterStatus is GET /readyz's "cluster": the bus's view of Redis and
// the instances, and the bots' gateway leases.
type clusterStatus struct {
	hub.ClusterStatus
	Leases []leaseStatus `json:"leases"`
}

// leaseStatus is one bot's gateway lease: whether this instance holds it
// (with its fencing token), else who does.
type leaseStatus struct {
	Bot    string `json:"bot"`
	Key    string `json:"key"`
	Held   bool   `json:"held"`
	Lost   bool   `json:"lost,omitempty"`
	Token  int64  `json:"token,omitempty"`
	Holder string `json:"holder,omitempty"` // the holding instance, as Redis says
}

// status is GET /readyz's "cluster": nil when alone.
func (cl *cluster) status(ctx context.Context) any {
	if cl == nil || cl.bus == nil {
		return nil
	}
	st := clusterStatus{ClusterStatus: cl.bus.Status(ctx), Leases: []leaseStatus{}}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for _, bl := range cl.leases {
		bl.mu.Lock()
		ls := leaseStatus{Bot: bl.name, Key: bl.lease.Key(), Held: bl.holding, Lost: bl.lost}
		if bl.holding {
			ls.Token = bl.held.Token
		}
		bl.mu.Unlock()
		if tok, owner, ok, err := bl.lease.Holder(ctx); err == nil && ok {
			ls.Holder = owner
			if !ls.Held {
				ls.Token = tok
			}
		}
		st.Leases = append(st.Leases, ls)
	}
	return st
}

// announce is what this instance tells the others about itself.
func (a *app) announce() hub.Instance {
	inst := hub.Instance{}
	if a.cluster == nil {
		return inst
	}
	inst.PublicURL, _ = a.cluster.publicURL.Load().(string)
	if h := a.cluster.hub.Load(); h != nil {
		inst.Load = h.Clients()
	}
	return inst
}

// close flushes the bus and closes the Redis client, once.
func (cl *cluster) close(ctx context.Context) error {
	if cl == nil || cl.client == nil {
		return nil
	}
	if cl.stop != nil {
		cl.once.Do(func() { close(cl.stop) })
		cl.wg.Wait()
	}
	var err error
	cl.closeOnce.Do(func() {
		if cl.bus != nil {
			err = cl.bus.Close(ctx)
		}
		err = errors.Join(err, cl.client.Close())
	})
	return err
}
