// Package voiceemu is the voice half of the Discord emulator: a voice
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
// A close with 4006 or 4009 invalidates the voice session id: Identify
// with it gets 4006 until the main gateway renews it (Renew, on a
// repeated op 4); a new allocation closes a live session with 4014 (a
// voice server move). Blackhole makes a websocket a zombie that loses
// everything both ways until the client gives up on it.
//
// Every message the server sends after Identify carries a top-level seq
// and is kept in a per-session buffer, so a client that lost its socket
// can Resume with seq_ack and have the missed messages replayed after
// Resumed (op 9).
//
// # Media
//
// Each RTP packet a client sends is decrypted with its session key,
// refused when Select Protocol did not declare its payload type (its
// codecs are checked against Discord's table) or, for Opus, when the
// connection sent no Speaking (op 5) within a second (close 4002), given
// a header extension that varies as Discord's SFU's does, re-encrypted with each
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
// The server is the delivery service and external sender of each
// channel's DAVE v1 group (DAVE whitepaper; the project's docs/dave.md,
// "The voice server as external sender"), built on package voice/dave. A
// channel runs protocol version 1 while every participant supports it:
// clients whose Identify offers max_dave_protocol_version >= 1, and all
// simulated members. Options.RequireDAVE closes other clients with 4017;
// otherwise such a client joins at version 0 and the channel downgrades.
// Options.DisableDAVE serves version 0 to everyone. Session Description's
// dave_protocol_version tells each client its version.
//
// Per channel, with one ECDSA P-256 external sender key for the channel's
// life:
//
//   - A DAVE participant gets op 25 (external sender) right after Session
//     Description. Op 11 (Clients Connect) about a user always precedes
//     any Add proposal for it.
//   - Key packages (op 26, bare or wrapped) are validated (signature,
//     basic credential equal to the session's user id, lifetime) and
//     proposed as Adds (op 27). While no group exists every pending member
//     gets the other pending members' Adds, and a late joiner the Adds
//     already sent; once it exists, Adds go to its members. A new key
//     package from a pending member revokes its earlier Add (op 27
//     revoke).
//   - The first valid commit (op 28) of the epoch wins: the group's
//     members get op 29 (announce), each added member op 30 with its own
//     Welcome, under a new transition id (a 16-bit counter that skips 0).
//     Other commits are counted and ignored. When every member of the
//     transition has sent op 23, or after Options.TransitionTimeout
//     (default 2 s), op 22 executes it. A newer commit supersedes a
//     transition still waiting.
//   - A member who leaves is proposed for removal; its pending proposals
//     are revoked. When one DAVE participant is left with an established
//     group, or none of the group's members is connected any more, the
//     group is reset: op 24 (version 1, epoch 1) to each, plus op 21 with
//     transition 0 to a participant alone ("Sole member reset").
//   - Op 31 (invalid commit or welcome): the member is proposed for
//     removal and added again with the key package it sends next.
//   - Downgrade: a client without DAVE joins a version 1 channel. The DAVE
//     participants get op 21 (version 0, a new transition id), op 22
//     follows their op 23 (or the timeout), and the group is dropped.
//   - Upgrade: the last client without DAVE leaves. The DAVE participants
//     get op 25 and op 24 (version 1, epoch 1), send key packages, and a
//     new group is created as at first; its first transition switches them
//     to DAVE. A participant alone also gets op 21 with transition 0.
//
// Binary messages are framed (uint16 sequence number, opcode, payload) and
// kept for resume like JSON ones. Server.DAVE shows the server's view of a
// group, and CorruptNextWelcome makes a member recover through op 31.
//
// Simulated members are DAVE members: each has a dave.Session fed the
// same messages in process, whose answers the server handles as a
// client's. Their frames are DAVE-encrypted before packetization and
// DAVE-decrypted after reassembly, so ReceivedOpus, ReceivedVP8 and OnOpus
// see plaintext and the relay only ever carries DAVE frames.
// Stats.PlaintextOpusSeen counts the Opus frames the relay could read
// from participants bound to DAVE; it must stay 0.
package voiceemu
