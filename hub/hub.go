package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults of the Options tunables.
const (
	DefaultAuthTimeout      = 5 * time.Second
	DefaultPingInterval     = 25 * time.Second
	DefaultSendQueueBytes   = 1 << 20
	DefaultReplayWindow     = 60 * time.Second
	DefaultMaxBody          = 64 << 10
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMaxMessageBytes  = 64 << 10
	DefaultSocketSendBuffer = 128 << 10
)

// Rooms is what the hub needs from the room service (implemented over
// Discord REST by package gateway and adapted in cmd). Errors should wrap
// the sentinels in errors.go.
type Rooms interface {
	// CreateRoom creates a voice channel in the room category of guildID,
	// one of Options.Guilds.
	CreateRoom(ctx context.Context, guildID, name string, userLimit int) (Room, error)
	// EndRoom deletes the room's voice channel.
	EndRoom(ctx context.Context, channelID string) error
	// ListRooms returns the rooms of every served guild (each with its
	// GuildID) with the members now in their voice channel.
	ListRooms(ctx context.Context) ([]Room, error)
	// RoomGuild is the guild of a known room, "" when the channel is not
	// a room the bridge knows.
	RoomGuild(channelID string) string
}

// Room is a voice channel the bridge manages.
type Room struct {
	ChannelID string   `json:"channelId"`
	Name      string   `json:"name"`
	GuildID   string   `json:"guildId"`
	UserLimit int      `json:"userLimit"`
	Members   []Member `json:"members,omitempty"`
	// CanEnd tells the caller of the room REST endpoints whether it may
	// end this room (it created it, or holds the admin role). The hub
	// fills it; Rooms implementations leave it false.
	CanEnd bool `json:"canEnd"`
	// Participants are the people in the room's call from a browser, so a
	// client that signs in or reconnects sees them without the events it
	// missed.
	Participants []Participant `json:"participants,omitempty"`
}

// Participant is a browser in a room's call.
type Participant struct {
	ID     string `json:"id"`
	UserID string `json:"userId"`
	Name   string `json:"name"`
}

// Member is a user in a room's voice channel.
type Member struct {
	UserID string `json:"userId"`
	Name   string `json:"name"`
	// Bot is true for the bridge's own bot.
	Bot bool `json:"bot,omitempty"`
}

