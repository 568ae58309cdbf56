// Package web is the bridge's own page: plain HTML, CSS and JavaScript
// modules embedded in the binary and served by [Handler]. There is no build
// step and nothing is fetched from elsewhere; the page talks only to the
// bridge that served it (the room REST API, the /api/ws hub and signaling
// socket, and WebRTC media).
//
// # The page
//
// static/index.html holds every view; the modules behind it are:
//
//   - app.js: the views (sign in, unreachable, rooms, device check, call)
//     and what moves between them.
//   - api.js: the REST calls (dev token, rooms, create, end) and their
//     errors in words.
//   - hub.js: the /api/ws socket: auth first, events, signaling messages,
//     reconnection with capped exponential backoff.
//   - call.js: one call: local media, the RTCPeerConnection as the polite
//     peer of perfect negotiation (WebRTC 1.0 §10.7), remote streams,
//     levels and statistics.
//   - media.js: the microphone and camera: permission, pickers, level meter.
//   - ui.js: small DOM helpers and the words shown for states and errors.
//
// The signaling messages are those of package media (media/signaling.go).
// Tests find controls by their data-testid attributes and read the call's
// state from window.__bridge, which holds nothing secret.
//
// # Headers
//
// Every file is served with its content type, Cache-Control: no-cache (a
// new binary's page is picked up at once; an ETag makes the revalidation
// cheap) and a Content-Security-Policy that allows only the page's own
// scripts, styles, media and its own origin's HTTP and WebSocket
// connections.
package web
