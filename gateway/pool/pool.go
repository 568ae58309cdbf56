// Package pool holds the bridge's bots. Discord lets a bot hold one voice
// connection per guild, so a bridge that bridges several rooms of a guild
// at once needs several bots, each its own application with its own token,
// gateway connection, rate-limit buckets and identity.
//
// A room that wants Discord takes a Lease on a free bot of its guild and
// gives it back when its voice connection ends. A bot whose gateway
// stopped for good (a bad or reset token: close 4004, or another fatal
// close) leaves the pool: an error log line names it, Status reports it,
// and every lease it held is told through Lease.Lost, so that its rooms
// move to another bot. The pool does not decide which room gets a bot
// when bots are scarce: media's room registry does, longest waiting first,
// with Capacity as its limit.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/voicebridge/bridge/gateway"
)

// Sentinel errors of package pool.
var (
	// ErrOptions means Options were incomplete; the text names the field.
	ErrOptions = errors.New("pool: invalid options")
	// ErrNoFreeBot means every healthy bot of the guild holds a room.
	ErrNoFreeBot = errors.New("pool: every bot of this server is in another room")
	// ErrNoBot means no bot of the guild is healthy.
	ErrNoBot = errors.New("pool: no working bot serves this server")
	// ErrClosed means the pool was closed.
	ErrClosed = errors.New("pool: closed")
)

// Bot is one bot of the pool: its gateway client and the guilds it serves.
type Bot struct {
	// Name names the bot in logs and Status (for example "bot 2"); never
	// the token.
	Name string
	// Client is the bot's gateway connection; the pool opens and closes
	// it.
	Client *gateway.Client
	// Guilds are the ids of the guilds the bot serves; of them, those its
	// gateway's READY lists (Client.InGuild) count.
	Guilds []string
}

// Options configures a Pool.
type Options struct {
	// Bots are the pool's bots, at least one. The first healthy one leads:
	// Lead returns it, for the room events and REST calls one bot is
	// enough for.
	Bots []Bot
	// OnChange is called when the pool's capacity changed: a bot became
	// ready or left the pool. It runs on a goroutine of the pool, never
	// under its lock, and must not block for long.
	OnChange func()
	// Logger receives the pool's logs; default: discarded.
	Logger *slog.Logger
}

// Pool is the set of bots. Its methods are safe for concurrent use.
type Pool struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	bots   []*member
	opened bool // Open ran: Add opens the bots it adds
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// member is a bot and what the pool knows of it. Guarded by Pool.mu.
type member struct {
	Bot
	failed bool
	reason string
	leases map[string]*Lease // by guild id: the bot's one voice connection there
}

// serves reports whether the bot serves guildID and is in it.
func (m *member) serves(guildID string) bool {
	return slices.Contains(m.Guilds, guildID) && m.Client.InGuild(guildID)
}

// Lease is one bot held for one room's voice connection.
type Lease struct {
	// Bot is the held bot.
	Bot       *Bot
	guildID   string
	channelID string
	p         *Pool
	m         *member
	lost      chan struct{}
	once      sync.Once
}

// Lost is closed when the bot left the pool while leased: the voice
// connection it carries should end, and the room take another bot.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the bot back. It is idempotent.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.p.mu.Lock()
		if l.m.leases[l.guildID] == l {
			delete(l.m.leases, l.guildID)
		}
		l.p.mu.Unlock()
	})
}

