package referral

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(designExample))
	f.Add([]byte(`{"to":"dinsos-ntb","person":{"pseudonym":"C1","age_range":"18-25"},"needs":["legal"],` +
		`"consent":{"given":true,"purposes":["services"],"method":"verbal","recorded_at":"2026-11-20T09:00:00+08:00"}}`))
	f.Add([]byte(`{"to":"police","priority":"urgent","person":{"pseudonym":"V-1","age":9},"needs":["shelter"],` +
		`"consent_override":{"justification":"danger"}}`))
	f.Add([]byte(`{"to":"shelter","to":"police"}`))
	f.Add([]byte(`{"person":{"name":"x","age":1e3}}`))
	f.Add([]byte(`[[[[[[[[[[[[[[]]]]]]]]]]]]]]`))
	f.Add([]byte(`{"a/b~c":null}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		if rr, rerrs := ParseReceived(b); (rr == nil) == (rerrs == nil) {
			t.Fatalf("ParseReceived returned %v and %v", rr, rerrs)
		}
		r, errs := Parse(b)
		if (r == nil) == (errs == nil) {
			t.Fatalf("Parse returned %v and %v", r, errs)
		}
		if len(errs) > MaxErrors {
			t.Fatalf("%d errors", len(errs))
		}
		for _, e := range errs {
			if e.Code == "" || e.Message == "" || (e.Field != "" && !strings.HasPrefix(e.Field, "/")) {
				t.Fatalf("malformed error %#v", e)
			}
		}
		if r == nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if _, known := r.Minor(); r.Person.Age != nil && !known {
			t.Fatalf("age %d but Minor not known", *r.Person.Age)
		}
		// What Parse accepts, re-encoded, parses to the same referral.
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, errs := Parse(out)
		if errs != nil {
			t.Fatalf("re-encoded body refused: %v\n%s", errs, out)
		}
		out2, _ := json.Marshal(r2)
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the body:\n%s\n%s", out, out2)
		}
	})
}

func FuzzParseStatusChange(f *testing.F) {
	f.Add([]byte(`{"status":"accepted"}`))
	f.Add([]byte(`{"status":"declined","reason":"no bed\nfree"}`))
	f.Add([]byte(`{"status":"withdrawn","status":"accepted"}`))
	f.Add([]byte(`{"status":null,"reason":7}`))
	f.Add([]byte(`"accepted"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, errs := ParseStatusChange(b)
		if (s == nil) == (errs == nil) {
			t.Fatalf("ParseStatusChange returned %v and %v", s, errs)
		}
		if s == nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		out, _ := json.Marshal(s)
		s2, errs := ParseStatusChange(out)
		if errs != nil || *s2 != *s {
			t.Fatalf("round trip: %v %v", s2, errs)
		}
	})
}
