package body

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// fuzzParse checks one parser on one input: it never panics, returns
// either a value or errors, errors are well formed and at most MaxErrors,
// and an accepted body re-encodes and re-parses to the same value.
func fuzzParse[T any](t *testing.T, parse func([]byte) (*T, []FieldError), b []byte) {
	v, errs := parse(b)
	if (v == nil) == (errs == nil) {
		t.Fatalf("returned %v and %v", v, errs)
	}
	if len(errs) > MaxErrors {
		t.Fatalf("%d errors", len(errs))
	}
	for _, e := range errs {
		if e.Code == "" || e.Message == "" || (e.Field != "" && !strings.HasPrefix(e.Field, "/")) {
			t.Fatalf("malformed error %#v", e)
		}
	}
	if v == nil {
		return
	}
	if !json.Valid(b) {
		t.Fatalf("accepted invalid JSON %q", b)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	v2, errs := parse(out)
	if errs != nil {
		t.Fatalf("re-encoded body refused: %v\n%s", errs, out)
	}
	out2, _ := json.Marshal(v2)
	if !bytes.Equal(out, out2) {
		t.Fatalf("round trip changed the body:\n%s\n%s", out, out2)
	}
	// What encoding/json reads from the body is what the parser read.
	var std T
	if err := json.Unmarshal(b, &std); err != nil {
		t.Fatalf("json.Unmarshal refuses an accepted body: %v", err)
	}
	if stdOut, _ := json.Marshal(&std); !bytes.Equal(stdOut, out) && !strings.Contains(string(b), `"priority"`) {
		// ParseReferral fills in an absent priority; otherwise the two agree.
		if _, isReferral := any(v).(*Referral); !isReferral {
			t.Fatalf("parser and json.Unmarshal differ:\n%s\n%s", out, stdOut)
		}
	}
}

func seeds(f *testing.F, bodies ...string) {
	for _, b := range bodies {
		f.Add([]byte(b))
	}
	for _, b := range []string{`{"a/b~c":null}`, `{} {}`, ``, `[[[[[[[[[[[[[[]]]]]]]]]]]]]]`, `"x"`, `{"a":1e999}`,
		`{"a":"\ud800"}`, `{"a":1,"a":2}`} {
		f.Add([]byte(b))
	}
}

func FuzzParseReferral(f *testing.F) {
	seeds(f, designExample,
		`{"to":"dinsos-ntb","person":{"pseudonym":"C1","age_range":"18-25"},"needs":["legal"],`+
			`"consent":{"given":true,"purposes":["services"],"method":"verbal","recorded_at":"2026-11-20T09:00:00+08:00"}}`,
		`{"to":"police","priority":"urgent","person":{"pseudonym":"V-1","age":9},"needs":["shelter"],`+
			`"consent_override":{"justification":"danger"}}`,
		`{"to":"shelter","to":"police"}`, `{"person":{"name":"x","age":1e3}}`)
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzParse(t, ParseReferralReceived, b)
		fuzzParse(t, ParseReferral, b)
	})
}

func FuzzParseStatusChange(f *testing.F) {
	seeds(f, `{"status":"accepted"}`, `{"status":"declined","reason":"no bed\nfree"}`,
		`{"status":"withdrawn","status":"accepted"}`, `{"status":null,"reason":7}`, `"accepted"`)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzParse(t, ParseStatusChange, b) })
}

func FuzzParseStatementRequest(f *testing.F) {
	seeds(f, goodSR, `{"to":"shelter","referral_id":"01JD5X","legal_basis":"LP/1","purpose":"investigation",`+
		`"questions":["a\tb"],"due":"2026-12-01T00:00:00.5+07:00"}`)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzParse(t, ParseStatementRequest, b) })
}

func FuzzParseConsent(f *testing.F) {
	seeds(f, `{"given":false,"method":"verbal"}`,
		`{"given":true,"purposes":["statement"],"method":"guardian","witness_role":"social-worker","witness":"S",`+
			`"notes":"n","person":{"age_range":"15-17"}}`)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzParse(t, ParseConsent, b) })
}

func FuzzParseResponse(f *testing.F) {
	seeds(f, `{"statement":`+goodStatement+`}`, `{"decline":{"reason":"other","detail":"d"}}`)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzParse(t, ParseResponse, b) })
}

func FuzzParseStatusBody(f *testing.F) {
	seeds(f, `{"ref":"01JD5X","status":"declined","reason":"no-capacity","detail":"d","by":"shelter","at":"2026-11-21T09:00:00Z"}`)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzParse(t, ParseStatusBody, b) })
}

func FuzzParseStatementBody(f *testing.F) {
	seeds(f, `{"ref":"01JD6A","statement":`+goodStatement+`,"consent":`+goodEnvConsent+`,"person":{"age":17}}`,
		`{"ref":"a","statement":`+goodStatement+`,"consent":`+goodEnvConsent+`}`)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzParse(t, ParseStatementBody, b) })
}
