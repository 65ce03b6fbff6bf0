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
		is.edToken(f, with(good, "exp", "9999999999")),
		is.edToken(f, with(good, "sub", "cw-1\nadmin")),
		is.edToken(f, with(good, "sub", "cw-\u202e1")),
		is.edToken(f, with(good, "sub", strings.Repeat("s", MaxSubject+1))),
		rawToken(is.ed, `{"alg":"EdDSA","kid":"`+is.edKID+`"}`, `{"iss":"`+is.name+`","sub":"a","aud":"shelter","exp":1,"exp":9999999999}`),
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
		if !printable(p.Subject, MaxSubject) {
			t.Fatalf("accepted subject %q", p.Subject)
		}
	})
}

// FuzzVerifyClaims signs arbitrary claims JSON with the trusted key, so the
// strict JSON and claim checks that run after the signature are reached.
// An accepted token has claims that are one JSON object with no member
// named twice, exp a number, and a printable subject.
func FuzzVerifyClaims(f *testing.F) {
	is := mustIssuer(f, DevIssuer("shelter"), 1)
	v := mustVerifier(f, nil, is)
	hdr := `{"alg":"EdDSA","typ":"at+jwt","kid":"` + is.edKID + `"}`
	base := `{"iss":"` + is.name + `","aud":"shelter","exp":1795165200,"sub":"cw-1"`
	for _, s := range []string{
		base + `}`,
		base + `,"scope":"referral:read","jti":"t1","iat":1795158000,"nbf":1795158000}`,
		base + `,"exp":1795165200}`,
		base + `,"x":{"a":[1,{"b":null}],"a":2}}`,
		base + `} {}`,
		base + `,"nbf":"1795158000"}`,
		`{"iss":"` + is.name + `","aud":"shelter","exp":"1795165200","sub":"cw-1"}`,
		`{"iss":"` + is.name + `","aud":["shelter"],"exp":1795165200.5,"sub":"cw\u202e1"}`,
		`{"iss":"` + is.name + `","aud":"shelter","exp":1795165200,"sub":"cw\n1"}`,
		`[]`, `{}`, `null`, `{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, claims string) {
		p, err := v.Verify(rawToken(is.ed, hdr, claims))
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) || ReasonOf(err) == "" {
				t.Fatalf("error %v has no token reason", err)
			}
			return
		}
		if !printable(p.Subject, MaxSubject) || p.Expiry.IsZero() {
			t.Fatalf("accepted principal %+v", p)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(claims), &m); err != nil {
			t.Fatalf("accepted claims that are not one JSON object: %v", err)
		}
		if _, ok := m["exp"].(float64); !ok {
			t.Fatalf("accepted exp %#v", m["exp"])
		}
	})
}

// FuzzCheckTokenJSON checks the walk on its own: it never panics, and what
// it accepts is a single valid JSON object.
func FuzzCheckTokenJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":{"b":[1,{"c":2,"c":3}]}}`, `{} {}`, `{"a":[}`, `[1]`, `"x"`, `{"exp":"1"}`, `{"exp":1e999}`} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, claims bool) {
		err := checkTokenJSON(b, "claims", claims)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v is not ErrInvalidToken", err)
			}
			return
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil || m == nil {
			t.Fatalf("accepted %q", b)
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
	f.Add([]byte(`{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}],"pseudonym":"^[A-Z]{2}-[0-9]{6}$"}`))
	f.Add([]byte(`{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}],"pseudonym":"^a$|b"}`))
	f.Add([]byte(`{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}],"pseudonym":"(?m)^a$"}`))
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
		if r.Pseudonym != "" && !anchored(r.Pseudonym) {
			t.Fatalf("accepted unanchored pattern %q", r.Pseudonym)
		}
		for _, s := range []string{"V-2026-0042", "", "Siti Aminah", "\xff"} {
			if err := r.CheckPseudonym(s); err != nil && !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("CheckPseudonym: %v is not ErrInvalidInput", err)
			}
		}
	})
}
