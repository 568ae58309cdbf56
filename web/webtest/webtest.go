// Package webtest checks traffic against the bridge's published protocol:
// REST answers against the OpenAPI 3.1 document of package hub, and
// /api/ws messages against the JSON Schema of package web
// (web/sdk/protocol.schema.json). The end-to-end and browser tests run
// every request and message they see through it, so the documents stay
// true.
//
// It uses independent validators, github.com/getkin/kin-openapi and
// github.com/santhosh-tekuri/jsonschema/v6, and only tests import it:
// the bridge binary does not link them.
package webtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/web"
)

// ErrViolation marks traffic that does not match the published protocol.
var ErrViolation = errors.New("webtest: protocol violation")

// Direction says who sent a /api/ws message.
type Direction string

// Directions of /api/ws messages; they are also the prefixes of the
// schema's message definitions ($defs/client.<type>, $defs/server.<type>).
const (
	Client Direction = "client"
	Server Direction = "server"
)

// Protocol validates /api/ws messages against the JSON Schema.
type Protocol struct {
	messages map[Direction]map[string]*jsonschema.Schema // by type
	defs     map[string]json.RawMessage
}

// schemaID is the $id of web/sdk/protocol.schema.json.
const schemaID = "urn:voicebridge:protocol:1"

// NewProtocol compiles the embedded schema.
func NewProtocol() (*Protocol, error) {
	raw := web.ProtocolSchema()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("webtest: protocol schema: %w", err)
	}
	var top struct {
		Defs map[string]json.RawMessage `json:"$defs"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("webtest: protocol schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(schemaID, doc); err != nil {
		return nil, fmt.Errorf("webtest: protocol schema: %w", err)
	}
	p := &Protocol{messages: map[Direction]map[string]*jsonschema.Schema{Client: {}, Server: {}}, defs: top.Defs}
	for name := range top.Defs {
		dir, typ, ok := strings.Cut(name, ".")
		if !ok || (Direction(dir) != Client && Direction(dir) != Server) {
			continue
		}
		s, err := c.Compile(schemaID + "#/$defs/" + name)
		if err != nil {
			return nil, fmt.Errorf("webtest: protocol schema %s: %w", name, err)
		}
		p.messages[Direction(dir)][typ] = s
	}
	for _, union := range []string{"ClientMessage", "ServerMessage"} {
		if _, err := c.Compile(schemaID + "#/$defs/" + union); err != nil {
			return nil, fmt.Errorf("webtest: protocol schema %s: %w", union, err)
		}
	}
	return p, nil
}

// Types lists the message types of one direction, sorted.
func (p *Protocol) Types(dir Direction) []string {
	out := make([]string, 0, len(p.messages[dir]))
	for t := range p.messages[dir] {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Definition is the raw JSON Schema of one message ($defs/<dir>.<type>).
func (p *Protocol) Definition(dir Direction, typ string) json.RawMessage {
	return p.defs[string(dir)+"."+typ]
}

// Check validates one message: a JSON object whose "type" is a message of
// dir, with no field its schema does not name.
func (p *Protocol) Check(dir Direction, msg []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("%w: %s message is not JSON: %v: %.200s", ErrViolation, dir, err, msg)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: %s message is not a JSON object: %.200s", ErrViolation, dir, msg)
	}
	typ, _ := obj["type"].(string)
	s := p.messages[dir][typ]
	if s == nil {
		return fmt.Errorf("%w: unknown %s message type %q: %.200s", ErrViolation, dir, typ, msg)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%w: %s message %q: %s: %.300s", ErrViolation, dir, typ, schemaErrors(err), msg)
	}
	return nil
}

// schemaErrors lists the leaf failures of a validation error, each with
// where in the message it is.
func schemaErrors(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	var out []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, "/"+strings.Join(e.InstanceLocation, "/")+": "+e.ErrorKind.LocalizedString(printer))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return strings.Join(out, "; ")
}

var printer = message.NewPrinter(language.English)

// OpenAPI validates REST answers against the OpenAPI document.
type OpenAPI struct {
	doc    *openapi3.T
	router routers.Router
}

// NewOpenAPI loads the document served at /api/openapi.json and checks
// that it is a valid OpenAPI 3.1 document.
func NewOpenAPI() (*OpenAPI, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(hub.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("webtest: openapi.json: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() || !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		return nil, fmt.Errorf("webtest: openapi.json says openapi %q, want 3.1.x", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("webtest: openapi.json is not valid OpenAPI 3.1: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("webtest: openapi.json routes: %w", err)
	}
	return &OpenAPI{doc: doc, router: router}, nil
}

// Doc is the loaded document.
func (o *OpenAPI) Doc() *openapi3.T { return o.doc }

// IsAPIPath reports whether path is one the bridge's API serves (what
// cmd/bridge routes to the hub), as opposed to the page and the SDK.
func IsAPIPath(path string) bool {
	return strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/.well-known/") || path == "/healthz" || path == "/readyz"
}

// CheckResponse validates one answer to req. A request the document has
// no operation for is a violation too, unless the answer is the hub's
// JSON 404 or 405 for a path or method it does not serve.
func (o *OpenAPI) CheckResponse(req *http.Request, status int, header http.Header, body []byte) error {
	// The document's server is "/": match on the path alone.
	r := req.Clone(context.Background())
	r.URL.Scheme, r.URL.Host, r.Host = "", "", ""
	route, params, err := o.router.FindRoute(r)
	if err != nil {
		if (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) && o.isError(body) {
			return nil
		}
		return fmt.Errorf("%w: %s %s: no operation in openapi.json (%v), answered %d", ErrViolation, req.Method, req.URL.Path, err, status)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: r, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status:  status,
		Header:  header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%w: %s %s answered %d: %v: %.300s", ErrViolation, req.Method, req.URL.Path, status, err, body)
	}
	return nil
}

// isError reports whether body is the hub's error body.
func (o *OpenAPI) isError(body []byte) bool {
	s := o.doc.Components.Schemas["Error"]
	if s == nil || s.Value == nil {
		return false
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return false
	}
	return s.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()) == nil
}

// Transport is an http.RoundTripper that validates every answer to a
// request for an API path that Check accepts (nil: all); a violation is
// the round trip's error, and is also passed to Report.
type Transport struct {
	API    *OpenAPI
	Next   http.RoundTripper
	Check  func(*http.Request) bool
	Report func(error)
}

// CloseIdleConnections passes on to Next, so http.Client.CloseIdleConnections
// still drops the keep-alive connections of a validated client.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.Next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.Next.RoundTrip(req)
	if err != nil || !IsAPIPath(req.URL.Path) || (t.Check != nil && !t.Check(req)) {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := t.API.CheckResponse(req, resp.StatusCode, resp.Header, body); err != nil {
		if t.Report != nil {
			t.Report(err)
		}
		return nil, err
	}
	return resp, nil
}
