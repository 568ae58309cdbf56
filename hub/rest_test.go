package hub

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCreateRoom(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.idp.token(t, tokenSpec{})
	resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", tok, `{"name":"  Stand-up  ","userLimit":5}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d %v", resp.StatusCode, body)
	}
	want := map[string]any{"channelId": "222222222222222222", "name": "Stand-up", "guildId": testGuild, "userLimit": float64(5)}
	if fmt.Sprint(body) != fmt.Sprint(want) {
		t.Fatalf("body %v, want %v", body, want)
	}
	if calls := e.rooms.Calls(); len(calls) != 1 || calls[0] != "create:Stand-up" {
		t.Fatalf("calls %v (name must be trimmed)", calls)
	}
	// userLimit may be left out (no limit).
	resp, body = doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", tok, `{"name":"open"}`)
	if resp.StatusCode != http.StatusCreated || body["userLimit"] != float64(0) {
		t.Fatalf("no userLimit: %d %v", resp.StatusCode, body)
	}
}

func TestCreateRoomBadBodies(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.idp.token(t, tokenSpec{})
	long := strings.Repeat("é", 101)
	cases := []struct {
		name, body, field, msg string
	}{
		{"missing name", `{"userLimit":3}`, "name", "required"},
		{"null name", `{"name":null}`, "name", "required"},
		{"empty name", `{"name":""}`, "name", "empty"},
		{"blank name", `{"name":"   "}`, "name", "empty"},
		{"long name", `{"name":"` + long + `"}`, "name", "at most 100"},
		{"control char", `{"name":"a\u0007b"}`, "name", "control"},
		{"name not string", `{"name":42}`, "name", "a string"},
		{"limit negative", `{"name":"a","userLimit":-1}`, "userLimit", "0 (no limit) to 99"},
		{"limit 100", `{"name":"a","userLimit":100}`, "userLimit", "0 (no limit) to 99"},
		{"limit fraction", `{"name":"a","userLimit":1.5}`, "userLimit", "an integer"},
		{"limit string", `{"name":"a","userLimit":"5"}`, "userLimit", "an integer"},
		{"unknown field", `{"name":"a","topic":"x"}`, "topic", "unknown field"},
		{"not JSON", `name=a`, "", "not valid JSON"},
		{"truncated", `{"name":"a"`, "", "not valid JSON"},
		{"array", `[{"name":"a"}]`, "", "JSON object"},
		{"two objects", `{"name":"a"}{"name":"b"}`, "", "trailing"},
		{"empty", ``, "", "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/create-room", strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, body := doReq(t, req)
			if resp.StatusCode != http.StatusBadRequest || errCode(body) != "invalid_body" || errField(body) != tc.field {
				t.Fatalf("got %d %v, want 400 invalid_body field %q", resp.StatusCode, body, tc.field)
			}
			msg := body["error"].(map[string]any)["message"].(string)
			if !strings.Contains(msg, tc.msg) {
				t.Fatalf("message %q does not say %q", msg, tc.msg)
			}
		})
	}
	if calls := e.rooms.Calls(); len(calls) != 0 {
		t.Fatalf("Rooms called for bad bodies: %v", calls)
	}
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.idp.token(t, tokenSpec{})
	big := `{"name":"` + strings.Repeat("a", DefaultMaxBody) + `"}`
	resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", tok, big)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || errCode(body) != "body_too_large" {
		t.Fatalf("got %d %v", resp.StatusCode, body)
	}
	if len(e.rooms.Calls()) != 0 {
		t.Fatal("Rooms was called")
	}
}

type retryErr struct{ d time.Duration }

func (r retryErr) Error() string             { return "429 from Discord" }
func (r retryErr) RetryAfter() time.Duration { return r.d }

func TestRoomsErrorMapping(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{"not a room", fmt.Errorf("%w: channel 5 is a text channel", ErrNotRoom), 404, "not_a_room", ""},
		{"not found", fmt.Errorf("%w: unknown channel", ErrNotFound), 404, "not_found", ""},
		{"forbidden", fmt.Errorf("%w: missing permissions", ErrForbidden), 403, "bot_forbidden", ""},
		{"rate limited", fmt.Errorf("%w: %w", ErrRateLimited, retryErr{2500 * time.Millisecond}), 429, "rate_limited", "3"},
		{"rate limited, no hint", ErrRateLimited, 429, "rate_limited", "1"},
		{"other", errors.New("dial tcp: secret internal detail"), 502, "upstream_error", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.rooms.createErr, e.rooms.endErr, e.rooms.listErr = tc.err, tc.err, tc.err
			tok := e.idp.token(t, tokenSpec{})
			for _, r := range []struct{ method, path, body string }{
				{http.MethodPost, "/api/create-room", `{"name":"a"}`},
				{http.MethodDelete, "/api/end-room/333", ""},
				{http.MethodGet, "/api/rooms", ""},
			} {
				resp, body := doJSON(t, r.method, e.srv.URL+r.path, tok, r.body)
				if resp.StatusCode != tc.status || errCode(body) != tc.code {
					t.Errorf("%s %s: %d %v, want %d %s", r.method, r.path, resp.StatusCode, body, tc.status, tc.code)
				}
				if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("%s: Retry-After %q, want %q", r.path, got, tc.retryAfter)
				}
				if strings.Contains(fmt.Sprint(body), "secret internal detail") {
					t.Errorf("%s: cause leaked to the client: %v", r.path, body)
				}
			}
		})
	}
}

