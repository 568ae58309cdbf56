package hub

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// Defaults of VerifierOptions.
const (
	DefaultLeeway             = 30 * time.Second
	DefaultMinRefetchInterval = time.Minute
	// maxJWKSBytes bounds a JWKS response; real key sets are a few KiB.
	maxJWKSBytes = 1 << 20
	// maxTokenBytes bounds a bearer token before any parsing.
	maxTokenBytes = 8 << 10
	jwksTimeout   = 10 * time.Second
)

// VerifierOptions configure NewVerifier.
type VerifierOptions struct {
	// JWKSURL is the identity provider's key set (RFC 7517 §5), http or https.
	JWKSURL string
	// Issuer is the exact "iss" every token must carry (RFC 7519 §4.1.1).
	Issuer string
	// Audience must be one of the token's "aud" values (RFC 7519 §4.1.3).
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat; 0 means
	// DefaultLeeway.
	Leeway time.Duration
	// HTTPClient fetches the JWKS; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// MinRefetchInterval limits re-fetches caused by an unknown kid to one
	// per interval, so a flood of forged kids cannot hammer the provider;
	// 0 means DefaultMinRefetchInterval.
	MinRefetchInterval time.Duration
	// GuildsClaim names the claim listing the guilds a token allows;
	// empty means "guilds".
	GuildsClaim string
}

// Claims is what the hub takes from a verified token.
type Claims struct {
	// Subject is "sub": the user id.
	Subject string
	// Name is "name", else "preferred_username", else the subject.
	Name string
	// Expiry is "exp"; hub connections close at this instant.
	Expiry time.Time
	// Guilds are the Discord guild ids the token allows: the "guilds"
	// claim (VerifierOptions.GuildsClaim), an array of id strings.
	// GuildsSet is false when the token has no such claim; then only
	// Options.DefaultGuildID applies.
	Guilds    []string
	GuildsSet bool
}

// keySource finds the verification key for a kid.
type keySource interface {
	lookup(ctx context.Context, kid string) (jwk.Key, error)
}

// Verifier checks bearer tokens: compact JWS (RFC 7515 §7.1) signed with
// RS256 or ES256 only (RFC 7518 §3.1), with a kid found in the key set,
// then the JWT claims exp, nbf, iss and aud (RFC 7519 §4.1). It is safe
// for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	leeway   time.Duration
	keys     keySource
	now      func() time.Time
	// guildsClaim is VerifierOptions.GuildsClaim; "" means "guilds".
	guildsClaim string
}

// NewVerifier fetches the JWKS once (failing if it cannot: a bridge that
// cannot check tokens is of no use) and keeps it in a jwk.Cache that
// refreshes it in the background until ctx is done. A token whose kid is
// not in the cached set causes one re-fetch, at most one per
// MinRefetchInterval.
func NewVerifier(ctx context.Context, opts VerifierOptions) (*Verifier, error) {
	u, err := url.Parse(opts.JWKSURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: JWKSURL %q must be an absolute http(s) URL", ErrInvalidOptions, opts.JWKSURL)
	}
	if opts.Issuer == "" {
		return nil, fmt.Errorf("%w: Issuer is required (the exact iss of your identity provider's tokens)", ErrInvalidOptions)
	}
	if opts.Audience == "" {
		return nil, fmt.Errorf("%w: Audience is required (the aud your identity provider puts in tokens for this bridge)", ErrInvalidOptions)
	}
	if opts.Leeway < 0 || opts.MinRefetchInterval < 0 {
		return nil, fmt.Errorf("%w: Leeway and MinRefetchInterval must not be negative", ErrInvalidOptions)
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: jwksTimeout}
	} else if client.Timeout == 0 {
		// jwk.Cache fetches without a context: the timeout must be here.
		cc := *client
		cc.Timeout = jwksTimeout
		client = &cc
	}
	minRefetch := opts.MinRefetchInterval
	if minRefetch == 0 {
		minRefetch = DefaultMinRefetchInterval
	}
	cache := jwk.NewCache(ctx)
	if err := cache.Register(opts.JWKSURL, jwk.WithHTTPClient(limitedClient{client})); err != nil {
		return nil, fmt.Errorf("%w: register %s: %w", ErrJWKS, opts.JWKSURL, err)
	}
	fetchCtx, cancel := context.WithTimeout(ctx, jwksTimeout)
	defer cancel()
	if _, err := cache.Refresh(fetchCtx, opts.JWKSURL); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrJWKS, opts.JWKSURL, err)
	}
	v := &Verifier{issuer: opts.Issuer, audience: opts.Audience, leeway: opts.Leeway, now: time.Now, guildsClaim: opts.GuildsClaim}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	}
	v.keys = &remoteKeys{cache: cache, url: opts.JWKSURL, minRefetch: minRefetch, now: func() time.Time { return v.now() }}
	return v, nil
}

