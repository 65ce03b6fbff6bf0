package policy

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// A remembered token is still checked for time on every call, and a token
// that differs in one byte is verified from scratch.
func TestVerifiedTokenMemo(t *testing.T) {
	is := mustIssuer(t, "https://idp.iom.example", 1)
	now := testNow
	cfg := VerifierConfig{Agency: "shelter", Leeway: 30 * time.Second, Now: func() time.Time { return now },
		Issuers: []Issuer{{Name: is.name, Keys: is.keySet(t)}}}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodEdDSA, is.ed, goodClaims(is.name), map[string]any{"kid": is.edKID})
	for i := range 2 {
		if p, err := v.Verify(tok); err != nil || p.Subject != "caseworker-1" {
			t.Fatalf("call %d: %+v %v", i, p, err)
		}
	}
	if len(v.seen) != 1 {
		t.Fatalf("memo holds %d tokens, want 1", len(v.seen))
	}
	tampered := tok[:len(tok)-2] + "AA"
	if tampered == tok {
		tampered = tok[:len(tok)-2] + "BB"
	}
	if _, err := v.Verify(tampered); ReasonOf(err) != ReasonTokenSignature && ReasonOf(err) != ReasonTokenMalformed {
		t.Errorf("tampered token: %v", err)
	}
	now = testNow.Add(2 * time.Hour)
	if _, err := v.Verify(tok); !errors.Is(err, ErrInvalidToken) || ReasonOf(err) != ReasonTokenExpired {
		t.Errorf("remembered token after exp: %v, want token-expired", err)
	}
}