func TestEndRoom(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.idp.token(t, tokenSpec{})
	resp, body := doJSON(t, http.MethodDelete, e.srv.URL+"/api/end-room/333444555", tok, "")
	if resp.StatusCode != http.StatusNoContent || body != nil {
		t.Fatalf("got %d %v", resp.StatusCode, body)
	}
	resp, body = doJSON(t, http.MethodDelete, e.srv.URL+"/api/end-room/not-an-id", tok, "")
	if resp.StatusCode != http.StatusBadRequest || errField(body) != "channelId" {
		t.Fatalf("bad id: %d %v", resp.StatusCode, body)
	}
	if calls := e.rooms.Calls(); len(calls) != 1 || calls[0] != "end:333444555" {
		t.Fatalf("calls %v", calls)
	}
}

func TestListRooms(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.idp.token(t, tokenSpec{alg: "ES256"})
	resp, body := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, "")
	if resp.StatusCode != 200 || fmt.Sprint(body["rooms"]) != "[]" {
		t.Fatalf("empty: %d %v", resp.StatusCode, body)
	}
	e.rooms.rooms = []Room{{ChannelID: "1", Name: "a", GuildID: testGuild, UserLimit: 2, Members: []Member{{UserID: "9", Name: "Ann"}}}}
	resp, body = doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, "")
	want := "[map[channelId:1 guildId:" + testGuild + " members:[map[name:Ann userId:9]] name:a userLimit:2]]"
	if resp.StatusCode != 200 || fmt.Sprint(body["rooms"]) != want {
		t.Fatalf("got %d %v", resp.StatusCode, body)
	}
}

func TestRoutingErrorsAreJSON(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := doJSON(t, http.MethodGet, e.srv.URL+"/api/create-room", "", "")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" || errCode(body) != "method_not_allowed" {
		t.Fatalf("405: %d %v", resp.StatusCode, body)
	}
	resp, body = doJSON(t, http.MethodGet, e.srv.URL+"/api/nothing", "", "")
	if resp.StatusCode != http.StatusNotFound || errCode(body) != "not_found" {
		t.Fatalf("404: %d %v", resp.StatusCode, body)
	}
	// No HMAC secret: the internal endpoint does not exist.
	resp, _ = doJSON(t, http.MethodPost, e.srv.URL+"/api/internal/events", "", "{}")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("internal without secret: %d", resp.StatusCode)
	}
	// No DevAuth: no token minting.
	resp, _ = doJSON(t, http.MethodPost, e.srv.URL+"/api/dev/token", "", `{"name":"a"}`)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("dev token without DevAuth: %d", resp.StatusCode)
	}
}

func TestHealth(t *testing.T) {
	var ready atomic.Bool
	e := newEnv(t, func(o *Options) {
		o.Ready = ready.Load
		o.Status = func() any { return map[string]string{"state": "connecting"} }
	})
	client := e.srv.Client()
	resp, err := client.Get(e.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(text) != "ok\n" {
		t.Fatalf("healthz %d %q", resp.StatusCode, text)
	}
	r, body := doJSON(t, http.MethodGet, e.srv.URL+"/readyz", "", "")
	if r.StatusCode != 503 || body["ready"] != false || fmt.Sprint(body["gateway"]) != "map[state:connecting]" || body["hubClients"] != float64(0) {
		t.Fatalf("not ready: %d %v", r.StatusCode, body)
	}
	ready.Store(true)
	e.connect(t, e.idp.token(t, tokenSpec{}))
	r, body = doJSON(t, http.MethodGet, e.srv.URL+"/readyz", "", "")
	if r.StatusCode != 200 || body["ready"] != true || body["hubClients"] != float64(1) {
		t.Fatalf("ready: %d %v", r.StatusCode, body)
	}
}

func TestNewOptions(t *testing.T) {
	idp := newTestIDP(t)
	v := idp.verifier(t, time.Hour)
	rooms := &fakeRooms{}
	cases := map[string]Options{
		"no guild":    {Rooms: rooms, Auth: v},
		"no rooms":    {GuildID: "1", Auth: v},
		"no auth":     {GuildID: "1", Rooms: rooms},
		"neg tunable": {GuildID: "1", Rooms: rooms, Auth: v, SendQueueBytes: -1},
		"bad origin":  {GuildID: "1", Rooms: rooms, Auth: v, AllowedOrigins: []string{"example.com"}},
	}
	for name, o := range cases {
		if _, err := New(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: want ErrInvalidOptions, got %v", name, err)
		}
	}
}
