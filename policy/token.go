package policy

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token limits.
const (
	// MaxTokenSize caps a bearer token. Larger tokens are refused before any
	// parsing, so nothing allocated is proportional to the input.
	MaxTokenSize = 8 << 10
	// MaxLeeway is the largest clock-skew allowance for nbf and iat (and
	// exp). DefaultLeeway is what a zero VerifierConfig.Leeway means.
	MaxLeeway     = 30 * time.Second
	DefaultLeeway = MaxLeeway
	// maxScopes caps the number of scope tokens in one token.
	maxScopes = 64
)

// Principal is who a verified token speaks for.
type Principal struct {
	// Agency is the agency id of the gateway that verified the token (the
	// token's audience): its holder is a member of this agency's staff.
	Agency string
	// Subject is the token's sub: the staff member or client.
	Subject string
	// Scopes are the token's scope values, in the token's order, without
	// duplicates.
	Scopes []string
	// TokenID is the token's jti, or "" when it has none.
	TokenID string
	// Expiry is the token's exp.
	Expiry time.Time
	// Issuer is the trusted issuer that signed the token.
	Issuer string
}

// HasScope reports whether the principal holds scope s.
func (p Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// DevIssuer returns the issuer name of an agency's development token issuer
// (its jwt-issuer.pem key): "rujukan-dev/<agency>".
func DevIssuer(agency string) string { return "rujukan-dev/" + agency }

// Issuer is a trusted token issuer: its iss value and its keys.
type Issuer struct {
	Name string
	Keys *KeySet
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Agency is this gateway's agency id; the aud claim must contain it.
	Agency string
	// Algorithms is the allowlist of signing algorithms (AlgEdDSA, AlgES256,
	// AlgRS256). Empty means EdDSA only.
	Algorithms []string
	// Issuers are the trusted issuers. A token's iss must name one of them,
	// and its kid must select a key of that issuer.
	Issuers []Issuer
	// Leeway is the clock-skew allowance for exp, nbf and iat: at most
	// MaxLeeway. Zero means DefaultLeeway.
	Leeway time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Kind is the agency kind of this gateway (iom, dinsos, police,
	// shelter, ...). When set, a token whose scope claim holds any scope
	// outside ScopesForKind(Kind) is refused with
	// ReasonTokenScopeNotAllowed, unknown scopes included: a police token
	// carrying consent:override never verifies. Empty means no check by
	// kind: every well-formed scope is accepted and actions are decided by
	// the scopes they need (Decide), as before the field existed.
	Kind string
}

// Verifier verifies bearer tokens. It is safe for concurrent use.
type Verifier struct {
	agency  string
	algs    []string
	issuers map[string]*KeySet
	leeway  time.Duration
	now     func() time.Time
	parser  *jwt.Parser
	// kind and allowed: the agency kind and its scopes; allowed is nil
	// when kind is empty.
	kind    string
	allowed []string

	// seen remembers tokens whose signature verified, so a caseworker's
	// next request skips the signature check. The claims are checked again
	// on every call (exp, nbf, iat, aud, sub, scope).
	mu   sync.Mutex
	seen map[[32]byte]verified
}

// verified is a token whose header and signature checked out.
type verified struct {
	claims tokenClaims
	issuer string
}

// maxSeen bounds the verified-token memo; it is emptied when full.
const maxSeen = 4096

// NewVerifier checks cfg and returns a Verifier. Errors wrap ErrConfig.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Agency == "" {
		return nil, fmt.Errorf("%w: agency id (the token audience) is empty", ErrConfig)
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{AlgEdDSA}
	}
	for _, a := range algs {
		if a != AlgEdDSA && a != AlgES256 && a != AlgRS256 {
			return nil, fmt.Errorf("%w: algorithm %q is not one of EdDSA, ES256, RS256", ErrConfig, a)
		}
	}
	if len(cfg.Issuers) == 0 {
		return nil, fmt.Errorf("%w: no trusted issuers", ErrConfig)
	}
	issuers := make(map[string]*KeySet, len(cfg.Issuers))
	for _, is := range cfg.Issuers {
		if is.Name == "" {
			return nil, fmt.Errorf("%w: a trusted issuer has an empty name", ErrConfig)
		}
		if _, dup := issuers[is.Name]; dup {
			return nil, fmt.Errorf("%w: issuer %q listed twice", ErrConfig, is.Name)
		}
		if is.Keys == nil || len(is.Keys.keys) == 0 {
			return nil, fmt.Errorf("%w: issuer %q has no keys", ErrConfig, is.Name)
		}
		issuers[is.Name] = is.Keys
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	if leeway < 0 || leeway > MaxLeeway {
		return nil, fmt.Errorf("%w: leeway %v is outside 0 to %v", ErrConfig, cfg.Leeway, MaxLeeway)
	}
	if cfg.Kind != "" && !kindRE.MatchString(cfg.Kind) {
		return nil, fmt.Errorf("%w: agency kind %q is not a lowercase slug", ErrConfig, cfg.Kind)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{
		agency:  cfg.Agency,
		algs:    slices.Clone(algs),
		issuers: issuers,
		leeway:  leeway,
		now:     now,
		seen:    make(map[[32]byte]verified),
		kind:    cfg.Kind,
	}
	if cfg.Kind != "" {
		v.allowed = ScopesForKind(cfg.Kind)
	}
	// Claims are validated by v.checkClaims, which gives each failure its
	// own reason code; the library checks the allowlist and the signature.
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.algs),
		jwt.WithStrictDecoding(),
		jwt.WithoutClaimsValidation(),
	)
	return v, nil
}

