package policy

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerify(t *testing.T) {
	shelter := mustIssuer(t, DevIssuer("shelter"), 1)
	police := mustIssuer(t, DevIssuer("police"), 2)
	attacker := mustIssuer(t, "https://evil.example", 3)
	v := mustVerifier(t, nil, shelter)
	vAll := mustVerifier(t, []string{AlgEdDSA, AlgES256, AlgRS256}, shelter)
	good := goodClaims(shelter.name)
	edHeader := map[string]any{"kid": shelter.edKID}

	flipSig := func(tok string) string {
		i := strings.LastIndexByte(tok, '.')
		sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
		sig[0] ^= 1
		return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
	}
	pub := []byte(shelter.ed.Public().(ed25519.PublicKey))
	valid := shelter.edToken(t, good)

	tests := []struct {
		name   string
		v      *Verifier
		token  string
		reason string
	}{
		{"valid EdDSA", v, valid, ""},
		{"valid ES256 when allowed", vAll, sign(t, jwt.SigningMethodES256, shelter.ec, good, map[string]any{"kid": shelter.ecKID}), ""},
		{"valid RS256 when allowed", vAll, sign(t, jwt.SigningMethodRS256, shelter.rsa, good, map[string]any{"kid": shelter.rsKID}), ""},
		{"valid typ JWT", v, sign(t, jwt.SigningMethodEdDSA, shelter.ed, good, map[string]any{"kid": shelter.edKID, "typ": "JWT"}), ""},
		{"valid without typ", v, sign(t, jwt.SigningMethodEdDSA, shelter.ed, good, map[string]any{"kid": shelter.edKID, "typ": nil}), ""},
		{"valid aud string", v, shelter.edToken(t, with(good, "aud", "shelter")), ""},
		{"valid aud array with us", v, shelter.edToken(t, with(good, "aud", []string{"iom", "shelter"})), ""},
		{"valid expired within leeway", v, shelter.edToken(t, with(good, "exp", testNow.Add(-10*time.Second).Unix())), ""},
		{"valid nbf within leeway", v, shelter.edToken(t, with(good, "nbf", testNow.Add(20*time.Second).Unix())), ""},
		{"valid without nbf iat jti scope", v, shelter.edToken(t, with(good, "nbf", nil, "iat", nil, "jti", nil, "scope", nil)), ""},
		{"jku header is ignored, our key verifies", v, sign(t, jwt.SigningMethodEdDSA, shelter.ed, good, map[string]any{"kid": shelter.edKID, "jku": "https://evil.example/jwks"}), ""},

		{"empty", v, "", ReasonTokenMissing},
		{"1 MiB token", v, strings.Repeat("A", 1<<20), ReasonTokenTooLarge},
		{"just over the cap", v, valid + "." + strings.Repeat("A", MaxTokenSize), ReasonTokenTooLarge},
		{"alg none", v, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good, edHeader), ReasonTokenAlgorithm},
		{"alg none with stripped signature of a real token", v, noneHeader(valid), ReasonTokenAlgorithm},
		{"HS256 keyed with the public key (key confusion)", v, sign(t, jwt.SigningMethodHS256, pub, good, edHeader), ReasonTokenAlgorithm},
		{"HS256 keyed with the JWKS x value", v, sign(t, jwt.SigningMethodHS256, []byte(b64(pub)), good, edHeader), ReasonTokenAlgorithm},
		{"ES256 outside the allowlist", v, sign(t, jwt.SigningMethodES256, shelter.ec, good, map[string]any{"kid": shelter.ecKID}), ReasonTokenAlgorithm},
		{"RS256 outside the allowlist", v, sign(t, jwt.SigningMethodRS256, shelter.rsa, good, map[string]any{"kid": shelter.rsKID}), ReasonTokenAlgorithm},
		{"PS256 never allowed", vAll, sign(t, jwt.SigningMethodPS256, shelter.rsa, good, map[string]any{"kid": shelter.rsKID}), ReasonTokenAlgorithm},
		{"unknown alg", v, replaceHeader(valid, `{"alg":"XX512","kid":"`+shelter.edKID+`"}`), ReasonTokenAlgorithm},
		{"ES256 token naming the EdDSA key", vAll, sign(t, jwt.SigningMethodES256, shelter.ec, good, map[string]any{"kid": shelter.edKID}), ReasonTokenAlgorithm},
		{"expired", v, shelter.edToken(t, with(good, "exp", testNow.Add(-31*time.Second).Unix())), ReasonTokenExpired},
		{"nbf in the future", v, shelter.edToken(t, with(good, "nbf", testNow.Add(time.Minute).Unix())), ReasonTokenNotYetValid},
		{"iat in the future", v, shelter.edToken(t, with(good, "iat", testNow.Add(time.Minute).Unix())), ReasonTokenIssuedInFuture},
		{"exp missing", v, shelter.edToken(t, with(good, "exp", nil)), ReasonTokenClaimMissing},
		{"sub missing", v, shelter.edToken(t, with(good, "sub", nil)), ReasonTokenClaimMissing},
		{"wrong aud", v, shelter.edToken(t, with(good, "aud", "police")), ReasonTokenAudience},
		{"aud missing", v, shelter.edToken(t, with(good, "aud", nil)), ReasonTokenAudience},
		{"aud array without us", v, shelter.edToken(t, with(good, "aud", []string{"iom", "police"})), ReasonTokenAudience},
		{"aud of wrong type", v, shelter.edToken(t, with(good, "aud", 7)), ReasonTokenMalformed},
		{"wrong iss", v, shelter.edToken(t, with(good, "iss", "https://idp.example")), ReasonTokenIssuer},
		{"iss missing", v, shelter.edToken(t, with(good, "iss", nil)), ReasonTokenIssuer},
		{"unknown kid", v, sign(t, jwt.SigningMethodEdDSA, shelter.ed, good, map[string]any{"kid": "no-such-key"}), ReasonTokenKey},
		{"kid missing", v, sign(t, jwt.SigningMethodEdDSA, shelter.ed, good, nil), ReasonTokenKey},
		{"kid of wrong type", v, sign(t, jwt.SigningMethodEdDSA, shelter.ed, good, map[string]any{"kid": 5}), ReasonTokenKey},
		{"bad signature", v, flipSig(valid), ReasonTokenSignature},
		{"signature of another token", v, swapSig(valid, shelter.edToken(t, with(good, "sub", "other"))), ReasonTokenSignature},
		{"signed by attacker key under our kid", v, sign(t, jwt.SigningMethodEdDSA, attacker.ed, good, edHeader), ReasonTokenSignature},
		{"attacker key announced by jku", v, sign(t, jwt.SigningMethodEdDSA, attacker.ed, good, map[string]any{"kid": attacker.edKID, "jku": "https://evil.example/jwks"}), ReasonTokenKey},
		{"attacker key embedded as jwk", v, sign(t, jwt.SigningMethodEdDSA, attacker.ed, good, map[string]any{"kid": shelter.edKID, "jwk": map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(attacker.ed.Public().(ed25519.PublicKey))}}), ReasonTokenSignature},
		{"truncated", v, valid[:len(valid)-10], ReasonTokenSignature},
		{"truncated to two segments", v, valid[:strings.LastIndexByte(valid, '.')], ReasonTokenMalformed},
		{"truncated inside the header", v, valid[:10], ReasonTokenMalformed},
		{"four segments", v, valid + ".x", ReasonTokenMalformed},
		{"bad base64 in header", v, "!!!" + valid[3:], ReasonTokenMalformed},
		{"bad base64 in claims", v, badClaims(valid), ReasonTokenMalformed},
		{"bad base64 in signature", v, valid[:len(valid)-4] + "$$$$", ReasonTokenMalformed},
		{"padded base64", v, padSig(valid), ReasonTokenMalformed},
		{"header not JSON", v, b64([]byte("not json")) + valid[strings.IndexByte(valid, '.'):], ReasonTokenMalformed},
		{"token from another agency's issuer", v, police.edToken(t, with(goodClaims(police.name))), ReasonTokenIssuer},
		{"another agency's key claiming our issuer", v, police.edToken(t, good), ReasonTokenKey},
		{"another agency's key under our kid", v, sign(t, jwt.SigningMethodEdDSA, police.ed, good, edHeader), ReasonTokenSignature},
		{"typ JOSE", v, sign(t, jwt.SigningMethodEdDSA, shelter.ed, good, map[string]any{"kid": shelter.edKID, "typ": "JOSE"}), ReasonTokenType},
		{"typ of an ID token", v, sign(t, jwt.SigningMethodEdDSA, shelter.ed, good, map[string]any{"kid": shelter.edKID, "typ": "id+jwt"}), ReasonTokenType},
		{"crit header", v, sign(t, jwt.SigningMethodEdDSA, shelter.ed, good, map[string]any{"kid": shelter.edKID, "crit": []string{"exp"}}), ReasonTokenMalformed},
		{"scope with a control character", v, shelter.edToken(t, with(good, "scope", "referral:send\x01")), ReasonTokenScope},
		{"scope as an array", v, shelter.edToken(t, with(good, "scope", []string{"referral:send"})), ReasonTokenMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.v.Verify(tc.token)
			wantReason(t, err, tc.reason)
			if err != nil {
				if !errors.Is(err, ErrInvalidToken) {
					t.Errorf("error %v is not ErrInvalidToken", err)
				}
				if p.Subject != "" || p.Agency != "" || p.Scopes != nil {
					t.Errorf("principal %+v returned with an error", p)
				}
				return
			}
			if p.Agency != "shelter" || p.Issuer != shelter.name || p.Subject == "" {
				t.Errorf("principal = %+v", p)
			}
		})
	}
}

