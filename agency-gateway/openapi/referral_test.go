package openapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/rujukan/rujukan/agency-gateway/referral"
)

// schemaAt returns the schema at a JSON pointer of the document.
func schemaAt(t *testing.T, ptr string) map[string]any {
	t.Helper()
	x, err := resolve(spec.raw, ptr)
	if err != nil {
		t.Fatal(err)
	}
	return x.(map[string]any)
}

func enumOf(s map[string]any) []string {
	if items, ok := s["items"].(map[string]any); ok {
		s = items
	}
	var out []string
	for _, v := range s["enum"].([]any) {
		out = append(out, v.(string))
	}
	return out
}

// TestSchemaEnumerationsMatchValidator keeps the document and the validator
// on the same enumerations and patterns.
func TestSchemaEnumerationsMatchValidator(t *testing.T) {
	where := map[string][]string{
		"/person/sex":           {"#/components/schemas/Person/properties/sex"},
		"/exploitation":         {"#/components/schemas/ReferralInput/properties/exploitation", "#/components/schemas/Referral/properties/exploitation"},
		"/needs":                {"#/components/schemas/ReferralInput/properties/needs", "#/components/schemas/Referral/properties/needs"},
		"/risk":                 {"#/components/schemas/ReferralInput/properties/risk", "#/components/schemas/Referral/properties/risk"},
		"/priority":             {"#/components/schemas/ReferralInput/properties/priority", "#/components/schemas/ReferralItem/properties/priority"},
		"/consent/purposes":     {"#/components/schemas/ConsentInput/properties/purposes", "#/components/schemas/Consent/properties/purposes"},
		"/consent/method":       {"#/components/schemas/ConsentInput/properties/method", "#/components/schemas/Consent/properties/method"},
		"/status":               {"#/components/schemas/StatusChange/properties/status"},
		"/consent/witness_role": {"#/components/schemas/ConsentInput/properties/witness_role", "#/components/schemas/Consent/properties/witness_role"},
	}
	enums := referral.Enumerations()
	if len(enums) != len(where) {
		t.Fatalf("the validator has %d enumerations, the test knows %d", len(enums), len(where))
	}
	for field, ptrs := range where {
		for _, ptr := range ptrs {
			if got := enumOf(schemaAt(t, ptr)); !slices.Equal(got, enums[field]) {
				t.Errorf("%s: schema %v, validator %v", ptr, got, enums[field])
			}
		}
	}
	patterns := map[string]string{
		"#/components/schemas/ReferralInput/properties/to":         referral.PatternSlug,
		"#/components/schemas/ReferralInput/properties/case_ref":   referral.PatternCaseRef,
		"#/components/schemas/Person/properties/nationality":       referral.PatternCountry,
		"#/components/schemas/Person/properties/age_range":         referral.PatternAgeRange,
		"#/components/schemas/Person/properties/pseudonym/allOf/0": referral.PatternPseudonym,
		"#/components/schemas/Person/properties/languages/items":   referral.PatternLanguage,
		"#/components/schemas/ReferralSummary/properties/from":     referral.PatternSlug,
	}
	for ptr, want := range patterns {
		if got := schemaAt(t, ptr)["pattern"]; got != want {
			t.Errorf("%s: pattern %v, validator %v", ptr, got, want)
		}
	}
}

const designExample = `{"to":"shelter","priority":"urgent",
 "person":{"pseudonym":"V-2026-0042","sex":"female","age":17,"nationality":"ID","languages":["id","sas"]},
 "exploitation":["sexual","labour"],
 "identified":{"date":"2026-11-20","place":"Lombok International Airport","by":"iom"},
 "needs":["shelter","medical","psychosocial"],"risk":"high",
 "consent":{"given":true,"purposes":["services"],"method":"guardian","witness":"social worker S. Rahma",
            "recorded_at":"2026-11-20T09:00:00Z"},
 "notes":"free text"}`

