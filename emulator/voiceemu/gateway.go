package voiceemu

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Voice gateway opcodes (Discord docs, Opcodes and Status Codes, "Voice";
// 12 is the undocumented video announcement).
const (
	opIdentify           = 0
	opSelectProtocol     = 1
	opReady              = 2
	opHeartbeat          = 3
	opSessionDescription = 4
	opSpeaking           = 5
	opHeartbeatACK       = 6
	opResume             = 7
	opHello              = 8
	opResumed            = 9
	opClientsConnect     = 11
	opVideo              = 12
	opClientDisconnect   = 13
)

// closeCode is one voice close event code and whether a client may resume
// after it (Discord docs, "Voice Close Event Codes").
type closeCode struct {
	text      string
	resumable bool
}

var closeCodes = map[int]closeCode{
	4001: {"Unknown opcode", false},
	4002: {"Failed to decode payload", false},
	4003: {"Not authenticated", false},
	4004: {"Authentication failed", false},
	4005: {"Already authenticated", false},
	4006: {"Session no longer valid", false},
	4009: {"Session timeout", false},
	4011: {"Server not found", false},
	4012: {"Unknown protocol", false},
	4014: {"Disconnected", false},
	4015: {"Voice server crashed", true},
	4016: {"Unknown encryption mode", false},
	4017: {"E2EE/DAVE protocol required", false},
	4020: {"Bad request", false},
	4021: {"Disconnected: Rate Limited", false},
	4022: {"Disconnected: Call Terminated", false},
}

func closeCodeResumable(code int) bool {
	if code < 4000 {
		return true
	}
	return closeCodes[code].resumable
}

const (
	outQueueSize = 256
	writeTimeout = 5 * time.Second
	readLimit    = 1 << 20
)

var upgrader = websocket.Upgrader{
	HandshakeTimeout: 5 * time.Second,
	CheckOrigin:      func(*http.Request) bool { return true },
}

// wsFrame is one outgoing websocket message, or a close frame when
// closeCode is set.
type wsFrame struct {
	binary    bool
	data      []byte
	closeCode int
}

// wsConn is one voice websocket. The handler goroutine reads and owns the
// protocol state; a writer goroutine drains out.
type wsConn struct {
	srv    *Server
	ws     *websocket.Conn
	remote string
	out    chan wsFrame
	done   chan struct{}
	once   sync.Once

	mu   sync.Mutex
	sess *session
	beat time.Time
	// blackholed: nothing is sent or received any more (see Blackhole).
	blackholed atomic.Bool
}

func (c *wsConn) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

func (c *wsConn) setSession(ss *session) {
	c.mu.Lock()
	c.sess = ss
	c.mu.Unlock()
}

func (c *wsConn) lastBeat() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.beat
}

// enqueue queues a frame without blocking; a client too slow to take 256
// messages loses its socket (and can resume).
func (c *wsConn) enqueue(f wsFrame) {
	if c.blackholed.Load() {
		return // lost; the session keeps its messages for a resume
	}
	select {
	case <-c.done:
	case c.out <- f:
	default:
		c.srv.log.Warn("voice websocket queue full, dropping socket", "remote", c.remote)
		c.abort()
	}
}

// closeWith sends a close frame with code, then closes the socket.
func (c *wsConn) closeWith(code int) {
	c.enqueue(wsFrame{closeCode: code})
}

// abort closes the TCP connection at once.
func (c *wsConn) abort() {
	c.once.Do(func() {
		close(c.done)
		_ = c.ws.NetConn().Close()
	})
}

func (c *wsConn) writeLoop() {
	for {
		select {
		case <-c.done:
			return
		case f := <-c.out:
			deadline := time.Now().Add(writeTimeout)
			if f.closeCode != 0 {
				msg := websocket.FormatCloseMessage(f.closeCode, closeCodes[f.closeCode].text)
				_ = c.ws.WriteControl(websocket.CloseMessage, msg, deadline)
				c.abort()
				return
			}
			_ = c.ws.SetWriteDeadline(deadline)
			kind := websocket.TextMessage
			if f.binary {
				kind = websocket.BinaryMessage
			}
			if err := c.ws.WriteMessage(kind, f.data); err != nil {
				c.abort()
				return
			}
		}
	}
}

