// Package session keeps what the bridge knows of one Discord guild: the
// rooms (voice channels under the configured category), who sits in which
// voice channel, and the user names seen so far.
//
// State is fed by the gateway client with dispatches (CHANNEL_CREATE,
// CHANNEL_UPDATE, CHANNEL_DELETE, VOICE_STATE_UPDATE) and with whole
// snapshots (GUILD_CREATE). Every update returns the Changes a consumer
// must apply to move from the old view to the new one, so a consumer that
// applies every Change in order ends with a view identical to State's.
//
// Reconcile is the snapshot path: after a fresh session (first start, or a
// new session after Invalid Session d:false), events that happened while
// the client was not connected were never dispatched. Reconcile compares
// the snapshot with what State held and returns the net difference: users
// who left or moved first, then rooms deleted, rooms created, and users
// who joined. Reconciling against an empty State (the very first
// GUILD_CREATE) therefore reports every existing room and member; that is
// deliberate, so a consumer that starts empty and a consumer that joins
// late (and lists rooms) see the same thing.
//
// State is safe for concurrent use; it never calls out while locked.
package session