func edit(t testing.TB, f func(m map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(designExample), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sub(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }

// TestSchemaAgreesWithValidator runs bodies through both the request schema
// and referral.Parse. On these bodies (which avoid the few rules the schema
// cannot express) they must agree.
func TestSchemaAgreesWithValidator(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"design example", designExample},
		{"minimal", `{"to":"dinsos-ntb","person":{"pseudonym":"C1","age_range":"18-25"},"needs":["legal"],
			"consent":{"given":false,"method":"verbal","recorded_at":"2026-11-20T09:00:00+08:00"}}`},
		{"override only", edit(t, func(m map[string]any) {
			delete(m, "consent")
			m["consent_override"] = map[string]any{"justification": "danger"}
		})},
		{"override with normal priority", edit(t, func(m map[string]any) {
			m["priority"] = "normal"
			m["consent_override"] = map[string]any{"justification": "danger"}
		})},
		{"override without priority", edit(t, func(m map[string]any) {
			delete(m, "priority")
			m["consent_override"] = map[string]any{"justification": "danger"}
		})},
		{"no consent", edit(t, func(m map[string]any) { delete(m, "consent") })},
		{"recorded_by", edit(t, func(m map[string]any) { sub(m, "consent")["recorded_by"] = "x" })},
		{"name", edit(t, func(m map[string]any) { sub(m, "person")["name"] = "Siti" })},
		{"from", edit(t, func(m map[string]any) { m["from"] = "iom" })},
		{"pseudonym with space", edit(t, func(m map[string]any) { sub(m, "person")["pseudonym"] = "Siti Aminah" })},
		{"pseudonym without digit", edit(t, func(m map[string]any) { sub(m, "person")["pseudonym"] = "SitiAminah" })},
		{"both ages", edit(t, func(m map[string]any) { sub(m, "person")["age_range"] = "15-17" })},
		{"no age", edit(t, func(m map[string]any) { delete(sub(m, "person"), "age") })},
		{"age 121", edit(t, func(m map[string]any) { sub(m, "person")["age"] = 121 })},
		{"age range leading zero", edit(t, func(m map[string]any) {
			delete(sub(m, "person"), "age")
			sub(m, "person")["age_range"] = "05-7"
		})},
		{"to upper case", edit(t, func(m map[string]any) { m["to"] = "Shelter" })},
		{"needs repeated", edit(t, func(m map[string]any) { m["needs"] = []string{"legal", "legal"} })},
		{"needs empty", edit(t, func(m map[string]any) { m["needs"] = []string{} })},
		{"need unknown", edit(t, func(m map[string]any) { m["needs"] = []string{"money"} })},
		{"given without purposes", edit(t, func(m map[string]any) { delete(sub(m, "consent"), "purposes") })},
		{"method unknown", edit(t, func(m map[string]any) { sub(m, "consent")["method"] = "implied" })},
		{"recorded_at date only", edit(t, func(m map[string]any) { sub(m, "consent")["recorded_at"] = "2026-11-20" })},
		{"identified date-time", edit(t, func(m map[string]any) { sub(m, "identified")["date"] = "2026-11-20T07:00:00Z" })},
		{"identified impossible date", edit(t, func(m map[string]any) { sub(m, "identified")["date"] = "2026-13-01" })},
		{"place too long", edit(t, func(m map[string]any) { sub(m, "identified")["place"] = strings.Repeat("p", 201) })},
		{"notes blank", edit(t, func(m map[string]any) { m["notes"] = "  " })},
		{"notes null", edit(t, func(m map[string]any) { m["notes"] = nil })},
		{"destination", edit(t, func(m map[string]any) { m["destination"] = "MY" })},
		{"destination name", edit(t, func(m map[string]any) { m["destination"] = "Malaysia" })},
		{"languages too many", edit(t, func(m map[string]any) {
			sub(m, "person")["languages"] = strings.Fields("aa bb cc dd ee ff gg hh ii jj kk")
		})},
		{"array body", `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := referral.Parse([]byte(tt.body))
			err := CheckRequest("POST", "/v1/referrals", ctJSON, []byte(tt.body))
			if (errs == nil) != (err == nil) {
				t.Fatalf("validator errors %v, schema error %v", errs, err)
			}
		})
	}
}

// TestStoredReferralMatchesItemSchema checks that what the gateway stores
// (a parsed referral with the recorder set) fits the response schema.
func TestStoredReferralMatchesItemSchema(t *testing.T) {
	bodies := []string{
		designExample,
		edit(t, func(m map[string]any) {
			delete(m, "priority")
			delete(m, "identified")
			sub(m, "consent")["expires_at"] = "2027-11-20T09:00:00Z"
			m["case_ref"] = "IOM/NTB:42"
		}),
		edit(t, func(m map[string]any) {
			delete(m, "consent")
			m["consent_override"] = map[string]any{"justification": "danger"}
		}),
	}
	for i, b := range bodies {
		r, errs := referral.Parse([]byte(b))
		if errs != nil {
			t.Fatalf("body %d: %v", i, errs)
		}
		if r.Consent != nil {
			r.Consent.RecordedBy = "caseworker-7"
		}
		stored, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check("GET", "/v1/referrals/x", 200, ctJSON, []byte(item("read", string(stored)))); err != nil {
			t.Errorf("body %d: %v\n%s", i, err, stored)
		}
	}
}

// FuzzSchemaAcceptsWhatParseAccepts: the validator is at least as strict
// as the published schema, so a client that follows the schema is never
// surprised by an acceptance, and the checker never panics.
func FuzzSchemaAcceptsWhatParseAccepts(f *testing.F) {
	f.Add([]byte(designExample))
	f.Add([]byte(`{"to":"dinsos-ntb","person":{"pseudonym":"C1","age_range":"18-25"},"needs":["legal"],` +
		`"consent":{"given":false,"method":"verbal","recorded_at":"2026-11-20T09:00:00+08:00"}}`))
	f.Add([]byte(`{"to":"a","priority":"urgent","person":{"pseudonym":"1","age":0},"needs":["legal"],` +
		`"consent_override":{"justification":"x"}}`))
	f.Add([]byte(`{"a":[1,2,{"b":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, errs := referral.Parse(b)
		err := CheckRequest("POST", "/v1/referrals", ctJSON, b)
		if errs == nil && err != nil {
			t.Fatalf("Parse accepts what the schema refuses: %v\n%s", err, b)
		}
		_ = Check("GET", "/v1/referrals/x", 200, ctJSON, b)
	})
}
