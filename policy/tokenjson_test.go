package policy

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// rawToken signs header and claims JSON exactly as given (the library's
// encoder could not write duplicate members or a string exp by itself).
func rawToken(key ed25519.PrivateKey, header, claims string) string {
	in := b64([]byte(header)) + "." + b64([]byte(claims))
	return in + "." + b64(ed25519.Sign(key, []byte(in)))
}

// Claims and header JSON the library accepts but the verifier must not.
func TestVerifyStrictJSON(t *testing.T) {
	is := mustIssuer(t, DevIssuer("shelter"), 1)
	v := mustVerifier(t, nil, is)
	good := goodClaims(is.name)
	hdr := fmt.Sprintf(`{"alg":"EdDSA","typ":"at+jwt","kid":%q}`, is.edKID)
	exp := testNow.Add(time.Hour).Unix()
	past := testNow.Add(-time.Hour).Unix()
	// claims returns valid claims JSON with extra members spliced in.
	claims := func(extra string) string {
		return fmt.Sprintf(`{"iss":%q,"sub":"caseworker-1","aud":"shelter"%s}`, is.name, extra)
	}
	withExp := func(extra string) string { return claims(fmt.Sprintf(`,"exp":%d%s`, exp, extra)) }
	nest := func(n int) string {
		return withExp(`,"x":` + strings.Repeat("[", n) + strings.Repeat("]", n))
	}

	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"raw claims verify", rawToken(is.ed, hdr, withExp("")), ""},
		{"fractional exp", rawToken(is.ed, hdr, claims(fmt.Sprintf(`,"exp":%d.5`, exp))), ""},
		{"same name at another depth", rawToken(is.ed, hdr, withExp(`,"x":{"exp":"later","sub":1},"y":[{"a":1},{"a":2}]`)), ""},
		{"unknown claims in any case", rawToken(is.ed, hdr, withExp(`,"Tenant":"a","X-Y":"b","EXPIRES":1`)), ""},
		{"nested 15 deep", rawToken(is.ed, hdr, nest(maxTokenJSONDepth-1)), ""},
		{"unicode escapes in sub", rawToken(is.ed, hdr, fmt.Sprintf(`{"iss":%q,"sub":"Sit\u00ed","aud":"shelter","exp":%d}`, is.name, exp)), ""},
		{"escaped newline in sub", rawToken(is.ed, hdr, fmt.Sprintf(`{"iss":%q,"sub":"cw\n1","aud":"shelter","exp":%d}`, is.name, exp)), ReasonTokenClaimInvalid},

		{"exp as a string", is.edToken(t, with(good, "exp", "9999999999")), ReasonTokenClaimInvalid},
		{"exp as a string, raw", rawToken(is.ed, hdr, claims(`,"exp":"9999999999"`)), ReasonTokenClaimInvalid},
		{"iat as a string", is.edToken(t, with(good, "iat", fmt.Sprint(testNow.Unix()))), ReasonTokenClaimInvalid},
		{"nbf as a string", is.edToken(t, with(good, "nbf", fmt.Sprint(testNow.Unix()))), ReasonTokenClaimInvalid},
		{"exp null", rawToken(is.ed, hdr, claims(`,"exp":null`)), ReasonTokenClaimInvalid},
		{"exp true (refused by the library)", rawToken(is.ed, hdr, claims(`,"exp":true`)), ReasonTokenMalformed},
		{"iat null", rawToken(is.ed, hdr, withExp(`,"iat":null`)), ReasonTokenClaimInvalid},
		{"exp 1e300", is.edToken(t, with(good, "exp", 1e300)), ReasonTokenClaimInvalid},
		{"exp after 9999", is.edToken(t, with(good, "exp", int64(maxNumericDate+1))), ReasonTokenClaimInvalid},
		{"negative nbf", is.edToken(t, with(good, "nbf", -1)), ReasonTokenClaimInvalid},

		{"duplicate exp, later one valid", rawToken(is.ed, hdr, claims(fmt.Sprintf(`,"exp":%d,"exp":%d`, past, exp))), ReasonTokenMalformed},
		{"duplicate exp, same value", rawToken(is.ed, hdr, claims(fmt.Sprintf(`,"exp":%d,"exp":%d`, exp, exp))), ReasonTokenMalformed},
		{"duplicate sub", rawToken(is.ed, hdr, withExp(`,"sub":"admin"`)), ReasonTokenMalformed},
		{"duplicate exp in another case", rawToken(is.ed, hdr, claims(fmt.Sprintf(`,"exp":%d,"EXP":%d`, past, exp))), ReasonTokenMalformed},
		{"duplicate sub with a long s (U+017F)", rawToken(is.ed, hdr, withExp(`,"\u017fub":"admin"`)), ReasonTokenMalformed},
		{"exp in another case", rawToken(is.ed, hdr, claims(fmt.Sprintf(`,"eXp":%d`, exp))), ReasonTokenMalformed},
		{"scope in another case", rawToken(is.ed, hdr, withExp(`,"Scope":"consent:override"`)), ReasonTokenMalformed},
		{"kelvin sign in a nested name", rawToken(is.ed, hdr, withExp(`,"x":{"k":1,"\u212a":2}`)), ReasonTokenMalformed},
		{"duplicate kid in another case in the header", rawToken(is.ed, fmt.Sprintf(`{"alg":"EdDSA","kid":%q,"KID":"other"}`, is.edKID), withExp("")), ReasonTokenMalformed},
		{"duplicate aud", rawToken(is.ed, hdr, withExp(`,"aud":"police"`)), ReasonTokenMalformed},
		{"duplicate scope", rawToken(is.ed, hdr, withExp(`,"scope":"referral:read","scope":"consent:override"`)), ReasonTokenMalformed},
		{"duplicate member in a nested object", rawToken(is.ed, hdr, withExp(`,"x":{"a":1,"a":2}`)), ReasonTokenMalformed},
		{"duplicate member in an object in an array", rawToken(is.ed, hdr, withExp(`,"x":[{"a":1,"b":2,"a":3}]`)), ReasonTokenMalformed},
		{"duplicate kid in the header", rawToken(is.ed, fmt.Sprintf(`{"alg":"EdDSA","kid":"other","kid":%q}`, is.edKID), withExp("")), ReasonTokenMalformed},
		{"duplicate alg in the header", rawToken(is.ed, fmt.Sprintf(`{"alg":"none","alg":"EdDSA","kid":%q}`, is.edKID), withExp("")), ReasonTokenMalformed},
		{"second JSON value after the claims", rawToken(is.ed, hdr, withExp("")+` {"sub":"admin"}`), ReasonTokenMalformed},
		{"claims not UTF-8", rawToken(is.ed, hdr, withExp(",\"note\":\"\xff\"")), ReasonTokenMalformed},
		{"nested 16 deep", rawToken(is.ed, hdr, nest(maxTokenJSONDepth)), ReasonTokenMalformed},
		{"nested 1000 deep", rawToken(is.ed, hdr, nest(1000)), ReasonTokenMalformed},
		{"number beyond float64 in an unknown claim", rawToken(is.ed, hdr, withExp(`,"x":[1e700]`)), ReasonTokenMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(tc.token)
			wantReason(t, err, tc.reason)
			if err != nil {
				if !errors.Is(err, ErrInvalidToken) {
					t.Errorf("%v is not ErrInvalidToken", err)
				}
				if p.Subject != "" {
					t.Errorf("principal %+v returned with an error", p)
				}
			}
		})
	}
}