// Options configure New. GuildID, Rooms and Auth are required.
type Options struct {
	// GuildID is the Discord guild the bridge serves: the one-guild form
	// of Guilds.
	GuildID string
	// Guilds are the Discord guilds the bridge serves (GuildID first when
	// set). A client sees, in the auth ack, those its token allows; the
	// events of a guild reach only sockets allowed it (see PublishGuild),
	// and REST and signaling for another guild are refused with 403.
	Guilds []string
	// DefaultGuildID is the guild a token without a guilds claim may use
	// (Claims.GuildsSet false); empty: such a token may use none. A token
	// allowed none of Guilds gets 403 on REST and is refused by the hub.
	DefaultGuildID string
	// GuildName is a served guild's name, "" while unknown; the auth ack
	// carries it beside each guild id so a UI shows names. Nil: no names.
	// It must not block.
	GuildName func(guildID string) string
	// Rooms serves the room REST endpoints.
	Rooms Rooms
	// Auth verifies bearer tokens on REST and the token of the hub's auth
	// message.
	Auth *Verifier
	// DevAuth, when non-nil, adds GET /.well-known/jwks.json and
	// POST /api/dev/token. Only for the embedded default setup.
	DevAuth *DevAuth
	// HMACSecret signs POST /api/internal/events; empty disables the
	// endpoint (404).
	HMACSecret []byte
	// AllowedOrigins are the exact origins ("https://app.example.com")
	// allowed to open /api/ws from a browser; "*" allows any. Empty means
	// same origin only. Requests without an Origin header (not from a
	// browser) are allowed: they still need a token.
	AllowedOrigins []string
	// Status is reported as "gateway" by GET /readyz to operators (see
	// OperatorToken); nil reports null. It may hold ids the public should
	// not see.
	Status func() any
	// Ready decides 200 or 503 on GET /readyz: nil from it (or a nil
	// Ready) means ready; an error's text is shown to anyone as the
	// reason, so it must say what is wrong without secrets or ids.
	Ready func() error
	// AdminClaim names the token claim holding a user's roles (a string or
	// a list of strings; dots go into nested objects). Default "roles".
	AdminClaim string
	// AdminRole is the role in AdminClaim that may end any room; others
	// may end only the rooms they created. Default "admin".
	AdminRole string
	// RoomsPerHour is how many rooms one user may create within an hour;
	// past it POST /api/create-room answers 429. Default 10.
	RoomsPerHour int
	// SocketsPerUser is how many authenticated /api/ws connections one
	// user may hold at once; past it the auth is refused with
	// CloseTooManySockets. Default 8.
	SocketsPerUser int
	// OperatorToken, when set, lets a GET /readyz with
	// "Authorization: Bearer <OperatorToken>" see the parts' status and
	// the process's memory and goroutine counts.
	OperatorToken []byte
	// Logger receives the hub's logs; nil discards them.
	Logger *slog.Logger
	// Bus carries published events to the bridge's other instances
	// (NewRedisBus); nil delivers them in this process only.
	Bus Bus
	// Cluster, if set, is reported as "cluster" by GET /readyz (Redis and
	// the instances seen); it does not decide readiness.
	Cluster func(ctx context.Context) any

	// AuthTimeout is how long a new /api/ws client has to send its auth
	// message. Default 5 s.
	AuthTimeout time.Duration
	// PingInterval is how often the hub pings each client; a client that
	// sends nothing (not even a pong) for two intervals is dropped.
	// Default 25 s.
	PingInterval time.Duration
	// SendQueueBytes is how far, in bytes of encoded messages not yet
	// written, a client may fall behind before it is closed with
	// CloseSlowClient. Default 1 MiB.
	SendQueueBytes int
	// ReplayWindow is how far an internal event's X-Timestamp may be from
	// now, and how long its signature is remembered. Default 60 s.
	ReplayWindow time.Duration
	// MaxBody bounds REST and internal event bodies. Default 64 KiB.
	MaxBody int64
	// WriteTimeout bounds each socket write. Default 10 s.
	WriteTimeout time.Duration
	// MaxMessageBytes bounds one client message. Default 64 KiB.
	MaxMessageBytes int64
	// SocketSendBuffer is the kernel send buffer (SO_SNDBUF) of each
	// /api/ws socket. Left to autotuning, Linux buffers up to 4 MiB per
	// socket, which would let a stalled client sit that far behind on top
	// of SendQueueBytes. Default 128 KiB (ample for events and signaling);
	// negative leaves the kernel's setting.
	SocketSendBuffer int
}

// MessageHandler handles one client message type. It runs on the client's
// reader goroutine, so messages of one client are handled in order and a
// slow handler delays only that client. ctx ends when the client closes.
type MessageHandler func(ctx context.Context, c *Client, raw json.RawMessage)

// Hub is the bridge's HTTP API: room REST, the /api/ws event hub, auth,
// internal events and health. Create it with New; it is safe for
// concurrent use.
type Hub struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	upgrader websocket.Upgrader
	replay   *replayCache
	access   *access
	now      func() time.Time
	bus      Bus
	stats    hubStats

	mu      sync.RWMutex
	clients map[*Client]struct{} // authenticated: receive Publish
	conns   map[*Client]struct{} // every open /api/ws connection
	closing bool
	wg      sync.WaitGroup // one per reader and one per writer goroutine

	hmu      sync.RWMutex
	handlers map[string]MessageHandler
}

