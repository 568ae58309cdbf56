// Package voice is the bridge's own Discord voice client (pure Go, no
// cgo): the voice gateway v8, the UDP media socket with IP discovery,
// transport encryption, RTP for Opus and VP8, a reorder buffer per
// received stream, and the seam where DAVE end-to-end encryption plugs in.
//
// # Joining
//
// Client.Join sends op 4 through a Signaler (package gateway's client),
// waits for the bot's VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE, then
// connects to wss://ENDPOINT/?v=8: Hello, Identify, Ready, IP discovery
// on the UDP socket, Select Protocol (with the codec list: Opus 120, VP8
// 105 with RTX 106) and Session Description with the 32-byte key
// (Discord docs, topics/voice-connections). One goroutine (run) owns the
// session afterwards: it heartbeats with seq_ack, resumes (op 7) after a
// dropped socket, starts a new session when the close code table says so
// (opcodes.go, closeCodes), follows voice server moves, and ends with a
// Left event (4014, 4022, kicked) or a fatal Error (4016 no common
// encryption mode, 4017 DAVE required, ...). Close 4014 is final even
// though Discord also uses it when it moves a call to another server: a
// Left event lets the owner decide whether to Join again.
//
// # Media
//
// Transport encryption implements aead_aes256_gcm_rtpsize (preferred),
// aead_xchacha20_poly1305_rtpsize (always offered by Discord) and the
// discontinued xsalsa20_poly1305, _suffix and _lite modes for old
// servers and the emulator (crypto.go). Sending: SendOpus queues 20 ms
// frames to a pacer that runs on absolute deadlines of the monotonic
// clock, announces Speaking before the first packet, sends five silence
// frames before going quiet, keeps timestamps advancing across silence
// and marks the first packet after a gap. Receiving: one stream per SSRC,
// mapped to a user by ops 5, 11, 12 and 13; header extensions are
// stripped after decryption; a reorder buffer holds at most 60 ms; Frames
// reports in-order frames with how many were lost before each, for
// packet loss concealment. RTCP is authenticated and counted, never
// delivered as media.
//
// # DAVE
//
// FrameEncryptor and FrameDecryptor see codec frames before
// packetization and after depacketization; package voice/dave implements
// them. Without them the client identifies with
// max_dave_protocol_version 0, which real Discord has answered with
// close 4017 for non-Stage calls since March 2026.
//
// # Video
//
// The VP8 path (Identify video:true, op 12, VP8 payload descriptor per
// RFC 7741) exists for the protocol and the emulator. Real Discord does
// not let bots send camera video: the gateway discards self_video for
// bots and Discord clients do not show it. In a real deployment the
// Discord leg carries audio and presence; browser video goes between
// browsers through the bridge's own SFU.
package voice
