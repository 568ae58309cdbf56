package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

var b64 = base64.RawURLEncoding

// handMade builds a compact JWS from a header and claims with the given
// signing function (nil: empty signature).
func handMade(t testing.TB, header, claims map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64.EncodeToString(sig)
}

func goodClaims() map[string]any {
	now := time.Now()
	return map[string]any{"iss": testIssuer, "aud": testAudience, "sub": "user-1", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
}

// badTokens is every way a token must be refused.
func badTokens(t testing.TB, idp *testIDP) map[string]string {
	t.Helper()
	now := time.Now()
	empty := ""
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var rsaPub rsa.PublicKey
	var rawRSA any
	if err := idp.rsa.Raw(&rawRSA); err != nil {
		t.Fatal(err)
	}
	rsaPub = rawRSA.(*rsa.PrivateKey).PublicKey
	der, err := x509.MarshalPKIXPublicKey(&rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hs256 := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(in)
			return m.Sum(nil)
		}
	}
	good := idp.token(t, tokenSpec{})
	parts := strings.Split(good, ".")
	tampered := goodClaims()
	tampered["sub"] = "admin"
	tc, _ := json.Marshal(tampered)
	nbf := now.Add(time.Hour)

	return map[string]string{
		"expired":        idp.token(t, tokenSpec{exp: now.Add(-time.Hour)}),
		"not yet valid":  idp.token(t, tokenSpec{nbf: nbf}),
		"wrong issuer":   idp.token(t, tokenSpec{iss: "https://evil.test"}),
		"wrong audience": idp.token(t, tokenSpec{aud: "someone-else"}),
		"no exp":         idp.token(t, tokenSpec{noExp: true}),
		"alg none":       handMade(t, map[string]any{"alg": "none", "kid": "rsa-1"}, goodClaims(), nil),
		"HS256 with RSA public key PEM": handMade(t, map[string]any{"alg": "HS256", "kid": "rsa-1", "typ": "JWT"},
			goodClaims(), hs256(pubPEM)),
		"HS256 with RSA public key DER": handMade(t, map[string]any{"alg": "HS256", "kid": "rsa-1"}, goodClaims(), hs256(der)),
		"PS256":                         idp.token(t, tokenSpec{alg: jwa.PS256}),
		"RS256 naming the EC key":       idp.token(t, tokenSpec{kid: ptr("ec-1")}),
		"unknown kid":                   idp.token(t, tokenSpec{alg: jwa.ES256, key: mustKey(t, other, "stranger", "")}),
		"missing kid":                   idp.token(t, tokenSpec{kid: &empty}),
		"tampered payload":              parts[0] + "." + b64.EncodeToString(tc) + "." + parts[2],
		"garbage":                       "garbage",
		"three garbage parts":           "a.b.c",
		"JSON serialization":            `{"payload":"` + parts[1] + `","signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`,
		"empty signature":               parts[0] + "." + parts[1] + ".",
	}
}

// badTokenReasons is the check each bad token must fail, so a token
// refused for an accidental reason does not pass the table.
var badTokenReasons = map[string]string{
	"expired":                       `"exp" not satisfied`,
	"not yet valid":                 `"nbf" not satisfied`,
	"wrong issuer":                  `"iss" not satisfied`,
	"wrong audience":                `"aud" not satisfied`,
	"no exp":                        "required claim not found",
	"alg none":                      `"none" not allowed`,
	"HS256 with RSA public key PEM": `"HS256" not allowed`,
	"HS256 with RSA public key DER": `"HS256" not allowed`,
	"PS256":                         `"PS256" not allowed`,
	"RS256 naming the EC key":       "does not fit RS256",
	"unknown kid":                   "unknown signing key",
	"missing kid":                   "no kid",
	"tampered payload":              "could not verify",
	"garbage":                       "not a compact JWS",
	"three garbage parts":           "malformed",
	"JSON serialization":            "not a compact JWS",
	"empty signature":               "could not verify",
}

