// Package discordemu is a Discord emulator for tests and local runs: the main
// gateway (v10, JSON) and the REST API (v9 and v10) of bots in a single
// guild, served on 127.0.0.1 in the manner of net/http/httptest.
//
// One bot is the primary (Options.Token); Options.ExtraBots adds more, each
// its own application: its own token, user, gateway session, identify
// pacing and REST rate limits (Script429 acts on the primary's). Guild events reach every bot's session; READY, GUILD_CREATE,
// answers to a bot's requests and its VOICE_SERVER_UPDATE reach only that
// bot. The fault controls act on the primary bot; CloseBotWithCode closes
// any bot's connection (4004 also revokes its token).
//
// It is built from Discord's public documentation (discord/discord-api-docs:
// developers/events/gateway.mdx, developers/events/gateway-events.mdx,
// developers/topics/opcodes-and-status-codes.mdx,
// developers/topics/rate-limits.mdx, developers/resources/channel.mdx,
// developers/resources/guild.mdx, developers/resources/voice.mdx), not from
// any particular client, so that a client that works here has a fair chance
// of working against Discord.
//
// # Gateway
//
// A connection gets Hello (op 10), then the bot identifies (op 2) or resumes
// (op 6). Identify creates a session: READY (s=1), then GUILD_CREATE.
// Every dispatch is numbered and kept in the session's buffer; dispatches
// made while no connection carries the session are buffered too, and a
// Resume replays everything after the client's `seq`, then RESUMED
// ("Resuming", gateway.mdx). READY's resume_gateway_url points at a
// different path (/resume-gateway) on the same host than GET /gateway's url
// (/gateway), so a client that resumes on the wrong URL shows in
// Stats.MisdirectedResumes and Connections.
//
// Close codes follow the "Gateway Close Event Codes" table: 4001 unknown
// opcode or invalid payload for an opcode, 4002 undecodable or oversized
// (> 4096 bytes) payload, 4003 payload before identifying, 4004 bad token,
// 4005 second identify, 4007 resume with a sequence from the future, 4008
// more than 120 commands in 60 s, 4009 no heartbeat for 1.5 heartbeat
// intervals (the session stays resumable, as gateway.mdx "Sending Heartbeats"
// says), 4010 bad shard, 4012 bad API version, 4013 invalid or missing
// intents, 4014 privileged intents (none are enabled for the emulated bot).
// Identifies closer together than Options.IdentifyInterval (max_concurrency
// 1 per that interval) get Invalid Session (op 9, d=false) and count as
// Stats.IdentifyViolations. A client closing with 1000 or 1001 invalidates
// its session ("Initiating a Disconnect").
//
// Dispatches honour intents: CHANNEL_* need GUILDS (1<<0),
// VOICE_STATE_UPDATE needs GUILD_VOICE_STATES (1<<7); READY, GUILD_CREATE,
// VOICE_SERVER_UPDATE and RESUMED are always sent. Without GUILD_PRESENCES
// GUILD_CREATE lists only the bot and members in voice, as Discord does.
// With identify `compress: true`, GUILD_CREATE is sent as one binary frame
// holding one complete zlib stream ("Payload Compression"); with the URL
// parameter compress=zlib-stream every frame goes through one shared zlib
// context ending in Z_SYNC_FLUSH ("Transport Compression"). zstd-stream and
// the ETF encoding are refused with close 4002.
//
// Voice: op 4 sets the bot's voice state, dispatches VOICE_STATE_UPDATE with
// a fresh voice session_id (deliberately different from the gateway session
// id, so a client must read it from the event), then VOICE_SERVER_UPDATE
// with the endpoint and token from Options.Voice. A repeated op 4 for the
// channel the bot is in gets only VOICE_STATE_UPDATE, with a new voice
// session id (VoiceBackend.Renew), as on Discord; MoveVoiceServer
// reallocates the voice server (4014 on the voice connection) and sends
// VOICE_SERVER_UPDATE. A join of a channel whose user limit is reached is
// ignored unless the bot has Move Members in the category (its role's
// permissions, Options.BotPermissions, and Options.CategoryOverwrites;
// GUILD_CREATE carries the roles and overwrites). Blackhole makes the
// connection a zombie that loses everything both ways; close 4009 ends
// the session and Options.SessionLifetime bounds resumes. Without a VoiceBackend the
// endpoint is "127.0.0.1:1" (nothing listens there) and the token random.
// VoiceBackend callbacks run on one goroutine owned by the Server, in the
// order of the state changes, after the matching dispatch; they may call
// back into the Server.
//
// # REST
//
// Served under /api/v9 and /api/v10: GET /gateway, GET /gateway/bot,
// GET /users/@me, GET /guilds/{id}, GET and POST /guilds/{id}/channels,
// GET and DELETE /channels/{id}. Errors use Discord's JSON error shape
// ({"message", "code"}, plus "errors" for 50035 Invalid Form Body). Every
// answer carries well-formed X-RateLimit-* headers from a real per-route
// limiter (see ratelimit.go for the emulator's limits, which Discord does
// not publish) and a global limit of 50 requests per second; Script429 forces
// one.
//
// # Control surface
//
// Tests shape the guild (AddMember, CreateChannel, DeleteChannel,
// SetVoiceState, SetManageChannels), inject faults on the current connection
// (DropConnection, SetHeartbeatACK, RequestHeartbeat, SendReconnect,
// SendInvalidSession, CloseWithCode, SendVoiceServerUpdate, Script429), read
// what the bot did (Sent, RESTCalls, Connections, Stats) and wait for it
// without sleeping (WaitFor).
//
// There is one session at a time: a new identify ends the previous
// session and drops the connection carrying it.
package discordemu
