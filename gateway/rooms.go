package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"

	"github.com/voicebridge/bridge/gateway/session"
)

// Room is a voice channel under the configured category, with the users in it.
type Room = session.Room

// Limits of a voice channel (Discord docs, Channel resource, Create Guild
// Channel): name 1-100 characters, user_limit 0 (none) to 99.
const (
	maxRoomName  = 100
	maxUserLimit = 99
)

// RoomsOptions configures Rooms.
type RoomsOptions struct {
	// Token is the bot token, with or without the "Bot " prefix. Required.
	Token string
	// GuildID and CategoryID locate the rooms. Required.
	GuildID, CategoryID string
	// APIBase is the REST root; default "https://discord.com/api/v10".
	APIBase string
	// HTTPClient carries the requests; default: a client with a 20 s timeout.
	HTTPClient *http.Client
	// Logger; default: discard. Rooms adds component=gateway and guild_id.
	Logger *slog.Logger
	// Members lists a channel's voice members (Client.Members); nil means
	// rooms are listed without members.
	Members func(channelID string) []Member
}

// Rooms creates, ends and lists rooms through Discord's REST API, with a
// discordgo Session that is never opened (its gateway is not used).
type Rooms struct {
	s      *discordgo.Session
	opts   RoomsOptions
	log    *slog.Logger
	limits *restLimits
}