// NewStaticVerifier verifies against a fixed key set (dev auth) with the
// same checks as NewVerifier and DefaultLeeway.
func NewStaticVerifier(set jwk.Set, issuer, audience string) (*Verifier, error) {
	if set == nil || set.Len() == 0 {
		return nil, fmt.Errorf("%w: the static key set is empty", ErrInvalidOptions)
	}
	if issuer == "" || audience == "" {
		return nil, fmt.Errorf("%w: issuer and audience are required", ErrInvalidOptions)
	}
	return &Verifier{issuer: issuer, audience: audience, leeway: DefaultLeeway, keys: staticKeys{set}, now: time.Now}, nil
}

// Verify checks a bearer token and returns its claims. Every refusal wraps
// ErrInvalidToken and says which check failed.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if len(token) > maxTokenBytes {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, maxTokenBytes)
	}
	if strings.Count(token, ".") != 2 || strings.ContainsAny(token, " \t\r\n{") {
		return Claims{}, fmt.Errorf("%w: not a compact JWS (three base64url parts)", ErrInvalidToken)
	}
	msg, err := jws.ParseString(token)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: malformed: %w", ErrInvalidToken, err)
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return Claims{}, fmt.Errorf("%w: want exactly one signature", ErrInvalidToken)
	}
	hdr := sigs[0].ProtectedHeaders()
	alg := hdr.Algorithm()
	if alg != jwa.RS256 && alg != jwa.ES256 {
		return Claims{}, fmt.Errorf("%w: algorithm %q not allowed (RS256 or ES256 only)", ErrInvalidToken, alg)
	}
	kid := hdr.KeyID()
	if kid == "" {
		return Claims{}, fmt.Errorf("%w: header has no kid", ErrInvalidToken)
	}
	key, err := v.keys.lookup(ctx, kid)
	if err != nil {
		return Claims{}, err
	}
	raw, err := keyFor(alg, key)
	if err != nil {
		return Claims{}, err
	}
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKey(alg, raw),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(v.now)),
		jwt.WithAcceptableSkew(v.leeway),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.SubjectKey),
	)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	c := Claims{Subject: tok.Subject(), Expiry: tok.Expiration()}
	if c.Subject == "" {
		return Claims{}, fmt.Errorf("%w: empty sub", ErrInvalidToken)
	}
	for _, k := range []string{"name", "preferred_username"} {
		if val, ok := tok.Get(k); ok {
			if s, ok := val.(string); ok && s != "" {
				c.Name = s
				break
			}
		}
	}
	if c.Name == "" {
		c.Name = c.Subject
	}
	claim := v.guildsClaim
	if claim == "" {
		claim = "guilds"
	}
	if val, ok := tok.Get(claim); ok {
		list, ok := val.([]any)
		if !ok {
			return Claims{}, fmt.Errorf("%w: claim %q must be an array of guild id strings", ErrInvalidToken, claim)
		}
		c.GuildsSet = true
		for _, g := range list {
			id, ok := g.(string)
			if !ok || id == "" {
				return Claims{}, fmt.Errorf("%w: claim %q must be an array of guild id strings (ids as strings: they exceed JSON's exact numbers)", ErrInvalidToken, claim)
			}
			c.Guilds = append(c.Guilds, id)
		}
	}
	return c, nil
}

