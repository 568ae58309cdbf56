package voiceemu

import (
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// session is one client's voice session: created by Identify, kept across
// websocket connections by Resume, ended by Release, a move, a heartbeat
// timeout or a non-resumable close.
type session struct {
	srv *Server
	log *slog.Logger

	guildID, channelID, userID, token string
	sessionID                         string // guarded by srv.mu (Renew changes it)
	ssrc, videoSSRC, rtxSSRC          uint32
	maxDAVE                           int

	mu       sync.Mutex
	conn     *wsConn
	seq      int // last sequence number assigned
	buffer   []sentMessage
	lastBeat time.Time
	mode     string
	cipher   *transportCipher
	addr     netip.AddrPort
	speaking *int // last Speaking flags, nil before the first op 5
	// announced: an op 5 came on the current connection (a resume starts
	// without); unannounced is when audio first came without one.
	announced   bool
	unannounced time.Time
	spoken      []SpeakingEvent // every op 5 the client sent
	// opusIn and silenceRun: the Opus packets relayed, and how many of
	// the last in a row were the silence frame.
	opusIn, silenceRun int
	// declared are the RTP payload types Select Protocol allowed.
	declared map[uint8]bool
	video    json.RawMessage // the client's last op 12, rewritten for peers
	held     []byte          // packet held back by the reorder fault
	heldAt   time.Time
	sources  map[uint32]*sourceCount // media relayed to this client, by SSRC
	highSeq  uint32                  // extended highest sequence received, for RR
	seqInit  bool

	counters counters
	// e2ee says whether the client's Opus must be DAVE frames.
	e2ee e2eeGuard
}

// sentMessage is one sequenced server message, kept for resume.
type sentMessage struct {
	seq    int
	binary bool
	data   []byte
}

// sourceCount feeds the sender reports about one relayed source.
type sourceCount struct {
	packets, octets uint32
	lastTS          uint32
}

// counters are the per-session statistics, updated without locks.
type counters struct {
	packetsIn, packetsOut, mediaIn, rtcpIn, rtcpOut, keepalivesIn, discoveries atomic.Int64
	decryptFailures, badPackets, relayed, dropped, reordered, duplicated       atomic.Int64
	plaintextOpus, kpRefused, beforeSpeaking, undeclared                       atomic.Int64
}

func (ss *session) snapshot(ended bool) SessionStats {
	c := &ss.counters
	st := SessionStats{
		UserID: ss.userID, GuildID: ss.guildID, ChannelID: ss.channelID, Ended: ended,
		PacketsIn: int(c.packetsIn.Load()), PacketsOut: int(c.packetsOut.Load()),
		MediaIn: int(c.mediaIn.Load()), RTCPIn: int(c.rtcpIn.Load()), RTCPOut: int(c.rtcpOut.Load()),
		KeepalivesIn: int(c.keepalivesIn.Load()), Discoveries: int(c.discoveries.Load()),
		DecryptFailures: int(c.decryptFailures.Load()), BadPackets: int(c.badPackets.Load()),
		Relayed: int(c.relayed.Load()), Dropped: int(c.dropped.Load()),
		Reordered: int(c.reordered.Load()), Duplicated: int(c.duplicated.Load()),
		PlaintextOpusSeen: int(c.plaintextOpus.Load()), KeyPackagesRefused: int(c.kpRefused.Load()),
		MediaBeforeSpeaking:   int(c.beforeSpeaking.Load()),
		UndeclaredPayloadType: int(c.undeclared.Load()),
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st.SpeakingAt = slices.Clone(ss.spoken)
	for _, e := range ss.spoken {
		st.Speaking = append(st.Speaking, e.Speaking)
	}
	st.OpusIn = ss.opusIn
	return st
}

// envelope is a voice gateway JSON message. Seq is set on every server
// message that belongs to a session (v8, "Buffered Resume").
type envelope struct {
	Op  int             `json:"op"`
	D   json.RawMessage `json:"d"`
	Seq *int            `json:"seq,omitempty"`
}

func marshalEnvelope(op int, d any, seq *int) []byte {
	raw, err := json.Marshal(d)
	if err != nil {
		raw = []byte("null") // payloads are built here from plain maps and structs
	}
	b, _ := json.Marshal(envelope{Op: op, D: raw, Seq: seq})
	return b
}

// wireSeq is the sequence number as sent: the server uses a fixed 16-bit
// counter that wraps (binary frames carry it as uint16).
func wireSeq(seq int) int { return seq & 0xffff }

// sendJSON numbers a message, keeps it for resume and queues it on the
// current connection, if any.
func (ss *session) sendJSON(op int, d any) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.seq++
	seq := wireSeq(ss.seq)
	ss.queueLocked(sentMessage{seq: ss.seq, data: marshalEnvelope(op, d, &seq)})
}

// sendBinary sends a binary DAVE message: uint16 big-endian sequence
// number, opcode, payload (Discord docs, "Binary Websocket Messages").
func (ss *session) sendBinary(op byte, payload []byte) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.seq++
	b := make([]byte, 3, 3+len(payload))
	binary.BigEndian.PutUint16(b, uint16(ss.seq))
	b[2] = op
	ss.queueLocked(sentMessage{seq: ss.seq, binary: true, data: append(b, payload...)})
}

func (ss *session) queueLocked(m sentMessage) {
	ss.buffer = append(ss.buffer, m)
	if over := len(ss.buffer) - ss.srv.opts.ResumeBuffer; over > 0 {
		ss.buffer = append(ss.buffer[:0], ss.buffer[over:]...)
	}
	if ss.conn != nil {
		ss.conn.enqueue(wsFrame{binary: m.binary, data: m.data})
	}
}

// replayLocked returns the buffered messages after seqAck, or false when
// one of them is no longer buffered. seqAck < 0 means none was received.
func (ss *session) replayLocked(seqAck int) ([]sentMessage, bool) {
	if seqAck < 0 {
		if ss.seq == 0 {
			return nil, true
		}
		if len(ss.buffer) > 0 && ss.buffer[0].seq == 1 {
			return ss.buffer, true
		}
		return nil, false
	}
	if seqAck == wireSeq(ss.seq) {
		return nil, true
	}
	if len(ss.buffer) > 0 && wireSeq(ss.buffer[0].seq-1) == seqAck {
		return ss.buffer, true
	}
	for i, m := range ss.buffer {
		if wireSeq(m.seq) == seqAck {
			return ss.buffer[i+1:], true
		}
	}
	return nil, false
}

// detach replaces the session's connection (nil to detach) and returns
// the previous one.
func (ss *session) detach(next *wsConn) *wsConn {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	prev := ss.conn
	ss.conn = next
	if next == nil && prev != nil {
		// The resume window starts now.
		ss.lastBeat = time.Now()
	}
	return prev
}

// detachIf detaches c if it is still the session's connection.
func (ss *session) detachIf(c *wsConn) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conn == c {
		ss.conn = nil
		ss.lastBeat = time.Now()
	}
}

// handleDAVE receives the client's DAVE opcodes: JSON 23 (transition
// ready) and 31 (invalid commit/welcome), binary 26 (key package) and 28
// (commit/welcome), and hands them to its channel's DAVE call.
func (ss *session) handleDAVE(op int, payload []byte) {
	ss.srv.withCall(ss.guildID, ss.channelID, false, func(c *call) {
		p := c.parts[ss.userID]
		if p == nil || p.ss != ss {
			c.note(slog.LevelDebug, "DAVE message before Select Protocol ignored", "user_id", ss.userID, "op", op, "bytes", len(payload))
			return
		}
		c.handle(p, op, payload)
	})
}
