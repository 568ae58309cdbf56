// Package voicetest is the voice half of the Discord emulator: a voice
// gateway (v8) over TLS, the UDP media socket with IP discovery and
// transport encryption, a relay between the members of a voice channel,
// simulated members that speak the media protocol in process, and faults
// for tests.
//
// It is built from Discord's public documentation ("Voice Connections" and
// "Opcodes and Status Codes" in discord/discord-api-docs) and the
// project's fact sheet, and shares no code with package voice, the client
// it tests: two independent readings of the same documents have to agree
// for the tests to pass.
//
// # Lifecycle
//
// The gateway emulator calls Allocate when a bot asks to join a channel
// (main gateway op 4) and hands the returned endpoint and token to the bot
// as VOICE_SERVER_UPDATE. The bot then connects to wss://ENDPOINT/?v=8:
//
//	server -> Hello (op 8, heartbeat_interval)
//	client -> Identify (op 0) or Resume (op 7)
//	server -> Ready (op 2: ssrc, ip, port, modes, streams)
//	client -> UDP IP discovery (74 bytes), then Select Protocol (op 1)
//	server -> Session Description (op 4: mode, secret_key)
//	both   -> Speaking (op 5), Heartbeat (op 3) / ACK (op 6)
//
// Every message the server sends after Identify carries a top-level seq
// and is kept in a per-session buffer, so a client that lost its socket
// can Resume with seq_ack and have the missed messages replayed after
// Resumed (op 9).
//
// # Media
//
// Each RTP packet a client sends is decrypted with its session key,
// given the header extension Discord's SFU adds, re-encrypted with each
// receiver's key and mode and sent to every other member of the channel.
// Simulated members (AddMember) packetize Opus and VP8 (RFC 7741) into the
// same path and receive what clients send. Loss, reordering and
// duplication can be applied to what reaches real clients, with counts in
// Stats.
//
// # Transport encryption on RTCP
//
// Discord's documentation describes encryption for RTP only. This server
// treats the first 8 bytes of an RTCP packet (header and sender SSRC) as
// its clear header in every mode: the additional data in the rtpsize
// modes, and the bytes zero-padded into the nonce in xsalsa20_poly1305.
//
// # DAVE
//
// The server offers DAVE protocol version 0 (transport encryption only) in
// Session Description. Options.RequireDAVE closes clients that cannot do
// DAVE with 4017, and Stats.PlaintextOpusSeen counts Opus payloads that
// are not DAVE frames. The external sender of the MLS group will hook in
// at session.handleDAVE (client opcodes 23, 26, 28, 31) and send through
// session.sendBinary, which already frames server-to-client binary
// messages with their sequence number.
package voicetest
