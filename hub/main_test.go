package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(loadgenEnv); cfg != "" {
		// This process is a load generator started by startLoadgen.
		os.Exit(runLoadgen(cfg))
	}
	goleak.VerifyTestMain(m)
}

const (
	testIssuer   = "https://idp.test"
	testAudience = "bridge-test"
	testGuild    = "111111111111111111"
	waitLimit    = 10 * time.Second
)

// testIDP is an identity provider: a JWKS over httptest with an RSA and
// an EC key, counting fetches; keys can be added (rotation).
type testIDP struct {
	srv  *httptest.Server
	rsa  jwk.Key // private, kid "rsa-1"
	ec   jwk.Key // private, kid "ec-1"
	hits atomic.Int64

	mu  sync.Mutex
	pub jwk.Set
}

func newTestIDP(t testing.TB) *testIDP {
	t.Helper()
	idp := &testIDP{pub: jwk.NewSet()}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp.rsa = mustKey(t, rk, "rsa-1", "")
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	idp.ec = mustKey(t, ek, "ec-1", "")
	idp.publish(t, idp.rsa)
	idp.publish(t, idp.ec)
	idp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.hits.Add(1)
		idp.mu.Lock()
		b, err := json.Marshal(idp.pub)
		idp.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(idp.srv.Close)
	return idp
}

