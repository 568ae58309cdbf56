package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of RedisBusOptions.
const (
	DefaultBusRetention = 100_000
	DefaultBusOutbox    = 10_000
	busReadBlock        = time.Second
	busReadCount        = 512
	busWriteBatch       = 256
	busMinBackoff       = 50 * time.Millisecond
	busMaxBackoff       = 2 * time.Second
	// busProducerIdle is how long a producer that sent nothing is
	// remembered for de-duplication.
	busProducerIdle = 30 * time.Minute
)

// RedisBusOptions configure NewRedisBus. Client and GuildID are required.
type RedisBusOptions struct {
	// Client is the Redis connection; the bus does not close it.
	Client redis.UniversalClient
	// GuildID names the stream, bridge:{guild}:events: one stream per
	// guild, so that every instance sees a guild's events in one order.
	GuildID string
	// InstanceID names this instance in its producer id and logs.
	InstanceID string
	// Retention is the approximate number of events the stream keeps
	// (XADD MAXLEN ~). An instance cut off from Redis for longer than it
	// takes the others to publish Retention events misses events and
	// resyncs its sockets. Default 100000.
	Retention int64
	// Outbox bounds the events this instance queues while Redis is
	// unreachable; past it, new events are dropped (and counted). Default
	// 10000.
	Outbox int
	// Announce, if set, gives the public URL and load this instance
	// announces with each heartbeat (bus_instances.go).
	Announce func() Instance
	// EventsSource, if set, says whether this instance publishes its
	// gateway's events for all (it holds the leading bot's gateway
	// lease); announced with each heartbeat and in Stats.
	EventsSource func() bool
	// Logger receives the bus's logs; nil discards them.
	Logger *slog.Logger
}

// BusStats are a bus's counters since it started.
type BusStats struct {
	Published  uint64 // events this instance added to the stream
	Delivered  uint64 // events read from the stream and fanned out here
	Duplicates uint64 // events read twice (a retried XADD) and skipped
	Dropped    uint64 // events refused because the outbox was full
	// Fenced counts events dropped because their lease's holder had
	// changed: refused by Redis when appended, or skipped by the reader
	// behind a newer token.
	Fenced     uint64
	Resyncs    uint64 // times events were lost and the sockets resynced
	Errors     uint64 // failed Redis operations (each retried)
	Operations uint64 // Redis round trips made
	Connected  bool   // the last Redis operation succeeded
	LastError  string // the last Redis error, "" if none yet
	LastID     string // id of the last event read
	// EventsSource: this instance publishes its gateway's events.
	EventsSource bool
}

// RedisBus is a Bus on a Redis stream. Each instance appends its events
// (XADD, in its publish order, retried until Redis takes them) and reads
// the stream from the last id it has seen (XREAD), so a Redis restart or a
// short partition delays events but loses none: on reconnect each reader
// resumes where it stopped. Every entry carries its producer's id and
// sequence number; a retried XADD that Redis had in fact taken appears
// twice in the stream and is delivered once. Redis must keep the stream
// across its own restart (appendonly yes) for events in flight at that
// moment to survive.
type RedisBus struct {
	opts     RedisBusOptions
	log      *slog.Logger
	stream   string
	producer string // instance id plus a per-process nonce

	outbox chan busEntry
	stop   chan struct{}
	ctx    context.Context // ends on Close: cancels a round trip in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	start  sync.Once

	mu      sync.Mutex // orders seq with the outbox
	seq     uint64
	closing bool

	published, delivered, duplicates, dropped, resyncs, errs, ops, fenced atomic.Uint64
	connected                                                             atomic.Bool
	lastErr, lastID                                                       atomic.Value // string
}

type busEntry struct {
	seq   uint64
	msg   []byte
	fence *Fence
	// then, when set, makes the entry a barrier: the writer calls it once
	// every entry queued before it is in Redis (or dropped by its fence).
	then func()
}

// Fence ties published events to a lease (see gateway/lease): Redis
// appends such an event only while the lease's key holds Value, and
// readers drop an event whose token is below one they already saw for the
// same key, so that a holder that lost its lease without knowing cannot
// publish after the instance that took over.
//
// An event may also name its place in the source's own order (Place): a
// new holder that resumes the source (a gateway session) from a point the
// old one had passed replays events already published, and readers skip
// an event whose place, in the same session, is not after the last one
// they saw under the lease.
type Fence struct {
	Key   string // the lease's key
	Token int64  // the holder's fencing token
	Value string // what the key holds while the lease is the holder's
	// Place orders the events of one source session: "" for none, else
	// the session, and Seq and Index the event's position in it.
	Session    string
	Seq, Index int64
}

