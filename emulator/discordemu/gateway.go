package discordemu

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Gateway opcodes (developers/topics/opcodes-and-status-codes.mdx "Gateway
// Opcodes").
const (
	opDispatch            = 0
	opHeartbeat           = 1
	opIdentify            = 2
	opPresenceUpdate      = 3
	opVoiceStateUpdate    = 4
	opResume              = 6
	opReconnect           = 7
	opRequestGuildMembers = 8
	opInvalidSession      = 9
	opHello               = 10
	opHeartbeatACK        = 11
	opRequestSoundboard   = 31
	opRequestChannelInfo  = 43
)

// Gateway close codes ("Gateway Close Event Codes").
const (
	closeUnknownError         = 4000
	closeUnknownOpcode        = 4001
	closeDecodeError          = 4002
	closeNotAuthenticated     = 4003
	closeAuthenticationFailed = 4004
	closeAlreadyAuthenticated = 4005
	closeInvalidSeq           = 4007
	closeRateLimited          = 4008
	closeSessionTimedOut      = 4009
	closeInvalidShard         = 4010
	closeShardingRequired     = 4011
	closeInvalidAPIVersion    = 4012
	closeInvalidIntents       = 4013
	closeDisallowedIntents    = 4014
)

const (
	// maxPayload is the largest payload a client may send ("Sending
	// Events": more closes with 4002).
	maxPayload = 4096
	// commandLimit per commandWindow per connection ("Rate Limiting").
	commandLimit  = 120
	commandWindow = 60 * time.Second
	writeTimeout  = 5 * time.Second
)

// outFrame is one message queued for a connection's writer.
type outFrame struct {
	data []byte
	// zlibPayload sends data as one complete zlib stream in a binary frame.
	zlibPayload bool
	// closeCode, when non-zero, sends a close frame and ends the
	// connection.
	closeCode   int
	closeReason string
}

// conn is one gateway WebSocket. The HTTP handler goroutine reads; a writer
// goroutine owns all data writes; fields below mu are guarded by Server.mu.
type conn struct {
	s          *Server
	id         int
	ws         *websocket.Conn
	path       string
	zlibStream bool

	qmu   sync.Mutex
	queue []outFrame
	wake  chan struct{}

	done     chan struct{}
	stopOnce sync.Once
	// blackholed: nothing is sent or received any more (see Blackhole).
	blackholed atomic.Bool

	// Guarded by Server.mu.
	sess     *session
	authed   bool
	cmdTimes []time.Time
}

func (c *conn) enqueue(f outFrame) {
	if c.blackholed.Load() {
		return // lost; dispatches stay in the session buffer for a resume
	}
	c.qmu.Lock()
	c.queue = append(c.queue, f)
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// shutdown ends the connection abruptly: no close frame.
func (c *conn) shutdown() {
	c.stopOnce.Do(func() {
		close(c.done)
		_ = c.ws.Close()
	})
}

// serveGateway upgrades a gateway connection ("Connecting",
// developers/events/gateway.mdx).
func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.log.Debug("gateway upgrade failed", "err", err)
		return
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	c := &conn{s: s, ws: ws, path: path, wake: make(chan struct{}, 1), done: make(chan struct{})}
	ws.SetCloseHandler(func(code int, _ string) error {
		if c.blackholed.Load() {
			return nil // the close frame is lost, and so is our answer
		}
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(writeTimeout))
		return nil
	})

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.Close()
		return
	}
	s.stats.Connections++
	c.id = s.stats.Connections
	s.conns[c] = struct{}{}
	s.connLog = append(s.connLog, ConnInfo{ID: c.id, Path: path, Query: r.URL.RawQuery, Opened: time.Now()})
	s.wg.Add(1)
	s.notifyLocked()
	s.mu.Unlock()
	defer s.wg.Done()

	// Query parameters ("Gateway URL Query String Params"), read before
	// the writer starts. A missing v is taken as 10.
	refuseCode, refuseReason := 0, ""
	if v := q.Get("v"); v != "" && v != "10" && v != "9" {
		refuseCode, refuseReason = closeInvalidAPIVersion, "Invalid API version."
	}
	switch enc := q.Get("encoding"); enc {
	case "", "json":
	case "etf":
		refuseCode, refuseReason = closeDecodeError, "ETF encoding is not supported by the emulator."
	default:
		refuseCode, refuseReason = closeDecodeError, "Invalid encoding."
	}
	switch cmp := q.Get("compress"); cmp {
	case "":
	case "zlib-stream":
		c.zlibStream = true
	case "zstd-stream":
		refuseCode, refuseReason = closeDecodeError, "zstd-stream is not supported by the emulator."
	default:
		refuseCode, refuseReason = closeDecodeError, "Invalid transport compression."
	}

	var writerDone sync.WaitGroup
	writerDone.Add(1)
	go func() {
		defer writerDone.Done()
		c.writeLoop()
	}()
	defer func() {
		c.shutdown()
		writerDone.Wait()
		s.connEnded(c)
	}()
	if refuseCode != 0 {
		c.closeAndWait(refuseCode, refuseReason)
		return
	}

	interval := s.opts.HeartbeatInterval
	c.enqueue(outFrame{data: encodePayload(opHello, map[string]any{"heartbeat_interval": interval.Milliseconds()})})
	c.ws.SetReadLimit(1 << 20)
	c.readLoop(interval)
}

