package hub

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// DevTokenLifetime is how long a dev token is valid.
const DevTokenLifetime = time.Hour

// maxDevNameRunes bounds the name in POST /api/dev/token.
const maxDevNameRunes = 32

// DevAuth is a throwaway identity provider for local use: a fresh ES256
// key each start, its public half at GET /.well-known/jwks.json, and
// POST /api/dev/token minting tokens for any name. Anyone who can reach
// the server can mint tokens, so it must never be exposed.
type DevAuth struct {
	issuer   string
	audience string
	key      jwk.Key // private, with kid and alg
	public   jwk.Set
	jwksJSON []byte
	verifier *Verifier
	now      func() time.Time
}

// NewDevAuth makes the signing key and the Verifier that accepts its tokens.
func NewDevAuth(issuer, audience string) (*DevAuth, error) {
	if issuer == "" || audience == "" {
		return nil, fmt.Errorf("%w: dev auth needs an issuer and an audience", ErrInvalidOptions)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dev auth key: %w", err)
	}
	key, err := jwk.FromRaw(priv)
	if err != nil {
		return nil, fmt.Errorf("dev auth key: %w", err)
	}
	var kidBytes [8]byte
	if _, err := rand.Read(kidBytes[:]); err != nil {
		return nil, fmt.Errorf("dev auth kid: %w", err)
	}
	for k, v := range map[string]any{
		jwk.KeyIDKey:     "dev-" + hex.EncodeToString(kidBytes[:]),
		jwk.AlgorithmKey: jwa.ES256,
		jwk.KeyUsageKey:  jwk.ForSignature,
	} {
		if err := key.Set(k, v); err != nil {
			return nil, fmt.Errorf("dev auth key %s: %w", k, err)
		}
	}
	pub, err := key.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("dev auth public key: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("dev auth key set: %w", err)
	}
	jwksJSON, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("dev auth key set: %w", err)
	}
	v, err := NewStaticVerifier(set, issuer, audience)
	if err != nil {
		return nil, err
	}
	return &DevAuth{issuer: issuer, audience: audience, key: key, public: set, jwksJSON: jwksJSON, verifier: v, now: time.Now}, nil
}

// Verifier accepts this DevAuth's tokens, through the same checks as a
// JWKS verifier.
func (d *DevAuth) Verifier() *Verifier { return d.verifier }

// PublicKeys is the key set served at /.well-known/jwks.json.
func (d *DevAuth) PublicKeys() jwk.Set { return d.public }

// Token mints a token for name, valid DevTokenLifetime. The subject is
// derived from the name, so the same name is the same user across
// restarts.
func (d *DevAuth) Token(name string) (token string, claims Claims, err error) {
	return d.TokenWith(name, nil)
}

// TokenWith is Token with more claims (a roles claim, to try the admin
// role), which may not override the registered ones.
func (d *DevAuth) TokenWith(name string, extra map[string]any) (token string, claims Claims, err error) {
	name, err = validDevName(name)
	if err != nil {
		return "", Claims{}, err
	}
	now := d.now().Truncate(time.Second)
	claims = Claims{Subject: devSubject(name), Name: name, Expiry: now.Add(DevTokenLifetime)}
	tok, err := jwt.NewBuilder().
		Issuer(d.issuer).
		Audience([]string{d.audience}).
		Subject(claims.Subject).
		IssuedAt(now).
		NotBefore(now).
		Expiration(claims.Expiry).
		Claim("name", name).
		Build()
	if err == nil {
		for k, v := range extra {
			if _, taken := tok.Get(k); taken {
				return "", Claims{}, fmt.Errorf("dev token: claim %q may not be overridden", k)
			}
			if err = tok.Set(k, v); err != nil {
				break
			}
		}
	}
	if err != nil {
		return "", Claims{}, fmt.Errorf("dev token: %w", err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, d.key.KeyID()); err != nil {
		return "", Claims{}, fmt.Errorf("dev token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, d.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", Claims{}, fmt.Errorf("dev token: %w", err)
	}
	return string(signed), claims, nil
}

// validDevName trims name and checks it is 1-32 characters with no
// control characters.
func validDevName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case !utf8.ValidString(name):
		return "", errors.New("name must be valid UTF-8")
	case name == "":
		return "", errors.New("name is required")
	case utf8.RuneCountInString(name) > maxDevNameRunes:
		return "", fmt.Errorf("name must be at most %d characters", maxDevNameRunes)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", errors.New("name must not contain control characters")
	}
	return name, nil
}

// devSubject is "dev-" plus the lower-cased name when it is plain ASCII
// letters, digits, '-' and '_', else "dev-" plus a hash of the name.
func devSubject(name string) string {
	plain := strings.IndexFunc(name, func(r rune) bool {
		return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_'))
	}) < 0
	if plain {
		return "dev-" + strings.ToLower(name)
	}
	sum := sha256.Sum256([]byte(name))
	return "dev-" + hex.EncodeToString(sum[:8])
}

// serveJWKS answers GET /.well-known/jwks.json with the public key only.
func (d *DevAuth) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(d.jwksJSON)
}

// devTokenRequest is the body of POST /api/dev/token.
type devTokenRequest struct {
	Name string `json:"name"`
	// Roles go into the admin claim (Options.AdminClaim), so the admin
	// role can be tried locally.
	Roles []string `json:"roles"`
	// Guilds go into the guilds claim, so a token scoped to some of the
	// served guilds can be tried locally; absent, the token has no claim
	// and the default guild applies.
	Guilds []string `json:"guilds"`
}

// devTokenResponse is the answer of POST /api/dev/token.
type devTokenResponse struct {
	Token     string `json:"token"`
	UserID    string `json:"userId"`
	Name      string `json:"name"`
	ExpiresAt int64  `json:"expiresAt"` // unix seconds
}

// serveToken answers POST /api/dev/token.
func (h *Hub) serveDevToken(w http.ResponseWriter, r *http.Request) {
	var req devTokenRequest
	if !h.decodeBody(w, r, &req) {
		return
	}
	if _, err := validDevName(req.Name); err != nil {
		writeError(w, http.StatusBadRequest, apiError{Code: codeInvalidBody, Field: "name", Message: err.Error()})
		return
	}
	var extra map[string]any
	if req.Roles != nil {
		if strings.Contains(h.opts.AdminClaim, ".") {
			writeError(w, http.StatusBadRequest, apiError{Code: codeInvalidBody, Field: "roles", Message: "dev tokens carry roles only in a top-level admin claim"})
			return
		}
		extra = map[string]any{h.opts.AdminClaim: req.Roles}
	}
	if req.Guilds != nil {
		for _, g := range req.Guilds {
			if !isSnowflake(g) {
				writeError(w, http.StatusBadRequest, apiError{Code: codeInvalidBody, Field: "guilds", Message: fmt.Sprintf("guilds must list Discord ids (decimal digits), not %q", g)})
				return
			}
		}
		if extra == nil {
			extra = map[string]any{}
		}
		extra["guilds"] = req.Guilds
	}
	tok, claims, err := h.opts.DevAuth.TokenWith(req.Name, extra)
	if err != nil {
		h.log.Error("dev token", "err", err)
		writeError(w, http.StatusInternalServerError, apiError{Code: "internal", Message: "could not sign a token"})
		return
	}
	writeJSON(w, http.StatusOK, devTokenResponse{Token: tok, UserID: claims.Subject, Name: claims.Name, ExpiresAt: claims.Expiry.Unix()})
}