// tokenClaims is the wire form of the claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	Scope string `json:"scope,omitempty"`
}

// Verify checks a bearer token (without the "Bearer " prefix) and returns
// its principal. Errors are *Error values of class ErrInvalidToken.
//
// Order of checks: size; structure, base64 and JSON (by the library, within
// the size cap); algorithm allowlist; typ and crit headers; issuer; kid;
// the key's own algorithm; signature; then the JSON of the header and
// claims again, strictly (one object each, no member name twice ignoring
// case, exp, iat and nbf JSON numbers: see checkSegments); then exp, nbf,
// iat, aud, sub (1 to MaxSubject bytes of printable UTF-8), jti (at most
// MaxTokenID bytes of printable UTF-8), scope, and the scopes of the agency
// kind when VerifierConfig.Kind is set.
//
// The strict JSON check runs only once the signature has verified, so a
// forged token costs no more than the library's parse. A token that passes
// every check is remembered (by its SHA-256) and its claims alone are
// checked again on the next call.
func (v *Verifier) Verify(token string) (Principal, error) {
	if token == "" {
		return Principal{}, deny(ReasonTokenMissing, "no token")
	}
	if len(token) > MaxTokenSize {
		return Principal{}, deny(ReasonTokenTooLarge, fmt.Sprintf("token is larger than %d bytes", MaxTokenSize))
	}
	key := sha256.Sum256([]byte(token))
	v.mu.Lock()
	hit, ok := v.seen[key]
	v.mu.Unlock()
	if ok {
		return v.checkClaims(&hit.claims, hit.issuer)
	}
	var claims tokenClaims
	var issuer string
	t, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		k, iss, err := v.keyFor(t, &claims)
		issuer = iss
		return k, err
	})
	if err != nil {
		return Principal{}, v.classify(t, err)
	}
	if !t.Valid {
		return Principal{}, deny(ReasonTokenSignature, "token not verified")
	}
	if err := checkSegments(token); err != nil {
		return Principal{}, err
	}
	p, err := v.checkClaims(&claims, issuer)
	if err == nil {
		v.mu.Lock()
		if len(v.seen) >= maxSeen {
			clear(v.seen)
		}
		v.seen[key] = verified{claims: claims, issuer: issuer}
		v.mu.Unlock()
	}
	return p, err
}