// readLoop reads and handles the client's payloads until the connection
// ends. The read deadline is moved only by heartbeats, so it is also the
// heartbeat timeout.
func (c *conn) readLoop(interval time.Duration) {
	s := c.s
	timeout := interval * 3 / 2
	_ = c.ws.SetReadDeadline(time.Now().Add(timeout))
	for {
		_, data, err := c.ws.ReadMessage()
		if c.blackholed.Load() {
			if err != nil {
				// Whatever the client sent last is lost; the TCP
				// connection lives until the client drops it.
				_, _ = io.Copy(io.Discard, c.ws.UnderlyingConn())
				return
			}
			continue
		}
		if err != nil {
			var ce *websocket.CloseError
			var ne net.Error
			switch {
			case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
				// 1006 is gorilla's name for a TCP end without a close
				// frame: no code was sent.
				s.clientClosed(c, ce.Code)
			case errors.As(err, &ne) && ne.Timeout():
				// 4009: "Your session timed out. Reconnect and start a
				// new one." (opcodes-and-status-codes.mdx): not resumable.
				s.log.Info("no heartbeat in 1.5 intervals; closing", "conn_id", c.id)
				s.mu.Lock()
				if c.sess != nil && c.sess.liveLocked() {
					s.invalidateLocked(c.sess)
				}
				s.mu.Unlock()
				c.closeAndWait(closeSessionTimedOut, "Session timed out.")
			}
			return
		}
		code, reason := s.handlePayload(c, data, timeout)
		if code != 0 {
			c.closeAndWait(code, reason)
			return
		}
		select {
		case <-c.done:
			return
		default:
		}
	}
}

// closeAndWait queues a close frame behind what is already queued and waits
// until the writer has sent it (or the connection died).
func (c *conn) closeAndWait(code int, reason string) {
	c.enqueue(outFrame{closeCode: code, closeReason: reason})
	<-c.done
}

// writeLoop sends queued frames in order; it owns all data writes.
func (c *conn) writeLoop() {
	var zbuf bytes.Buffer
	var zw *zlib.Writer
	if c.zlibStream {
		zw = zlib.NewWriter(&zbuf)
	}
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		c.qmu.Lock()
		frames := c.queue
		c.queue = nil
		c.qmu.Unlock()
		for _, f := range frames {
			deadline := time.Now().Add(writeTimeout)
			if f.closeCode != 0 {
				c.s.serverClosing(c, f.closeCode)
				_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(f.closeCode, f.closeReason), deadline)
				c.shutdown()
				return
			}
			msgType, data := websocket.TextMessage, f.data
			// Payload compression is off under transport compression.
			if f.zlibPayload && zw == nil {
				data = zlibOnce(data)
				msgType = websocket.BinaryMessage
			}
			if zw != nil {
				// Transport compression: one zlib context per connection,
				// each message ending with Z_SYNC_FLUSH (00 00 ff ff).
				zbuf.Reset()
				_, _ = zw.Write(data)
				_ = zw.Flush()
				data = append([]byte(nil), zbuf.Bytes()...)
				msgType = websocket.BinaryMessage
			}
			_ = c.ws.SetWriteDeadline(deadline)
			if err := c.ws.WriteMessage(msgType, data); err != nil {
				c.s.log.Debug("gateway write failed", "conn_id", c.id, "err", err)
				c.shutdown()
				return
			}
		}
	}
}

func zlibOnce(data []byte) []byte {
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return b.Bytes()
}

// serverClosing records the close code the server is about to send.
func (s *Server) serverClosing(c *conn, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := &s.connLog[c.id-1]
	info.CloseCode = code
	info.ClosedByServer = true
}

