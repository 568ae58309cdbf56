// Package interop holds the cross-implementation test of voice/dave against
// @snazzah/davey (Rust, on OpenMLS), the DAVE library discord.js uses.
//
// peer.js drives a davey DAVESession over a line-based JSON protocol on
// stdin/stdout; the Go test plays the voice server (through
// dave.ExternalSender) and one member (dave.Session), and davey plays the
// other. Run `npm ci` in this folder first; without node_modules the test
// skips, except under CI=true where it fails.
package interop
