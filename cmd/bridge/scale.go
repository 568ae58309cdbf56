package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

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

// cluster is this instance's part in a bridge spread over instances: the
// Redis client and the hub's bus on it. Its zero value (no REDIS_URL) is
// one instance on its own.
type cluster struct {
	client    *redis.Client
	bus       *hub.RedisBus
	publicURL atomic.Value // string: PUBLIC_URL, or the listen URL once known
	hub       atomic.Pointer[hub.Hub]

	// The gateway opens when this instance becomes the events source
	// (see openGateway).
	gmu      sync.Mutex
	gw       opener
	gwCtx    context.Context
	gwLog    *slog.Logger
	isSource bool
	opened   bool
	lost     bool
}

// redisLogger passes go-redis's own messages (reconnect attempts) to slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

// startCluster connects to REDIS_URL; with none it returns the zero
// cluster. A Redis that is down at start is not fatal: the bus waits for
// it, and /readyz says so.
func startCluster(cfg *Config, guildID string, announce func() hub.Instance, log *slog.Logger) (*cluster, error) {
	if cfg.RedisURL == "" {
		return &cluster{}, nil
	}
	o, err := redis.ParseURL(cfg.RedisURL) // checked in loadConfig
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	o.MinRetryBackoff, o.MaxRetryBackoff = 50*time.Millisecond, time.Second
	redis.SetLogger(redisLogger{log.With("component", "redis")})
	cl := &cluster{client: redis.NewClient(o)}
	cl.publicURL.Store(cfg.PublicURL)
	cl.bus, err = hub.NewRedisBus(hub.RedisBusOptions{
		Client:         cl.client,
		GuildID:        guildID,
		InstanceID:     cfg.instanceID(),
		Announce:       announce,
		OnEventsSource: cl.sourceChanged,
		Logger:         log.With("component", "hub", "instance_id", cfg.instanceID()),
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

// opener is the bots' gateways (the pool), opened and closed as one.
type opener interface {
	Open(ctx context.Context) error
	Close(ctx context.Context) error
}

// openGateway opens the gateway now when alone. With other instances only
// the events source holds the bot's gateway session (Discord delivers a
// shard's events to one session; a second identify ends the first), so
// it opens when this instance takes the events source. An instance that
// loses it closes its gateway for good and reports unready until
// restarted: without the bot pool's fenced leases it cannot tell whether
// the new holder has taken over yet.
func (cl *cluster) openGateway(ctx context.Context, gw opener, log *slog.Logger) error {
	if cl == nil || cl.bus == nil {
		return gw.Open(ctx)
	}
	cl.gmu.Lock()
	defer cl.gmu.Unlock()
	cl.gw, cl.gwCtx, cl.gwLog = gw, ctx, log
	return cl.applyLocked()
}

func (cl *cluster) sourceChanged(source bool) {
	cl.gmu.Lock()
	defer cl.gmu.Unlock()
	cl.isSource = source
	if err := cl.applyLocked(); err != nil && cl.gwLog != nil {
		cl.gwLog.Error("gateway", "err", err)
	}
}

func (cl *cluster) applyLocked() error {
	switch {
	case cl.gw == nil || cl.lost:
		return nil
	case cl.isSource && !cl.opened:
		cl.opened = true
		cl.gwLog.Info("this instance holds the events source: opening the gateway")
		return cl.gw.Open(cl.gwCtx)
	case !cl.isSource && cl.opened:
		cl.lost = true
		cl.gwLog.Error("this instance lost the events source: closing its gateway; restart it to serve as a standby")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return cl.gw.Close(ctx)
	}
	return nil
}

// readiness is /readyz's verdict and its reason: alone or holding the
// gateway, the gateway's; a standby instance is ready while Redis is
// reachable (it serves sockets and REST); one that lost its gateway is
// not.
func (cl *cluster) readiness(gatewayErr error) error {
	if cl == nil || cl.bus == nil {
		return gatewayErr
	}
	cl.gmu.Lock()
	opened, lost := cl.opened, cl.lost
	cl.gmu.Unlock()
	switch {
	case lost:
		return errors.New("this instance lost the events source (the bot's gateway) to another instance; restart it to serve as a standby")
	case opened:
		return gatewayErr
	case !cl.bus.Stats().Connected:
		return errors.New("the Redis of REDIS_URL is unreachable")
	}
	return nil
}

// eventsSource reports whether this instance publishes its gateway's
// events: always when alone, else when it holds the claim (see
// hub.RedisBus.EventsSource).
func (cl *cluster) eventsSource() bool {
	return cl == nil || cl.bus == nil || cl.bus.EventsSource()
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

// status is GET /readyz's "cluster": nil when alone.
func (cl *cluster) status(ctx context.Context) any {
	if cl == nil || cl.bus == nil {
		return nil
	}
	return cl.bus.Status(ctx)
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

// close flushes the bus and closes the Redis client.
func (cl *cluster) close(ctx context.Context) error {
	if cl == nil || cl.client == nil {
		return nil
	}
	var errs []error
	if cl.bus != nil {
		errs = append(errs, cl.bus.Close(ctx))
	}
	errs = append(errs, cl.client.Close())
	return errors.Join(errs...)
}
