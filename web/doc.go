// Package web is the bridge's own page: plain HTML, CSS and JavaScript
// modules embedded in the binary and served by [Handler]. There is no build
// step and nothing is fetched from elsewhere; the page talks only to the
// bridge that served it (the room REST API, the /api/ws hub and signaling
// socket, and WebRTC media).
//
// # The page
//
// static/index.html holds every view; app.js behind it holds the views (sign
// in, unreachable, rooms, device check, call) and what moves between them.
// Everything that talks to the bridge is the browser SDK, sdk/bridge.js
// (served at /sdk/bridge.js, an npm package of its own with its TypeScript
// declarations): api.js, hub.js, call.js and media.js are the SDK's REST
// calls, socket, call and device helpers under the names the page uses, and
// ui.js holds small DOM helpers and the words shown for states and errors.
// The bridge's own browser tests therefore exercise the SDK.
//
// The protocol is docs/protocol.md, with every /api/ws message in
// sdk/protocol.schema.json (ProtocolSchema).
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