// New checks opts, fills in defaults and builds the routes.
func New(opts Options) (*Hub, error) {
	if opts.GuildID != "" && !slices.Contains(opts.Guilds, opts.GuildID) {
		opts.Guilds = append([]string{opts.GuildID}, opts.Guilds...)
	}
	opts.Guilds = slices.Clone(opts.Guilds)
	if opts.GuildID == "" && len(opts.Guilds) > 0 {
		opts.GuildID = opts.Guilds[0]
	}
	switch {
	case opts.GuildID == "":
		return nil, fmt.Errorf("%w: GuildID (or Guilds) is required", ErrInvalidOptions)
	case slices.Contains(opts.Guilds, ""):
		return nil, fmt.Errorf("%w: Guilds holds an empty guild id", ErrInvalidOptions)
	case opts.Rooms == nil:
		return nil, fmt.Errorf("%w: Rooms is required", ErrInvalidOptions)
	case opts.Auth == nil:
		return nil, fmt.Errorf("%w: Auth is required (NewVerifier, or DevAuth.Verifier for local use)", ErrInvalidOptions)
	case opts.AuthTimeout < 0, opts.PingInterval < 0, opts.SendQueueBytes < 0, opts.ReplayWindow < 0,
		opts.MaxBody < 0, opts.WriteTimeout < 0, opts.MaxMessageBytes < 0, opts.SocketSendBuffer < -1,
		opts.RoomsPerHour < 0, opts.SocketsPerUser < 0:
		return nil, fmt.Errorf("%w: tunables must not be negative (SocketSendBuffer: -1 for the kernel's default)", ErrInvalidOptions)
	}
	for _, o := range opts.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%w: AllowedOrigins entry %q must look like https://host[:port]", ErrInvalidOptions, o)
		}
	}
	setDefault(&opts.AuthTimeout, DefaultAuthTimeout)
	setDefault(&opts.PingInterval, DefaultPingInterval)
	setDefault(&opts.SendQueueBytes, DefaultSendQueueBytes)
	setDefault(&opts.ReplayWindow, DefaultReplayWindow)
	setDefault(&opts.MaxBody, DefaultMaxBody)
	setDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	setDefault(&opts.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&opts.SocketSendBuffer, DefaultSocketSendBuffer)
	setDefault(&opts.AdminClaim, DefaultAdminClaim)
	setDefault(&opts.AdminRole, DefaultAdminRole)
	setDefault(&opts.RoomsPerHour, DefaultRoomsPerHour)
	setDefault(&opts.SocketsPerUser, DefaultSocketsPerUser)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		opts:     opts,
		log:      log,
		now:      time.Now,
		clients:  make(map[*Client]struct{}),
		conns:    make(map[*Client]struct{}),
		handlers: make(map[string]MessageHandler),
		replay:   newReplayCache(opts.ReplayWindow),
		access:   newAccess(),
	}
	h.bus = opts.Bus
	if h.bus == nil {
		h.bus = &localBus{}
	}
	h.bus.Start(h.fanout, h.resync)
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: opts.AuthTimeout,
		// Reuse the HTTP server's 4 KiB read buffer, and take write
		// buffers from a pool only while writing: an idle client holds
		// neither (most of a hub's clients are idle most of the time).
		WriteBufferPool: &sync.Pool{},
		// serveWS checks the origin itself, before upgrading, so it can
		// answer 403 with a JSON body.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	h.routes()
	return h, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Handler serves every hub route; other paths get a JSON 404. Every
// answer carries X-Content-Type-Options: nosniff, so a browser never
// reads a JSON or text answer as anything else.
func (h *Hub) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.mux.ServeHTTP(w, r)
	})
}

