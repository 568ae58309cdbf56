package hub

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 description of every route of Handler,
// served at GET /api/openapi.json. The end-to-end tests validate every
// REST answer they get against it, so it stays true.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document served at /api/openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// serveOpenAPI answers GET /api/openapi.json.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// The document describes routes, not secrets: any origin's tools may
	// read it.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(openAPI)
}
