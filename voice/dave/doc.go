// Package dave implements Discord's audio/video end-to-end encryption
// protocol, DAVE v1 (whitepaper: github.com/discord/dave-protocol,
// protocol.md; reference implementations: discord/libdave and
// Snazzah/davey; our notes: docs/dave.md).
//
// The package has two layers.
//
// The frame layer is independent of MLS. A HashRatchet turns a sender's
// 16-byte base secret into per-generation AES-128 keys (RFC 9420 §9.1
// style). An Encryptor turns a codec frame into a DAVE frame: AES-128-GCM
// with the tag truncated to 8 bytes, a ULEB128 truncated nonce, the
// unencrypted ranges the codec's packetizer needs (none for Opus, the VP8
// payload header for VP8), a supplemental size byte and the FA FA marker.
// A Decryptor reverses it for one sender, enforcing the receiver's frame
// check, generation window, replay protection and key expiry, and passes
// non-DAVE frames only while passthrough is allowed. DisplayableCode,
// VoicePrivacyCode and PairwiseFingerprint produce the codes people
// compare.
//
// The session layer (Session) runs the member side of the voice-gateway
// protocol: the voice client calls Start with the protocol version of the
// Session Description, passes DAVE JSON ops (11, 13, 21, 22, 24) to
// HandleJSON and binary ops (25, 27, 29, 30) to HandleBinary, sends back
// the Outbound messages they return (ops 23, 26, 28, 31), and runs every
// codec frame through EncryptFrame and DecryptFrame. The MLS group lives in
// package voice/mls; media keys come from its exporter.
//
// ExternalSender is the voice server's half, for the emulator: the op 25
// identity, signed Add and Remove proposals (op 27), and vetting of op 28
// commits with the server's leaf bookkeeping. It reads the few MLS
// structures it needs itself (mlswire.go), since a server holds no group
// state. voice/dave/interop tests both halves against @snazzah/davey.
//
// Encryptor and Decryptor are not safe for concurrent use; Session
// serializes access to them.
package dave