// NewRooms validates opts and prepares the REST session.
func NewRooms(opts RoomsOptions) (*Rooms, error) {
	opts.Token = strings.TrimPrefix(strings.TrimSpace(opts.Token), "Bot ")
	switch {
	case opts.Token == "":
		return nil, fmt.Errorf("%w: Token is empty: set DISCORD_BOT_TOKEN", ErrOptions)
	case opts.GuildID == "":
		return nil, fmt.Errorf("%w: GuildID is empty: set the guild id", ErrOptions)
	case opts.CategoryID == "":
		return nil, fmt.Errorf("%w: CategoryID is empty: set the room category id", ErrOptions)
	}
	if opts.APIBase == "" {
		opts.APIBase = "https://discord.com/api/v10"
	}
	base, err := parseAPIBase(opts.APIBase)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	hc := &http.Client{Timeout: restTimeout}
	if opts.HTTPClient != nil {
		copied := *opts.HTTPClient
		hc = &copied
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	limits := &restLimits{until: map[string]time.Time{}}
	hc.Transport = &rewriteTransport{
		limits: limits,
		next:   next,
		scheme: base.Scheme,
		host:   base.Host,
		prefix: strings.TrimRight(base.Path, "/"),
	}
	s, err := discordgo.New("Bot " + opts.Token)
	if err != nil {
		return nil, fmt.Errorf("%w: discordgo session: %v", ErrOptions, err)
	}
	s.Client = hc
	s.ShouldRetryOnRateLimit = false // a 429 comes back as *RateLimitError; do retries once
	s.StateEnabled = false
	s.UserAgent = userAgent
	return &Rooms{s: s, opts: opts, limits: limits, log: opts.Logger.With("component", "gateway", "guild_id", opts.GuildID)}, nil
}

// ForGuild is a Rooms for another guild of the same bot: the same REST
// session and rate-limit buckets (Discord's limits are the bot's), the
// rooms of guildID under categoryID.
func (r *Rooms) ForGuild(guildID, categoryID string) *Rooms {
	o := r.opts
	o.GuildID, o.CategoryID = guildID, categoryID
	return &Rooms{s: r.s, opts: o, limits: r.limits, log: o.Logger.With("component", "gateway", "guild_id", guildID)}
}

// rewriteTransport sends discordgo's https://discord.com/api/v9/... requests
// to APIBase: scheme and host replaced, and the /api/v9 prefix replaced by
// APIBase's path, so one Session serves Discord and the emulator without
// touching discordgo's package variables.
type rewriteTransport struct {
	limits       *restLimits // told of global 429s, which discordgo does not report
	next         http.RoundTripper
	scheme, host string
	prefix       string // APIBase path, e.g. /api/v10
}

// discordgoAPIPath is the path prefix of discordgo's endpoints (APIVersion "9").
const discordgoAPIPath = "/api/v9"

// RoundTrip rewrites a clone of req; the caller's request is not modified.
func (t *rewriteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != "discord.com" {
		return t.next.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = t.scheme, t.host, ""
	if rest, ok := strings.CutPrefix(r.URL.Path, discordgoAPIPath); ok && t.prefix != "" {
		r.URL.Path = t.prefix + rest
		r.URL.RawPath = ""
	}
	resp, err := t.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("X-RateLimit-Global") == "true" {
		if secs, perr := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64); perr == nil && secs > 0 {
			t.limits.block(globalLimit, time.Now().Add(time.Duration(secs*float64(time.Second))))
		}
	}
	return resp, err
}

// CreateRoom creates a voice channel (type 2) under the category.
func (r *Rooms) CreateRoom(ctx context.Context, name string, userLimit int) (Room, error) {
	name = strings.TrimSpace(name)
	if n := utf8.RuneCountInString(name); n < 1 || n > maxRoomName {
		return Room{}, fmt.Errorf("%w: room name must be 1-%d characters, got %d", ErrBadRequest, maxRoomName, n)
	}
	if userLimit < 0 || userLimit > maxUserLimit {
		return Room{}, fmt.Errorf("%w: user limit must be 0-%d, got %d", ErrBadRequest, maxUserLimit, userLimit)
	}
	var ch *discordgo.Channel
	err := r.do(ctx, "create room", discordgo.EndpointGuildChannels(r.opts.GuildID), func(opts ...discordgo.RequestOption) (err error) {
		ch, err = r.s.GuildChannelCreateComplex(r.opts.GuildID, discordgo.GuildChannelCreateData{
			Name:      name,
			Type:      discordgo.ChannelTypeGuildVoice,
			UserLimit: userLimit,
			ParentID:  r.opts.CategoryID,
		}, opts...)
		return err
	})
	if err != nil {
		return Room{}, err
	}
	r.log.Info("room created", "channel_id", ch.ID, "name", ch.Name)
	return Room{ChannelID: ch.ID, Name: ch.Name, GuildID: r.opts.GuildID, UserLimit: ch.UserLimit, Members: []Member{}}, nil
}

// EndRoom deletes a room. It first reads the channel and refuses, with
// ErrNotRoom, anything that is not a voice channel under the category in
// the guild: the API never deletes a channel the bridge does not own.
func (r *Rooms) EndRoom(ctx context.Context, channelID string) error {
	if channelID == "" {
		return fmt.Errorf("%w: empty channel id", ErrNotRoom)
	}
	var ch *discordgo.Channel
	err := r.do(ctx, "get channel", discordgo.EndpointChannel(channelID), func(opts ...discordgo.RequestOption) (err error) {
		ch, err = r.s.Channel(channelID, opts...)
		return err
	})
	if err != nil {
		return err
	}
	if !r.isRoom(ch) {
		return fmt.Errorf("%w: channel %s (type %d, parent %q)", ErrNotRoom, channelID, ch.Type, ch.ParentID)
	}
	err = r.do(ctx, "delete room", discordgo.EndpointChannel(channelID), func(opts ...discordgo.RequestOption) error {
		_, err := r.s.ChannelDelete(channelID, opts...)
		return err
	})
	if err != nil {
		return err
	}
	r.log.Info("room ended", "channel_id", channelID)
	return nil
}

// ListRooms lists the voice channels under the category, with the voice
// members the gateway reports, by position then id.
func (r *Rooms) ListRooms(ctx context.Context) ([]Room, error) {
	var chans []*discordgo.Channel
	err := r.do(ctx, "list channels", discordgo.EndpointGuildChannels(r.opts.GuildID), func(opts ...discordgo.RequestOption) (err error) {
		chans, err = r.s.GuildChannels(r.opts.GuildID, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	chans = slices.DeleteFunc(chans, func(ch *discordgo.Channel) bool { return !r.isRoom(ch) })
	slices.SortFunc(chans, func(a, b *discordgo.Channel) int {
		return cmp.Or(cmp.Compare(a.Position, b.Position), session.CompareIDs(a.ID, b.ID))
	})
	out := make([]Room, 0, len(chans))
	for _, ch := range chans {
		room := Room{ChannelID: ch.ID, Name: ch.Name, GuildID: r.opts.GuildID, UserLimit: ch.UserLimit, Members: []Member{}}
		if r.opts.Members != nil {
			if m := r.opts.Members(ch.ID); m != nil {
				room.Members = m
			}
		}
		out = append(out, room)
	}
	return out, nil
}

func (r *Rooms) isRoom(ch *discordgo.Channel) bool {
	return ch != nil && ch.Type == discordgo.ChannelTypeGuildVoice &&
		ch.ParentID == r.opts.CategoryID && (ch.GuildID == "" || ch.GuildID == r.opts.GuildID)
}

// maxRateLimitWait bounds how long one REST call waits out a rate limit:
// Discord's retry_after can be minutes, which must not hang a room
// request.
const maxRateLimitWait = 10 * time.Second

// globalLimit is the restLimits key of Discord's global rate limit.
const globalLimit = "*"

// restLimits remembers until when Discord asked us to wait, per bucket
// (keyed as discordgo keys its buckets: the endpoint URL) and globally, so
// later calls honour a limit without sending requests that would only be
// refused (and count towards Discord's ban on invalid requests), and
// never reach discordgo's own bucket wait, which sleeps without heeding
// ctx.
type restLimits struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (l *restLimits) block(key string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until.After(l.until[key]) {
		l.until[key] = until
	}
}

// wait returns how long a call in bucket must still wait.
func (l *restLimits) wait(bucket string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	return max(l.until[bucket].Sub(now), l.until[globalLimit].Sub(now), 0)
}

// do runs one REST call with ctx. A rate limit (Discord docs, Rate
// Limits) of at most maxRateLimitWait is waited out, then the call is sent
// (a 429 is retried exactly once); a longer one fails at once with
// ErrRateLimited naming the wait, and later calls of the same operation
// fail the same way until it has passed. bucket is the endpoint URL the
// call requests. Other failures are mapped onto this package's sentinels.
func (r *Rooms) do(ctx context.Context, what, bucket string, call func(...discordgo.RequestOption) error) error {
	if err := r.awaitLimit(ctx, what, bucket); err != nil {
		return err
	}
	err := call(discordgo.WithContext(ctx))
	var rl *discordgo.RateLimitError
	if errors.As(err, &rl) {
		wait := retryAfter(rl)
		r.limits.block(bucket, time.Now().Add(wait))
		r.log.Warn("rate limited by Discord", "op", what, "retry_after", wait)
		if err := r.awaitLimit(ctx, what, bucket); err != nil {
			return err
		}
		err = call(discordgo.WithContext(ctx))
		if errors.As(err, &rl) {
			r.limits.block(bucket, time.Now().Add(retryAfter(rl)))
			return fmt.Errorf("%w: %s: still limited after one retry (retry after %v)", ErrRateLimited, what, retryAfter(rl))
		}
	}
	return restError(what, err)
}

// awaitLimit waits out a known rate limit of bucket if it ends within
// maxRateLimitWait, else fails with ErrRateLimited.
func (r *Rooms) awaitLimit(ctx context.Context, what, bucket string) error {
	wait := r.limits.wait(bucket)
	if wait > maxRateLimitWait {
		return fmt.Errorf("%w: %s: Discord asks to wait %v, more than the %v a request may wait: try again later",
			ErrRateLimited, what, wait.Round(time.Second), maxRateLimitWait)
	}
	if err := sleepCtx(ctx, wait); err != nil {
		return fmt.Errorf("%s: waiting out a rate limit: %w", what, err)
	}
	return nil
}

func retryAfter(rl *discordgo.RateLimitError) time.Duration {
	if rl.RateLimit == nil || rl.TooManyRequests == nil {
		return 0
	}
	return rl.RetryAfter
}

// restError maps a discordgo error onto the package sentinels.
func restError(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var re *discordgo.RESTError
	if !errors.As(err, &re) || re.Response == nil {
		return fmt.Errorf("%w: %s: %v", ErrUpstream, what, err)
	}
	msg := strings.TrimSpace(string(re.ResponseBody))
	if re.Message != nil && re.Message.Message != "" {
		msg = fmt.Sprintf("%s (code %d)", re.Message.Message, re.Message.Code)
	}
	switch code := re.Response.StatusCode; {
	case code == http.StatusUnauthorized:
		return fmt.Errorf("%w: %s", ErrUnauthorized, what)
	case code == http.StatusForbidden:
		return fmt.Errorf("%w: %s: %s", ErrForbidden, what, msg)
	case code == http.StatusNotFound:
		return fmt.Errorf("%w: %s: %s", ErrNotFound, what, msg)
	case code >= 400 && code < 500:
		return fmt.Errorf("%w: %s: HTTP %d: %s", ErrBadRequest, what, code, msg)
	}
	return fmt.Errorf("%w: %s: HTTP %d: %s", ErrUpstream, what, re.Response.StatusCode, msg)
}