// New builds a pool of opts.Bots; Open connects them.
func New(opts Options) (*Pool, error) {
	if len(opts.Bots) == 0 {
		return nil, fmt.Errorf("%w: Bots is empty; give at least one bot token", ErrOptions)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnChange == nil {
		opts.OnChange = func() {}
	}
	p := &Pool{opts: opts, log: opts.Logger.With("component", "gateway"), stop: make(chan struct{})}
	for i, b := range opts.Bots {
		if b.Client == nil {
			return nil, fmt.Errorf("%w: Bots[%d] (%s) has no gateway client", ErrOptions, i, b.Name)
		}
		if len(b.Guilds) == 0 {
			return nil, fmt.Errorf("%w: Bots[%d] (%s) serves no guild", ErrOptions, i, b.Name)
		}
		p.bots = append(p.bots, &member{Bot: b, leases: make(map[string]*Lease)})
	}
	return p, nil
}

// Open connects every bot's gateway and starts following their health. A
// bot that fails later leaves the pool; Open fails only when a gateway
// cannot be started at all.
func (p *Pool) Open(ctx context.Context) error {
	p.mu.Lock()
	p.opened = true
	bots := slices.Clone(p.bots)
	p.mu.Unlock()
	for _, m := range bots {
		if err := m.Client.Open(ctx); err != nil {
			return fmt.Errorf("pool: %s: %w", m.Name, err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.watch(m)
		}()
	}
	return nil
}

// Add adds a bot to the pool, after those given to New; when the pool was
// opened (Open), its gateway is opened too. The bridge adds the gateway
// client of a new shard this way when Discord asks a bot for more shards.
func (p *Pool) Add(ctx context.Context, b Bot) error {
	if b.Client == nil || len(b.Guilds) == 0 {
		return fmt.Errorf("%w: bot %s needs a gateway client and a guild", ErrOptions, b.Name)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	m := &member{Bot: b, leases: make(map[string]*Lease)}
	p.bots = append(p.bots, m)
	open := p.opened
	if open {
		p.wg.Add(1) // under the lock: Close waits for it
	}
	p.mu.Unlock()
	if !open {
		return nil
	}
	if err := m.Client.Open(ctx); err != nil {
		p.wg.Done()
		return fmt.Errorf("pool: %s: %w", m.Name, err)
	}
	go func() {
		defer p.wg.Done()
		p.watch(m)
	}()
	p.opts.OnChange()
	return nil
}

// OpenBot opens the gateway of the pool's i-th bot alone, starting from
// the session s (gateway.Client.OpenSession; a zero s identifies). With
// several instances of a bridge, an instance opens a bot's gateway when it
// takes that bot's lease, resuming the session its last holder saved.
func (p *Pool) OpenBot(ctx context.Context, i int, s gateway.Session) error {
	p.mu.Lock()
	if i < 0 || i >= len(p.bots) {
		n := len(p.bots)
		p.mu.Unlock()
		return fmt.Errorf("%w: no bot %d in a pool of %d", ErrOptions, i, n)
	}
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.wg.Add(1) // under the lock: Close waits for it
	m := p.bots[i]
	p.mu.Unlock()
	if err := m.Client.OpenSession(ctx, s); err != nil {
		p.wg.Done()
		return fmt.Errorf("pool: %s: %w", m.Name, err)
	}
	go func() {
		defer p.wg.Done()
		p.watch(m)
	}()
	return nil
}

// watch follows one bot's gateway: its first READY adds capacity, a fatal
// stop takes it out of the pool.
func (p *Pool) watch(m *member) {
	wasReady := false
	for {
		changed := m.Client.Changed()
		st := m.Client.Status()
		if st.State == gateway.StateReady && !wasReady {
			wasReady = true
			p.opts.OnChange()
		}
		if st.Fatal {
			p.fail(m, st.LastError)
			return
		}
		select {
		case <-p.stop:
			return
		case <-changed:
		}
	}
}

// fail takes m out of the pool and tells its leases.
func (p *Pool) fail(m *member, reason string) {
	p.mu.Lock()
	m.failed, m.reason = true, reason
	var lost []*Lease
	for _, l := range m.leases {
		lost = append(lost, l)
	}
	p.mu.Unlock()
	rooms := make([]string, 0, len(lost))
	for _, l := range lost {
		rooms = append(rooms, l.channelID)
		close(l.lost)
	}
	slices.Sort(rooms)
	p.log.Error("bot left the pool: its gateway stopped for good; its rooms move to another bot",
		"bot", m.Name, "user_id", m.Client.Status().BotUserID, "reason", reason, "rooms", rooms)
	p.opts.OnChange()
}

// Acquire leases a free healthy bot of guildID for the voice connection
// of channelID. A bot already leased for channelID counts as busy.
func (p *Pool) Acquire(guildID, channelID string) (*Lease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	healthy := 0
	for _, m := range p.bots {
		if m.failed || !m.serves(guildID) {
			continue
		}
		healthy++
		if m.leases[guildID] != nil {
			continue
		}
		l := &Lease{Bot: &m.Bot, guildID: guildID, channelID: channelID, p: p, m: m, lost: make(chan struct{})}
		m.leases[guildID] = l
		return l, nil
	}
	if healthy == 0 {
		return nil, fmt.Errorf("%w (guild %s)", ErrNoBot, guildID)
	}
	return nil, fmt.Errorf("%w (guild %s, %d bots)", ErrNoFreeBot, guildID, healthy)
}

// Capacity is how many rooms of guildID can hold a voice connection at
// once: its healthy bots.
func (p *Pool) Capacity(guildID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.bots {
		if !m.failed && m.serves(guildID) {
			n++
		}
	}
	return n
}

// Lead is the first healthy bot (the first bot when none is): the one
// whose gateway reports room events and whose token makes REST calls.
func (p *Pool) Lead() *gateway.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.bots {
		if !m.failed {
			return m.Client
		}
	}
	return p.bots[0].Client
}

// LeadOf is the first healthy bot in guildID (the first bot serving it
// when none is healthy; nil when no bot serves it): the one whose gateway
// reports the guild's room events and whose token makes its REST calls.
func (p *Pool) LeadOf(guildID string) *gateway.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first *gateway.Client
	for _, m := range p.bots {
		if !slices.Contains(m.Guilds, guildID) {
			continue
		}
		if !m.failed && m.Client.InGuild(guildID) {
			return m.Client
		}
		if first == nil {
			first = m.Client
		}
	}
	return first
}

// Reporter is the bot whose gateway reports guildID's room events:
// current while it stays in the pool and holds the guild's view
// (gateway.Client.Loaded), else the first bot in the pool that does; nil
// while none does. Only a bot known to be in the guild is chosen, so no
// event goes to one that does not see it; and the reporter changes only
// when it must, since two bots see the same events at different moments.
func (p *Pool) Reporter(guildID string, current *gateway.Client) *gateway.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first *gateway.Client
	for _, m := range p.bots {
		if m.failed || !slices.Contains(m.Guilds, guildID) || !m.Client.Loaded(guildID) || m.Client.Status().Fatal {
			continue
		}
		if m.Client == current {
			return current
		}
		if first == nil {
			first = m.Client
		}
	}
	return first
}

