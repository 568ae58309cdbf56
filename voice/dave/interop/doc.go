// Package interop holds the cross-implementation tests of voice/dave and
// the voice emulator against @snazzah/davey (Rust, on OpenMLS), the DAVE
// library discord.js uses.
//
// peer.js drives a davey DAVESession over a line-based JSON protocol on
// stdin/stdout, and Peer (StartPeer) is the one Go driver of it: the MLS
// interop test in voice/mls uses it too. The bridge binary does not import
// this package. Three tests here use it:
//
//   - TestExternalSenderWithDavey: our external sender (dave.ExternalSender)
//     against davey members only.
//   - TestSessionWithDavey: our dave.Session and davey in one group, the
//     test playing the server message by message.
//   - TestEmulatorCallWithDavey: davey members (daveyEngine, the voice
//     gateway layer of @discordjs/voice around davey) and our members in
//     one channel of the voice emulator, which requires DAVE and is the
//     external sender; media flows all along.
//
// Run `npm ci` in this folder first; without node_modules the tests skip,
// except under CI=true where they fail.
package interop