// sub and jti end up in audit events: only short printable text passes.
func TestVerifyPrintableClaims(t *testing.T) {
	is := mustIssuer(t, DevIssuer("shelter"), 1)
	v := mustVerifier(t, nil, is)
	good := goodClaims(is.name)
	tests := []struct {
		name   string
		claim  string
		value  string
		reason string
	}{
		{"plain sub", "sub", "caseworker-1", ""},
		{"sub with spaces and accents", "sub", "Siti Rahmawati (pekerja sosial) é ñ", ""},
		{"sub of a UUID", "sub", "f47ac10b-58cc-4372-a567-0e02b2c3d479", ""},
		{"sub of 128 bytes", "sub", strings.Repeat("a", MaxSubject), ""},
		{"sub of 128 bytes in 2-byte runes", "sub", strings.Repeat("é", MaxSubject/2), ""},
		{"sub too long", "sub", strings.Repeat("a", MaxSubject+1), ReasonTokenClaimInvalid},
		{"sub too long in runes", "sub", strings.Repeat("é", MaxSubject/2) + "a", ReasonTokenClaimInvalid},
		{"empty sub", "sub", "", ReasonTokenClaimMissing},
		{"sub with a newline", "sub", "cw-1\nAUDIT ok admin", ReasonTokenClaimInvalid},
		{"sub with a carriage return", "sub", "cw-1\r", ReasonTokenClaimInvalid},
		{"sub with a tab", "sub", "cw\t1", ReasonTokenClaimInvalid},
		{"sub with NUL", "sub", "cw\x001", ReasonTokenClaimInvalid},
		{"sub with ESC (terminal escape)", "sub", "cw\x1b[31m", ReasonTokenClaimInvalid},
		{"sub with DEL", "sub", "cw\x7f", ReasonTokenClaimInvalid},
		{"sub with C1 control", "sub", "cw\u0085", ReasonTokenClaimInvalid},
		{"sub with U+202E right-to-left override", "sub", "cw-\u202e1-nimda", ReasonTokenClaimInvalid},
		{"sub with U+200E left-to-right mark", "sub", "cw\u200e1", ReasonTokenClaimInvalid},
		{"sub with U+200B zero-width space", "sub", "cw\u200b1", ReasonTokenClaimInvalid},
		{"sub with U+FEFF byte order mark", "sub", "\ufeffcw1", ReasonTokenClaimInvalid},
		{"sub with U+2066 isolate", "sub", "cw\u20661", ReasonTokenClaimInvalid},
		{"sub with U+2028 line separator", "sub", "cw\u20281", ReasonTokenClaimInvalid},
		{"sub with a private-use character", "sub", "cw\ue0001", ReasonTokenClaimInvalid},
		{"plain jti", "jti", "tok-1", ""},
		{"jti with a newline", "jti", "tok\n1", ReasonTokenClaimInvalid},
		{"jti with U+202E", "jti", "tok\u202e1", ReasonTokenClaimInvalid},
		{"jti too long", "jti", strings.Repeat("t", MaxTokenID+1), ReasonTokenClaimInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := with(good, tc.claim, tc.value)
			if tc.value == "" {
				c = with(good, tc.claim, nil)
			}
			p, err := v.Verify(is.edToken(t, c))
			wantReason(t, err, tc.reason)
			if err == nil && tc.claim == "sub" && p.Subject != tc.value {
				t.Fatalf("subject %q, want %q", p.Subject, tc.value)
			}
			if err != nil && tc.value != "" && strings.Contains(err.Error(), tc.value) {
				t.Fatalf("error %q repeats the claim", err)
			}
		})
	}
}

