// Package voice is the bridge's own Discord voice client (pure Go, no
// cgo): the voice gateway v8, the UDP media socket with IP discovery,
// transport encryption, RTP for Opus and VP8, a reorder buffer per
// received stream, and the seam where DAVE end-to-end encryption plugs in.
//
// # Joining
//
// Client.Join sends op 4 through a Signaler (the main gateway client, in
// cmd/bridge through a small adapter: this package declares its own
// VoiceUpdate and does not import package gateway), waits for the bot's
// VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE, then connects to
// wss://ENDPOINT/?v=8: Hello, Identify, Ready, IP discovery on the UDP
// socket, Select Protocol and Session Description with the 32-byte key
// (Discord docs, topics/voice-connections). One goroutine (run) owns the
// session afterwards: it heartbeats with seq_ack, resumes (op 7) after a
// dropped socket, starts a new session when the close code table says so
// (opcodes.go, closeCodes), follows voice server moves, and ends with a
// Left event (4022, or a VOICE_STATE_UPDATE with a null channel) or a
// fatal Error (4016 no common encryption mode, 4017 DAVE required, ...).
//
// A new session keeps the newest voice state and server update and
// reconnects on whichever answers the repeated op 4: Discord answers a
// join of the channel the bot is in with only one of the two, often only
// the voice state. Leaving and joining again, which brings both, is the
// last resort. Close 4014 waits Options.ServerUpdateWait for a voice
// update: Discord sends it both when the bot was removed (a voice state
// with a null channel follows: Left) and when it moved the bot or its
// voice server (a server update follows: connect there); without either
// it starts a new session.
//
// # Media
//
// Transport encryption implements aead_aes256_gcm_rtpsize (preferred),
// aead_xchacha20_poly1305_rtpsize (always offered by Discord) and the
// discontinued xsalsa20_poly1305, _suffix and _lite modes for old
// servers and the emulator (crypto.go). Sending: SendOpus queues 20 ms
// frames to a pacer that runs on absolute deadlines of the monotonic
// clock, sends Speaking (op 5, speaking 1) before the audio of every talk
// spurt on every gateway connection (after each connect and resume),
// sends five silence frames and then speaking 0 before going quiet, keeps timestamps advancing across silence
// and marks the first packet after a gap. Receiving: one stream per SSRC,
// mapped to a user by ops 5, 11, 12 and 13; header extensions are
// stripped after decryption; a reorder buffer holds at most 60 ms; Frames
// reports in-order frames with how many were lost before each, for
// packet loss concealment. RTCP is authenticated and counted, never
// delivered as media.
//
// # DAVE
//
// The client speaks DAVE v1, Discord's end-to-end encryption (required
// for non-Stage calls since March 2026, close 4017 otherwise), through
// package voice/dave (dave.go). Identify offers max_dave_protocol_version
// dave.ProtocolVersion; each new voice session (first join, a new session
// after a failed resume, a voice server move) gets a new dave.Session for
// our user id and the voice channel id, started with Session
// Description's dave_protocol_version; a resume keeps it. Ops 11, 13, 21,
// 22 and 24 (JSON) and the binary server frames 25, 27, 29 and 30
// (`u16 seq | u8 op | payload`, whose seq counts for seq_ack like any
// other) go to the session, and what it answers goes back: ops 23 and 31
// as JSON, 26 and 28 as binary `u8 op | payload` (client frames carry no
// seq). Unreadable DAVE messages are reported as non-fatal Error events.
//
// Codec frames pass through the session at the FrameEncryptor and
// FrameDecryptor seam: before packetization and after depacketization.
// The pacer encrypts each audio frame just before it goes out, with the
// session of the transport it goes out on, so no frame can slip out in
// clear across a transition. While a DAVE protocol is in force, a frame
// that cannot be encrypted (no key yet: the group is forming, or we were
// removed) is dropped and counted in Stats.DAVE, never sent; its 20 ms
// still advance the RTP timestamp and the next packet is marked. The
// Opus silence frame always goes out unencrypted, as DAVE says. Received
// frames are decrypted per sender user id (SSRCs mapped by ops 5, 11,
// 12 and 13; frames of an SSRC no user is known for yet wait, as without
// DAVE); frames that fail, plaintext after an upgrade's grace period
// included, are dropped and counted per stream and per sender.
//
// Conn.PrivacyCode, Conn.DAVEVersion and Conn.VerificationCode expose
// the session; a PrivacyCodeChanged event reports each new epoch's code
// (and "" when encryption stops) so a UI can show it.
//
// Options.Encryptor and Options.Decryptor, when set, replace the session
// for their direction (the session still runs the gateway protocol);
// Options.DisableDAVE identifies with max_dave_protocol_version 0 and
// ignores DAVE messages, as before DAVE, for servers and tests that run
// without it.
//
// # Video
//
// The VP8 path (Identify video:true with streams, Select Protocol codecs:
// Opus 120, VP8 105 with RTX 106, op 12, VP8 packetized by pion's
// VP8Payloader per RFC 7741) is undocumented and goes only with
// Options.Video, for servers known to accept it such as the emulator.
// Real Discord does not let bots send camera video: the gateway discards
// self_video for bots and Discord clients do not show it. In a real
// deployment the Discord leg carries audio and presence; browser video
// goes between browsers through the bridge's own SFU.
package voice