func (h *Hub) routes() {
	m := http.NewServeMux()
	m.HandleFunc("/api/create-room", only(http.MethodPost, h.requireAuth(h.serveCreateRoom)))
	m.HandleFunc("/api/end-room/{channelId}", only(http.MethodDelete, h.requireAuth(h.serveEndRoom)))
	m.HandleFunc("/api/rooms", only(http.MethodGet, h.requireAuth(h.serveListRooms)))
	m.HandleFunc("/api/ws", only(http.MethodGet, h.serveWS))
	m.HandleFunc("/api/openapi.json", only(http.MethodGet, serveOpenAPI))
	if len(h.opts.HMACSecret) > 0 {
		m.HandleFunc("/api/internal/events", only(http.MethodPost, h.serveInternalEvent))
	}
	if h.opts.DevAuth != nil {
		m.HandleFunc("/.well-known/jwks.json", only(http.MethodGet, h.opts.DevAuth.serveJWKS))
		m.HandleFunc("/api/dev/token", only(http.MethodPost, h.serveDevToken))
	}
	m.HandleFunc("/healthz", only(http.MethodGet, h.serveHealthz))
	m.HandleFunc("/readyz", only(http.MethodGet, h.serveReadyz))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no such endpoint: " + r.URL.Path})
	})
	h.mux = m
}

// only answers 405 (with Allow) to any method but method; GET also
// allows HEAD.
func only(method string, fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, apiError{Code: "method_not_allowed", Message: "use " + method})
			return
		}
		fn(w, r)
	}
}

// HandleMessage registers fn for client messages of type msgType (after
// auth). Registering "auth" or "ping", which the hub handles itself, is
// refused with a logged error; registering a type again replaces it.
func (h *Hub) HandleMessage(msgType string, fn func(ctx context.Context, c *Client, raw json.RawMessage)) {
	if msgType == TypeAuth || msgType == TypePing || msgType == "" || fn == nil {
		h.log.Error("HandleMessage: refused registration", "type", msgType)
		return
	}
	h.hmu.Lock()
	h.handlers[msgType] = fn
	h.hmu.Unlock()
}

func (h *Hub) handler(msgType string) MessageHandler {
	h.hmu.RLock()
	defer h.hmu.RUnlock()
	return h.handlers[msgType]
}

// Publish sends {"v":1,"type":"event","event":event,"payload":payload,
// "ts":<unix ms>} to every authenticated client. It never blocks on a
// client: the event is encoded once, the same bytes are queued for each
// client, and a client whose queue would exceed SendQueueBytes is closed
// with CloseSlowClient instead. An event of one guild goes through
// PublishGuild.
func (h *Hub) Publish(event string, payload any) { h.PublishGuild("", event, payload) }

// PublishGuild is Publish for an event of guildID: only sockets whose
// token allows that guild receive it. guildID "" reaches every socket.
func (h *Hub) PublishGuild(guildID, event string, payload any) {
	if b := h.encodeEvent(event, payload); b != nil {
		h.bus.Publish(frameEvent(guildID, b))
	}
}

// FencedBus is a Bus that can tie an event to a lease (RedisBus does).
type FencedBus interface {
	Bus
	PublishFenced(msg []byte, f Fence)
}

// PublishFenced is PublishGuild for an event that only the holder of the
// lease f may publish: on a FencedBus the event is dropped once another
// holds it; on any other bus (one process) it is PublishGuild.
func (h *Hub) PublishFenced(f Fence, guildID, event string, payload any) {
	b := h.encodeEvent(event, payload)
	if b == nil {
		return
	}
	b = frameEvent(guildID, b)
	if fb, ok := h.bus.(FencedBus); ok {
		fb.PublishFenced(b, f)
		return
	}
	h.bus.Publish(b)
}

// allowedGuilds are the served guilds a token's claims allow, in the
// order of Options.Guilds.
func (h *Hub) allowedGuilds(c Claims) []string {
	var out []string
	for _, g := range h.opts.Guilds {
		if allowsGuild(c, g, h.opts.DefaultGuildID) {
			out = append(out, g)
		}
	}
	return out
}

// servers names guilds for the ack (Options.GuildName).
func (h *Hub) servers(guilds []string) []ServerInfo {
	out := make([]ServerInfo, len(guilds))
	for i, g := range guilds {
		out[i].ID = g
		if h.opts.GuildName != nil {
			out[i].Name = h.opts.GuildName(g)
		}
	}
	return out
}