func mustKey(t testing.TB, raw any, kid string, alg jwa.SignatureAlgorithm) jwk.Key {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	if alg != "" {
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// publish adds the public half of key to the served set.
func (idp *testIDP) publish(t testing.TB, key jwk.Key) {
	t.Helper()
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	idp.mu.Lock()
	defer idp.mu.Unlock()
	if err := idp.pub.AddKey(pub); err != nil {
		t.Fatal(err)
	}
}

func (idp *testIDP) verifier(t testing.TB, minRefetch time.Duration) *Verifier {
	t.Helper()
	v, err := NewVerifier(t.Context(), VerifierOptions{
		JWKSURL: idp.srv.URL + "/jwks.json", Issuer: testIssuer, Audience: testAudience,
		HTTPClient: idp.srv.Client(), MinRefetchInterval: minRefetch,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// claims for a token; zero fields get good defaults.
type tokenSpec struct {
	alg       jwa.SignatureAlgorithm
	key       jwk.Key
	kid       *string // nil: the key's kid
	sub       string
	name      string
	iss, aud  string
	exp, nbf  time.Time
	noExp     bool
	extraHead map[string]any
	claims    map[string]any // more claims (roles, guilds)
}

func (idp *testIDP) token(t testing.TB, s tokenSpec) string {
	t.Helper()
	now := time.Now()
	if s.alg == "" {
		s.alg = jwa.RS256
	}
	if s.key == nil {
		s.key = idp.rsa
		if s.alg == jwa.ES256 {
			s.key = idp.ec
		}
	}
	if s.sub == "" {
		s.sub = "user-1"
	}
	if s.iss == "" {
		s.iss = testIssuer
	}
	if s.aud == "" {
		s.aud = testAudience
	}
	if s.exp.IsZero() {
		s.exp = now.Add(time.Hour)
	}
	b := jwt.NewBuilder().Issuer(s.iss).Audience([]string{s.aud}).Subject(s.sub).IssuedAt(now)
	if !s.noExp {
		b = b.Expiration(s.exp)
	}
	if !s.nbf.IsZero() {
		b = b.NotBefore(s.nbf)
	}
	if s.name != "" {
		b = b.Claim("name", s.name)
	}
	for k, v := range s.claims {
		b = b.Claim(k, v)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	kid := s.key.KeyID()
	if s.kid != nil {
		kid = *s.kid
	}
	if kid != "" {
		_ = hdr.Set(jws.KeyIDKey, kid)
	}
	for k, v := range s.extraHead {
		_ = hdr.Set(k, v)
	}
	signer := s.key
	if s.kid != nil {
		// jwx copies the key's kid into the header; sign with a kid-less copy.
		var raw any
		if err := s.key.Raw(&raw); err != nil {
			t.Fatal(err)
		}
		signer = mustRaw(t, raw)
	}
	out, err := jwt.Sign(tok, jwt.WithKey(s.alg, signer, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func mustRaw(t testing.TB, raw any) jwk.Key {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fakeRooms records calls and answers with the configured errors.
type fakeRooms struct {
	mu        sync.Mutex
	calls     []string
	createErr error
	endErr    error
	listErr   error
	rooms     []Room
	created   int
}

// adminRoles are the claims of a token with the default admin role.
var adminRoles = map[string]any{"roles": []string{"user", "admin"}}

func (f *fakeRooms) record(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeRooms) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeRooms) CreateRoom(_ context.Context, guildID, name string, userLimit int) (Room, error) {
	f.record("create:" + name)
	if f.createErr != nil {
		return Room{}, f.createErr
	}
	f.mu.Lock()
	id := strconv.Itoa(222222222222222222 + f.created)
	f.created++
	f.mu.Unlock()
	return Room{ChannelID: id, Name: name, GuildID: guildID, UserLimit: userLimit,
		Members: []Member{{UserID: "x", Name: "must not be in the 201"}}}, nil
}

func (f *fakeRooms) EndRoom(_ context.Context, channelID string) error {
	f.record("end:" + channelID)
	return f.endErr
}

func (f *fakeRooms) ListRooms(context.Context) ([]Room, error) {
	f.record("list")
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Room(nil), f.rooms...), f.listErr
}

func (f *fakeRooms) RoomGuild(channelID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rooms {
		if r.ChannelID == channelID {
			return r.GuildID
		}
	}
	return ""
}

// env is a hub behind httptest with a test IdP and fake rooms.
type env struct {
	hub   *Hub
	srv   *httptest.Server
	idp   *testIDP
	rooms *fakeRooms
}

func newEnv(t testing.TB, mutate func(*Options)) *env {
	t.Helper()
	e := &env{idp: newTestIDP(t), rooms: &fakeRooms{}}
	opts := Options{GuildID: testGuild, DefaultGuildID: testGuild, Rooms: e.rooms, Auth: e.idp.verifier(t, time.Hour)}
	if mutate != nil {
		mutate(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.hub = h
	e.srv = httptest.NewServer(h.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		e.srv.Close()
	})
	return e
}

func (e *env) wsURL() string { return "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/api/ws" }

// dial opens /api/ws without auth.
func (e *env) dial(t testing.TB, header http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(e.wsURL(), header)
	if err != nil {
		t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// connect opens /api/ws and authenticates, returning the ack.
func (e *env) connect(t testing.TB, token string) (*websocket.Conn, map[string]any) {
	t.Helper()
	c := e.dial(t, nil)
	writeJSONMsg(t, c, map[string]any{"type": "auth", "token": token})
	ack := readMsg(t, c)
	if ack["type"] != "ack" || ack["event"] != "auth.ok" {
		t.Fatalf("want auth ack, got %v", ack)
	}
	return c, ack
}

func writeJSONMsg(t testing.TB, c *websocket.Conn, v any) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(waitLimit))
	if err := c.WriteJSON(v); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func readMsg(t testing.TB, c *websocket.Conn) map[string]any {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("message %q is not JSON: %v", data, err)
	}
	return m
}

// expectClose reads until the connection ends and checks the close code;
// any data message before it fails the test unless allowData.
func expectClose(t testing.TB, c *websocket.Conn, code int, allowData bool) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	for {
		_, data, err := c.ReadMessage()
		if err == nil {
			if !allowData {
				t.Fatalf("want close %d, got message %s", code, data)
			}
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("want close %d, got %v", code, err)
		}
		if ce.Code != code {
			t.Fatalf("want close %d, got %d %q", code, ce.Code, ce.Text)
		}
		return ce.Text
	}
}

// doJSON sends a request and decodes the JSON answer (nil for no body).
func doJSON(t testing.TB, method, url, token, body string) (*http.Response, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	return doReq(t, req)
}

func doReq(t testing.TB, req *http.Request) (*http.Response, map[string]any) {
	t.Helper()
	client := &http.Client{Timeout: waitLimit}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return resp, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: answer %q is not JSON: %v", req.Method, req.URL, b, err)
	}
	return resp, m
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func errField(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["field"].(string)
	return s
}
