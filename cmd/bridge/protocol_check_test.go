package main

// Every REST answer and /api/ws message of this package's tests is checked
// against the published protocol (package webtest): the OpenAPI document
// served at /api/openapi.json and the JSON Schema of web/sdk. Go clients
// are checked through http.DefaultClient and websocket.DefaultDialer, which
// the tests use; Chromium's traffic through the DevTools protocol
// (watchTab). A violation fails the request or message that carried it,
// the test that saw it, and the package's run (TestMain).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/web/webtest"
)

var (
	protocol *webtest.Protocol
	openAPI  *webtest.OpenAPI

	violationsMu sync.Mutex
	violations   []string

	// invalidOnPurpose holds client messages a test sends to see them
	// refused; the checker lets them pass.
	invalidMu        sync.Mutex
	invalidOnPurpose = map[string]bool{}
)

// discordREST is the emulated Discord's REST API, which shares the
// loopback hosts and the /api/ prefix with the bridge.
var discordREST = regexp.MustCompile(`^/api/v[0-9]+/`)

func init() {
	var err error
	if protocol, err = webtest.NewProtocol(); err != nil {
		panic(err)
	}
	if openAPI, err = webtest.NewOpenAPI(); err != nil {
		panic(err)
	}
	http.DefaultClient.Transport = &webtest.Transport{
		API: openAPI, Next: http.DefaultTransport, Report: violation,
		Check: func(r *http.Request) bool { return isLoopbackHost(r.URL.Host) && !discordREST.MatchString(r.URL.Path) },
	}
	websocket.DefaultDialer.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return protocol.Conn(c, "/api/ws", sentOnPurpose, violation), nil
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	violationsMu.Lock()
	if len(violations) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d protocol violations:\n  %s\n", len(violations), strings.Join(violations, "\n  "))
		code = 1
	}
	violationsMu.Unlock()
	os.Exit(code)
}

func violation(err error) {
	violationsMu.Lock()
	violations = append(violations, err.Error())
	violationsMu.Unlock()
}

func isLoopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// sendInvalidOnPurpose marks msg, which a test is about to send to see it
// refused, as exempt from the schema check.
func sendInvalidOnPurpose(msg any) {
	b, err := json.Marshal(msg)
	if err != nil {
		panic(err)
	}
	invalidMu.Lock()
	invalidOnPurpose[string(b)] = true
	invalidMu.Unlock()
}

func sentOnPurpose(msg []byte) bool {
	invalidMu.Lock()
	defer invalidMu.Unlock()
	return invalidOnPurpose[string(bytes.TrimSpace(msg))]
}

// watchTab checks the tab's /api/ws messages and the REST answers it
// gets from a loopback bridge, through the DevTools network events.
func watchTab(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("watch tab: enable network events: %v", err)
	}
	var (
		mu      sync.Mutex
		sockets = map[network.RequestID]bool{} // /api/ws sockets of the tab
		pending = map[network.RequestID]*http.Request{}
		answers = map[network.RequestID]*network.Response{}
		done    bool
		bodies  sync.WaitGroup
	)
	fail := func(err error) {
		violation(err)
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Errorf("%v", err)
		}
	}
	check := func(dir webtest.Direction, id network.RequestID, data []byte) {
		mu.Lock()
		on := sockets[id]
		mu.Unlock()
		if on {
			if err := protocol.Check(dir, data); err != nil {
				fail(err)
			}
		}
	}
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *network.EventWebSocketCreated:
			if u, err := url.Parse(ev.URL); err == nil && u.Path == "/api/ws" && isLoopbackHost(u.Host) {
				mu.Lock()
				sockets[ev.RequestID] = true
				mu.Unlock()
			}
		case *network.EventWebSocketFrameSent:
			if ev.Response.Opcode == 1 {
				check(webtest.Client, ev.RequestID, ev.Response.PayloadData)
			}
		case *network.EventWebSocketFrameReceived:
			if ev.Response.Opcode == 1 {
				check(webtest.Server, ev.RequestID, ev.Response.PayloadData)
			}
		case *network.EventRequestWillBeSent:
			u, err := url.Parse(ev.Request.URL)
			if err != nil || !isLoopbackHost(u.Host) || !webtest.IsAPIPath(u.Path) || discordREST.MatchString(u.Path) || u.Path == "/api/ws" {
				return
			}
			r, err := http.NewRequest(ev.Request.Method, ev.Request.URL, nil)
			if err != nil {
				return
			}
			mu.Lock()
			pending[ev.RequestID] = r
			mu.Unlock()
		case *network.EventResponseReceived:
			mu.Lock()
			if pending[ev.RequestID] != nil {
				answers[ev.RequestID] = ev.Response
			}
			mu.Unlock()
		case *network.EventLoadingFinished:
			mu.Lock()
			r, resp := pending[ev.RequestID], answers[ev.RequestID]
			delete(pending, ev.RequestID)
			delete(answers, ev.RequestID)
			if r == nil || resp == nil || done {
				mu.Unlock()
				return
			}
			bodies.Add(1)
			mu.Unlock()
			// Reading the body is a command: not from inside the listener.
			go func() {
				defer bodies.Done()
				res, err := chromedp.Call(ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: ev.RequestID})
				if err != nil {
					return // the tab closed
				}
				header := http.Header{}
				for k, v := range resp.Headers {
					header.Set(k, fmt.Sprint(v))
				}
				if err := openAPI.CheckResponse(r, int(resp.Status), header, res.Body); err != nil {
					fail(err)
				}
			}()
		}
	})
	if err != nil {
		t.Fatalf("watch tab: %v", err)
	}
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
		bodies.Wait()
	})
}

// TestOpenAPIServed: the bridge serves the document the checks use, at
// /api/openapi.json, to anyone.
func TestOpenAPIServed(t *testing.T) {
	ta := startTestApp(t, tuning{}, nil)
	resp, err := http.Get(ta.base + "/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(body, hub.OpenAPI()) {
		t.Fatalf("GET /api/openapi.json: %d %q, %d bytes; want 200 application/json with hub/openapi.json", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	if got := openAPI.Doc().Info.Version; got == "" {
		t.Error("the document has no version")
	}
}
