package policy_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/rujukan/rujukan/policy"
)

func Example() {
	// The agency's issuer key and its JWKS (normally read from jwks.json).
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	x := base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	keys, err := policy.ParseJWKS([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","x":"` + x + `"}]}`))
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	v, err := policy.NewVerifier(policy.VerifierConfig{
		Agency:  "shelter",
		Issuers: []policy.Issuer{{Name: policy.DevIssuer("shelter"), Keys: keys}},
		Now:     func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}

	tok, err := policy.MintToken(key, "k1", policy.TokenClaims{
		Issuer: policy.DevIssuer("shelter"), Subject: "caseworker-7", Audience: []string{"shelter"},
		Scopes: []string{policy.ScopeReferralRead}, IssuedAt: now, Expiry: now.Add(time.Hour),
	})
	if err != nil {
		panic(err)
	}

	p, err := v.Verify(tok)
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Agency, p.Subject, p.Scopes)
	fmt.Println(policy.Decide(p, policy.ActionReferralRead, policy.Resource{From: "iom", To: "shelter"}))
	err = policy.Decide(p, policy.ActionReferralSend, policy.Resource{})
	fmt.Println(policy.ReasonOf(err), err)

	rules, _ := policy.ParseRules(policy.DefaultRulesJSON())
	fmt.Println(rules.Allow(policy.MsgStatement, "shelter", "police", policy.Facts{}))
	// Output:
	// shelter caseworker-7 [referral:read]
	// <nil>
	// scope-missing scope-missing: needs scope referral:send
	// rule-no-open-request: a statement must answer an open request from the recipient
}
