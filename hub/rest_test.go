package hub

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
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
	want := map[string]any{"channelId": "222222222222222222", "name": "Stand-up", "guildId": testGuild, "userLimit": float64(5), "canEnd": true}
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
			tok := e.idp.token(t, tokenSpec{claims: adminRoles})
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

// Ending a room: its creator or an admin, nobody else; a refusal is 403
// and leaves the room alone.
func TestEndRoomPermissions(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.idp.token(t, tokenSpec{sub: "alice"})
	bob := e.idp.token(t, tokenSpec{sub: "bob", claims: map[string]any{"roles": []string{"user"}}})
	admin := e.idp.token(t, tokenSpec{sub: "root", claims: adminRoles})
	create := func(tok, name string) string {
		t.Helper()
		resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", tok, `{"name":"`+name+`"}`)
		if resp.StatusCode != http.StatusCreated || body["canEnd"] != true {
			t.Fatalf("create %s: %d %v", name, resp.StatusCode, body)
		}
		return body["channelId"].(string)
	}
	end := func(tok, id string) (int, map[string]any) {
		t.Helper()
		resp, body := doJSON(t, http.MethodDelete, e.srv.URL+"/api/end-room/"+id, tok, "")
		return resp.StatusCode, body
	}
	ended := func() []string {
		var out []string
		for _, c := range e.rooms.Calls() {
			if strings.HasPrefix(c, "end:") {
				out = append(out, c)
			}
		}
		return out
	}

	x := create(alice, "x")
	for _, tok := range []string{bob, e.idp.token(t, tokenSpec{sub: "carol", claims: map[string]any{"roles": "user"}})} {
		if code, body := end(tok, x); code != http.StatusForbidden || errCode(body) != "not_room_owner" {
			t.Fatalf("non-creator without admin: %d %v", code, body)
		}
	}
	if got := ended(); len(got) != 0 {
		t.Fatalf("a refused end reached Discord: %v", got)
	}
	// The list tells each caller what it may end.
	e.rooms.rooms = []Room{{ChannelID: x, Name: "x", GuildID: testGuild}}
	for tok, want := range map[string]bool{alice: true, bob: false, admin: true} {
		_, body := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, "")
		if rooms, _ := body["rooms"].([]any); len(rooms) != 1 || rooms[0].(map[string]any)["canEnd"] != want {
			t.Fatalf("rooms list canEnd, want %v: %v", want, body)
		}
	}
	if code, body := end(alice, x); code != http.StatusNoContent || body != nil {
		t.Fatalf("creator: %d %v", code, body)
	}
	y := create(alice, "y")
	if code, body := end(admin, y); code != http.StatusNoContent {
		t.Fatalf("admin: %d %v", code, body)
	}
	// A room this process did not create (made in Discord, or before a
	// restart): admins only.
	if code, _ := end(alice, "333444555"); code != http.StatusForbidden {
		t.Fatalf("unknown room, non-admin: %d", code)
	}
	if code, _ := end(admin, "333444555"); code != http.StatusNoContent {
		t.Fatalf("unknown room, admin: %d", code)
	}
	if got := ended(); !slices.Equal(got, []string{"end:" + x, "end:" + y, "end:333444555"}) {
		t.Fatalf("ended %v", got)
	}
	// An ended room's creator is forgotten.
	if creators, _, _ := e.hub.access.sizes(); creators != 0 {
		t.Fatalf("%d creators remembered after every room ended", creators)
	}
	if code, body := end(alice, "not-an-id"); code != http.StatusBadRequest || errField(body) != "channelId" {
		t.Fatalf("bad id: %d %v", code, body)
	}
}

// The admin role is configurable: another claim, a nested path, another
// value, a plain string.
func TestAdminClaim(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AdminClaim, o.AdminRole = "realm_access.roles", "bridge-admin" })
	cases := []struct {
		claims map[string]any
		admin  bool
	}{
		{map[string]any{"realm_access": map[string]any{"roles": []string{"bridge-admin"}}}, true},
		{map[string]any{"realm_access": map[string]any{"roles": "bridge-admin"}}, true},
		{map[string]any{"realm_access": map[string]any{"roles": []string{"admin"}}}, false},
		{map[string]any{"roles": []string{"bridge-admin"}}, false},
		{map[string]any{"realm_access": "bridge-admin"}, false},
		{nil, false},
	}
	for _, tc := range cases {
		_, ack := e.connect(t, e.idp.token(t, tokenSpec{claims: tc.claims}))
		if ack["admin"] != tc.admin {
			t.Errorf("claims %v: ack admin %v, want %v", tc.claims, ack["admin"], tc.admin)
		}
		code := 0
		resp, _ := doJSON(t, http.MethodDelete, e.srv.URL+"/api/end-room/333444555", e.idp.token(t, tokenSpec{claims: tc.claims}), "")
		code = resp.StatusCode
		if want := map[bool]int{true: 204, false: 403}[tc.admin]; code != want {
			t.Errorf("claims %v: end room %d, want %d", tc.claims, code, want)
		}
	}
}