// clientClosed handles a close frame from the client: 1000 and 1001
// invalidate the session ("Initiating a Disconnect"), other codes keep it
// resumable.
func (s *Server) clientClosed(c *conn, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := &s.connLog[c.id-1]
	if !info.ClosedByServer {
		info.CloseCode = code
	}
	if (code == websocket.CloseNormalClosure || code == websocket.CloseGoingAway) && c.sess != nil && c.sess.liveLocked() {
		s.invalidateLocked(c.sess)
	}
}

// connEnded detaches a finished connection; its session stays resumable.
func (s *Server) connEnded(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.detachLocked(c)
	s.connLog[c.id-1].Closed = time.Now()
	s.notifyLocked()
}

// inbound is a client payload as decoded.
type inbound struct {
	Op *int            `json:"op"`
	D  json.RawMessage `json:"d"`
}

// handlePayload handles one client message and returns a close code (0 to
// carry on).
func (s *Server) handlePayload(c *conn, data []byte, timeout time.Duration) (int, string) {
	now := time.Now()
	var in inbound
	decodeErr := json.Unmarshal(data, &in)

	s.mu.Lock()
	frame := GatewayFrame{Op: -1, Data: json.RawMessage(append([]byte(nil), data...)), At: now, Conn: c.id}
	if decodeErr == nil && in.Op != nil {
		frame.Op = *in.Op
		frame.Data = append(json.RawMessage(nil), in.D...)
	}
	s.sent = append(s.sent, frame)
	s.notifyLocked()

	// 120 commands per 60 s per connection ("Rate Limiting").
	cut := 0
	for cut < len(c.cmdTimes) && now.Sub(c.cmdTimes[cut]) >= commandWindow {
		cut++
	}
	c.cmdTimes = append(c.cmdTimes[cut:], now)
	if len(c.cmdTimes) > commandLimit {
		s.mu.Unlock()
		return closeRateLimited, "You are being rate limited."
	}
	s.mu.Unlock()

	switch {
	case len(data) > maxPayload:
		return closeDecodeError, "Payload too large."
	case decodeErr != nil:
		return closeDecodeError, "Error while decoding payload."
	case in.Op == nil:
		return closeUnknownOpcode, "Invalid opcode."
	}

	s.mu.Lock()
	authed := c.authed
	s.mu.Unlock()
	op := *in.Op
	if !authed && op != opHeartbeat && op != opIdentify && op != opResume {
		switch op {
		case opPresenceUpdate, opVoiceStateUpdate, opRequestGuildMembers, opRequestSoundboard, opRequestChannelInfo:
			return closeNotAuthenticated, "Not authenticated."
		}
		return closeUnknownOpcode, "Unknown opcode."
	}
	switch op {
	case opHeartbeat:
		return s.handleHeartbeat(c, in.D, timeout)
	case opIdentify:
		return s.handleIdentify(c, in.D)
	case opResume:
		return s.handleResume(c, in.D)
	case opPresenceUpdate:
		var d struct {
			Status *string `json:"status"`
		}
		if err := json.Unmarshal(in.D, &d); err != nil || d.Status == nil {
			return closeUnknownOpcode, "Invalid payload for Presence Update."
		}
		return 0, ""
	case opVoiceStateUpdate:
		return s.handleVoiceStateUpdate(c, in.D)
	case opRequestGuildMembers:
		return s.handleRequestGuildMembers(c, in.D)
	case opRequestSoundboard:
		var d struct {
			GuildIDs []string `json:"guild_ids"`
		}
		if err := json.Unmarshal(in.D, &d); err != nil {
			return closeUnknownOpcode, "Invalid payload for Request Soundboard Sounds."
		}
		s.mu.Lock()
		for _, id := range d.GuildIDs {
			if g := s.guildLocked(id); g != nil && c.sess != nil && g.hasBot(c.sess.bot.userID) {
				s.dispatchToLocked(c.sess, "SOUNDBOARD_SOUNDS", 0, map[string]any{"guild_id": id, "soundboard_sounds": []any{}})
			}
		}
		s.mu.Unlock()
		return 0, ""
	case opRequestChannelInfo:
		// Accepted; the emulator keeps no ephemeral channel data to answer.
		return 0, ""
	}
	return closeUnknownOpcode, "Unknown opcode."
}