// errNoGuildAllowed says why a token may use none of the served guilds.
func (h *Hub) errNoGuildAllowed() string {
	if len(h.opts.Guilds) == 1 {
		return errGuildNotAllowed(h.opts.GuildID)
	}
	return fmt.Sprintf("your token allows none of the Discord servers this bridge serves (%s): its guilds claim must list one", strings.Join(h.opts.Guilds, ", "))
}

func (h *Hub) encodeEvent(event string, payload any) []byte {
	b, err := json.Marshal(eventMessage{V: ProtocolVersion, Type: TypeEvent, Event: event, Payload: payload, TS: h.now().UnixMilli()})
	if err != nil {
		h.log.Error("publish: cannot encode event", "event", event, "err", err)
		return nil
	}
	return b
}

// Clients is the number of authenticated /api/ws clients.
func (h *Hub) Clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// Shutdown refuses new /api/ws connections, sends every client a 1001
// (going away) close frame and waits until every connection's goroutines
// have stopped, or ctx ends. It may be called more than once.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	conns := make([]*Client, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.close(websocket.CloseGoingAway, "server shutting down")
	}
	// This waiter ends as soon as the connections do, which the close
	// above bounds by WriteTimeout plus the close grace.
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hub shutdown: %w", ctx.Err())
	}
}

// checkOrigin applies AllowedOrigins to a WebSocket upgrade request
// (RFC 6455 §10.2: the Origin header is how a server refuses pages it
// does not trust).
func (h *Hub) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	// The bridge's own UI, served from the host the request names, may
	// always open its hub, with or without AllowedOrigins.
	if u, err := url.Parse(origin); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, o := range h.opts.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

// serveWS upgrades /api/ws and starts the connection's reader and writer
// goroutines; see client.go.
func (h *Hub) serveWS(w http.ResponseWriter, r *http.Request) {
	if !h.checkOrigin(r) {
		writeError(w, http.StatusForbidden, apiError{Code: "origin_not_allowed", Message: "origin " + r.Header.Get("Origin") + " may not open the hub (see ALLOWED_ORIGINS)"})
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, apiError{Code: "not_websocket", Message: "this endpoint needs a WebSocket upgrade"})
		return
	}
	h.mu.RLock()
	closing := h.closing
	h.mu.RUnlock()
	if closing {
		writeError(w, http.StatusServiceUnavailable, apiError{Code: "shutting_down", Message: "the server is shutting down"})
		return
	}
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has already answered the request.
		h.log.Debug("ws upgrade failed", "err", err)
		return
	}
	if sb, ok := conn.UnderlyingConn().(interface{ SetWriteBuffer(int) error }); ok && h.opts.SocketSendBuffer > 0 {
		if err := sb.SetWriteBuffer(h.opts.SocketSendBuffer); err != nil {
			h.log.Debug("cannot set socket send buffer", "err", err)
		}
	}
	c := newClient(h, conn)
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
		_ = conn.Close()
		return
	}
	h.conns[c] = struct{}{}
	h.wg.Add(2)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		c.writeLoop()
	}()
	// The reader gets a goroutine of its own so that this handler returns
	// and the HTTP server's per-request state (request, response, the
	// handler's stack) is freed: idle connections are most of a hub.
	go func() {
		defer h.wg.Done()
		c.run()
		h.mu.Lock()
		delete(h.conns, c)
		delete(h.clients, c)
		h.mu.Unlock()
		c.finish()
	}()
}

// authenticated moves c into the set that receives Publish; false if the
// hub is shutting down.
func (h *Hub) authenticated(c *Client, ack any) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	// Under the lock Publish holds while it fans out: the ack is the first
	// message the client reads, and every event published after the
	// client read its ack reaches it.
	_ = c.Send(ack)
	h.clients[c] = struct{}{}
	return true
}