// Past RoomsPerHour a user's creation is 429 and reaches nobody; other
// users and failed creations do not count.
func TestRoomCreationLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RoomsPerHour = 3 })
	alice := e.idp.token(t, tokenSpec{sub: "alice"})
	creates := func() int {
		n := 0
		for _, c := range e.rooms.Calls() {
			if strings.HasPrefix(c, "create:") {
				n++
			}
		}
		return n
	}
	// A failed creation gives its slot back.
	e.rooms.mu.Lock()
	e.rooms.createErr = errors.New("discord down")
	e.rooms.mu.Unlock()
	if resp, _ := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", alice, `{"name":"f"}`); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("failing create: %d", resp.StatusCode)
	}
	e.rooms.mu.Lock()
	e.rooms.createErr = nil
	e.rooms.mu.Unlock()
	for i := range 3 {
		if resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", alice, `{"name":"r"}`); resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %d: %d %v", i, resp.StatusCode, body)
		}
	}
	before := creates()
	resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", alice, `{"name":"one too many"}`)
	if resp.StatusCode != http.StatusTooManyRequests || errCode(body) != "room_limit" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d %v (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if msg := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "at most 3 rooms per hour") {
		t.Fatalf("429 message %q does not state the limit", msg)
	}
	if n := creates(); n != before {
		t.Fatalf("the refused creation reached Discord (%d creates, was %d)", n, before)
	}
	bob := e.idp.token(t, tokenSpec{sub: "bob"})
	if resp, _ := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", bob, `{"name":"b"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("another user: %d", resp.StatusCode)
	}
}

// The creation window slides: a slot frees an hour after its creation,
// and users with nothing in the window are forgotten.
func TestRoomWindow(t *testing.T) {
	a := newAccess()
	t0 := time.Now()
	for i := range 2 {
		if ok, _ := a.reserveRoom("alice", 2, t0.Add(time.Duration(i)*time.Minute)); !ok {
			t.Fatalf("reservation %d refused", i)
		}
	}
	if ok, retry := a.reserveRoom("alice", 2, t0.Add(30*time.Minute)); ok || retry != 30*time.Minute {
		t.Fatalf("third within the hour: ok %v retry %v, want refused with 30m", ok, retry)
	}
	if ok, _ := a.reserveRoom("alice", 2, t0.Add(roomWindow)); !ok {
		t.Fatal("the first slot did not free after an hour")
	}
	if ok, _ := a.reserveRoom("bob", 2, t0.Add(roomWindow)); !ok {
		t.Fatal("bob refused")
	}
	// Two hours on, a sweep forgets both.
	if ok, _ := a.reserveRoom("carol", 2, t0.Add(3*roomWindow)); !ok {
		t.Fatal("carol refused")
	}
	if _, byUser, _ := a.sizes(); byUser != 1 {
		t.Fatalf("%d users remembered, want carol only", byUser)
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
	want := "[map[canEnd:false channelId:1 guildId:" + testGuild + " members:[map[name:Ann userId:9]] name:a userLimit:2]]"
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
	for _, path := range []string{"/api/create-room", "/api/rooms", "/healthz", "/readyz", "/api/nothing"} {
		resp, err := e.srv.Client().Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", path, got)
		}
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
	const operator = "operator-token-operator-token-0123"
	e := newEnv(t, func(o *Options) {
		o.Ready = func() error {
			if !ready.Load() {
				return errors.New("Discord gateway is connecting")
			}
			return nil
		}
		o.Status = func() any { return map[string]string{"state": "connecting", "sessionId": "secret-session"} }
		o.OperatorToken = []byte(operator)
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
	// The public sees ready or not and why, never the parts' status.
	for _, tok := range []string{"", "not-the-operator-token", operator[:len(operator)-1]} {
		r, body := doJSON(t, http.MethodGet, e.srv.URL+"/readyz", tok, "")
		if r.StatusCode != 503 || body["ready"] != false || fmt.Sprint(body["reasons"]) != "[Discord gateway is connecting]" {
			t.Fatalf("not ready (token %q): %d %v", tok, r.StatusCode, body)
		}
		if _, ok := body["operator"]; ok || len(body) != 2 {
			t.Fatalf("public /readyz (token %q) shows more than ready and reasons: %v", tok, body)
		}
	}
	ready.Store(true)
	e.connect(t, e.idp.token(t, tokenSpec{}))
	r, body := doJSON(t, http.MethodGet, e.srv.URL+"/readyz", "", "")
	if r.StatusCode != 200 || body["ready"] != true || len(body) != 1 {
		t.Fatalf("ready: %d %v", r.StatusCode, body)
	}
	// The operator sees the gateway's status and the process's counters.
	r, body = doJSON(t, http.MethodGet, e.srv.URL+"/readyz", operator, "")
	op, _ := body["operator"].(map[string]any)
	proc, _ := op["process"].(map[string]any)
	if r.StatusCode != 200 || op["hubClients"] != float64(1) || fmt.Sprint(op["gateway"]) != "map[sessionId:secret-session state:connecting]" ||
		proc["goroutines"].(float64) < 1 || proc["heapAllocBytes"].(float64) <= 0 {
		t.Fatalf("operator readyz: %d %v", r.StatusCode, body)
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
