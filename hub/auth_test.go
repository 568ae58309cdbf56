package hub

import (
	"context"
	"crypto"
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
	"slices"
	"strconv"
	"strings"
	"sync"
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
	rsaSign := func(in []byte) []byte {
		h := sha256.Sum256(in)
		sig, err := rsa.SignPKCS1v15(rand.Reader, rawRSA.(*rsa.PrivateKey), crypto.SHA256, h[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	stringExp := goodClaims()
	stringExp["exp"] = strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	rsaHeader := map[string]any{"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}
	padded := base64.URLEncoding.EncodeToString(rsaSign([]byte(parts[0] + "." + parts[1])))

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
		"string exp":                    handMade(t, rsaHeader, stringExp, rsaSign),
		"padded signature":              parts[0] + "." + parts[1] + "." + padded,
		"padded claims":                 parts[0] + "." + base64.URLEncoding.EncodeToString(must(b64.DecodeString(parts[1]))) + "." + parts[2],
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
	"alg none":                      `algorithm "none"`,
	"HS256 with RSA public key PEM": `algorithm "HS256"`,
	"HS256 with RSA public key DER": `algorithm "HS256"`,
	"PS256":                         `algorithm "PS256"`,
	"RS256 naming the EC key":       "does not fit RS256",
	"unknown kid":                   `kid "stranger"`,
	"missing kid":                   "no kid",
	"tampered payload":              "could not verify",
	"garbage":                       "not a compact JWS",
	"three garbage parts":           "part 1 is not unpadded base64url",
	"JSON serialization":            "not a compact JWS",
	"empty signature":               "could not verify",
	"string exp":                    "claim exp is not a number",
	"padded signature":              "part 3 is not unpadded base64url",
	"padded claims":                 "part 2 is not unpadded base64url",
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// publicReasons are every text a refused token's sender may read.
var publicReasons = []string{reasonMalformed, reasonAlgorithm, reasonNoKid, reasonUnknownKey, reasonKeyMisfit,
	reasonSignature, reasonExpired, reasonNotYet, reasonIssuer, reasonAudience, reasonClaims, reasonNoKeys, reasonTimeout}

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
			// The body says what was wrong in words of its own, quoting
			// nothing of the token (not its kid, not its algorithm).
			if msg, _ := body["error"].(map[string]any)["message"].(string); !slices.Contains(publicReasons, msg) {
				t.Errorf("REST: 401 message %q is not one of the public reasons", msg)
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
			if reason := expectClose(t, c, CloseUnauthorized, false); !slices.Contains(publicReasons, reason) {
				t.Errorf("hub: close reason %q is not one of the public reasons", reason)
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

// Unknown kids cause at most one fetch per MinRefetchInterval, however
// many come; a key the provider rotates in is accepted once the fetch at
// the end of the interval has run, even right after a forged kid's.
func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	idp := newTestIDP(t)
	const interval = 300 * time.Millisecond
	v := idp.verifier(t, interval)
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
	forged := func(i int) string {
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return idp.token(t, tokenSpec{alg: jwa.ES256, key: mustKey(t, ek, "forged-"+strconv.Itoa(i), "")})
	}
	// A forged kid: one fetch, then refused.
	if _, err := v.Verify(t.Context(), forged(0)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("forged kid: want ErrUnknownKey, got %v", err)
	}
	if got := idp.hits.Load(); got != 2 {
		t.Fatalf("forged kid: %d JWKS hits, want 2 (one fetch)", got)
	}
	// The provider rotates in a new key right after; a flood of forged
	// kids follows.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rotated := mustKey(t, rk, "rsa-2", "")
	idp.publish(t, rotated)
	tokRotated := idp.token(t, tokenSpec{key: rotated})
	flood := make([]string, 20)
	for i := range flood {
		flood[i] = forged(i + 1)
	}
	var wg sync.WaitGroup
	for _, tok := range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("forged kid in the flood: want ErrUnknownKey, got %v", err)
			}
		}()
	}
	wg.Wait()
	// The rotated key verifies once the scheduled fetch ran: the client
	// retries until then.
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	first := time.Now()
	for {
		_, err := v.Verify(ctx, tokRotated)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("rotated key: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("rotated key still refused after %s: %v", waitLimit, err)
		case <-time.After(interval / 10):
		}
	}
	t.Logf("rotated key accepted %s after its first use (MinRefetchInterval %s)", time.Since(first).Round(time.Millisecond), interval)
	if got := idp.hits.Load(); got != 3 {
		t.Fatalf("after the flood and the rotation: %d JWKS hits, want 3 (one scheduled fetch)", got)
	}
	if _, err := v.Verify(t.Context(), tokRotated); err != nil {
		t.Fatal(err)
	}
	if got := idp.hits.Load(); got != 3 {
		t.Fatalf("cached key fetched again: %d", got)
	}
}

// stallingIDP is the test IdP behind a switch that makes JWKS requests
// hang until released (or the client gives up).
type stallingIDP struct {
	*testIDP
	srv     *httptest.Server
	stalled chan struct{} // non-nil: requests wait for it to close
	mu      sync.Mutex
	entered chan struct{} // gets a value when a stalled request arrives
}

func newStallingIDP(t testing.TB) *stallingIDP {
	s := &stallingIDP{testIDP: newTestIDP(t), entered: make(chan struct{}, 16)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		stall := s.stalled
		s.mu.Unlock()
		if stall != nil {
			s.entered <- struct{}{}
			select {
			case <-stall:
			case <-r.Context().Done():
				return
			}
		}
		s.testIDP.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stallingIDP) stall() func() {
	ch := make(chan struct{})
	s.mu.Lock()
	s.stalled = ch
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.stalled = nil
		s.mu.Unlock()
		close(ch)
	}
}

// While a fetch hangs on a stalled identity provider, tokens of known
// keys verify at once, on REST and on the hub, and a token waiting for
// that fetch gives up when its context ends.
func TestKnownKeysDoNotWaitForAStalledFetch(t *testing.T) {
	idp := newStallingIDP(t)
	v, err := NewVerifier(t.Context(), VerifierOptions{
		JWKSURL: idp.srv.URL, Issuer: testIssuer, Audience: testAudience, MinRefetchInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	e := newEnv(t, func(o *Options) { o.Auth = v })
	release := idp.stall()
	defer release()

	// A forged kid starts a fetch that hangs.
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := idp.token(t, tokenSpec{alg: jwa.ES256, key: mustKey(t, ek, "forged", "")})
	forgedDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := v.Verify(ctx, forged)
		forgedDone <- err
	}()
	select {
	case <-idp.entered:
	case <-time.After(waitLimit):
		t.Fatal("the forged kid started no fetch")
	}

	tok := idp.token(t, tokenSpec{})
	start := time.Now()
	resp, body := doJSON(t, http.MethodGet, e.srv.URL+"/api/rooms", tok, "")
	restTook := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("known key on REST during a stalled fetch: %d %v", resp.StatusCode, body)
	}
	start = time.Now()
	_, ack := e.connect(t, tok)
	wsTook := time.Since(start)
	if ack["event"] != "auth.ok" {
		t.Fatalf("known key on the hub during a stalled fetch: %v", ack)
	}
	t.Logf("during a stalled JWKS fetch: REST call %s, WebSocket auth %s", restTook.Round(time.Microsecond), wsTook.Round(time.Microsecond))

	// The request's context bounds the forged kid's wait.
	select {
	case err := <-forgedDone:
		if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, context.DeadlineExceeded) || PublicReason(err) != reasonTimeout {
			t.Fatalf("forged kid waiting on a stalled fetch: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("the forged kid's wait outlived its context")
	}
}

// BenchmarkVerifyDuringStalledFetch measures a known-key verification
// while a JWKS fetch hangs.
func BenchmarkVerifyDuringStalledFetch(b *testing.B) {
	idp := newStallingIDP(b)
	v, err := NewVerifier(context.Background(), VerifierOptions{
		JWKSURL: idp.srv.URL, Issuer: testIssuer, Audience: testAudience, MinRefetchInterval: time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	release := idp.stall()
	defer release()
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	go func() {
		_, _ = v.Verify(context.Background(), idp.token(b, tokenSpec{alg: jwa.ES256, key: mustKey(b, ek, "forged", "")}))
	}()
	<-idp.entered
	tok := idp.token(b, tokenSpec{})
	b.ResetTimer()
	for range b.N {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
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
