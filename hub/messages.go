package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ProtocolVersion is the "v" of every message the hub sends.
const ProtocolVersion = 1

// Close codes the hub sends on /api/ws. 4000-4999 are for applications
// (RFC 6455 §7.4.2); the hub's mirror HTTP statuses so they read at a
// glance. It also sends the standard 1001 (going away) on Shutdown and
// 1009 (message too big, sent by the WebSocket library) when a client
// message exceeds Options.MaxMessageBytes.
const (
	// CloseBadMessages: the client sent more than maxBadMessages malformed,
	// binary or unknown-type messages.
	CloseBadMessages = 4400
	// CloseUnauthorized: no auth message within AuthTimeout, the first
	// message was not auth, the token was refused, or the token expired.
	// The close reason says which.
	CloseUnauthorized = 4401
	// CloseSlowClient: the client fell more than SendQueueBytes behind;
	// its queue was dropped and the connection closed so that nobody else
	// waits for it. Reconnecting is fine; the client missed events and
	// should re-read state (GET /api/rooms).
	CloseSlowClient = 4408
	// CloseTooManySockets: the user already holds Options.SocketsPerUser
	// authenticated connections. Close one of them before opening another.
	CloseTooManySockets = 4429
)

// Message types on /api/ws.
const (
	// TypeAuth is the client's first message: {"type":"auth","token":"..."}.
	// Sent again later with a fresh token of the same subject, it extends
	// the connection past the old token's expiry.
	TypeAuth = "auth"
	// TypePing asks for a {"v":1,"type":"pong"}: an application-level
	// keepalive for clients that cannot see WebSocket pings.
	TypePing = "ping"
	// TypePong answers TypePing.
	TypePong = "pong"
	// TypeAck answers a good auth (event "auth.ok").
	TypeAck = "ack"
	// TypeEvent carries a published event.
	TypeEvent = "event"
	// TypeError answers a message the hub could not take.
	TypeError = "error"
)

// Error codes inside {"type":"error"} messages.
const (
	CodeBadMessage  = "bad_message"
	CodeUnknownType = "unknown_type"
	CodeAuthFailed  = "auth_failed"
)

// maxTypeLen bounds the "type" of a client message.
const maxTypeLen = 64

// maxIDLen bounds the optional "id" a client attaches for correlation.
const maxIDLen = 128

// eventMessage is a published event as clients receive it.
type eventMessage struct {
	V       int    `json:"v"`
	Type    string `json:"type"`
	Event   string `json:"event"`
	Payload any    `json:"payload"`
	TS      int64  `json:"ts"` // unix milliseconds
}

// ackMessage answers a good auth.
type ackMessage struct {
	V       int    `json:"v"`
	Type    string `json:"type"`
	Event   string `json:"event"`
	GuildID string `json:"guildId"` // the first of Guilds
	// Guilds are the served guilds the token allows, the bridge's order.
	Guilds []string `json:"guilds"`
	// Servers are Guilds with their names, in the same order: what a UI
	// shows of each (added within version 1, so guilds keeps its form).
	Servers   []ServerInfo `json:"servers"`
	UserID    string       `json:"userId"`
	Name      string       `json:"name"`
	ClientID  string       `json:"clientId"`
	ExpiresAt int64        `json:"expiresAt"` // unix seconds: send a new auth before this
	// Admin: the token carries the admin role (Options.AdminRole), so the
	// user may end any room.
	Admin bool `json:"admin"`
}

// ServerInfo is one Discord server (guild) the token allows, as the ack
// names it.
type ServerInfo struct {
	ID string `json:"id"`
	// Name is the guild's name from Discord; absent while the bridge's
	// gateway has not received it (show the id then).
	Name string `json:"name,omitempty"`
}

// errorMessage answers a message the hub could not take; ID echoes the
// client's "id" when it had one.
type errorMessage struct {
	V     int       `json:"v"`
	Type  string    `json:"type"`
	ID    string    `json:"id,omitempty"`
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// pongMessage answers TypePing.
type pongMessage struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
}

// authMessage is the body of TypeAuth.
type authMessage struct {
	Token string `json:"token"`
}

// clientMessage is a parsed client message: its type, optional id, and
// the whole object for the handler to decode.
type clientMessage struct {
	Type string
	ID   string
	Raw  json.RawMessage
}

// parseClientMessage checks that data is one JSON object whose "type" is
// a non-empty printable ASCII string of at most maxTypeLen bytes and whose
// optional "id" is a string of at most maxIDLen bytes. Other fields are
// left to the message's handler.
func parseClientMessage(data []byte) (clientMessage, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return clientMessage{}, fmt.Errorf("%w: want a JSON object", ErrBadMessage)
	}
	var head struct {
		Type *string         `json:"type"`
		ID   json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(trimmed, &head); err != nil {
		return clientMessage{}, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	if head.Type == nil {
		return clientMessage{}, fmt.Errorf("%w: missing \"type\"", ErrBadMessage)
	}
	t := *head.Type
	if t == "" || len(t) > maxTypeLen {
		return clientMessage{}, fmt.Errorf("%w: \"type\" must be 1-%d characters", ErrBadMessage, maxTypeLen)
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return clientMessage{}, fmt.Errorf("%w: \"type\" must be printable ASCII without spaces", ErrBadMessage)
		}
	}
	m := clientMessage{Type: t, Raw: json.RawMessage(trimmed)}
	if len(head.ID) > 0 && string(head.ID) != "null" {
		if err := json.Unmarshal(head.ID, &m.ID); err != nil {
			return clientMessage{}, fmt.Errorf("%w: \"id\" must be a string", ErrBadMessage)
		}
		if len(m.ID) > maxIDLen {
			return clientMessage{}, fmt.Errorf("%w: \"id\" longer than %d bytes", ErrBadMessage, maxIDLen)
		}
	}
	return m, nil
}

// closeReason fits a close reason into a control frame: 125 bytes of
// payload minus the 2-byte code (RFC 6455 §5.5), cut on a rune boundary.
func closeReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut]
}
