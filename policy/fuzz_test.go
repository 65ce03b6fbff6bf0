package policy

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify feeds arbitrary strings to the token path. Every input is
// either a valid token of the trusted issuer or refused with a reason of
// class ErrInvalidToken; nothing panics.
func FuzzVerify(f *testing.F) {
	is := mustIssuer(f, DevIssuer("shelter"), 1)
	v := mustVerifier(f, []string{AlgEdDSA, AlgES256, AlgRS256}, is)
	good := goodClaims(is.name)
	valid := is.edToken(f, good)
	for _, s := range []string{
		valid,
		sign(f, jwt.SigningMethodES256, is.ec, good, map[string]any{"kid": is.ecKID}),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good, map[string]any{"kid": is.edKID}),
		sign(f, jwt.SigningMethodHS256, []byte(is.ed.Public().(ed25519.PublicKey)), good, map[string]any{"kid": is.edKID}),
		is.edToken(f, with(good, "exp", nil)),
		is.edToken(f, with(good, "aud", []any{"shelter", 1})),
		is.edToken(f, with(good, "exp", 1e300)),
		is.edToken(f, with(good, "nbf", "tomorrow")),
		valid[:len(valid)-5],
		"", ".", "..", "a.b.c", "e30.e30.", strings.Repeat(".", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Verify(tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) || ReasonOf(err) == "" {
				t.Fatalf("error %v has no token reason", err)
			}
			return
		}
		if p.Agency != "shelter" || p.Subject == "" || p.Expiry.IsZero() {
			t.Fatalf("accepted token with principal %+v", p)
		}
	})
}

// FuzzParseJWKS checks that ParseJWKS never panics and that every key it
// returns is bound to a supported algorithm.
func FuzzParseJWKS(f *testing.F) {
	is := mustIssuer(f, "iss", 1)
	f.Add(is.jwks(f))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"k"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":"","kid":"k"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA","kid":"k"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := ParseJWKS(b)
		if err != nil {
			if !errors.Is(err, ErrJWKSMalformed) {
				t.Fatalf("error %v is not ErrJWKSMalformed", err)
			}
			return
		}
		for _, id := range ks.IDs() {
			k, _ := ks.Key(id)
			if k.Algorithm != AlgEdDSA && k.Algorithm != AlgES256 && k.Algorithm != AlgRS256 {
				t.Fatalf("key %q has algorithm %q", id, k.Algorithm)
			}
		}
	})
}

// FuzzParseRules checks that ParseRules never panics, that accepted rules
// re-encode to rules it accepts again, and that accepted rules never let a
// statement through without an open request.
func FuzzParseRules(f *testing.F) {
	f.Add([]byte(DefaultRulesJSON()))
	f.Add([]byte(`{"version":1,"allow":[{"kind":"statement","from":["*"],"to":["*"],"requires":["open-request"]}]}`))
	f.Add([]byte(`{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}]}`))
	f.Add([]byte(`{"version":1,"allow":[{"kind":"status","from":["*"],"to":["*"]}]}`))
	f.Add([]byte(`{"version":1,"allow":[]} x`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRules(b)
		if err != nil {
			if !errors.Is(err, ErrRulesMalformed) {
				t.Fatalf("error %v is not ErrRulesMalformed", err)
			}
			return
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseRules(again); err != nil {
			t.Fatalf("re-encoded rules refused: %v", err)
		}
		for _, from := range []string{"iom", "police", "x"} {
			if r.Allow(MsgStatement, from, "police", Facts{Counterpart: true}) == nil {
				t.Fatal("statement allowed without an open request")
			}
		}
	})
}
