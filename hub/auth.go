package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// Defaults of VerifierOptions.
const (
	DefaultLeeway = 30 * time.Second
	// DefaultMinRefetchInterval is the least time between two JWKS fetches
	// caused by unknown kids. It is also the bound on how late a key the
	// provider adds is accepted: a token signed with it is verified at the
	// latest this long after the last fetch, however many forged kids came
	// before.
	DefaultMinRefetchInterval = 10 * time.Second
	// DefaultFetchTimeout bounds one JWKS fetch, the first one at start
	// included.
	DefaultFetchTimeout = 10 * time.Second
	// DefaultRefreshInterval is how often the JWKS is fetched again in the
	// background, so keys the provider withdrew stop verifying.
	DefaultRefreshInterval = 15 * time.Minute
	// maxJWKSBytes bounds a JWKS response; real key sets are a few KiB.
	maxJWKSBytes = 1 << 20
	// maxTokenBytes bounds a bearer token before any parsing.
	maxTokenBytes = 8 << 10
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
	// HTTPClient fetches the JWKS; nil means http.DefaultClient. Each
	// fetch is bounded by FetchTimeout through its context.
	HTTPClient *http.Client
	// MinRefetchInterval limits fetches caused by an unknown kid to one
	// per interval, so a flood of forged kids cannot hammer the provider;
	// 0 means DefaultMinRefetchInterval. See DefaultMinRefetchInterval for
	// what it means for rotated keys.
	MinRefetchInterval time.Duration
	// GuildsClaim names the claim listing the guilds a token allows;
	// empty means "guilds".
	GuildsClaim string
	// FetchTimeout bounds one JWKS fetch; 0 means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// RefreshInterval is how often the key set is fetched in the
	// background; 0 means DefaultRefreshInterval.
	RefreshInterval time.Duration
	// Logger receives failed background fetches; nil discards them.
	Logger *slog.Logger
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
	// private are the token's other claims, where Options.AdminClaim is
	// looked up.
	private map[string]any
}

// keySource finds the verification key for a kid.
type keySource interface {
	lookup(ctx context.Context, kid string) (jwk.Key, error)
	close()
}

// Verifier checks bearer tokens: compact JWS (RFC 7515 §7.1) signed with
// RS256 or ES256 only (RFC 7518 §3.1), with a kid found in the key set,
// then the JWT claims exp, nbf, iss and aud (RFC 7519 §4.1). It is safe
// for concurrent use. A token signed with a key already in the set is
// verified without any network or any lock a fetch holds.
type Verifier struct {
	issuer   string
	audience string
	leeway   time.Duration
	keys     keySource
	now      func() time.Time
	// guildsClaim is VerifierOptions.GuildsClaim; "" means "guilds".
	guildsClaim string
}

// NewVerifier fetches the JWKS once, within FetchTimeout (failing if it
// cannot: a bridge that cannot check tokens is of no use), then keeps it
// fresh in the background until ctx is done or Close. A token whose kid
// is not in the set causes one background fetch, at most one per
// MinRefetchInterval, which only the tokens with unknown kids wait for.
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
	if opts.Leeway < 0 || opts.MinRefetchInterval < 0 || opts.FetchTimeout < 0 || opts.RefreshInterval < 0 {
		return nil, fmt.Errorf("%w: Leeway, MinRefetchInterval, FetchTimeout and RefreshInterval must not be negative", ErrInvalidOptions)
	}
	setDefault(&opts.Leeway, DefaultLeeway)
	setDefault(&opts.MinRefetchInterval, DefaultMinRefetchInterval)
	setDefault(&opts.FetchTimeout, DefaultFetchTimeout)
	setDefault(&opts.RefreshInterval, DefaultRefreshInterval)
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{issuer: opts.Issuer, audience: opts.Audience, leeway: opts.Leeway, now: time.Now, guildsClaim: opts.GuildsClaim}
	rk := newRemoteKeys(ctx, opts)
	if err := rk.fetch(ctx); err != nil {
		rk.close()
		return nil, fmt.Errorf("%w: %s: %w", ErrJWKS, opts.JWKSURL, err)
	}
	rk.startRefresh()
	v.keys = rk
	return v, nil
}