// keyFor runs after the header and claims are decoded and the algorithm is
// on the allowlist, and before the signature is checked.
func (v *Verifier) keyFor(t *jwt.Token, c *tokenClaims) (any, string, error) {
	if typ, ok := t.Header["typ"]; ok {
		s, _ := typ.(string)
		if !strings.EqualFold(s, "JWT") && !strings.EqualFold(s, "at+jwt") && !strings.EqualFold(s, "application/at+jwt") {
			return nil, "", deny(ReasonTokenType, fmt.Sprintf("typ %q is not JWT or at+jwt", s))
		}
	}
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 4.1.11: no extension is understood here.
		return nil, "", deny(ReasonTokenMalformed, "crit header names extensions this gateway does not understand")
	}
	if c.Issuer == "" {
		return nil, "", deny(ReasonTokenIssuer, "iss is missing")
	}
	keys, ok := v.issuers[c.Issuer]
	if !ok {
		return nil, "", deny(ReasonTokenIssuer, fmt.Sprintf("iss %q is not a trusted issuer", clip(c.Issuer)))
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, "", deny(ReasonTokenKey, "kid header is missing")
	}
	k, ok := keys.Key(kid)
	if !ok {
		return nil, "", deny(ReasonTokenKey, fmt.Sprintf("kid %q is not a key of issuer %q", clip(kid), c.Issuer))
	}
	if alg := t.Method.Alg(); alg != k.Algorithm {
		return nil, "", deny(ReasonTokenAlgorithm, fmt.Sprintf("alg %q does not match key %q (%s)", alg, kid, k.Algorithm))
	}
	return k.Public, c.Issuer, nil
}

// classify turns a library error into a reason.
func (v *Verifier) classify(t *jwt.Token, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return deny(ReasonTokenMalformed, "not a well-formed compact JWS")
	case t != nil && t.Method != nil && !slices.Contains(v.algs, t.Method.Alg()):
		return deny(ReasonTokenAlgorithm, fmt.Sprintf("alg %q is not allowed", t.Method.Alg()))
	case t != nil && t.Method == nil && t.Header != nil:
		alg, _ := t.Header["alg"].(string)
		return deny(ReasonTokenAlgorithm, fmt.Sprintf("alg %q is not allowed", clip(alg)))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return deny(ReasonTokenSignature, "signature does not verify")
	default:
		return deny(ReasonTokenMalformed, "token cannot be verified")
	}
}

func (v *Verifier) checkClaims(c *tokenClaims, issuer string) (Principal, error) {
	now := v.now()
	if c.ExpiresAt == nil {
		return Principal{}, deny(ReasonTokenClaimMissing, "exp is missing")
	}
	if !now.Before(c.ExpiresAt.Add(v.leeway)) {
		return Principal{}, deny(ReasonTokenExpired, "token expired at "+c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if c.NotBefore != nil && now.Add(v.leeway).Before(c.NotBefore.Time) {
		return Principal{}, deny(ReasonTokenNotYetValid, "nbf is in the future")
	}
	if c.IssuedAt != nil && now.Add(v.leeway).Before(c.IssuedAt.Time) {
		return Principal{}, deny(ReasonTokenIssuedInFuture, "iat is in the future")
	}
	if len(c.Audience) == 0 {
		return Principal{}, deny(ReasonTokenAudience, "aud is missing")
	}
	if !slices.Contains(c.Audience, v.agency) {
		return Principal{}, deny(ReasonTokenAudience, fmt.Sprintf("aud does not contain %q", v.agency))
	}
	if c.Subject == "" {
		return Principal{}, deny(ReasonTokenClaimMissing, "sub is missing")
	}
	if !printable(c.Subject, MaxSubject) {
		return Principal{}, deny(ReasonTokenClaimInvalid,
			fmt.Sprintf("sub is not 1 to %d bytes of printable UTF-8 on one line", MaxSubject))
	}
	if c.ID != "" && !printable(c.ID, MaxTokenID) {
		return Principal{}, deny(ReasonTokenClaimInvalid,
			fmt.Sprintf("jti is not 1 to %d bytes of printable UTF-8 on one line", MaxTokenID))
	}
	scopes, err := parseScope(c.Scope)
	if err != nil {
		return Principal{}, err
	}
	if v.allowed != nil {
		for _, s := range scopes {
			if !slices.Contains(v.allowed, s) {
				return Principal{}, deny(ReasonTokenScopeNotAllowed,
					fmt.Sprintf("scope %q is not one that staff of a %s agency may hold", clip(s), v.kind))
			}
		}
	}
	return Principal{
		Agency:  v.agency,
		Subject: c.Subject,
		Scopes:  scopes,
		TokenID: c.ID,
		Expiry:  c.ExpiresAt.Time,
		Issuer:  issuer,
	}, nil
}

// parseScope splits a space-separated scope claim (RFC 6749 3.3 syntax).
func parseScope(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
		}
		if !validScopeToken(tok) {
			return nil, deny(ReasonTokenScope, "scope contains a character outside RFC 6749 scope-token")
		}
		if slices.Contains(out, tok) {
			continue
		}
		if len(out) == maxScopes {
			return nil, deny(ReasonTokenScope, fmt.Sprintf("more than %d scopes", maxScopes))
		}
		out = append(out, tok)
	}
	return out, nil
}