// MintToken refuses what Verify would refuse.
func TestMintTokenPrintable(t *testing.T) {
	is := mustIssuer(t, DevIssuer("shelter"), 1)
	c := TokenClaims{Issuer: is.name, Audience: []string{"shelter"}, Expiry: testNow.Add(time.Hour)}
	for _, sub := range []string{"a\nb", "a\u202eb", strings.Repeat("a", MaxSubject+1)} {
		c.Subject = sub
		if _, err := MintToken(is.ed, is.edKID, c); !errors.Is(err, ErrMint) {
			t.Errorf("sub %q: got %v, want ErrMint", sub, err)
		}
	}
	c.Subject, c.ID = "cw", "id\n"
	if _, err := MintToken(is.ed, is.edKID, c); !errors.Is(err, ErrMint) {
		t.Errorf("jti with a newline: got %v, want ErrMint", err)
	}
}

func TestVerifyScopesOfKind(t *testing.T) {
	is := mustIssuer(t, DevIssuer("shelter"), 1)
	verifier := func(kind string) *Verifier {
		v, err := NewVerifier(VerifierConfig{Agency: "shelter", Kind: kind, Now: func() time.Time { return testNow },
			Issuers: []Issuer{{Name: is.name, Keys: is.keySet(t)}}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	police, shelter, any := verifier(KindPolice), verifier(KindShelter), verifier("")
	ngo := verifier("ngo")
	all := strings.Join(AllScopes, " ")
	tests := []struct {
		name   string
		v      *Verifier
		scope  string
		reason string
	}{
		{"police with every police scope", police, strings.Join(ScopesForKind(KindPolice), " "), ""},
		{"police without scopes", police, "", ""},
		{"police with consent:override", police, "referral:send consent:override", ReasonTokenScopeNotAllowed},
		{"police with statement:respond", police, "statement:respond", ReasonTokenScopeNotAllowed},
		{"police with consent:record", police, "consent:record", ReasonTokenScopeNotAllowed},
		{"police with an unknown scope", police, "referral:read future:scope", ReasonTokenScopeNotAllowed},
		{"shelter with every shelter scope", shelter, strings.Join(ScopesForKind(KindShelter), " "), ""},
		{"shelter with consent:override", shelter, "consent:override", ""},
		{"shelter with statement:request", shelter, "referral:read statement:request", ReasonTokenScopeNotAllowed},
		{"shelter with openid", shelter, "openid referral:read", ReasonTokenScopeNotAllowed},
		{"new kind gets the holder scopes", ngo, strings.Join(ScopesForKind("ngo"), " "), ""},
		{"new kind with statement:request", ngo, "statement:request", ReasonTokenScopeNotAllowed},
		{"no kind: every scope", any, all + " future:scope", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := with(goodClaims(is.name), "scope", tc.scope)
			if tc.scope == "" {
				c = with(c, "scope", nil)
			}
			_, err := tc.v.Verify(is.edToken(t, c))
			wantReason(t, err, tc.reason)
			if err != nil && !errors.Is(err, ErrInvalidToken) {
				t.Errorf("%v is not ErrInvalidToken", err)
			}
		})
	}
	for _, kind := range []string{"Police", "police ", "*", "../x"} {
		_, err := NewVerifier(VerifierConfig{Agency: "shelter", Kind: kind, Issuers: []Issuer{{Name: is.name, Keys: is.keySet(t)}}})
		if !errors.Is(err, ErrConfig) {
			t.Errorf("kind %q: got %v, want ErrConfig", kind, err)
		}
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct {
		name string
		s    string
		want bool
	}{
		{"ascii", "cw-1", true},
		{"space inside", "a b", true},
		{"indonesian", "Siti Aminah", true},
		{"arabic script", "سيتي", true},
		{"emoji", "cw 🙂", true},
		{"empty", "", false},
		{"invalid UTF-8", "a\xffb", false},
		{"lone continuation byte", "\x80", false},
		{"newline", "\n", false},
		{"U+202E", "\u202e", false},
		{"U+2029 paragraph separator", "a\u2029b", false},
		{"at the cap", strings.Repeat("x", 16), true},
		{"over the cap", strings.Repeat("x", 17), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := printable(tc.s, 16); got != tc.want {
				t.Fatalf("printable(%q) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}

func TestFoldKey(t *testing.T) {
	same := [][2]string{{"exp", "EXP"}, {"sub", "\u017fub"}, {"k", "\u212a"}, {"Scope", "sCOPE"}, {"", ""}}
	for _, p := range same {
		if foldKey(p[0]) != foldKey(p[1]) || !strings.EqualFold(p[0], p[1]) {
			t.Errorf("%q and %q fold apart", p[0], p[1])
		}
	}
	differ := [][2]string{{"exp", "exq"}, {"sub", "sub "}, {"a", "á"}}
	for _, p := range differ {
		if foldKey(p[0]) == foldKey(p[1]) {
			t.Errorf("%q and %q fold together", p[0], p[1])
		}
	}
}
