package web_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/voicebridge/bridge/web/webtest"
)

// docSection is one "### `type`" section of docs/protocol.md.
type docSection struct {
	text     string
	examples [][]byte
}

// readProtocolDoc splits docs/protocol.md into its message sections by
// direction ("## Client to server", "## Server to client").
func readProtocolDoc(t *testing.T) map[webtest.Direction]map[string]*docSection {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[webtest.Direction]map[string]*docSection{webtest.Client: {}, webtest.Server: {}}
	heading := regexp.MustCompile("^### `([a-z-]+)`$")
	var dir webtest.Direction
	var cur *docSection
	var block *bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case block != nil && line == "```":
			cur.examples = append(cur.examples, bytes.Clone(block.Bytes()))
			block = nil
		case block != nil:
			block.WriteString(line)
		case strings.HasPrefix(line, "## "):
			cur = nil
			switch line {
			case "## Client to server":
				dir = webtest.Client
			case "## Server to client":
				dir = webtest.Server
			default:
				dir = ""
			}
		case dir != "" && heading.MatchString(line):
			typ := heading.FindStringSubmatch(line)[1]
			if out[dir][typ] != nil {
				t.Errorf("protocol.md: %s message %q has two sections", dir, typ)
			}
			cur = &docSection{}
			out[dir][typ] = cur
		case cur != nil && line == "```json":
			block = &bytes.Buffer{}
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	return out
}

// fieldNames lists a message definition's property names.
func fieldNames(t *testing.T, def json.RawMessage) []string {
	t.Helper()
	var d struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(def, &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range d.Properties {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestProtocolDocMatchesSchema: docs/protocol.md has a section for every
// message of the schema and no other, names every field of it, and every
// example in it validates against the message's schema.
func TestProtocolDocMatchesSchema(t *testing.T) {
	p, err := webtest.NewProtocol()
	if err != nil {
		t.Fatal(err)
	}
	doc := readProtocolDoc(t)
	for _, dir := range []webtest.Direction{webtest.Client, webtest.Server} {
		var documented []string
		for typ := range doc[dir] {
			documented = append(documented, typ)
		}
		slices.Sort(documented)
		if want := p.Types(dir); !slices.Equal(documented, want) {
			t.Errorf("protocol.md documents %s messages %v; the schema has %v", dir, documented, want)
		}
		for _, typ := range p.Types(dir) {
			sec := doc[dir][typ]
			if sec == nil {
				continue
			}
			for _, f := range fieldNames(t, p.Definition(dir, typ)) {
				if !strings.Contains(sec.text, "`"+f+"`") {
					t.Errorf("protocol.md, %s %q: field `%s` is not mentioned", dir, typ, f)
				}
			}
			if len(sec.examples) == 0 {
				t.Errorf("protocol.md, %s %q: no example", dir, typ)
			}
			for _, ex := range sec.examples {
				if err := p.Check(dir, ex); err != nil {
					t.Errorf("protocol.md, %s %q: example does not validate: %v", dir, typ, err)
				}
				var m struct{ Type string }
				if json.Unmarshal(ex, &m) == nil && m.Type != typ {
					t.Errorf("protocol.md, %s %q: example is a %q message", dir, typ, m.Type)
				}
			}
		}
	}
}

// TestProtocolSchemaExamples: every message definition has examples, of
// its own type, that validate.
func TestProtocolSchemaExamples(t *testing.T) {
	p, err := webtest.NewProtocol()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []webtest.Direction{webtest.Client, webtest.Server} {
		for _, typ := range p.Types(dir) {
			var d struct {
				Examples []json.RawMessage `json:"examples"`
				Props    struct {
					V json.RawMessage `json:"v"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(p.Definition(dir, typ), &d); err != nil {
				t.Fatal(err)
			}
			if len(d.Examples) == 0 {
				t.Errorf("%s %q has no examples", dir, typ)
			}
			if d.Props.V == nil {
				t.Errorf("%s %q does not describe \"v\"", dir, typ)
			}
			for _, ex := range d.Examples {
				if err := p.Check(dir, ex); err != nil {
					t.Errorf("%s %q example: %v", dir, typ, err)
				}
			}
		}
	}
}

// TestProtocolCheckRefuses: the checker the tests rely on refuses unknown
// types, unknown fields, missing fields and wrong values.
func TestProtocolCheckRefuses(t *testing.T) {
	p, err := webtest.NewProtocol()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dir webtest.Direction
		msg string
	}{
		{webtest.Client, `{"type":"hello"}`},
		{webtest.Client, `{"type":"join","roomId":"1","extra":true}`},
		{webtest.Client, `{"type":"join"}`},
		{webtest.Client, `{"type":"join","roomId":"lobby"}`},
		{webtest.Client, `{"type":"mute","muted":"yes"}`},
		{webtest.Client, `[1,2]`},
		{webtest.Client, `not json`},
		{webtest.Server, `{"type":"auth","token":"x"}`},
		{webtest.Server, `{"v":2,"type":"pong"}`},
		{webtest.Server, `{"v":1,"type":"event","event":"room.created","payload":{"channelId":"1","name":"a","guildId":"2"},"ts":1}`},
		{webtest.Server, `{"v":1,"type":"event","event":"room.exploded","payload":{},"ts":1}`},
		{webtest.Server, `{"type":"participant","roomId":"1","event":"joined","participant":{"id":"a","userId":"u","name":"n","kind":"robot","muted":false,"camera":false,"speaking":false,"tracks":[]}}`},
	} {
		if err := p.Check(c.dir, []byte(c.msg)); err == nil {
			t.Errorf("%s %s: accepted", c.dir, c.msg)
		}
	}
	if err := p.Check(webtest.Client, []byte(`{"type":"join","roomId":"1","id":"x"}`)); err != nil {
		t.Errorf("a good join refused: %v", err)
	}
}

// TestOpenAPIDocument: the served document is valid OpenAPI 3.1 and names
// every route the hub serves.
func TestOpenAPIDocument(t *testing.T) {
	o, err := webtest.NewOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	for path, method := range map[string]string{
		"/api/create-room": "POST", "/api/end-room/{channelId}": "DELETE", "/api/rooms": "GET",
		"/api/ws": "GET", "/api/internal/events": "POST", "/api/openapi.json": "GET",
		"/.well-known/jwks.json": "GET", "/api/dev/token": "POST", "/healthz": "GET", "/readyz": "GET",
	} {
		item := o.Doc().Paths.Find(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("openapi.json has no %s %s", method, path)
		}
	}
}
