package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the JSON of a token and of its text claims.
const (
	// MaxSubject is the largest sub claim, in bytes.
	MaxSubject = 128
	// MaxTokenID is the largest jti claim, in bytes.
	MaxTokenID = 256
	// maxTokenJSONDepth bounds the nesting of a token's header and claims.
	maxTokenJSONDepth = 16
	// maxNumericDate is 9999-12-31T23:59:59Z: a later exp, iat or nbf is
	// refused rather than converted with overflow.
	maxNumericDate = 253402300799
)

// numericClaims must be JSON numbers (RFC 7519 NumericDate).
var numericClaims = map[string]bool{"exp": true, "iat": true, "nbf": true}

// knownClaims are the claims the verifier reads. encoding/json matches
// member names to them without regard to case ("EXP", "eXp", even "ſub"
// with U+017F), so a claim name in any other case is refused.
var knownClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope"}

// checkSegments checks the header and claims JSON of a token whose
// signature has verified, where the JWT library is lenient: each must be
// UTF-8 holding one JSON object, with no member name twice in an object at
// any depth, ignoring case (the library keeps the last of two "exp", and
// takes "EXP" for "exp"; another parser may keep the first), no claim the
// verifier reads spelled in another case, nesting at most maxTokenJSONDepth deep, every number within
// the range of a float64, and nothing after it (the library ignores a
// second value after the claims); exp, iat and nbf
// must be JSON numbers from 0 to maxNumericDate (the library also takes
// "exp":"9999999999").
//
// It runs after the signature check, so an unauthenticated token costs no
// more than the library's own decoding, and the memo of verified tokens
// means it runs once per token.
func checkSegments(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return deny(ReasonTokenMalformed, "not a well-formed compact JWS")
	}
	for i, name := range []string{"header", "claims"} {
		b, err := base64.RawURLEncoding.Strict().DecodeString(parts[i])
		if err != nil {
			return deny(ReasonTokenMalformed, name+" is not base64url")
		}
		if err := checkTokenJSON(b, name, i == 1); err != nil {
			return err
		}
	}
	return nil
}

// jsonFrame is an open object or array of checkTokenJSON's walk.
type jsonFrame struct {
	object  bool
	wantKey bool
	keys    map[string]struct{}
}

// checkTokenJSON walks one decoded segment token by token (see
// checkSegments). When claims is set, the members of the top-level object
// named in numericClaims must be numbers in range.
func checkTokenJSON(b []byte, name string, claims bool) error {
	malformed := func(format string, args ...any) error {
		return deny(ReasonTokenMalformed, name+": "+fmt.Sprintf(format, args...))
	}
	if !utf8.Valid(b) {
		return malformed("not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []jsonFrame
	member := "" // the top-level member whose value comes next
	for started := false; !started || len(stack) > 0; started = true {
		tok, err := dec.Token()
		if err != nil {
			return malformed("not valid JSON")
		}
		if !started {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return malformed("not a JSON object")
			}
			stack = append(stack, jsonFrame{object: true, wantKey: true, keys: map[string]struct{}{}})
			continue
		}
		top := &stack[len(stack)-1]
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top.object && top.wantKey {
			k, _ := tok.(string) // the decoder only gives strings here
			fk := foldKey(k)
			if _, dup := top.keys[fk]; dup {
				return malformed("member %q appears twice (names are compared ignoring case)", clip(k))
			}
			top.keys[fk] = struct{}{}
			top.wantKey = false
			if len(stack) == 1 {
				member = k
				if claims {
					for _, c := range knownClaims {
						if k != c && strings.EqualFold(k, c) {
							return malformed("member %q is claim %q in another case", clip(k), c)
						}
					}
				}
			}
			continue
		}
		if top.object {
			top.wantKey = true
		}
		if n, ok := tok.(json.Number); ok {
			if _, err := n.Float64(); err != nil {
				return malformed("number %s is out of range", clip(string(n)))
			}
		}
		if claims && len(stack) == 1 && numericClaims[member] {
			if err := checkNumericDate(member, tok); err != nil {
				return err
			}
		}
		if d, ok := tok.(json.Delim); ok {
			if len(stack) == maxTokenJSONDepth {
				return malformed("nested deeper than %d", maxTokenJSONDepth)
			}
			f := jsonFrame{object: d == '{', wantKey: d == '{'}
			if f.object {
				f.keys = map[string]struct{}{}
			}
			stack = append(stack, f)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return malformed("data after the JSON object")
	}
	return nil
}

// foldKey maps s to a key that is the same for two strings exactly when
// strings.EqualFold says they are equal (Unicode simple folding, as
// encoding/json matches names): each rune becomes the smallest rune of its
// folding orbit.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

// checkNumericDate checks the value of claim name: a JSON number from 0 to
// maxNumericDate.
func checkNumericDate(name string, tok json.Token) error {
	n, ok := tok.(json.Number)
	if !ok {
		return deny(ReasonTokenClaimInvalid, name+" is not a JSON number")
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return deny(ReasonTokenClaimInvalid, fmt.Sprintf("%s is not a date from 1970 to 9999", name))
	}
	return nil
}

// printable reports whether s is text that is safe to show on one line of
// an audit log or a screen: 1 to max bytes of valid UTF-8 with no control
// (Cc: newline, tab, escape...), format (Cf: U+202E RIGHT-TO-LEFT OVERRIDE,
// U+200E, zero-width characters...), private-use (Co) or surrogate (Cs)
// character, and no line or paragraph separator (U+2028, U+2029).
func printable(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs, unicode.Zl, unicode.Zp) {
			return false
		}
	}
	return true
}
