package discordemu

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Gateway intents (developers/events/gateway.mdx "List of Intents").
const (
	intentGuilds           = 1 << 0
	intentGuildMembers     = 1 << 1
	intentGuildVoiceStates = 1 << 7
	intentGuildPresences   = 1 << 8
	intentMessageContent   = 1 << 15

	// intentsKnown is every documented intent bit; others close with 4013.
	intentsKnown = 1<<0 | 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 |
		1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<13 | 1<<14 | 1<<15 | 1<<16 | 1<<20 | 1<<21 | 1<<24 | 1<<25
	// intentsPrivileged are refused with 4014: the emulated bot has none
	// enabled ("Privileged Intents").
	intentsPrivileged = intentGuildMembers | intentGuildPresences | intentMessageContent
)

// maxBuffered bounds a session's replay buffer; a resume from before the
// oldest buffered dispatch is refused with op 9 d=false.
const maxBuffered = 10000

// session is a gateway session: what Identify creates and Resume continues.
// Guarded by Server.mu.
type session struct {
	bot      *botState
	id       string
	shard    [2]int // [shard_id, num_shards] from Identify
	intents  int
	compress bool
	seq      int64
	// buffer holds the latest dispatches, oldest first, for replay.
	buffer []dispatch
	// conn is the connection carrying the session, nil while none does.
	conn *conn
	// detached is when the session last lost its connection.
	detached time.Time
}

// dispatch is one op 0 payload, encoded once.
type dispatch struct {
	seq   int64
	event string
	frame []byte
}

// gatewayPayload is the envelope of every gateway message
// (developers/events/gateway-events.mdx "Payload Structure").
type gatewayPayload struct {
	Op int     `json:"op"`
	D  any     `json:"d"`
	S  *int64  `json:"s"`
	T  *string `json:"t"`
}

