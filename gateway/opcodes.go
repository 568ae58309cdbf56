package gateway

import "fmt"

// Gateway opcodes (Discord docs, Opcodes and Status Codes, Gateway Opcodes).
const (
	opDispatch            = 0
	opHeartbeat           = 1
	opIdentify            = 2
	opVoiceStateUpdate    = 4
	opResume              = 6
	opReconnect           = 7
	opInvalidSession      = 9
	opHello               = 10
	opHeartbeatACK        = 11
	closeNormal           = 1000
	closeGoingAway        = 1001
	closeResumable        = 4900 // ours: any code but 1000/1001 keeps the session (Gateway, Initiating a Disconnect)
	closeZombie           = 4901 // ours: heartbeat not acknowledged
	closeReconnectRequest = 4902 // ours: op 7 or op 9 asked us to reconnect
)

// Intents the bridge needs (Discord docs, Gateway, Gateway Intents).
const (
	IntentGuilds           = 1 << 0
	IntentGuildVoiceStates = 1 << 7
	// DefaultIntents is what New uses when Options.Intents is zero.
	DefaultIntents = IntentGuilds | IntentGuildVoiceStates
)

// CloseCode describes one gateway close code and what the client does
// after it.
type CloseCode struct {
	Code int
	Name string
	// Reconnect: opening a new connection may work. False is fatal.
	Reconnect bool
	// Resume: the session survives; reconnect with Resume (op 6), not Identify.
	Resume bool
	// Hint is what an operator should do about a fatal code.
	Hint string
}

// closeCodes is Discord's table (Opcodes and Status Codes, Gateway Close
// Event Codes). The Reconnect column is Discord's; Resume follows the
// explanations: 4007 (invalid seq) and 4009 (session timed out) need a new
// session, the rest keep it.
var closeCodes = []CloseCode{
	{Code: 4000, Name: "unknown error", Reconnect: true, Resume: true},
	{Code: 4001, Name: "unknown opcode", Reconnect: true, Resume: true},
	{Code: 4002, Name: "decode error", Reconnect: true, Resume: true},
	{Code: 4003, Name: "not authenticated", Reconnect: true, Resume: true},
	{Code: 4004, Name: "authentication failed", Hint: "check DISCORD_BOT_TOKEN"},
	{Code: 4005, Name: "already authenticated", Reconnect: true, Resume: true},
	{Code: 4007, Name: "invalid seq", Reconnect: true},
	{Code: 4008, Name: "rate limited", Reconnect: true, Resume: true},
	{Code: 4009, Name: "session timed out", Reconnect: true},
	{Code: 4010, Name: "invalid shard", Hint: "the shard count is wrong: set DISCORD_SHARDS to GET /gateway/bot's shards, or leave it unset"},
	{Code: 4011, Name: "sharding required", Hint: "the bot is in too many guilds for its shard count: raise DISCORD_SHARDS, or leave it unset to follow Discord"},
	{Code: 4012, Name: "invalid API version", Hint: "the gateway no longer serves v10; upgrade the bridge"},
	{Code: 4013, Name: "invalid intents", Hint: "fix the configured intents"},
	{Code: 4014, Name: "disallowed intents", Hint: "enable the requested intents for the bot in the Discord developer portal, or request fewer"},
}

// LookupCloseCode returns the table row for a close code. Codes not in the
// table (1000, 1006, our own 49xx, ...) are an ordinary drop: reconnect
// and resume.
func LookupCloseCode(code int) CloseCode {
	for _, c := range closeCodes {
		if c.Code == code {
			return c
		}
	}
	return CloseCode{Code: code, Name: "connection closed", Reconnect: true, Resume: true}
}

// Reason is the human text for a fatal close, such as
// "4004 authentication failed: check DISCORD_BOT_TOKEN".
func (c CloseCode) Reason() string {
	if c.Hint == "" {
		return fmt.Sprintf("%d %s", c.Code, c.Name)
	}
	return fmt.Sprintf("%d %s: %s", c.Code, c.Name, c.Hint)
}