// Healthy reports whether some bot is ready.
func (p *Pool) Healthy() bool {
	p.mu.Lock()
	bots := slices.Clone(p.bots)
	p.mu.Unlock()
	for _, m := range bots {
		if m.Client.Status().State == gateway.StateReady {
			return true
		}
	}
	return false
}

// BotStatus is one bot as /readyz shows it.
type BotStatus struct {
	Name string `json:"name"`
	// InPool is false once the bot left the pool; Reason says why.
	InPool bool   `json:"inPool"`
	Reason string `json:"reason,omitempty"`
	// Gateway is the bot's gateway status.
	Gateway gateway.Status `json:"gateway"`
	// Rooms are the channels the bot holds a voice connection in.
	Rooms []string `json:"rooms"`
}

// Status describes every bot, in the pool's order.
func (p *Pool) Status() []BotStatus {
	p.mu.Lock()
	out := make([]BotStatus, len(p.bots))
	clients := make([]*gateway.Client, len(p.bots))
	for i, m := range p.bots {
		out[i] = BotStatus{Name: m.Name, InPool: !m.failed, Reason: m.reason, Rooms: []string{}}
		for _, l := range m.leases {
			out[i].Rooms = append(out[i].Rooms, l.channelID)
		}
		slices.Sort(out[i].Rooms)
		clients[i] = m.Client
	}
	p.mu.Unlock()
	for i, c := range clients {
		out[i].Gateway = c.Status()
	}
	return out
}

// Close closes every bot's gateway and waits for the pool's goroutines.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	bots := slices.Clone(p.bots)
	p.mu.Unlock()
	var errs []error
	for _, m := range bots {
		if err := m.Client.Close(ctx); err != nil && !errors.Is(err, gateway.ErrClosed) && !errors.Is(err, gateway.ErrNotOpen) {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
		}
	}
	return errors.Join(errs...)
}