func TestVerifyPrincipal(t *testing.T) {
	is := mustIssuer(t, DevIssuer("shelter"), 1)
	v := mustVerifier(t, nil, is)
	p, err := v.Verify(is.edToken(t, with(goodClaims(is.name), "scope", "  referral:send  audit:read referral:send future:scope")))
	if err != nil {
		t.Fatal(err)
	}
	want := Principal{
		Agency: "shelter", Subject: "caseworker-1", TokenID: "tok-1", Issuer: is.name,
		Scopes: []string{"referral:send", "audit:read", "future:scope"},
		Expiry: testNow.Add(time.Hour),
	}
	if p.Agency != want.Agency || p.Subject != want.Subject || p.TokenID != want.TokenID ||
		p.Issuer != want.Issuer || !p.Expiry.Equal(want.Expiry) || strings.Join(p.Scopes, ",") != strings.Join(want.Scopes, ",") {
		t.Fatalf("got %+v, want %+v", p, want)
	}
}

func TestMintToken(t *testing.T) {
	is := mustIssuer(t, DevIssuer("shelter"), 1)
	v := mustVerifier(t, nil, is)
	claims := TokenClaims{
		Issuer: is.name, Subject: "dev", Audience: []string{"shelter"},
		Scopes: ScopesForKind(KindShelter), IssuedAt: testNow, Expiry: testNow.Add(time.Hour),
	}
	tok, err := MintToken(is.ed, is.edKID, claims)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Scopes, " ") != strings.Join(claims.Scopes, " ") || p.TokenID == "" {
		t.Fatalf("principal %+v", p)
	}
	tok2, _ := MintToken(is.ed, is.edKID, claims)
	p2, _ := v.Verify(tok2)
	if p2.TokenID == p.TokenID {
		t.Error("two minted tokens share a jti")
	}

	bad := []struct {
		name string
		key  ed25519.PrivateKey
		kid  string
		mod  func(*TokenClaims)
	}{
		{"no kid", is.ed, "", func(*TokenClaims) {}},
		{"short key", is.ed[:10], is.edKID, func(*TokenClaims) {}},
		{"no issuer", is.ed, is.edKID, func(c *TokenClaims) { c.Issuer = "" }},
		{"no subject", is.ed, is.edKID, func(c *TokenClaims) { c.Subject = "" }},
		{"no audience", is.ed, is.edKID, func(c *TokenClaims) { c.Audience = nil }},
		{"no expiry", is.ed, is.edKID, func(c *TokenClaims) { c.Expiry = time.Time{} }},
		{"scope with a space", is.ed, is.edKID, func(c *TokenClaims) { c.Scopes = []string{"a b"} }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := claims
			tc.mod(&c)
			if _, err := MintToken(tc.key, tc.kid, c); !errors.Is(err, ErrMint) {
				t.Fatalf("got %v, want ErrMint", err)
			}
		})
	}
}