// serveWS upgrades wss://HOST/?v=8 and runs one voice gateway connection.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if v := r.URL.Query().Get("v"); v != "8" {
		http.Error(w, "voiceemu speaks voice gateway version 8 only: connect to wss://"+s.Endpoint()+"/?v=8 (got v="+v+")", http.StatusBadRequest)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	ws.SetReadLimit(readLimit)
	c := &wsConn{srv: s, ws: ws, remote: r.RemoteAddr, out: make(chan wsFrame, outQueueSize), done: make(chan struct{}), beat: time.Now()}
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
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		c.writeLoop()
	}()
	defer func() {
		c.abort()
		writer.Wait()
		if ss := c.session(); ss != nil {
			ss.detachIf(c)
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()

	// Discord's voice Hello carries the interval as a float and the
	// gateway version (voice-connections.mdx, "Heartbeating").
	interval := json.Number(strconv.FormatFloat(float64(s.opts.HeartbeatInterval)/float64(time.Millisecond), 'f', 2, 64))
	c.enqueue(wsFrame{data: marshalEnvelope(opHello, map[string]any{"v": 8, "heartbeat_interval": interval}, nil)})
	for {
		kind, data, err := ws.ReadMessage()
		if c.blackholed.Load() {
			if err != nil {
				// The TCP connection lives until the client drops it.
				_, _ = io.Copy(io.Discard, ws.NetConn())
				return
			}
			continue
		}
		if err != nil {
			return
		}
		if kind == websocket.BinaryMessage {
			s.handleBinary(c, data)
			continue
		}
		var env envelope
		if err := json.Unmarshal(data, &env); err != nil {
			c.closeWith(4002)
			continue
		}
		s.handleMessage(c, env)
	}
}

// handleBinary takes a client binary message: opcode byte, payload.
func (s *Server) handleBinary(c *wsConn, data []byte) {
	ss := c.session()
	if ss == nil {
		c.closeWith(4003)
		return
	}
	if len(data) == 0 {
		c.closeWith(4002)
		return
	}
	ss.handleDAVE(int(data[0]), data[1:])
}

func (s *Server) handleMessage(c *wsConn, env envelope) {
	switch env.Op {
	case opHeartbeat:
		s.heartbeat(c, env.D)
		return
	case opIdentify:
		if c.session() != nil {
			c.closeWith(4005)
			return
		}
		s.identify(c, env.D)
		return
	case opResume:
		if c.session() != nil {
			c.closeWith(4005)
			return
		}
		s.resume(c, env.D)
		return
	}
	ss := c.session()
	if ss == nil {
		c.closeWith(4003)
		return
	}
	switch env.Op {
	case opSelectProtocol:
		s.selectProtocol(c, ss, env.D)
	case opSpeaking:
		s.speaking(c, ss, env.D)
	case opVideo:
		s.video(c, ss, env.D)
	case opReadyForTransition, opInvalidCommit:
		ss.handleDAVE(env.Op, env.D)
	default:
		// Discord adds opcodes over time; unknown ones are ignored.
		ss.log.Debug("ignoring voice opcode", "op", env.Op)
	}
}

// heartbeat answers op 3 with op 6 echoing the nonce. v8 sends
// {"t": nonce, "seq_ack": n}; older versions send the bare nonce.
func (s *Server) heartbeat(c *wsConn, d json.RawMessage) {
	now := time.Now()
	c.mu.Lock()
	c.beat = now
	ss := c.sess
	c.mu.Unlock()
	if ss != nil {
		ss.mu.Lock()
		ss.lastBeat = now
		ss.mu.Unlock()
	}
	var hb struct {
		T json.RawMessage `json:"t"`
	}
	var ack any = d
	if json.Unmarshal(d, &hb) == nil && hb.T != nil {
		ack = map[string]json.RawMessage{"t": hb.T}
	}
	if !s.ackOn.Load() {
		return
	}
	var seq *int
	if ss != nil {
		ss.mu.Lock()
		n := wireSeq(ss.seq)
		seq = &n
		ss.mu.Unlock()
	}
	c.enqueue(wsFrame{data: marshalEnvelope(opHeartbeatACK, ack, seq)})
}

type identifyData struct {
	ServerID  string `json:"server_id"`
	UserID    string `json:"user_id"`
	SessionID string `json:"session_id"`
	Token     string `json:"token"`
	MaxDAVE   int    `json:"max_dave_protocol_version"`
	Video     bool   `json:"video"`
}

// identify checks op 0 against the allocations, creates the session and
// answers Ready.
func (s *Server) identify(c *wsConn, d json.RawMessage) {
	var id identifyData
	if err := json.Unmarshal(d, &id); err != nil || id.Token == "" {
		c.closeWith(4002)
		return
	}
	s.mu.Lock()
	a := s.allocations[id.Token]
	var code int
	switch {
	case a == nil && s.released[id.Token]:
		code = 4006
	case a == nil, a.guildID != id.ServerID, a.userID != id.UserID:
		code = 4004
	case a.sessionID != id.SessionID, a.stale:
		code = 4006
	case s.opts.RequireDAVE && id.MaxDAVE < 1:
		code = 4017
	}
	if code != 0 {
		s.mu.Unlock()
		s.log.Info("identify refused", "user_id", id.UserID, "guild_id", id.ServerID, "code", code)
		c.closeWith(code)
		return
	}
	// A user has one voice session per guild: a new Identify replaces an
	// older session, whether of this token (4006) or of an allocation
	// this one replaced (4014).
	var older []*session
	for _, x := range s.sessions {
		if x.guildID == a.guildID && x.userID == a.userID {
			older = append(older, x)
		}
	}
	s.mu.Unlock()
	for _, x := range older {
		code := 4014
		if x.token == id.Token {
			code = 4006
		}
		s.endSession(x, code)
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	audio, video, rtx := s.newSSRCs()
	ss := &session{
		srv: s, guildID: a.guildID, channelID: a.channelID, userID: a.userID, sessionID: a.sessionID, token: a.token,
		ssrc: audio, videoSSRC: video, rtxSSRC: rtx, maxDAVE: id.MaxDAVE,
		conn: c, lastBeat: time.Now(), sources: map[uint32]*sourceCount{},
	}
	ss.log = s.log.With("user_id", ss.userID, "guild_id", ss.guildID, "ssrc", ss.ssrc)
	s.sessions[ss.token] = ss
	s.bySSRC[audio], s.bySSRC[video], s.bySSRC[rtx] = ss, ss, ss
	s.mu.Unlock()
	c.setSession(ss)
	ss.log.Info("voice session identified", "channel_id", ss.channelID, "max_dave", id.MaxDAVE)

	ss.sendJSON(opReady, map[string]any{
		"ssrc":               ss.ssrc,
		"ip":                 "127.0.0.1",
		"port":               s.udpPort,
		"modes":              s.opts.Modes,
		"heartbeat_interval": 1, // Discord's erroneous field, kept for fidelity
		"streams": []map[string]any{{
			"type": "video", "rid": "100", "ssrc": ss.videoSSRC, "rtx_ssrc": ss.rtxSSRC,
			"quality": 100, "active": false,
		}},
	})
	s.announceJoin(ss)
}

// announceJoin tells the channel about a new session and the new session
// about the channel: Clients Connect (op 11) both ways, then Speaking
// (op 5) and video (op 12) for the members already known.
func (s *Server) announceJoin(ss *session) {
	peers, members := s.channelPeers(ss.guildID, ss.channelID, ss.userID)
	for _, p := range peers {
		p.sendJSON(opClientsConnect, map[string]any{"user_ids": []string{ss.userID}})
	}
	var ids []string
	for _, p := range peers {
		ids = append(ids, p.userID)
	}
	for _, m := range members {
		ids = append(ids, m.userID)
	}
	if len(ids) == 0 {
		return
	}
	ss.sendJSON(opClientsConnect, map[string]any{"user_ids": ids})
	for _, p := range peers {
		p.mu.Lock()
		speaking, video := p.speaking, p.video
		p.mu.Unlock()
		if speaking != nil {
			ss.sendJSON(opSpeaking, map[string]any{"user_id": p.userID, "ssrc": p.ssrc, "speaking": *speaking})
		}
		if video != nil {
			ss.sendJSON(opVideo, video)
		}
	}
	for _, m := range members {
		if m.announced() {
			ss.sendJSON(opSpeaking, m.speakingPayload())
			ss.sendJSON(opVideo, m.videoPayload())
		}
	}
}

type resumeData struct {
	ServerID  string `json:"server_id"`
	SessionID string `json:"session_id"`
	Token     string `json:"token"`
	SeqAck    *int   `json:"seq_ack"`
}

// resume reattaches a session to a new connection: Resumed (op 9), then the
// buffered messages after seq_ack ("Buffered Resume").
func (s *Server) resume(c *wsConn, d json.RawMessage) {
	var r resumeData
	if err := json.Unmarshal(d, &r); err != nil {
		c.closeWith(4002)
		return
	}
	s.mu.Lock()
	ss := s.sessions[r.Token]
	valid := ss != nil && ss.guildID == r.ServerID && ss.sessionID == r.SessionID
	s.mu.Unlock()
	if !valid {
		c.closeWith(4006)
		return
	}
	seqAck := -1
	if r.SeqAck != nil {
		seqAck = *r.SeqAck
	}
	ss.mu.Lock()
	replay, ok := ss.replayLocked(seqAck)
	if !ok {
		ss.mu.Unlock()
		ss.log.Info("resume refused: missed messages no longer buffered", "seq_ack", seqAck)
		s.invalidate(ss, 4006)
		c.closeWith(4006)
		return
	}
	prev := ss.conn
	ss.conn = c
	ss.announced = false // Speaking goes again after a resume
	ss.lastBeat = time.Now()
	seq := wireSeq(ss.seq)
	c.enqueue(wsFrame{data: marshalEnvelope(opResumed, nil, &seq)})
	for _, m := range replay {
		c.enqueue(wsFrame{binary: m.binary, data: m.data})
	}
	ss.mu.Unlock()
	c.setSession(ss)
	if prev != nil && prev != c {
		prev.abort()
	}
	ss.log.Info("voice session resumed", "seq_ack", seqAck, "replayed", len(replay))
}

type selectProtocolData struct {
	Protocol string `json:"protocol"`
	Data     struct {
		Address string `json:"address"`
		Port    uint16 `json:"port"`
		Mode    string `json:"mode"`
	} `json:"data"`
	Codecs []codecData `json:"codecs"`
}

// codecData is one entry of Select Protocol's undocumented codecs list.
type codecData struct {
	Name           string `json:"name"`
	Type           string `json:"type"`
	PayloadType    int    `json:"payload_type"`
	RTXPayloadType *int   `json:"rtx_payload_type"`
}

// knownCodecs are the payload types Discord's clients declare
// (docs/discord-protocol.md, "Video over the voice connection"): name,
// type, payload type and RTX payload type.
var knownCodecs = map[string]struct {
	kind    string
	pt, rtx int
}{
	"opus": {"audio", 120, 0},
	"H264": {"video", 101, 102},
	"VP8":  {"video", 105, 106},
	"VP9":  {"video", 107, 108},
	"AV1":  {"video", 109, 110},
}

// declaredPayloadTypes checks Select Protocol's codecs against
// knownCodecs and returns the payload types the client may send: Opus
// always, video only when declared.
func declaredPayloadTypes(codecs []codecData) (map[uint8]bool, error) {
	out := map[uint8]bool{payloadTypeOpus: true}
	for _, c := range codecs {
		k, ok := knownCodecs[c.Name]
		if !ok || k.kind != c.Type || k.pt != c.PayloadType || (c.RTXPayloadType != nil && *c.RTXPayloadType != k.rtx) {
			return nil, fmt.Errorf("codec %+v does not match %s/%d", c, k.kind, k.pt)
		}
		out[uint8(k.pt)] = true
		if c.RTXPayloadType != nil {
			out[uint8(k.rtx)] = true
		}
	}
	return out, nil
}

// selectProtocol takes op 1, picks a fresh secret key, joins the client to
// its channel's DAVE call and answers Session Description (op 4) with the
// DAVE protocol version the call runs for it.
func (s *Server) selectProtocol(c *wsConn, ss *session, d json.RawMessage) {
	var sp selectProtocolData
	if err := json.Unmarshal(d, &sp); err != nil {
		c.closeWith(4002)
		return
	}
	if sp.Protocol != "udp" {
		c.closeWith(4012)
		return
	}
	offered := false
	for _, m := range s.opts.Modes {
		offered = offered || m == sp.Data.Mode
	}
	if !offered {
		ss.log.Info("select protocol refused: mode not offered", "mode", sp.Data.Mode)
		c.closeWith(4016)
		return
	}
	declared, err := declaredPayloadTypes(sp.Codecs)
	if err != nil {
		ss.log.Info("select protocol refused: bad codecs", "err", err)
		c.closeWith(4002)
		return
	}
	key := make([]byte, secretKeySize)
	if _, err := randRead(key); err != nil {
		c.closeWith(4015)
		return
	}
	tc, err := newTransportCipher(sp.Data.Mode, key)
	if err != nil {
		c.closeWith(4016)
		return
	}
	ss.mu.Lock()
	ss.mode, ss.cipher, ss.declared = sp.Data.Mode, tc, declared
	if ip, err := netip.ParseAddr(sp.Data.Address); err == nil && sp.Data.Port != 0 {
		ss.addr = netip.AddrPortFrom(ip.Unmap(), sp.Data.Port)
	}
	addr := ss.addr
	ss.mu.Unlock()
	keyInts := make([]int, len(key))
	for i, b := range key {
		keyInts[i] = int(b)
	}
	// The call tells the client its DAVE protocol version here, and sends
	// the DAVE messages that must follow Session Description.
	p := &participant{userID: ss.userID, dave: ss.maxDAVE >= 1, ss: ss, e2ee: &ss.e2ee}
	err = s.joinCall(ss.guildID, ss.channelID, p, func(protocol int) {
		ss.sendJSON(opSessionDescription, map[string]any{
			"mode":                  sp.Data.Mode,
			"secret_key":            keyInts,
			"dave_protocol_version": protocol,
			"audio_codec":           "opus",
			"video_codec":           "VP8",
			"media_session_id":      ss.token[:16],
		})
	})
	if err != nil {
		ss.log.Info("select protocol after close", "err", err)
		return
	}
	ss.log.Info("transport selected", "mode", sp.Data.Mode, "addr", addr)
}

// speaking records op 5 and forwards it to the channel as
// {user_id, ssrc, speaking}.
func (s *Server) speaking(c *wsConn, ss *session, d json.RawMessage) {
	var sp struct {
		Speaking int `json:"speaking"`
	}
	if err := json.Unmarshal(d, &sp); err != nil {
		c.closeWith(4002)
		return
	}
	ss.mu.Lock()
	ss.speaking = &sp.Speaking
	ss.announced, ss.unannounced = true, time.Time{}
	ss.spoken = append(ss.spoken, SpeakingEvent{Speaking: sp.Speaking, OpusBefore: ss.opusIn, SilenceBefore: ss.silenceRun})
	ss.mu.Unlock()
	peers, _ := s.channelPeers(ss.guildID, ss.channelID, ss.userID)
	for _, p := range peers {
		p.sendJSON(opSpeaking, map[string]any{"user_id": ss.userID, "ssrc": ss.ssrc, "speaking": sp.Speaking})
	}
}

// video records the client's op 12 (its video streams) and forwards it to
// the channel with the server-assigned SSRCs and the user id.
func (s *Server) video(c *wsConn, ss *session, d json.RawMessage) {
	var v struct {
		Streams []map[string]any `json:"streams"`
	}
	if err := json.Unmarshal(d, &v); err != nil {
		c.closeWith(4002)
		return
	}
	for _, st := range v.Streams {
		st["ssrc"], st["rtx_ssrc"] = ss.videoSSRC, ss.rtxSSRC
	}
	payload, _ := json.Marshal(map[string]any{
		"user_id": ss.userID, "audio_ssrc": ss.ssrc, "video_ssrc": ss.videoSSRC, "rtx_ssrc": ss.rtxSSRC,
		"streams": v.Streams,
	})
	ss.mu.Lock()
	ss.video = payload
	ss.mu.Unlock()
	peers, _ := s.channelPeers(ss.guildID, ss.channelID, ss.userID)
	for _, p := range peers {
		p.sendJSON(opVideo, json.RawMessage(payload))
	}
}