// fencedXAdd appends one event if the lease still holds the value.
const fencedXAdd = `
if redis.call("GET", KEYS[2]) ~= ARGV[1] then return 0 end
redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[2], "*", "p", ARGV[3], "s", ARGV[4], "m", ARGV[5], "f", KEYS[2], "t", ARGV[6], "o", ARGV[7])
return 1`

// NewRedisBus checks opts; the bus starts with Hub's New and stops with
// Close.
func NewRedisBus(opts RedisBusOptions) (*RedisBus, error) {
	switch {
	case opts.Client == nil:
		return nil, fmt.Errorf("%w: RedisBusOptions.Client is required", ErrInvalidOptions)
	case opts.GuildID == "":
		return nil, fmt.Errorf("%w: RedisBusOptions.GuildID is required", ErrInvalidOptions)
	case opts.Retention < 0, opts.Outbox < 0:
		return nil, fmt.Errorf("%w: RedisBusOptions.Retention and Outbox must not be negative", ErrInvalidOptions)
	}
	setDefault(&opts.Retention, DefaultBusRetention)
	setDefault(&opts.Outbox, DefaultBusOutbox)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	b := &RedisBus{
		opts:     opts,
		log:      log,
		stream:   "bridge:" + opts.GuildID + ":events",
		producer: opts.InstanceID + "/" + hex.EncodeToString(nonce[:]),
		outbox:   make(chan busEntry, opts.Outbox),
		stop:     make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.lastErr.Store("")
	b.lastID.Store("")
	return b, nil
}

// Stream is the Redis key of the event stream.
func (b *RedisBus) Stream() string { return b.stream }

// Start implements Bus: it starts the writer and the reader.
func (b *RedisBus) Start(deliver func([]byte), resync func()) {
	b.start.Do(func() {
		b.wg.Add(3)
		go func() {
			defer b.wg.Done()
			b.heartbeat()
		}()
		go func() {
			defer b.wg.Done()
			b.write()
		}()
		go func() {
			defer b.wg.Done()
			b.read(deliver, resync)
		}()
	})
}

// Publish implements Bus: it queues msg for the writer, or drops it if the
// outbox is full.
func (b *RedisBus) Publish(msg []byte) { _ = b.enqueue(busEntry{msg: msg}) }

// PublishFenced is Publish for an event that only the holder of a lease
// may publish (see Fence). An event whose fence no longer holds when the
// writer appends it is dropped and counted in BusStats.Fenced.
func (b *RedisBus) PublishFenced(msg []byte, f Fence) { _ = b.enqueue(busEntry{msg: msg, fence: &f}) }

// AfterPublished calls fn on the writer's goroutine once every event
// published before it is in Redis (or dropped by its fence), in order
// with them. A gateway's holder saves its session there, so that the
// sequence it saves never runs ahead of the events it published. fn must
// not block for long; it is not called if the bus closes first. False
// means fn was not queued (the bus is closing, or its outbox is full).
func (b *RedisBus) AfterPublished(fn func()) bool { return b.enqueue(busEntry{then: fn}) }

func (b *RedisBus) enqueue(e busEntry) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	if e.then == nil {
		b.seq++
		e.seq = b.seq
	}
	select {
	case b.outbox <- e:
		return true
	default:
		if e.then != nil {
			return false
		}
		if b.dropped.Add(1) == 1 {
			b.log.Warn("event outbox full while Redis is unreachable: dropping events", "outbox", b.opts.Outbox)
		}
		return false
	}
}

// Close stops taking events, gives the writer until ctx ends to hand the
// queued ones to Redis, and waits for both goroutines. It is idempotent.
func (b *RedisBus) Close(ctx context.Context) error {
	b.mu.Lock()
	b.closing = true
	b.mu.Unlock()
	var err error
	b.once.Do(func() {
		flushed := make(chan struct{})
		go func() {
			defer close(flushed)
			for len(b.outbox) > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Millisecond): // polling the writer's progress
				}
			}
		}()
		<-flushed
		if n := len(b.outbox); n > 0 {
			err = fmt.Errorf("hub: redis bus closed with %d events not handed to Redis: %w", n, ctx.Err())
		}
		close(b.stop)
		b.cancel()
		b.wg.Wait()
		b.release(ctx)
	})
	return err
}

// Stats returns the bus's counters.
func (b *RedisBus) Stats() BusStats {
	return BusStats{
		Published: b.published.Load(), Delivered: b.delivered.Load(), Duplicates: b.duplicates.Load(),
		Dropped: b.dropped.Load(), Fenced: b.fenced.Load(), Resyncs: b.resyncs.Load(), Errors: b.errs.Load(), Operations: b.ops.Load(),
		Connected: b.connected.Load(), LastError: b.lastErr.Load().(string), LastID: b.lastID.Load().(string),
		EventsSource: b.EventsSource(),
	}
}

