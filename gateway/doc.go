// Package gateway is the bridge's connection to Discord: a client for the
// main gateway (v10, JSON encoding, on gorilla/websocket, with discordgo's
// data types) and the room service over Discord's REST API.
//
// # Gateway client
//
// Client follows Discord's documented connection life cycle (Discord docs,
// Gateway, Connection Lifecycle): GET /gateway/bot for the URL and the
// identify limits, Hello, heartbeats (first after interval × jitter,
// zombie detection on a missing ACK), Identify with intents, READY
// (session_id, resume_gateway_url), and on any drop a Resume on
// resume_gateway_url with the last sequence number. Dispatches replayed
// after a Resume whose sequence was already processed are dropped, so each
// reaches the state exactly once. The reconnection policy is data: the
// close-code table in opcodes.go says which codes are fatal (4004,
// 4010-4014: the client stops, Status().Fatal, no retry), which need a
// new session (4007, 4009) and which may resume. Op 7 resumes; op 9 d:true
// resumes, d:false waits 1-5 s and identifies anew. Reconnects back off
// with capped, jittered exponential delays; Identify is spaced by
// max_concurrency. The client closes its sockets with non-1000 codes, so
// Discord keeps the session for a Resume.
//
// A bot in many guilds must shard (Gateway, Sharding): the client
// identifies as the one shard that carries its guild, [(guild_id >> 22) %
// num_shards, num_shards], with num_shards from Options.Shards or GET
// /gateway/bot; a close 4011 (sharding required) with the count left to
// Discord asks GET /gateway/bot again and identifies with the new count.
//
// Package pool (gateway/pool) holds several bots, one Client each.
//
// One goroutine owns the session and the connection; a reader goroutine
// per connection feeds it frames. Room events go through an unbounded
// queue to one more goroutine that calls Options.OnEvent, in order, never
// under a lock, so a slow consumer cannot stall heartbeats.
//
// # Room state and events
//
// The client keeps the guild's rooms (voice channels under the configured
// category) and who is in which voice channel (package session), and
// reports room.created, room.deleted, voice.joined and voice.left. A move
// between channels is voice.left then voice.joined; a voice state update
// that keeps the channel (mute, deafen) reports nothing. Every GUILD_CREATE
// of the guild (after each Identify: first start, and after a session was
// invalidated) is reconciled against the held state and reports the net
// difference, so consumers never miss a join or leave that happened while
// the client was disconnected. At first start that difference is every
// existing room and member: consumers that start empty end up with the
// same view as those that list rooms. The bot itself is a voice member
// like any other: when it joins a room to relay audio, consumers see it.
//
// The bot's own VOICE_STATE_UPDATE and every VOICE_SERVER_UPDATE go to
// SubscribeVoice subscribers (the voice client); UpdateVoiceState sends
// op 4 within the gateway's send limit, keeping room for heartbeats.
//
// # Rooms
//
// Rooms creates, ends and lists rooms through a discordgo Session that is
// never opened. Its HTTP client rewrites discordgo's fixed
// https://discord.com/api/v9 URLs to APIBase, so the same code talks to
// Discord and to the emulator in gateway/discordemu. A 429 is retried
// once after retry_after, then reported as ErrRateLimited; 401/403 are
// never retried.
package gateway
