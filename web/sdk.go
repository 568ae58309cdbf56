package web

import "embed"

// sdkFiles is the browser SDK, laid out as its npm package (web/sdk):
// served under /sdk/ so that an app's pages import /sdk/bridge.js from
// the bridge they talk to.
//
//go:embed sdk
var sdkFiles embed.FS

// ProtocolSchema returns the JSON Schema (draft 2020-12) of every
// /api/ws message, web/sdk/protocol.schema.json, served at
// /sdk/protocol.schema.json.
func ProtocolSchema() []byte {
	b, err := sdkFiles.ReadFile("sdk/protocol.schema.json")
	if err != nil {
		// The file is embedded at build time; a build without it fails.
		return nil
	}
	return b
}
