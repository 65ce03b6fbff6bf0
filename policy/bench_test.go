package policy

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerifyDecide is the per-request cost of authorization: verify an
// EdDSA token and decide on an action. Each iteration uses a fresh verifier
// so the signature is checked every time (the first request of a token).
// Compare with BenchmarkJWTParse (the library alone, plain keyfunc) and
// BenchmarkEd25519Verify (the signature alone) from the same run.
func BenchmarkVerifyDecide(b *testing.B) {
	is := mustIssuer(b, DevIssuer("shelter"), 1)
	tok := is.edToken(b, with(goodClaims(is.name), "scope", "referral:send referral:read referral:update audit:read"))
	r := Resource{From: "iom", To: "shelter"}
	v := mustVerifier(b, nil, is)
	b.ReportAllocs()
	for b.Loop() {
		clear(v.seen)
		p, err := v.Verify(tok)
		if err != nil {
			b.Fatal(err)
		}
		if err := Decide(p, ActionReferralRead, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyDecideRepeat is the same for a token seen before: the
// signature check is remembered, the claims are checked again.
func BenchmarkVerifyDecideRepeat(b *testing.B) {
	is := mustIssuer(b, DevIssuer("shelter"), 1)
	v := mustVerifier(b, nil, is)
	tok := is.edToken(b, with(goodClaims(is.name), "scope", "referral:send referral:read referral:update audit:read"))
	r := Resource{From: "iom", To: "shelter"}
	b.ReportAllocs()
	for b.Loop() {
		p, err := v.Verify(tok)
		if err != nil {
			b.Fatal(err)
		}
		if err := Decide(p, ActionReferralRead, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJWTParse(b *testing.B) {
	is := mustIssuer(b, DevIssuer("shelter"), 1)
	tok := is.edToken(b, with(goodClaims(is.name), "scope", "referral:send referral:read referral:update audit:read"))
	pub := is.ed.Public()
	keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
	p := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(func() time.Time { return testNow }))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(tok, keyfunc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEd25519Verify(b *testing.B) {
	is := mustIssuer(b, DevIssuer("shelter"), 1)
	pub := is.ed.Public().(ed25519.PublicKey)
	msg := make([]byte, 300)
	sig := ed25519.Sign(is.ed, msg)
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("bad signature")
		}
	}
}