// opCtx is a context for one Redis round trip; Close ends it.
func (b *RedisBus) opCtx(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, timeout)
}

// result records one Redis round trip.
func (b *RedisBus) result(err error) {
	b.ops.Add(1)
	if err == nil {
		if !b.connected.Swap(true) && b.lastErr.Load().(string) != "" {
			b.log.Info("redis reachable again")
		}
		return
	}
	b.errs.Add(1)
	b.lastErr.Store(err.Error())
	if b.connected.Swap(false) {
		b.log.Warn("redis unreachable; events wait until it is back", "err", err)
	}
}

// sleep waits d or until Close; false means closing.
func (b *RedisBus) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-b.stop:
		return false
	case <-t.C:
		return true
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return busMinBackoff
	}
	return min(2*d, busMaxBackoff)
}

// write appends queued events in order, a pipelined batch at a time, and
// retries a failed batch until Redis takes it: a batch Redis took before
// the failure shows up twice and its second copy is skipped by readers. A
// barrier (AfterPublished) ends a batch and runs once the batch is in.
func (b *RedisBus) write() {
	batch := make([]busEntry, 0, busWriteBatch)
	for {
		var barrier func()
		select {
		case <-b.stop:
			return
		case e := <-b.outbox:
			batch = append(batch[:0], e)
		}
		if batch[0].then != nil {
			barrier, batch = batch[0].then, batch[:0]
		}
	fill:
		for barrier == nil && len(batch) < busWriteBatch {
			select {
			case e := <-b.outbox:
				if e.then != nil {
					barrier = e.then
					break fill
				}
				batch = append(batch, e)
			default:
				break fill
			}
		}
		if len(batch) > 0 && !b.writeBatch(batch) {
			return
		}
		if barrier != nil {
			barrier()
		}
	}
}

// writeBatch appends batch, retrying until Redis takes it; false when the
// bus closed first.
func (b *RedisBus) writeBatch(batch []busEntry) bool {
	var backoff time.Duration
	for {
		ctx, cancel := b.opCtx(5 * time.Second)
		cmds, err := b.opts.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, e := range batch {
				seq := strconv.FormatUint(e.seq, 10)
				if e.fence != nil {
					p.Eval(ctx, fencedXAdd, []string{b.stream, e.fence.Key},
						e.fence.Value, b.opts.Retention, b.producer, seq, e.msg, e.fence.Token, e.fence.place())
					continue
				}
				p.XAdd(ctx, &redis.XAddArgs{
					Stream: b.stream,
					MaxLen: b.opts.Retention,
					Approx: true,
					Values: []any{"p", b.producer, "s", seq, "m", e.msg},
				})
			}
			return nil
		})
		cancel()
		b.result(err)
		if err == nil {
			var fenced uint64
			for i, c := range cmds {
				if batch[i].fence == nil {
					continue
				}
				if n, _ := c.(*redis.Cmd).Int(); n == 0 {
					fenced++
				}
			}
			if fenced > 0 {
				b.fenced.Add(fenced)
				b.log.Warn("events of a lease this instance no longer holds were dropped", "events", fenced)
			}
			b.published.Add(uint64(len(batch)) - fenced)
			return true
		}
		backoff = nextBackoff(backoff)
		if !b.sleep(backoff) {
			return false
		}
	}
}

