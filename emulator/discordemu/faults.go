package discordemu

import "time"

// Faults act on the current bot connection: the connection carrying the
// session if there is one, else the most recently accepted gateway
// connection that is still open. With none they do nothing
// (SendInvalidSession(false) still forgets the session).

func (s *Server) currentConn() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.currentConnLocked()
}

func (s *Server) currentConnLocked() *conn {
	if sess := s.bots[0].sess; sess != nil && sess.conn != nil {
		return sess.conn
	}
	// The newest open connection that carries no other bot's session.
	var newest *conn
	for c := range s.conns {
		if (c.sess == nil || c.sess.bot == s.bots[0]) && (newest == nil || c.id > newest.id) {
			newest = c
		}
	}
	return newest
}

// DropConnection ends the current connection abruptly: TCP close, no close
// frame. The session stays resumable and buffers dispatches meanwhile.
func (s *Server) DropConnection() {
	if c := s.currentConn(); c != nil {
		s.log.Info("fault: dropping connection", "conn_id", c.id)
		s.mu.Lock()
		s.connLog[c.id-1].ClosedByServer = true
		s.mu.Unlock()
		c.shutdown()
	}
}

// Blackhole makes the current connection a real zombie: from now on
// nothing the emulator sends arrives, nothing the client sends gets
// through (heartbeats go unacknowledged, and its close frame is lost), and
// the TCP connection stays open until the client drops it. The session
// stays resumable and buffers dispatches meanwhile, so a client that
// notices by its heartbeat and resumes gets them by replay.
func (s *Server) Blackhole() {
	if c := s.currentConn(); c != nil {
		s.log.Info("fault: blackholing connection", "conn_id", c.id)
		c.blackholed.Store(true)
		_ = c.ws.SetReadDeadline(time.Time{}) // no heartbeat timeout either
	}
}

// SetHeartbeatACK turns Heartbeat ACKs (op 11) on or off for all
// connections; off makes the connection a zombie the client must detect.
func (s *Server) SetHeartbeatACK(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ackEnabled = enabled
}

// SendReconnect sends Reconnect (op 7) on the current connection; the client
// should reconnect and resume. The emulator leaves the connection open.
func (s *Server) SendReconnect() {
	if c := s.currentConn(); c != nil {
		c.enqueue(outFrame{data: encodePayload(opReconnect, nil)})
	}
}

// RequestHeartbeat sends Heartbeat (op 1) on the current connection; the
// client must answer with a heartbeat at once ("Heartbeat Requests",
// gateway.mdx).
func (s *Server) RequestHeartbeat() {
	if c := s.currentConn(); c != nil {
		c.enqueue(outFrame{data: encodePayload(opHeartbeat, nil)})
	}
}

// SendInvalidSession sends Invalid Session (op 9) with d=resumable on the
// current connection and takes the session off it, so the client may
// identify or resume again (on this socket or a new one). With
// resumable=false the session is also forgotten: dispatches until the next
// identify are lost and a resume gets op 9 d=false.
func (s *Server) SendInvalidSession(resumable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.currentConnLocked()
	if c != nil {
		s.detachLocked(c)
		c.enqueue(outFrame{data: encodePayload(opInvalidSession, resumable)})
		s.stats.InvalidSessions++
	}
	if !resumable {
		s.invalidateSessionLocked(s.bots[0])
	}
	s.notifyLocked()
}

// CloseWithCode closes the current connection with a close frame carrying
// code and reason, after any frames already queued. The session is kept;
// combine with SendInvalidSession(false) to end it too.
func (s *Server) CloseWithCode(code int, reason string) {
	if c := s.currentConn(); c != nil {
		c.enqueue(outFrame{closeCode: code, closeReason: reason})
	}
}

// SendVoiceServerUpdate dispatches VOICE_SERVER_UPDATE {token, guild_id,
// endpoint}; a nil endpoint means the voice server is being reallocated.
// Used to move the bot to another voice server. It is ordered after
// voice-state changes made before the call.
func (s *Server) SendVoiceServerUpdate(guildID string, endpoint *string, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := voiceServerUpdate{userID: s.opts.BotUserID, guildID: guildID, token: token}
	if endpoint != nil {
		e := *endpoint
		u.endpoint = &e
	}
	s.queueEffectLocked(voiceEffect{voiceServer: &u})
}

// MoveVoiceServer moves the bot to another voice server, as Discord does
// when it rebalances or a voice server goes away: the voice backend
// allocates anew (closing the bot's voice connection with 4014) and a
// VOICE_SERVER_UPDATE with the new token follows; no voice state changes.
func (s *Server) MoveVoiceServer() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs, ok := s.guild.voice[s.opts.BotUserID]
	if !ok {
		return ErrNotInVoice
	}
	s.queueEffectLocked(voiceEffect{guildID: s.guild.id, userID: vs.userID, channelID: vs.channelID, sessionID: vs.sessionID, allocate: true})
	return nil
}

// Script429 makes the next REST request whose method matches (method ""
// matches any) and whose path starts with pathPrefix answer 429 with
// retry_after = retryAfter. pathPrefix may include the /api/vN prefix or
// not. The limit then holds like a real one: requests in the same bucket
// (or, with global, all requests) answer 429 until retryAfter has passed.
func (s *Server) Script429(method, pathPrefix string, retryAfter time.Duration, global bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limiter.script(method, pathPrefix, retryAfter, global)
}

// CloseBotWithCode closes the connection carrying the session of the bot
// with user id botUserID with a close frame carrying code and reason, and
// forgets that session; with code 4004 the bot's token is refused from
// then on, as Discord does once a token is reset. It reports whether the
// bot has a connection to close.
func (s *Server) CloseBotWithCode(botUserID string, code int, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.botByUserLocked(botUserID)
	if b == nil {
		return false
	}
	if code == closeAuthenticationFailed {
		b.revoked = true
	}
	closed := false
	for _, sess := range b.shards {
		if c := sess.conn; c != nil {
			s.invalidateLocked(sess)
			c.enqueue(outFrame{closeCode: code, closeReason: reason})
			closed = true
		}
	}
	return closed
}

// SetShards changes how many shards the bot needs (Options.Shards), as
// when it joins many guilds: GET /gateway/bot recommends the new count and
// later identifies with fewer are closed with 4011. Live sessions stay.
func (s *Server) SetShards(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Shards = n
}
