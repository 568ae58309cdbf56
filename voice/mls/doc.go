// Package mls implements the part of Messaging Layer Security 1.0
// (RFC 9420) that Discord's DAVE protocol uses, for cipher suite 2
// (MLS_128_DHKEMP256_AES128GCM_SHA256_P256) only.
//
// A member creates a one-member group with NewGroup (or joins one with
// JoinFromWelcome), queues Add and Remove proposals sent by the group's
// external sender (the voice server) with ProcessProposal, commits them
// with Commit (a PublicMessage with an UpdatePath, plus a Welcome with the
// ratchet tree inlined for new members), and follows other members'
// commits with ProcessCommit. Export derives DAVE's per-sender media
// secrets; EpochAuthenticator is the voice privacy code's input.
//
// The package is organized as RFC 9420 is:
//
//   - codec.go: the TLS presentation language with varint vectors (§2.1.2)
//   - crypto.go: labeled derivation, signing and HPKE (§5), references (§5.2)
//   - keypackage.go: credentials, capabilities, LeafNode (§7.2), KeyPackage (§10)
//   - treemath.go, tree.go: the array-represented ratchet tree (§4, Appendix C),
//     resolutions, tree hashes (§7.8), parent hashes (§7.9), Add/Remove/Update
//   - treekem.go: UpdatePath generation, merge and decryption (§7.4-7.6)
//   - keyschedule.go: the key schedule, exporter and transcript hashes (§8)
//   - framing.go: PublicMessage, PrivateMessage and MLSMessage (§6)
//   - proposals.go, commit.go: proposals (§12.1) and commits (§12.2-12.4)
//   - messages.go, welcome.go: GroupContext, GroupInfo, Welcome, joining (§12.4.3)
//   - group.go, validate.go: group state and validation of what is received
//
// Not implemented, and rejected with ErrUnsupported where they appear:
// decrypting PrivateMessage (it parses and re-encodes only), the secret
// tree, ReInit, external commits and new-member senders. Update,
// PreSharedKey (external PSKs given with JoinOptions or AddExternalPSK,
// and resumption PSKs of this group's recent epochs) and
// GroupContextExtensions proposals from other members are applied when
// committed, so that groups using them can be followed, but this package
// never sends them.
//
// For DAVE: the caller inspects a proposal message (msg.Public.Content:
// sender, proposal type, the Add's identity) before ProcessProposal, and
// recognizes its own commit by comparing the received bytes with
// PendingCommit.Message before choosing ApplyPendingCommit over
// ProcessCommit.
//
// All errors wrap a sentinel from errors.go.
package mls