// validScopeToken: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// clip shortens attacker-chosen values before they go into an error detail.
func clip(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// TokenClaims are the claims of a token to mint.
type TokenClaims struct {
	Issuer   string
	Subject  string
	Audience []string
	Scopes   []string
	// ID is the jti; empty means a random 128-bit id.
	ID string
	// IssuedAt and NotBefore are optional (zero means absent).
	IssuedAt  time.Time
	NotBefore time.Time
	// Expiry is required.
	Expiry time.Time
}

// MintToken signs an EdDSA access token (typ at+jwt) with key under kid. It
// is meant for development issuers and tests; production tokens come from
// the agency's identity provider. Errors wrap ErrMint.
func MintToken(key ed25519.PrivateKey, kid string, c TokenClaims) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("%w: not an Ed25519 private key", ErrMint)
	}
	switch {
	case kid == "":
		return "", fmt.Errorf("%w: kid is empty", ErrMint)
	case c.Issuer == "":
		return "", fmt.Errorf("%w: issuer is empty", ErrMint)
	case c.Subject == "":
		return "", fmt.Errorf("%w: subject is empty", ErrMint)
	case !printable(c.Subject, MaxSubject):
		return "", fmt.Errorf("%w: subject is not 1 to %d bytes of printable UTF-8 on one line", ErrMint, MaxSubject)
	case c.ID != "" && !printable(c.ID, MaxTokenID):
		return "", fmt.Errorf("%w: token id is not 1 to %d bytes of printable UTF-8 on one line", ErrMint, MaxTokenID)
	case len(c.Audience) == 0 || slices.Contains(c.Audience, ""):
		return "", fmt.Errorf("%w: audience is empty", ErrMint)
	case c.Expiry.IsZero():
		return "", fmt.Errorf("%w: expiry is required", ErrMint)
	}
	for _, s := range c.Scopes {
		if !validScopeToken(s) {
			return "", fmt.Errorf("%w: scope %q is not an RFC 6749 scope-token", ErrMint, s)
		}
	}
	id := c.ID
	if id == "" {
		var b [16]byte
		rand.Read(b[:])
		id = base64.RawURLEncoding.EncodeToString(b[:])
	}
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    c.Issuer,
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings(c.Audience),
			ExpiresAt: jwt.NewNumericDate(c.Expiry),
			ID:        id,
		},
		Scope: strings.Join(c.Scopes, " "),
	}
	if !c.IssuedAt.IsZero() {
		claims.IssuedAt = jwt.NewNumericDate(c.IssuedAt)
	}
	if !c.NotBefore.IsZero() {
		claims.NotBefore = jwt.NewNumericDate(c.NotBefore)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = kid
	t.Header["typ"] = "at+jwt"
	s, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMint, err)
	}
	return s, nil
}
