// Package hub is the bridge's HTTP API: what browsers and other services
// talk to.
//
// Routes (Hub.Handler):
//
//	POST   /api/create-room            {"name","userLimit"} → 201 Room     (bearer JWT; 429 room_limit past RoomsPerHour)
//	DELETE /api/end-room/{channelId}   → 204                               (bearer JWT; creator or admin, else 403 not_room_owner)
//	GET    /api/rooms                  → {"rooms":[Room with members]}    (bearer JWT; canEnd per caller)
//	GET    /api/ws                     WebSocket event hub (auth as first message)
//	GET    /api/openapi.json           this list as OpenAPI 3.1 (openapi.json)
//	POST   /api/internal/events        HMAC-signed events to broadcast (when HMACSecret is set)
//	GET    /.well-known/jwks.json      dev auth public key (DevAuth only)
//	POST   /api/dev/token              {"name","roles"} → {"token",...}    (DevAuth only)
//	GET    /healthz                    200 "ok"
//	GET    /readyz                     200/503 {"ready","reasons"}; "operator" with OperatorToken
//
// Every error answer is {"error":{"code","message"}} with "field" when a
// body field was at fault.
//
// Tokens are compact JWS signed with RS256 or ES256 only, with a kid found
// in the identity provider's JWKS (Verifier, auth.go; jwks.go). A token of
// a known key verifies without network or any lock a fetch holds; an
// unknown kid starts at most one background fetch per MinRefetchInterval,
// which only such tokens wait for, within their context. A 401 says what
// was wrong (PublicReason) without quoting the token. DevAuth is a
// throwaway provider for local use that serves its own key set.
//
// Who may do what (access.go): a room's creator or a user whose token
// carries Options.AdminRole in Options.AdminClaim may end it; each user
// may create RoomsPerHour rooms an hour and hold SocketsPerUser sockets.
// Every answer carries X-Content-Type-Options: nosniff.
//
// The event hub: a client opens /api/ws (its Origin checked against
// Options.AllowedOrigins), sends {"type":"auth","token":...} within
// AuthTimeout and gets {"v":1,"type":"ack","event":"auth.ok",...}. From
// then on it receives every Publish as
// {"v":1,"type":"event","event":...,"payload":...,"ts":<unix ms>}. The
// connection closes with CloseUnauthorized (4401) when the token expires,
// unless the client sends a fresh auth before. Client messages are JSON
// objects with a "type"; HandleMessage lets other packages (WebRTC
// signaling) take types of their own, and answer through Client.Send.
//
// Each client has a reader and a writer goroutine and a send queue bounded
// in bytes: Publish encodes an event once, queues the same bytes for every
// client and never waits. A client more than SendQueueBytes behind is
// closed with CloseSlowClient (4408) and its queue dropped; the others
// never notice. The kernel's share of the backlog is capped too
// (Options.SocketSendBuffer).
//
// Close codes on /api/ws: 4401 unauthorized (no auth in time, first message
// not auth, bad token, token expired), 4408 too slow, 4400 too many bad
// messages, 4429 too many sockets for the user, 1009 message too big, 1001
// server shutting down. Malformed and
// unknown-type messages get {"v":1,"type":"error","error":{"code","message"}}
// with the message's "id" echoed.
//
// Package gateway implements Rooms (adapted in cmd); hub does not import it.
package hub