func ptr[T any](v T) *T { return &v }

func TestVerifierAcceptsRS256AndES256(t *testing.T) {
	idp := newTestIDP(t)
	v := idp.verifier(t, time.Hour)
	for _, alg := range []jwa.SignatureAlgorithm{jwa.RS256, jwa.ES256} {
		c, err := v.Verify(t.Context(), idp.token(t, tokenSpec{alg: alg, sub: "u-" + alg.String(), name: "Ann"}))
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if c.Subject != "u-"+alg.String() || c.Name != "Ann" || time.Until(c.Expiry) < 59*time.Minute {
			t.Errorf("%s: claims %+v", alg, c)
		}
	}
	// Name falls back to the subject.
	c, err := v.Verify(t.Context(), idp.token(t, tokenSpec{sub: "plain"}))
	if err != nil || c.Name != "plain" {
		t.Errorf("name fallback: %+v %v", c, err)
	}
}

func TestVerifierRejectsBadTokens(t *testing.T) {
	idp := newTestIDP(t)
	v := idp.verifier(t, time.Hour)
	for name, tok := range badTokens(t, idp) {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), tok)
			why, ok := badTokenReasons[name]
			if !ok {
				t.Fatal("no expected reason in badTokenReasons")
			}
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), why) {
				t.Fatalf("want ErrInvalidToken for %q, got %v", why, err)
			}
		})
	}
}

func TestBadTokensRefusedOnRESTAndHub(t *testing.T) {
	e := newEnv(t, nil)
	for name, tok := range badTokens(t, e.idp) {
		t.Run(name, func(t *testing.T) {
			resp, body := doJSON(t, http.MethodPost, e.srv.URL+"/api/create-room", tok, `{"name":"x"}`)
			if resp.StatusCode != http.StatusUnauthorized || errCode(body) != "invalid_token" {
				t.Errorf("REST: %d %v", resp.StatusCode, body)
			}
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("REST: no WWW-Authenticate")
			}
			resp, _ = doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, "")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET rooms: %d", resp.StatusCode)
			}
			c := e.dial(t, nil)
			writeJSONMsg(t, c, map[string]any{"type": "auth", "token": tok})
			if reason := expectClose(t, c, CloseUnauthorized, false); reason == "" {
				t.Error("hub: close without a reason")
			}
		})
	}
	if calls := e.rooms.Calls(); len(calls) != 0 {
		t.Fatalf("Rooms saw calls for bad tokens: %v", calls)
	}
	if n := e.hub.Clients(); n != 0 {
		t.Fatalf("%d clients admitted", n)
	}
}

func TestMissingBearerIs401(t *testing.T) {
	e := newEnv(t, nil)
	for _, h := range []string{"", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/rooms", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, body := doReq(t, req)
		if resp.StatusCode != http.StatusUnauthorized || errCode(body) != "unauthorized" {
			t.Errorf("%q: %d %v", h, resp.StatusCode, body)
		}
	}
	if len(e.rooms.Calls()) != 0 {
		t.Fatal("Rooms was called")
	}
}

