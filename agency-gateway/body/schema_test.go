package body

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/rujukan/rujukan/agency-gateway/openapi"
	"github.com/rujukan/rujukan/policy"
)

func enumOf(t *testing.T, name string) []string {
	t.Helper()
	s, _ := schemaAt(openapi.BaseURL + "#/components/schemas/" + name).(map[string]any)
	vals, ok := s["enum"].([]any)
	if !ok {
		t.Fatalf("schema %s has no enum", name)
	}
	var out []string
	for _, v := range vals {
		out = append(out, v.(string))
	}
	return out
}

// TestEnumerationsMatchPolicy keeps the schema's enumerations and package
// policy's constants the same where both exist.
func TestEnumerationsMatchPolicy(t *testing.T) {
	tests := map[string][]string{
		"Priority":               {policy.PriorityNormal, policy.PriorityUrgent},
		"ConsentPurpose":         {policy.PurposeServices, policy.PurposeLawEnforcement, policy.PurposeStatement},
		"ConsentMethod":          {policy.MethodWritten, policy.MethodVerbal, policy.MethodGuardian},
		"WitnessRole":            {policy.WitnessSocialWorker, policy.WitnessGuardian, policy.WitnessInterpreter, policy.WitnessOther},
		"ReferralStatus":         policy.ReferralMachine.States,
		"StatementRequestStatus": policy.StatementRequestMachine.States,
	}
	for name, want := range tests {
		if got := enumOf(t, name); !slices.Equal(got, want) {
			t.Errorf("%s: schema %v, policy %v", name, got, want)
		}
	}
	// A status change moves a referral to a state the recipient or the
	// sender may choose.
	sc, _ := schemaAt(openapi.BaseURL + "#/components/schemas/StatusChange/properties/status").(map[string]any)
	for _, v := range sc["enum"].([]any) {
		if !policy.ReferralMachine.Valid(v.(string)) {
			t.Errorf("StatusChange status %v is not a referral state", v)
		}
	}
}

// TestEnumerationsListedOnce: every enum in the document's body schemas
// is a named component, referenced wherever it is used.
func TestEnumerationsListedOnce(t *testing.T) {
	seen := map[string]string{}
	var walk func(x any, where string)
	walk = func(x any, where string) {
		switch x := x.(type) {
		case map[string]any:
			if e, ok := x["enum"].([]any); ok && len(e) > 1 {
				b, _ := json.Marshal(e)
				if prev, ok := seen[string(b)]; ok {
					t.Errorf("enum %s listed at %s and %s", b, prev, where)
				}
				seen[string(b)] = where
			}
			for k, v := range x {
				walk(v, where+"/"+k)
			}
		case []any:
			for _, v := range x {
				walk(v, where)
			}
		}
	}
	walk(doc, "#")
}

func TestSchemaNames(t *testing.T) {
	for fn, name := range SchemaNames {
		if _, err := openapi.Schema(name); err != nil {
			t.Errorf("%s: %v", fn, err)
		}
	}
	if len(SchemaNames) != 9 {
		t.Errorf("%d parse functions", len(SchemaNames))
	}
}

// TestRequestBodiesAreTheComponents: the documented request body of each
// operation is the schema its Parse function uses, so what the API
// description promises is what the gateway checks.
func TestRequestBodiesAreTheComponents(t *testing.T) {
	tests := []struct {
		method, path string
		body         []byte
		parse        func([]byte) []FieldError
	}{
		{"POST", "/v1/referrals", []byte(designExample), func(b []byte) []FieldError { _, e := ParseReferral(b); return e }},
		{"POST", "/v1/referrals/x/status", []byte(`{"status":"accepted"}`), func(b []byte) []FieldError { _, e := ParseStatusChange(b); return e }},
		{"POST", "/v1/statement-requests", []byte(goodSR), func(b []byte) []FieldError { _, e := ParseStatementRequest(b); return e }},
		{"POST", "/v1/statement-requests/x/consent", []byte(`{"given":false,"method":"verbal"}`), func(b []byte) []FieldError { _, e := ParseConsent(b); return e }},
		{"POST", "/v1/statement-requests/x/response", []byte(`{"decline":{"reason":"other"}}`), func(b []byte) []FieldError { _, e := ParseResponse(b); return e }},
	}
	for _, tt := range tests {
		if errs := tt.parse(tt.body); errs != nil {
			t.Errorf("%s %s: parse: %v", tt.method, tt.path, errs)
		}
		if err := openapi.CheckRequest(tt.method, tt.path, "application/json", tt.body); err != nil {
			t.Errorf("%s %s: %v", tt.method, tt.path, err)
		}
		bad := []byte(`{"unknown":1}`)
		if errs := tt.parse(bad); errs == nil {
			t.Errorf("%s %s: parse accepted %s", tt.method, tt.path, bad)
		}
		if err := openapi.CheckRequest(tt.method, tt.path, "application/json", bad); err == nil {
			t.Errorf("%s %s: schema accepted %s", tt.method, tt.path, bad)
		}
	}
}

// TestStoredReferralMatchesItemSchema: what the gateway stores (a parsed
// referral with the recorder set) fits the response schema, and reads
// back with ParseReferralReceived.
func TestStoredReferralMatchesItemSchema(t *testing.T) {
	bodies := [][]byte{
		[]byte(designExample),
		body(t, func(m map[string]any) {
			delete(m, "priority")
			delete(m, "identified")
			obj(m, "consent")["expires_at"] = "2027-11-20T09:00:00Z"
			m["case_ref"] = "IOM/NTB:42"
		}),
		body(t, func(m map[string]any) {
			delete(m, "consent")
			m["consent_override"] = map[string]any{"justification": "danger"}
		}),
	}
	for i, b := range bodies {
		r, errs := ParseReferral(b)
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
		if _, errs := ParseReferralReceived(stored); errs != nil {
			t.Errorf("body %d: received: %v", i, errs)
		}
		item := `{"id":"01JD5X","kind":"referral","box":"outbox","from":"iom","to":"shelter","status":"sent",
			"created_at":"2026-11-20T09:00:00Z","updated_at":"2026-11-20T09:00:00Z","referral":` + string(stored) + `,
			"timeline":[{"event":"queued","at":"2026-11-20T09:00:00Z","by":"caseworker-7","clock":"iom"}]}`
		if err := openapi.Check("GET", "/v1/referrals/x", 200, "application/json", []byte(item)); err != nil {
			t.Errorf("body %d: %v\n%s", i, err, stored)
		}
	}
}

// FuzzSchemaAcceptsWhatParseAccepts: ParseReferral is at least as strict
// as the published request schema, so a client that follows the schema is
// never surprised by an acceptance.
func FuzzSchemaAcceptsWhatParseAccepts(f *testing.F) {
	f.Add([]byte(designExample))
	f.Add([]byte(`{"to":"a","priority":"urgent","person":{"pseudonym":"1","age":0},"needs":["legal"],` +
		`"consent_override":{"justification":"x"}}`))
	f.Add([]byte(`{"a":[1,2,{"b":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, errs := ParseReferral(b)
		err := openapi.CheckRequest("POST", "/v1/referrals", "application/json", b)
		if errs == nil && err != nil {
			t.Fatalf("ParseReferral accepts what the schema refuses: %v\n%s", err, b)
		}
	})
}