func TestNewVerifierConfig(t *testing.T) {
	is := mustIssuer(t, "iss", 1)
	ks := is.keySet(t)
	ok := VerifierConfig{Agency: "iom", Issuers: []Issuer{{Name: "iss", Keys: ks}}}
	tests := []struct {
		name string
		mod  func(*VerifierConfig)
		ok   bool
	}{
		{"defaults", func(*VerifierConfig) {}, true},
		{"leeway 30s", func(c *VerifierConfig) { c.Leeway = 30 * time.Second }, true},
		{"leeway 31s", func(c *VerifierConfig) { c.Leeway = 31 * time.Second }, false},
		{"negative leeway", func(c *VerifierConfig) { c.Leeway = -time.Second }, false},
		{"no agency", func(c *VerifierConfig) { c.Agency = "" }, false},
		{"HS256", func(c *VerifierConfig) { c.Algorithms = []string{"HS256"} }, false},
		{"none", func(c *VerifierConfig) { c.Algorithms = []string{"none"} }, false},
		{"no issuers", func(c *VerifierConfig) { c.Issuers = nil }, false},
		{"issuer without keys", func(c *VerifierConfig) { c.Issuers = []Issuer{{Name: "x"}} }, false},
		{"issuer without name", func(c *VerifierConfig) { c.Issuers = []Issuer{{Keys: ks}} }, false},
		{"issuer twice", func(c *VerifierConfig) { c.Issuers = append(c.Issuers, c.Issuers[0]) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.Issuers = append([]Issuer(nil), ok.Issuers...)
			tc.mod(&c)
			_, err := NewVerifier(c)
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok && !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want ErrConfig", err)
			}
		})
	}
}

func noneHeader(tok string) string {
	parts := strings.Split(tok, ".")
	return b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
}

func replaceHeader(tok, header string) string {
	return b64([]byte(header)) + tok[strings.IndexByte(tok, '.'):]
}

func swapSig(tok, other string) string {
	return tok[:strings.LastIndexByte(tok, '.')] + other[strings.LastIndexByte(other, '.'):]
}

func badClaims(tok string) string {
	parts := strings.Split(tok, ".")
	return parts[0] + ".%%%" + parts[1][3:] + "." + parts[2]
}

func padSig(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	return tok[:i+1] + base64.URLEncoding.EncodeToString(sig)
}
