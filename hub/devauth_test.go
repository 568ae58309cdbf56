package hub

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

func newDevEnv(t *testing.T) (*env, *DevAuth) {
	t.Helper()
	dev, err := NewDevAuth("http://bridge.local", "bridge")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) {
		o.DevAuth = dev
		o.Auth = dev.Verifier()
	})
	return e, dev
}

func TestDevAuthFlow(t *testing.T) {
	e, _ := newDevEnv(t)
	resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/dev/token", "", `{"name":" alice "}`)
	if resp.StatusCode != 200 || body["userId"] != "dev-alice" || body["name"] != "alice" {
		t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	exp := time.Unix(int64(body["expiresAt"].(float64)), 0)
	if d := time.Until(exp); d < 59*time.Minute || d > time.Hour+time.Second {
		t.Fatalf("expiry in %s, want an hour", d)
	}
	tok := body["token"].(string)
	// The token works on REST and on the hub, through the same Verifier code.
	if resp, _ := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, ""); resp.StatusCode != 200 {
		t.Fatalf("rooms with dev token: %d", resp.StatusCode)
	}
	_, ack := e.connect(t, tok)
	if ack["userId"] != "dev-alice" || ack["name"] != "alice" {
		t.Fatalf("ack %v", ack)
	}
	// Same name, same subject; other names get a hash-derived one.
	_, b2 := doJSON(t, http.MethodPost, e.srv.URL+"/api/dev/token", "", `{"name":"alice"}`)
	_, b3 := doJSON(t, http.MethodPost, e.srv.URL+"/api/dev/token", "", `{"name":"Zoë K"}`)
	if b2["userId"] != "dev-alice" || !strings.HasPrefix(b3["userId"].(string), "dev-") || len(b3["userId"].(string)) != 4+16 {
		t.Fatalf("subjects %v %v", b2["userId"], b3["userId"])
	}
}

func TestDevAuthJWKSIsPublicOnly(t *testing.T) {
	e, dev := newDevEnv(t)
	resp, err := e.srv.Client().Get(e.srv.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string][]map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	keys := raw["keys"]
	if len(keys) != 1 || keys[0]["kty"] != "EC" || keys[0]["crv"] != "P-256" || keys[0]["alg"] != "ES256" || keys[0]["kid"] == "" {
		t.Fatalf("jwks %v", raw)
	}
	if _, ok := keys[0]["d"]; ok {
		t.Fatal("JWKS leaks the private key")
	}
	// A verifier fed this JWKS over HTTP accepts the dev tokens too.
	v, err := NewVerifier(t.Context(), VerifierOptions{JWKSURL: e.srv.URL + "/.well-known/jwks.json", Issuer: "http://bridge.local", Audience: "bridge", HTTPClient: e.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := dev.Token("bob")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(t.Context(), tok); err != nil || c.Subject != "dev-bob" {
		t.Fatalf("%+v %v", c, err)
	}
	// A second DevAuth (a restart) has a fresh key: old tokens stop working.
	dev2, err := NewDevAuth("http://bridge.local", "bridge")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev2.Verifier().Verify(t.Context(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("token of the previous key: %v", err)
	}
	var _ jwk.Set = dev.PublicKeys()
}

func TestDevTokenBadNames(t *testing.T) {
	e, _ := newDevEnv(t)
	for body, msg := range map[string]string{
		`{"name":""}`:    "required",
		`{"name":"   "}`: "required",
		`{}`:             "required",
		`{"name":"` + strings.Repeat("n", 33) + `"}`: "at most 32",
		`{"name":"a\u0000b"}`:                        "control",
		`{"name":7}`:                                 "a string",
		`{"name":"a","admin":true}`:                  "unknown field",
		`nope`:                                       "not valid JSON",
	} {
		resp, got := doJSON(t, http.MethodPost, e.srv.URL+"/api/dev/token", "", body)
		m, _ := got["error"].(map[string]any)
		if resp.StatusCode != 400 || !strings.Contains(m["message"].(string), msg) {
			t.Errorf("%s: %d %v, want 400 saying %q", body, resp.StatusCode, got, msg)
		}
	}
}

// A dev token may carry roles, to try the admin role locally.
func TestDevTokenRoles(t *testing.T) {
	e, _ := newDevEnv(t)
	for body, admin := range map[string]bool{`{"name":"root","roles":["admin"]}`: true, `{"name":"ann","roles":["user"]}`: false, `{"name":"bo"}`: false} {
		resp, tb := doJSON(t, http.MethodPost, e.srv.URL+"/api/dev/token", "", body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", body, resp.StatusCode, tb)
		}
		if _, ack := e.connect(t, tb["token"].(string)); ack["admin"] != admin {
			t.Fatalf("%s: ack admin %v, want %v", body, ack["admin"], admin)
		}
	}
}