func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	idp := newTestIDP(t)
	v := idp.verifier(t, time.Minute)
	now := time.Now()
	v.now = func() time.Time { return now }
	if got := idp.hits.Load(); got != 1 {
		t.Fatalf("NewVerifier fetched the JWKS %d times, want 1", got)
	}
	// Known kids never fetch.
	for range 5 {
		if _, err := v.Verify(t.Context(), idp.token(t, tokenSpec{})); err != nil {
			t.Fatal(err)
		}
	}
	if got := idp.hits.Load(); got != 1 {
		t.Fatalf("known kid caused fetches: %d", got)
	}

	// The provider rotates in a new key after the bridge cached the set.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	stranger := mustKey(t, rk, "rsa-2", "")
	tokUnknown := idp.token(t, tokenSpec{key: stranger})
	if _, err := v.Verify(t.Context(), tokUnknown); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("want ErrUnknownKey, got %v", err)
	}
	if got := idp.hits.Load(); got != 2 {
		t.Fatalf("unknown kid: %d JWKS hits, want 2 (one re-fetch)", got)
	}
	idp.publish(t, stranger)
	for range 20 {
		if _, err := v.Verify(t.Context(), tokUnknown); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("within the interval: want ErrUnknownKey, got %v", err)
		}
	}
	if got := idp.hits.Load(); got != 2 {
		t.Fatalf("re-fetch not rate limited: %d JWKS hits, want 2", got)
	}
	// After the interval one re-fetch finds the rotated key.
	now = now.Add(time.Minute + time.Second)
	if _, err := v.Verify(t.Context(), tokUnknown); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if got := idp.hits.Load(); got != 3 {
		t.Fatalf("after the interval: %d JWKS hits, want 3", got)
	}
	if _, err := v.Verify(t.Context(), tokUnknown); err != nil {
		t.Fatal(err)
	}
	if got := idp.hits.Load(); got != 3 {
		t.Fatalf("cached key fetched again: %d", got)
	}
}

func TestVerifierLeeway(t *testing.T) {
	idp := newTestIDP(t)
	v := idp.verifier(t, time.Hour)
	// Expired 10 s ago: inside the default 30 s leeway.
	if _, err := v.Verify(t.Context(), idp.token(t, tokenSpec{exp: time.Now().Add(-10 * time.Second)})); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	if _, err := v.Verify(t.Context(), idp.token(t, tokenSpec{exp: time.Now().Add(-40 * time.Second)})); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("past leeway: %v", err)
	}
}

func TestNewVerifierOptions(t *testing.T) {
	idp := newTestIDP(t)
	ctx := t.Context()
	cases := map[string]VerifierOptions{
		"no url":      {Issuer: "i", Audience: "a"},
		"ftp url":     {JWKSURL: "ftp://x/jwks", Issuer: "i", Audience: "a"},
		"no issuer":   {JWKSURL: idp.srv.URL, Audience: "a"},
		"no audience": {JWKSURL: idp.srv.URL, Issuer: "i"},
		"neg leeway":  {JWKSURL: idp.srv.URL, Issuer: "i", Audience: "a", Leeway: -1},
	}
	for name, o := range cases {
		if _, err := NewVerifier(ctx, o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: want ErrInvalidOptions, got %v", name, err)
		}
	}
	// A JWKS that is not JSON fails at start, naming the URL.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/404" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("<html>"))
	}))
	defer bad.Close()
	for _, u := range []string{bad.URL, bad.URL + "/404"} {
		_, err := NewVerifier(ctx, VerifierOptions{JWKSURL: u, Issuer: "i", Audience: "a", HTTPClient: bad.Client()})
		if !errors.Is(err, ErrJWKS) || !strings.Contains(err.Error(), u) {
			t.Errorf("bad JWKS %s: %v", u, err)
		}
	}
	if _, err := NewStaticVerifier(jwk.NewSet(), "i", "a"); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("empty static set: %v", err)
	}
}

func TestVerifyHonoursKeyAlg(t *testing.T) {
	// A JWKS key pinned to ES256 must not verify an RS256 token, even with
	// the right kid (the key would not fit anyway, but "alg" is checked
	// first and named in the error).
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k := mustKey(t, ek, "pinned", jwa.ES256)
	pub, _ := k.PublicKey()
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	v, err := NewStaticVerifier(set, testIssuer, testAudience)
	if err != nil {
		t.Fatal(err)
	}
	idp := &testIDP{}
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	tok := idp.token(t, tokenSpec{key: mustKey(t, rk, "pinned", ""), alg: jwa.RS256})
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "ES256") {
		t.Fatalf("got %v", err)
	}
	good := idp.token(t, tokenSpec{key: k, alg: jwa.ES256})
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatal(err)
	}
}
