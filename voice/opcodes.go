package voice

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Opcode is a voice gateway opcode (Discord docs, "Opcodes and Status
// Codes", Voice Opcodes).
type Opcode int

// Voice gateway opcodes. OpVideo (12) is undocumented and reverse
// engineered; 14-20 are undocumented and ignored; 21-31 belong to DAVE.
const (
	OpIdentify           Opcode = 0
	OpSelectProtocol     Opcode = 1
	OpReady              Opcode = 2
	OpHeartbeat          Opcode = 3
	OpSessionDescription Opcode = 4
	OpSpeaking           Opcode = 5
	OpHeartbeatACK       Opcode = 6
	OpResume             Opcode = 7
	OpHello              Opcode = 8
	OpResumed            Opcode = 9
	OpClientsConnect     Opcode = 11
	OpVideo              Opcode = 12
	OpClientDisconnect   Opcode = 13
	OpDAVEFirst          Opcode = 21
	OpDAVELast           Opcode = 31
)

// message is one voice gateway message. From v8 the server numbers the
// messages a resume may replay in a top-level seq (Discord voice docs,
// "Buffered Resume"). Binary frames (DAVE) are server-to-client
// `seq u16 | op u8 | payload`.
type message struct {
	Op     Opcode          `json:"op"`
	D      json.RawMessage `json:"d"`
	Seq    *int64          `json:"seq,omitempty"`
	Binary []byte          `json:"-"`
}

// decodeMessage parses a text frame.
func decodeMessage(b []byte) (message, error) {
	var m message
	var probe struct {
		Op *int `json:"op"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return m, fmt.Errorf("voice: gateway message: %v: %w", err, ErrBadMessage)
	}
	if probe.Op == nil {
		return m, fmt.Errorf("voice: gateway message without op: %w", ErrBadMessage)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("voice: gateway message op %d: %v: %w", *probe.Op, err, ErrBadMessage)
	}
	return m, nil
}

// decodeBinaryMessage parses a server binary frame: big-endian u16 seq,
// u8 opcode, payload (Discord voice docs, "Binary Websocket Messages").
func decodeBinaryMessage(b []byte) (message, error) {
	if len(b) < 3 {
		return message{}, fmt.Errorf("voice: binary gateway message of %d bytes: %w", len(b), ErrBadMessage)
	}
	seq := int64(b[0])<<8 | int64(b[1])
	return message{Op: Opcode(b[2]), Seq: &seq, Binary: b[3:]}, nil
}

// decodeData unmarshals m.D into v, naming the opcode on failure.
func decodeData(m message, v any) error {
	if len(m.D) == 0 || string(m.D) == "null" {
		return fmt.Errorf("voice: op %d without data: %w", m.Op, ErrBadMessage)
	}
	if err := json.Unmarshal(m.D, v); err != nil {
		return fmt.Errorf("voice: op %d data: %v: %w", m.Op, err, ErrBadMessage)
	}
	return nil
}

type helloData struct {
	HeartbeatInterval float64 `json:"heartbeat_interval"`
}

// streamSpec describes a video stream in Identify, Ready and op 12
// (reverse engineered, discord-protocol.md "Video").
type streamSpec struct {
	Type    string `json:"type"`
	RID     string `json:"rid"`
	Quality int    `json:"quality,omitempty"`
	SSRC    uint32 `json:"ssrc,omitempty"`
	RTXSSRC uint32 `json:"rtx_ssrc,omitempty"`
	Active  *bool  `json:"active,omitempty"`
}

type identifyData struct {
	ServerID               string       `json:"server_id"`
	UserID                 string       `json:"user_id"`
	SessionID              string       `json:"session_id"`
	Token                  string       `json:"token"`
	MaxDAVEProtocolVersion int          `json:"max_dave_protocol_version"`
	Video                  bool         `json:"video,omitempty"`
	Streams                []streamSpec `json:"streams,omitempty"`
}

type readyData struct {
	SSRC    uint32       `json:"ssrc"`
	IP      string       `json:"ip"`
	Port    int          `json:"port"`
	Modes   []string     `json:"modes"`
	Streams []streamSpec `json:"streams"`
}

type codecSpec struct {
	Name           string `json:"name"`
	Type           string `json:"type"`
	Priority       int    `json:"priority"`
	PayloadType    int    `json:"payload_type"`
	RTXPayloadType *int   `json:"rtx_payload_type,omitempty"`
}

type selectProtocolData struct {
	Protocol string             `json:"protocol"`
	Data     selectProtocolAddr `json:"data"`
	Codecs   []codecSpec        `json:"codecs,omitempty"`
}

type selectProtocolAddr struct {
	Address string `json:"address"`
	Port    int    `json:"port"`
	Mode    string `json:"mode"`
}

// ourCodecs is Select Protocol's codec list: Opus 120, VP8 105 with RTX 106.
func ourCodecs() []codecSpec {
	rtx := PayloadTypeVP8RTX
	return []codecSpec{
		{Name: "opus", Type: "audio", Priority: 1000, PayloadType: PayloadTypeOpus},
		{Name: "VP8", Type: "video", Priority: 1000, PayloadType: PayloadTypeVP8, RTXPayloadType: &rtx},
	}
}

type sessionDescriptionData struct {
	Mode                string `json:"mode"`
	SecretKey           []int  `json:"secret_key"`
	DAVEProtocolVersion int    `json:"dave_protocol_version"`
}

// key validates and returns the 32-byte secret key, sent as a JSON array
// of byte values.
func (s *sessionDescriptionData) key() ([]byte, error) {
	if len(s.SecretKey) != secretKeyLen {
		return nil, fmt.Errorf("voice: session description key of %d bytes: %w", len(s.SecretKey), ErrBadKey)
	}
	k := make([]byte, secretKeyLen)
	for i, v := range s.SecretKey {
		if v < 0 || v > 255 {
			return nil, fmt.Errorf("voice: session description key byte %d is %d: %w", i, v, ErrBadKey)
		}
		k[i] = byte(v)
	}
	return k, nil
}

type speakingData struct {
	UserID   string `json:"user_id,omitempty"`
	SSRC     uint32 `json:"ssrc"`
	Speaking int    `json:"speaking"`
	Delay    *int   `json:"delay,omitempty"`
}

type heartbeatData struct {
	T      int64 `json:"t"`
	SeqAck int64 `json:"seq_ack"`
}

type heartbeatACKData struct {
	T int64 `json:"t"`
}

type resumeData struct {
	ServerID  string `json:"server_id"`
	SessionID string `json:"session_id"`
	Token     string `json:"token"`
	SeqAck    int64  `json:"seq_ack"`
}

type clientsConnectData struct {
	UserIDs []string `json:"user_ids"`
}

type clientDisconnectData struct {
	UserID string `json:"user_id"`
}

type videoData struct {
	UserID    string       `json:"user_id,omitempty"`
	AudioSSRC uint32       `json:"audio_ssrc"`
	VideoSSRC uint32       `json:"video_ssrc"`
	RTXSSRC   uint32       `json:"rtx_ssrc"`
	Streams   []streamSpec `json:"streams"`
}

// closeAction is what the client does after the voice gateway closes.
type closeAction int

const (
	// closeResume reconnects and sends Resume (op 7).
	closeResume closeAction = iota
	// closeNewSession asks the main gateway for a fresh voice session
	// (op 4 again) and identifies anew.
	closeNewSession
	// closeStop ends the connection with an error.
	closeStop
	// closeLeft ends the connection cleanly: we are no longer in the call.
	closeLeft
	// closeAwaitServer waits briefly for a voice update: Discord closes
	// with 4014 both when the bot was removed (a VOICE_STATE_UPDATE with a
	// null channel follows) and when it was moved or its voice server
	// changed (a VOICE_SERVER_UPDATE follows). Without either it starts a
	// new session.
	closeAwaitServer
)

func (a closeAction) String() string {
	return [...]string{"resume", "new session", "stop", "left", "await server"}[a]
}

// closeCode is one row of the voice close code table.
type closeCode struct {
	Name   string
	Action closeAction
	// Err is the sentinel a stop wraps.
	Err error
}

// closeCodes is Discord's voice close event code table (Discord docs,
// "Opcodes and Status Codes", Voice Close Event Codes) as data: it alone
// decides between resume, a new session and stopping.
var closeCodes = map[int]closeCode{
	4001: {"unknown opcode", closeNewSession, nil},
	4002: {"failed to decode payload", closeNewSession, nil},
	4003: {"not authenticated", closeNewSession, nil},
	4004: {"authentication failed", closeNewSession, nil},
	4005: {"already authenticated", closeNewSession, nil},
	4006: {"session no longer valid", closeNewSession, nil},
	4009: {"session timeout", closeNewSession, nil},
	4011: {"server not found", closeNewSession, nil},
	4012: {"unknown protocol", closeStop, ErrClosedByServer},
	4014: {"disconnected (kicked, moved, channel deleted, voice server changed or main session dropped)", closeAwaitServer, nil},
	4015: {"voice server crashed", closeResume, nil},
	4016: {"unknown encryption mode: no common encryption mode", closeStop, ErrNoCommonMode},
	4017: {"E2EE/DAVE protocol required", closeStop, ErrDAVERequired},
	4020: {"bad request", closeStop, ErrClosedByServer},
	4021: {"disconnected: rate limited", closeStop, ErrClosedByServer},
	4022: {"disconnected: call terminated", closeLeft, nil},
}

// lookupCloseCode returns the row for code. Codes outside the table:
// transport-level closes (1000-1015, and no close frame at all) resume;
// unknown 4xxx codes start a new session.
func lookupCloseCode(code int) closeCode {
	if c, ok := closeCodes[code]; ok {
		return c
	}
	if code >= 4000 && code < 5000 {
		return closeCode{Name: fmt.Sprintf("unknown close code %d", code), Action: closeNewSession}
	}
	return closeCode{Name: fmt.Sprintf("connection closed (%d)", code), Action: closeResume}
}

// CloseError is the error a connection stops with when the voice gateway
// closed it with a code that forbids reconnecting.
type CloseError struct {
	Code   int
	Reason string
	Name   string
	err    error
}

// Error names the close code and its meaning.
func (e *CloseError) Error() string {
	s := fmt.Sprintf("voice gateway closed with %d (%s)", e.Code, e.Name)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.err != nil && !errors.Is(e.err, ErrClosedByServer) {
		s += ": " + e.err.Error()
	}
	return s
}

// Unwrap returns the sentinel for the code (ErrNoCommonMode,
// ErrDAVERequired, ErrClosedByServer).
func (e *CloseError) Unwrap() error { return e.err }