func encodePayload(op int, d any) []byte {
	b, err := json.Marshal(gatewayPayload{Op: op, D: d})
	if err != nil {
		// Payloads are built from maps of plain values; this cannot fail.
		return []byte(`{"op":` + itoa(op) + `,"d":null,"s":null,"t":null}`)
	}
	return b
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// botState is one bot application: its token, user and gateway session.
// Guarded by Server.mu.
type botState struct {
	token, userID string
	// sess is the bot's session of its latest identify, nil before the
	// first identify and after its invalidation; the fault controls and
	// Stats act on it.
	sess *session
	// shards are the bot's live sessions by shard id: one a shard, as a
	// sharded bot runs one session per shard ("Sharding").
	shards map[int]*session
	// lastIdentify is the last identify of each max_concurrency bucket.
	lastIdentify map[int]time.Time
	// revoked refuses the token (close 4004), as after a token reset.
	revoked bool
	// limiter is the bot's REST rate limits; nil for the primary bot,
	// whose are Server.limiter (where Script429 acts).
	limiter *rateLimiter
}

// botByTokenLocked finds the bot whose token this is, with or without the
// "Bot " prefix; nil when none.
func (s *Server) botByTokenLocked(token string) *botState {
	token = strings.TrimPrefix(token, "Bot ")
	for _, b := range s.bots {
		if b.token == token && !b.revoked {
			return b
		}
	}
	return nil
}

// botByUserLocked finds the bot with this user id; nil when none.
func (s *Server) botByUserLocked(userID string) *botState {
	for _, b := range s.bots {
		if b.userID == userID {
			return b
		}
	}
	return nil
}

// dispatchLocked sends a guild event to the session of every bot in the
// guild whose shard holds it; see dispatchToLocked.
func (s *Server) dispatchLocked(g *guildState, event string, intent int, d any) {
	for _, b := range s.bots {
		if !g.hasBot(b.userID) {
			continue
		}
		if sess := b.sessionForLocked(g.id); sess != nil {
			s.dispatchToLocked(sess, event, intent, d)
		}
	}
}

// sessionForLocked is the bot's live session whose shard holds the
// guild; nil when none.
func (b *botState) sessionForLocked(guildID string) *session {
	for _, sess := range b.shards {
		if guildOnShard(guildID, sess) {
			return sess
		}
	}
	return nil
}

// guildOnShard reports whether the guild's events go to sess's shard:
// shard_id = (guild_id >> 22) % num_shards ("Sharding").
func guildOnShard(guildID string, sess *session) bool {
	id, _ := strconv.ParseUint(guildID, 10, 64) // validated at Start
	return int((id>>22)%uint64(sess.shard[1])) == sess.shard[0]
}

// dispatchToLocked numbers a dispatch, keeps it in the session buffer and
// sends it if a connection carries the session. Without a session (none
// identified yet, or invalidated) the event is lost, as on Discord. intent
// 0 means the event needs no intent.
func (s *Server) dispatchToLocked(sess *session, event string, intent int, d any) {
	if sess == nil {
		return
	}
	if intent != 0 && sess.intents&intent == 0 {
		return
	}
	sess.seq++
	seq := sess.seq
	name := event
	frame, err := json.Marshal(gatewayPayload{Op: opDispatch, D: d, S: &seq, T: &name})
	if err != nil {
		s.log.Error("dispatch not encodable", "event", event, "err", err)
		sess.seq--
		return
	}
	dp := dispatch{seq: seq, event: event, frame: frame}
	sess.buffer = append(sess.buffer, dp)
	if len(sess.buffer) > maxBuffered {
		sess.buffer = append(sess.buffer[:0], sess.buffer[len(sess.buffer)-maxBuffered:]...)
	}
	if sess.conn != nil {
		sess.conn.enqueue(s.frameFor(sess, dp))
	}
	s.notifyLocked()
}

// frameFor applies payload compression ("Payload Compression"): with
// identify compress=true, GUILD_CREATE, the one large payload, goes as a
// complete zlib stream in a binary frame.
func (s *Server) frameFor(sess *session, dp dispatch) outFrame {
	if sess.compress && dp.event == "GUILD_CREATE" {
		return outFrame{data: dp.frame, zlibPayload: true}
	}
	return outFrame{data: dp.frame}
}

// replayLocked sends every buffered dispatch after seq to c. It reports
// false when the buffer no longer reaches back to seq.
func (s *Server) replayLocked(sess *session, c *conn, seq int64) bool {
	if seq < sess.seq && len(sess.buffer) > 0 && sess.buffer[0].seq > seq+1 {
		return false
	}
	if seq < sess.seq && len(sess.buffer) == 0 {
		return false
	}
	for _, dp := range sess.buffer {
		if dp.seq > seq {
			c.enqueue(s.frameFor(sess, dp))
		}
	}
	return true
}

// invalidateSessionLocked forgets bot b's latest session: it cannot be
// resumed and its dispatches until the next identify are lost.
func (s *Server) invalidateSessionLocked(b *botState) {
	if b.sess != nil {
		s.invalidateLocked(b.sess)
	}
}

// invalidateLocked forgets one session of its bot.
func (s *Server) invalidateLocked(sess *session) {
	b := sess.bot
	if c := sess.conn; c != nil {
		c.sess = nil
		c.authed = false
	}
	if b.shards[sess.shard[0]] == sess {
		delete(b.shards, sess.shard[0])
	}
	if b.sess == sess {
		b.sess = nil
	}
	s.log.Info("session invalidated", "session_id", sess.id, "user_id", b.userID, "shard", sess.shard[0])
	s.notifyLocked()
}

// liveLocked reports whether sess is one of its bot's live sessions.
func (sess *session) liveLocked() bool { return sess.bot.shards[sess.shard[0]] == sess }

// detachLocked takes the session off its connection; dispatches buffer
// until a resume.
func (s *Server) detachLocked(c *conn) {
	if c.sess != nil && c.sess.conn == c {
		c.sess.conn = nil
		c.sess.detached = time.Now()
	}
	c.sess = nil
	c.authed = false
	s.notifyLocked()
}