// read follows the stream from the last id read and delivers each event
// once, in stream order.
func (b *RedisBus) read(deliver func([]byte), resync func()) {
	seen := map[string]producerMark{} // producer → last sequence delivered
	fences := map[string]fenceMark{}  // lease key → highest token and last place seen
	lastID := ""
	var backoff time.Duration
	recovering := false
	for {
		if lastID == "" {
			// Start at the stream's end: events published before this
			// instance existed are not its sockets' business.
			ctx, cancel := b.opCtx(5 * time.Second)
			msgs, err := b.opts.Client.XRevRangeN(ctx, b.stream, "+", "-", 1).Result()
			cancel()
			b.result(err)
			if err != nil {
				backoff = nextBackoff(backoff)
				if !b.sleep(backoff) {
					return
				}
				continue
			}
			lastID = "0-0"
			if len(msgs) == 1 {
				lastID = msgs[0].ID
			}
			b.lastID.Store(lastID)
		}
		if recovering {
			if lost, err := b.lostSince(lastID); err == nil {
				recovering = false
				if lost {
					b.resyncs.Add(1)
					resync()
				}
			}
		}
		ctx, cancel := b.opCtx(busReadBlock + 5*time.Second)
		streams, err := b.opts.Client.XRead(ctx, &redis.XReadArgs{
			Streams: []string{b.stream, lastID},
			Count:   busReadCount,
			Block:   busReadBlock,
		}).Result()
		cancel()
		if errors.Is(err, redis.Nil) {
			b.result(nil)
			backoff = 0
			continue
		}
		b.result(err)
		if err != nil {
			select {
			case <-b.stop:
				return
			default:
			}
			recovering = true
			backoff = nextBackoff(backoff)
			if !b.sleep(backoff) {
				return
			}
			continue
		}
		backoff = 0
		now := time.Now()
		for _, s := range streams {
			for _, m := range s.Messages {
				lastID = m.ID
				producer, _ := m.Values["p"].(string)
				seqText, _ := m.Values["s"].(string)
				msg, _ := m.Values["m"].(string)
				seq, perr := strconv.ParseUint(seqText, 10, 64)
				if producer == "" || perr != nil {
					b.log.Warn("skipping a stream entry that is not a hub event", "id", m.ID)
					continue
				}
				if mark, ok := seen[producer]; ok && seq <= mark.seq {
					b.duplicates.Add(1)
					continue
				}
				if key, _ := m.Values["f"].(string); key != "" {
					tok, _ := strconv.ParseInt(fmt.Sprint(m.Values["t"]), 10, 64)
					place, _ := m.Values["o"].(string)
					mark := fences[key]
					switch {
					case tok < mark.token:
						b.fenced.Add(1)
						continue
					case !placeAfter(place, mark.place):
						b.duplicates.Add(1)
						continue
					}
					fences[key] = fenceMark{token: tok, place: place}
				}
				seen[producer] = producerMark{seq: seq, at: now}
				b.delivered.Add(1)
				deliver([]byte(msg))
			}
		}
		b.lastID.Store(lastID)
		for p, mark := range seen {
			if now.Sub(mark.at) > busProducerIdle {
				delete(seen, p)
			}
		}
	}
}

// fenceMark is what a reader keeps of a lease's events.
type fenceMark struct {
	token int64
	place string
}

// place encodes the fence's place as "session seq index".
func (f *Fence) place() string {
	if f.Session == "" {
		return ""
	}
	return f.Session + " " + strconv.FormatInt(f.Seq, 10) + " " + strconv.FormatInt(f.Index, 10)
}

// placeAfter reports whether place comes after last: always when either
// has none or their sessions differ (a new session starts afresh).
func placeAfter(place, last string) bool {
	ps, pseq, pidx, ok1 := splitPlace(place)
	ls, lseq, lidx, ok2 := splitPlace(last)
	if !ok1 || !ok2 || ps != ls {
		return true
	}
	return pseq > lseq || (pseq == lseq && pidx > lidx)
}

func splitPlace(p string) (session string, seq, idx int64, ok bool) {
	f := strings.Fields(p)
	if len(f) != 3 {
		return "", 0, 0, false
	}
	seq, err1 := strconv.ParseInt(f[1], 10, 64)
	idx, err2 := strconv.ParseInt(f[2], 10, 64)
	return f[0], seq, idx, err1 == nil && err2 == nil
}

type producerMark struct {
	seq uint64
	at  time.Time
}

// lostSince reports whether the stream was trimmed past lastID while this
// instance could not read: its first entry is then newer than lastID, and
// whatever lay between is gone. (Approximate trimming can also remove
// lastID alone; that resyncs without need, which is safe.)
func (b *RedisBus) lostSince(lastID string) (bool, error) {
	ctx, cancel := b.opCtx(5 * time.Second)
	defer cancel()
	first, err := b.opts.Client.XRangeN(ctx, b.stream, "-", "+", 1).Result()
	b.result(err)
	if err != nil || len(first) == 0 || lastID == "0-0" {
		return false, err
	}
	return compareStreamIDs(first[0].ID, lastID) > 0, nil
}

// compareStreamIDs orders two stream ids "ms-seq".
func compareStreamIDs(a, b string) int {
	am, as := splitStreamID(a)
	bm, bs := splitStreamID(b)
	switch {
	case am != bm:
		return cmpUint(am, bm)
	default:
		return cmpUint(as, bs)
	}
}

func splitStreamID(id string) (uint64, uint64) {
	ms, seq, _ := strings.Cut(id, "-")
	m, _ := strconv.ParseUint(ms, 10, 64)
	s, _ := strconv.ParseUint(seq, 10, 64)
	return m, s
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