// Close stops the background fetches and waits for them. Verify still
// works afterwards with the keys it holds.
func (v *Verifier) Close() { v.keys.close() }

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
// ErrInvalidToken; PublicReason gives the text to show the token's sender.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if len(token) > maxTokenBytes {
		return Claims{}, refuse(reasonMalformed, "longer than %d bytes", maxTokenBytes)
	}
	if err := checkCompact(token); err != nil {
		return Claims{}, err
	}
	msg, err := jws.ParseString(token)
	if err != nil {
		return Claims{}, refuse(reasonMalformed, "%v", err)
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return Claims{}, refuse(reasonMalformed, "want exactly one signature")
	}
	hdr := sigs[0].ProtectedHeaders()
	alg := hdr.Algorithm()
	if alg != jwa.RS256 && alg != jwa.ES256 {
		return Claims{}, refuse(reasonAlgorithm, "algorithm %q", alg)
	}
	kid := hdr.KeyID()
	if kid == "" {
		return Claims{}, refuse(reasonNoKid, "header has no kid")
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
		return Claims{}, claimsError(err)
	}
	c := Claims{Subject: tok.Subject(), Expiry: tok.Expiration(), private: tok.PrivateClaims()}
	if c.Subject == "" {
		return Claims{}, refuse(reasonClaims, "empty sub")
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
			return Claims{}, refuse(reasonGuilds, "claim %q is %T", claim, val)
		}
		c.GuildsSet = true
		for _, g := range list {
			id, ok := g.(string)
			if !ok || id == "" {
				return Claims{}, refuse(reasonGuilds, "claim %q holds %v", claim, g)
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

// checkCompact refuses what jwx would be lenient about: each part must be
// unpadded base64url (RFC 7515 §2, §7.1) in its one canonical spelling,
// and the NumericDate claims must be JSON numbers (RFC 7519 §2), not
// strings.
func checkCompact(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return refuse(reasonMalformed, "%d parts", len(parts))
	}
	var decoded [3][]byte
	for i, p := range parts {
		if p == "" && i < 2 {
			// An empty signature is refused by the algorithm check or by
			// verification, which say more.
			return refuse(reasonMalformed, "part %d is empty", i+1)
		}
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil {
			return refuse(reasonMalformed, "part %d is not unpadded base64url: %v", i+1, err)
		}
		decoded[i] = b
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(decoded[1], &claims); err != nil {
		return refuse(reasonMalformed, "claims are not a JSON object: %v", err)
	}
	for _, k := range []string{jwt.ExpirationKey, jwt.NotBeforeKey, jwt.IssuedAtKey} {
		val, ok := claims[k]
		if !ok {
			continue
		}
		var n json.Number
		if err := json.Unmarshal(val, &n); err != nil || len(val) == 0 || val[0] == '"' {
			return refuse(reasonClaims, "claim %s is not a number", k)
		}
	}
	return nil
}

// Public reasons for refusing a token: what the sender may be told. They
// never quote the token.
const (
	reasonMalformed  = "the token is not a compact JWS (three unpadded base64url parts with a JSON header and claims)"
	reasonAlgorithm  = "the token's algorithm is not accepted (RS256 or ES256 only)"
	reasonNoKid      = "the token's header has no kid"
	reasonUnknownKey = "the token's signing key (kid) is not in the identity provider's key set"
	reasonKeyMisfit  = "the token's signing key does not fit its algorithm"
	reasonSignature  = "the token's signature does not verify"
	reasonExpired    = "the token has expired (exp)"
	reasonNotYet     = "the token is not valid yet (nbf or iat in the future)"
	reasonIssuer     = "the token's issuer (iss) is not the one this bridge accepts"
	reasonAudience   = "the token's audience (aud) does not include this bridge"
	reasonClaims     = "the token lacks a claim or has one of the wrong type (sub and exp are required; exp, nbf and iat are numbers)"
	reasonGuilds     = "the token's guilds claim must be an array of guild id strings (ids as strings: they exceed JSON's exact numbers)"
	reasonNoKeys     = "the identity provider's key set cannot be loaded right now; try again shortly"
	reasonTimeout    = "the token check did not finish in time; try again"
)

// tokenError is a refused token: a public reason and the detail, which
// may quote the token and goes to logs only.
type tokenError struct {
	public, detail string
	cause          error
}

func (e *tokenError) Error() string {
	return ErrInvalidToken.Error() + ": " + e.public + ": " + e.detail
}

func (e *tokenError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrInvalidToken, e.cause}
	}
	return []error{ErrInvalidToken}
}

func refuse(public, format string, args ...any) error {
	return &tokenError{public: public, detail: fmt.Sprintf(format, args...)}
}

// PublicReason is the text to tell whoever sent a refused token: what was
// wrong, without echoing anything of the token.
func PublicReason(err error) string {
	var te *tokenError
	if errors.As(err, &te) {
		return te.public
	}
	return "the token was refused"
}

// claimsError sorts jwt.Parse's refusals into public reasons.
func claimsError(err error) error {
	public := reasonSignature
	switch {
	case errors.Is(err, jwt.ErrTokenExpired()):
		public = reasonExpired
	case errors.Is(err, jwt.ErrTokenNotYetValid()), errors.Is(err, jwt.ErrInvalidIssuedAt()):
		public = reasonNotYet
	case errors.Is(err, jwt.ErrInvalidIssuer()):
		public = reasonIssuer
	case errors.Is(err, jwt.ErrInvalidAudience()):
		public = reasonAudience
	case errors.Is(err, jwt.ErrRequiredClaim()), jwt.IsValidationError(err):
		public = reasonClaims
	}
	return &tokenError{public: public, detail: err.Error(), cause: err}
}

// keyFor checks that the JWK fits the algorithm (RSA for RS256, EC P-256
// for ES256, RFC 7518 §3.3 and §3.4), is meant for signatures, and returns
// its raw public key. Passing a raw typed key to jwt.WithKey is what keeps
// an HS256 token "signed" with the RSA public key from ever verifying.
func keyFor(alg jwa.SignatureAlgorithm, key jwk.Key) (any, error) {
	if ka := key.Algorithm(); ka != nil && ka.String() != "" && ka.String() != alg.String() {
		return nil, refuse(reasonKeyMisfit, "key %q is for %s, token says %s", key.KeyID(), ka, alg)
	}
	if use := key.KeyUsage(); use != "" && use != string(jwk.ForSignature) {
		return nil, refuse(reasonKeyMisfit, "key %q has use %q, not sig", key.KeyID(), use)
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		return nil, refuse(reasonKeyMisfit, "key %q: %v", key.KeyID(), err)
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
	return nil, refuse(reasonKeyMisfit, "key %q (%T) does not fit %s", key.KeyID(), raw, alg)
}

// staticKeys is a fixed key set.
type staticKeys struct{ set jwk.Set }

func (s staticKeys) lookup(_ context.Context, kid string) (jwk.Key, error) {
	if k, ok := s.set.LookupKeyID(kid); ok {
		return k, nil
	}
	return nil, unknownKey(kid, "")
}

func (staticKeys) close() {}

func unknownKey(kid, why string) error {
	return &tokenError{public: reasonUnknownKey, detail: fmt.Sprintf("kid %q%s", kid, why), cause: ErrUnknownKey}
}