// allowsGuild reports whether a token's claims let its user into guildID:
// the guilds claim when present, else only the default guild.
func allowsGuild(c Claims, guildID, defaultGuildID string) bool {
	if c.GuildsSet {
		return slices.Contains(c.Guilds, guildID)
	}
	return defaultGuildID != "" && guildID == defaultGuildID
}

// keyFor checks that the JWK fits the algorithm (RSA for RS256, EC P-256
// for ES256, RFC 7518 §3.3 and §3.4), is meant for signatures, and returns
// its raw public key. Passing a raw typed key to jwt.WithKey is what keeps
// an HS256 token "signed" with the RSA public key from ever verifying.
func keyFor(alg jwa.SignatureAlgorithm, key jwk.Key) (any, error) {
	if ka := key.Algorithm(); ka != nil && ka.String() != "" && ka.String() != alg.String() {
		return nil, fmt.Errorf("%w: key %q is for %s, token says %s", ErrInvalidToken, key.KeyID(), ka, alg)
	}
	if use := key.KeyUsage(); use != "" && use != string(jwk.ForSignature) {
		return nil, fmt.Errorf("%w: key %q has use %q, not sig", ErrInvalidToken, key.KeyID(), use)
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrInvalidToken, key.KeyID(), err)
	}
	switch alg {
	case jwa.RS256:
		switch k := raw.(type) {
		case *rsa.PublicKey:
			return k, nil
		case *rsa.PrivateKey:
			return &k.PublicKey, nil
		}
	case jwa.ES256:
		switch k := raw.(type) {
		case *ecdsa.PublicKey:
			if k.Curve == elliptic.P256() {
				return k, nil
			}
		case *ecdsa.PrivateKey:
			if k.Curve == elliptic.P256() {
				return &k.PublicKey, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: key %q (%T) does not fit %s", ErrInvalidToken, key.KeyID(), raw, alg)
}

// staticKeys is a fixed key set.
type staticKeys struct{ set jwk.Set }

func (s staticKeys) lookup(_ context.Context, kid string) (jwk.Key, error) {
	if k, ok := s.set.LookupKeyID(kid); ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %w: %q", ErrInvalidToken, ErrUnknownKey, kid)
}

// remoteKeys is a JWKS held in a jwk.Cache, re-fetched on an unknown kid
// at most once per minRefetch.
type remoteKeys struct {
	cache      *jwk.Cache
	url        string
	minRefetch time.Duration
	now        func() time.Time

	mu          sync.Mutex
	lastRefetch time.Time
}

func (r *remoteKeys) lookup(ctx context.Context, kid string) (jwk.Key, error) {
	set, err := r.cache.Get(ctx, r.url)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %w", ErrInvalidToken, ErrJWKS, err)
	}
	if k, ok := set.LookupKeyID(kid); ok {
		return k, nil
	}
	// The provider may have rotated keys since the last fetch.
	r.mu.Lock()
	defer r.mu.Unlock()
	if set, err := r.cache.Get(ctx, r.url); err == nil {
		// Another caller may have re-fetched while this one waited.
		if k, ok := set.LookupKeyID(kid); ok {
			return k, nil
		}
	}
	now := r.now()
	if !r.lastRefetch.IsZero() && now.Sub(r.lastRefetch) < r.minRefetch {
		return nil, fmt.Errorf("%w: %w: %q (re-fetch rate limited)", ErrInvalidToken, ErrUnknownKey, kid)
	}
	r.lastRefetch = now
	set, err = r.cache.Refresh(ctx, r.url)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %w", ErrInvalidToken, ErrJWKS, err)
	}
	if k, ok := set.LookupKeyID(kid); ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %w: %q", ErrInvalidToken, ErrUnknownKey, kid)
}

// limitedClient reads at most maxJWKSBytes of a JWKS response and always
// closes the connection's body, whatever the cache does with it.
type limitedClient struct{ c *http.Client }

// Get is what jwk.Cache calls; it has no context, so the client's Timeout
// is what bounds a fetch.
func (l limitedClient) Get(u string) (*http.Response, error) {
	res, err := l.c.Get(u)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("JWKS response larger than 1 MiB")
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res, nil
}
