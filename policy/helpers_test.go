package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testNow is the fixed clock of the tests.
var testNow = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// issuerKeys are the keys of one test issuer, one per algorithm.
type issuerKeys struct {
	name  string
	ed    ed25519.PrivateKey
	ec    *ecdsa.PrivateKey
	rsa   *rsa.PrivateKey
	edKID string
	ecKID string
	rsKID string
}

// Deterministic keys so that seeds and failures are reproducible.
func mustIssuer(t testing.TB, name string, seed byte) *issuerKeys {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &issuerKeys{
		name:  name,
		ed:    ed25519.NewKeyFromSeed(s),
		ec:    ec,
		rsa:   testRSAKey(t),
		edKID: name + "-ed",
		ecKID: name + "-ec",
		rsKID: name + "-rs",
	}
}

var cachedRSA *rsa.PrivateKey

func testRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	if cachedRSA == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		cachedRSA = k
	}
	return cachedRSA
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwks returns the issuer's public keys as RFC 7517 JSON.
func (k *issuerKeys) jwks(t testing.TB) []byte {
	t.Helper()
	ecPub := k.ec.PublicKey
	ecBytes, err := ecPub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"keys": []map[string]any{
		{"kty": "OKP", "crv": "Ed25519", "x": b64(k.ed.Public().(ed25519.PublicKey)), "kid": k.edKID, "alg": "EdDSA", "use": "sig"},
		{"kty": "EC", "crv": "P-256", "x": b64(ecBytes[1:33]), "y": b64(ecBytes[33:]), "kid": k.ecKID, "alg": "ES256"},
		{"kty": "RSA", "n": b64(k.rsa.N.Bytes()), "e": b64(big.NewInt(int64(k.rsa.E)).Bytes()), "kid": k.rsKID},
	}}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (k *issuerKeys) keySet(t testing.TB) *KeySet {
	t.Helper()
	ks, err := ParseJWKS(k.jwks(t))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// mustVerifier returns a verifier for agency "shelter" trusting the given
// issuers, with the fixed clock.
func mustVerifier(t testing.TB, algs []string, issuers ...*issuerKeys) *Verifier {
	t.Helper()
	cfg := VerifierConfig{Agency: "shelter", Algorithms: algs, Leeway: 30 * time.Second, Now: func() time.Time { return testNow }}
	for _, is := range issuers {
		cfg.Issuers = append(cfg.Issuers, Issuer{Name: is.name, Keys: is.keySet(t)})
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// goodClaims are valid claims for the "shelter" gateway from issuer iss.
func goodClaims(iss string) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   iss,
		"sub":   "caseworker-1",
		"aud":   []string{"shelter"},
		"exp":   testNow.Add(time.Hour).Unix(),
		"iat":   testNow.Add(-time.Minute).Unix(),
		"nbf":   testNow.Add(-time.Minute).Unix(),
		"jti":   "tok-1",
		"scope": "referral:send referral:read",
	}
}

// sign signs claims with method and key, setting header fields (a nil value
// deletes one).
func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (k *issuerKeys) edToken(t testing.TB, claims jwt.MapClaims) string {
	return sign(t, jwt.SigningMethodEdDSA, k.ed, claims, map[string]any{"kid": k.edKID})
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// wantReason fails unless err carries reason (or is nil when reason is "").
func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got no error, want %s", reason)
	}
	if got := ReasonOf(err); got != reason {
		t.Fatalf("got reason %q (%v), want %q", got, err, reason)
	}
}