// handleHeartbeat answers op 1 with op 11 ("Sending Heartbeats") and moves
// the heartbeat deadline.
func (s *Server) handleHeartbeat(c *conn, d json.RawMessage, timeout time.Duration) (int, string) {
	var seq *int64
	if len(d) > 0 {
		if err := json.Unmarshal(d, &seq); err != nil {
			return closeUnknownOpcode, "Invalid heartbeat: d must be the last sequence number or null."
		}
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(timeout))
	s.mu.Lock()
	s.stats.Heartbeats++
	ack := s.ackEnabled
	s.notifyLocked()
	s.mu.Unlock()
	if ack {
		c.enqueue(outFrame{data: []byte(`{"op":11,"d":null,"s":null,"t":null}`)})
	}
	return 0, ""
}

type identifyData struct {
	Token          *string          `json:"token"`
	Intents        *int64           `json:"intents"`
	Properties     map[string]any   `json:"properties"`
	Compress       bool             `json:"compress"`
	LargeThreshold *int             `json:"large_threshold"`
	Shard          []int            `json:"shard"`
	Presence       *json.RawMessage `json:"presence"`
}

// handleIdentify starts a session ("Identifying"): READY then GUILD_CREATE.
func (s *Server) handleIdentify(c *conn, raw json.RawMessage) (int, string) {
	// The identify's arrival, not when the lock is had: another shard's
	// READY and GUILD_CREATEs, dispatched under the lock, must not make
	// an identify paced right look early.
	now := time.Now()
	var d identifyData
	if err := json.Unmarshal(raw, &d); err != nil {
		return closeDecodeError, "Error while decoding Identify."
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.authed {
		return closeAlreadyAuthenticated, "Already authenticated."
	}
	var b *botState
	if d.Token != nil {
		b = s.botByTokenLocked(*d.Token)
	}
	if b == nil {
		return closeAuthenticationFailed, "Authentication failed."
	}
	if d.Intents == nil || *d.Intents < 0 || *d.Intents&^intentsKnown != 0 {
		return closeInvalidIntents, "Invalid intent(s)."
	}
	intents := int(*d.Intents)
	if intents&intentsPrivileged != 0 {
		return closeDisallowedIntents, "Disallowed intent(s)."
	}
	if d.Shard != nil && (len(d.Shard) != 2 || d.Shard[1] < 1 || d.Shard[0] < 0 || d.Shard[0] >= d.Shard[1]) {
		return closeInvalidShard, "Invalid shard."
	}
	shard := [2]int{0, 1}
	if d.Shard != nil {
		shard = [2]int{d.Shard[0], d.Shard[1]}
	}
	if need := s.shardsNeededLocked(b); need > 1 && shard[1] < need {
		// Too many guilds for so few shards ("Sharding").
		return closeShardingRequired, "Sharding required."
	}
	// max_concurrency buckets: shard_id % max_concurrency ("Max
	// Concurrency"); each bucket takes one identify per interval.
	bucket := shard[0] % s.opts.MaxConcurrency
	if last := b.lastIdentify[bucket]; !last.IsZero() && now.Sub(last) < s.opts.IdentifyInterval {
		// max_concurrency exceeded: Invalid Session ("Rate Limiting").
		if b == s.bots[0] {
			s.stats.IdentifyViolations++
		}
		s.stats.InvalidSessions++
		s.notifyLocked()
		c.enqueue(outFrame{data: encodePayload(opInvalidSession, false)})
		return 0, ""
	}
	b.lastIdentify[bucket] = now
	if b == s.bots[0] {
		s.stats.Identifies++
	}

	for _, old := range b.shards {
		if old.shard[0] != shard[0] && old.shard[1] == shard[1] {
			continue // another shard's session goes on
		}
		// One session a shard: the previous one ends with its
		// connection, as do those of another shard count.
		if old.conn != nil && old.conn != c {
			old.conn.shutdown()
		}
		s.invalidateLocked(old)
	}
	if b.sess != nil && !b.sess.liveLocked() {
		b.sess = nil
	}
	sess := &session{bot: b, id: randomHex(16), intents: intents, compress: d.Compress, conn: c, shard: shard}
	b.sess = sess
	b.shards[shard[0]] = sess
	c.sess = sess
	c.authed = true
	s.connLog[c.id-1].Identified = true

	bot := s.guild.members[b.userID]
	user := userJSON(bot)
	user["verified"] = true
	user["mfa_enabled"] = false
	user["email"] = nil
	ready := map[string]any{
		"v":                       10,
		"user":                    user,
		"guilds":                  []any{},
		"session_id":              sess.id,
		"resume_gateway_url":      s.ResumeGatewayURL(),
		"application":             map[string]any{"id": b.userID, "flags": 0, "flags_new": "0"},
		"private_channels":        []any{},
		"relationships":           []any{},
		"user_settings":           map[string]any{},
		"presences":               []any{},
		"guild_join_requests":     []any{},
		"geo_ordered_rtc_regions": []string{"emulated"},
	}
	if d.Shard != nil {
		ready["shard"] = d.Shard
	}
	// READY lists the bot's guilds on this shard as unavailable; a
	// GUILD_CREATE follows for each ("Ready").
	var mine []*guildState
	listed := []any{}
	for _, g := range s.guilds {
		if g.hasBot(b.userID) && guildOnShard(g.id, sess) {
			mine = append(mine, g)
			listed = append(listed, map[string]any{"id": g.id, "unavailable": true})
		}
	}
	ready["guilds"] = listed
	s.dispatchToLocked(sess, "READY", 0, ready)
	for _, g := range mine {
		s.dispatchToLocked(sess, "GUILD_CREATE", 0, g.guildCreateJSON(b.userID, intents&intentGuildPresences != 0))
	}
	s.log.Info("identified", "conn_id", c.id, "session_id", sess.id, "user_id", b.userID, "intents", intents)
	return 0, ""
}

// shardsNeededLocked is how many shards bot b must identify with:
// Options.Shards, raised by GuildsPerShard for a bot in many guilds.
func (s *Server) shardsNeededLocked(b *botState) int {
	need := s.opts.Shards
	if per := s.opts.GuildsPerShard; per > 0 {
		n := 0
		for _, g := range s.guilds {
			if g.hasBot(b.userID) {
				n++
			}
		}
		need = max(need, (n+per-1)/per)
	}
	return max(need, 1)
}

// handleResume continues a session ("Resuming"): replay, then RESUMED.
func (s *Server) handleResume(c *conn, raw json.RawMessage) (int, string) {
	var d struct {
		Token     *string `json:"token"`
		SessionID *string `json:"session_id"`
		Seq       *int64  `json:"seq"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return closeDecodeError, "Error while decoding Resume."
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.authed {
		return closeAlreadyAuthenticated, "Already authenticated."
	}
	var b *botState
	if d.Token != nil {
		b = s.botByTokenLocked(*d.Token)
	}
	if b == nil {
		return closeAuthenticationFailed, "Authentication failed."
	}
	var seq int64
	if d.Seq != nil {
		seq = *d.Seq
	}
	var sess *session
	for _, live := range b.shards {
		if d.SessionID != nil && live.id == *d.SessionID {
			sess = live
		}
	}
	if sess == nil || d.SessionID == nil || *d.SessionID != sess.id || seq < 0 {
		s.stats.InvalidSessions++
		s.notifyLocked()
		c.enqueue(outFrame{data: encodePayload(opInvalidSession, false)})
		return 0, ""
	}
	if seq > sess.seq {
		return closeInvalidSeq, "Invalid seq."
	}
	if lt := s.opts.SessionLifetime; lt > 0 && sess.conn == nil && time.Since(sess.detached) > lt {
		s.log.Info("resume after the session's lifetime refused", "session_id", sess.id)
		s.stats.InvalidSessions++
		s.invalidateLocked(sess)
		c.enqueue(outFrame{data: encodePayload(opInvalidSession, false)})
		return 0, ""
	}
	if old := sess.conn; old != nil && old != c {
		// The session moves to the new connection; the old one is dropped.
		old.sess = nil
		old.authed = false
		old.shutdown()
	}
	if !s.replayLocked(sess, c, seq) {
		s.stats.InvalidSessions++
		s.invalidateLocked(sess)
		c.enqueue(outFrame{data: encodePayload(opInvalidSession, false)})
		return 0, ""
	}
	sess.conn = c
	c.sess = sess
	c.authed = true
	if b == s.bots[0] {
		s.stats.Resumes++
		if c.path != resumePath {
			s.stats.MisdirectedResumes++
		}
	}
	s.connLog[c.id-1].Resumed = true
	s.dispatchToLocked(sess, "RESUMED", 0, map[string]any{})
	s.log.Info("resumed", "conn_id", c.id, "session_id", sess.id, "from_seq", seq)
	return 0, ""
}

// handleVoiceStateUpdate joins, moves or leaves voice for the bot
// ("Update Voice State", gateway-events.mdx).
func (s *Server) handleVoiceStateUpdate(c *conn, raw json.RawMessage) (int, string) {
	var d struct {
		GuildID   *string `json:"guild_id"`
		ChannelID *string `json:"channel_id"`
		SelfMute  bool    `json:"self_mute"`
		SelfDeaf  bool    `json:"self_deaf"`
	}
	if err := json.Unmarshal(raw, &d); err != nil || d.GuildID == nil {
		return closeUnknownOpcode, "Invalid payload for Voice State Update."
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	channelID := ""
	if d.ChannelID != nil {
		channelID = *d.ChannelID
	}
	if c.sess == nil {
		return 0, "" // invalidated meanwhile
	}
	g := s.guildLocked(*d.GuildID)
	if g == nil || !g.hasBot(c.sess.bot.userID) || !guildOnShard(g.id, c.sess) {
		s.stats.RejectedVoiceUpdates++
		s.notifyLocked()
		s.log.Warn("op 4 for a guild the bot is not in (on this shard) ignored", "guild_id", *d.GuildID)
		return 0, ""
	}
	if channelID != "" {
		ch, ok := g.channels[channelID]
		if !ok || !isVoiceType(ch.typ) {
			s.stats.RejectedVoiceUpdates++
			s.notifyLocked()
			s.log.Warn("op 4 for a channel that is not a voice channel ignored", "channel_id", channelID)
			return 0, ""
		}
	}
	botID := c.sess.bot.userID
	if channelID != "" && g.channelFullLocked(channelID, botID) && g.botPermissionsLocked(botID)&PermMoveMembers == 0 {
		// Discord refuses the join of a full channel without Move
		// Members silently: neither voice update arrives.
		s.stats.RefusedFullJoins++
		s.notifyLocked()
		s.log.Warn("op 4 for a full voice channel without Move Members ignored", "channel_id", channelID)
		return 0, ""
	}
	s.setVoiceLocked(g, botID, channelID, d.SelfMute, d.SelfDeaf)
	return 0, ""
}

// channelFullLocked reports whether a voice channel's user limit is
// reached by users other than the bot botID.
func (g *guildState) channelFullLocked(channelID, botID string) bool {
	ch := g.channels[channelID]
	if ch == nil || ch.userLimit == 0 {
		return false
	}
	n := 0
	for uid, vs := range g.voice {
		if uid != botID && vs.channelID == channelID {
			n++
		}
	}
	return n >= ch.userLimit
}

// handleRequestGuildMembers answers op 8 with one GUILD_MEMBERS_CHUNK.
func (s *Server) handleRequestGuildMembers(c *conn, raw json.RawMessage) (int, string) {
	var d struct {
		GuildID *string         `json:"guild_id"`
		Query   *string         `json:"query"`
		Limit   int             `json:"limit"`
		UserIDs json.RawMessage `json:"user_ids"`
		Nonce   string          `json:"nonce"`
	}
	if err := json.Unmarshal(raw, &d); err != nil || d.GuildID == nil || (d.Query == nil && len(d.UserIDs) == 0) {
		return closeUnknownOpcode, "Invalid payload for Request Guild Members."
	}
	var ids []string
	if len(d.UserIDs) > 0 {
		var one string
		if json.Unmarshal(d.UserIDs, &one) == nil {
			ids = []string{one}
		} else if json.Unmarshal(d.UserIDs, &ids) != nil {
			return closeUnknownOpcode, "Invalid user_ids."
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.sess == nil {
		return 0, ""
	}
	g := s.guildLocked(*d.GuildID)
	if g == nil || !g.hasBot(c.sess.bot.userID) {
		return 0, ""
	}
	members := []any{}
	notFound := []string{}
	if ids != nil {
		for _, id := range ids {
			if m, ok := g.members[id]; ok {
				members = append(members, memberJSON(m))
			} else {
				notFound = append(notFound, id)
			}
		}
	} else {
		prefix := strings.ToLower(*d.Query)
		for _, id := range g.memberOrder {
			m := g.members[id]
			if strings.HasPrefix(strings.ToLower(m.username), prefix) {
				members = append(members, memberJSON(m))
				if d.Limit > 0 && len(members) >= d.Limit {
					break
				}
			}
		}
	}
	chunk := map[string]any{"guild_id": g.id, "members": members, "chunk_index": 0, "chunk_count": 1}
	if ids != nil {
		chunk["not_found"] = notFound
	}
	if d.Nonce != "" && len(d.Nonce) <= 32 {
		chunk["nonce"] = d.Nonce
	}
	s.dispatchToLocked(c.sess, "GUILD_MEMBERS_CHUNK", 0, chunk)
	return 0, ""
}
