package body

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rujukan/rujukan/policy"
)

// maxReasonChars bounds a status reason and an override justification.
const maxReasonChars = 2000

// designExample is the example referral of the API description.
const designExample = `{
  "to": "shelter",
  "priority": "urgent",
  "person": {"pseudonym": "V-2026-0042", "sex": "female", "age": 17, "nationality": "ID",
             "languages": ["id", "sas"]},
  "exploitation": ["sexual", "labour"],
  "identified": {"date": "2026-11-20", "place": "Lombok International Airport", "by": "iom"},
  "needs": ["shelter", "medical", "psychosocial"],
  "risk": "high",
  "consent": {"given": true, "purposes": ["services"], "method": "guardian",
              "witness": "social worker S. Rahma", "recorded_at": "2026-11-20T09:00:00Z"},
  "notes": "free text"
}`

// body returns the design example with edit applied to its decoded form.
func body(t testing.TB, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(designExample), &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

// fe is a FieldError without its message, for comparisons.
type fe struct{ Field, Code string }

func strip(errs []FieldError) []fe {
	var out []fe
	for _, e := range errs {
		out = append(out, fe{e.Field, e.Code})
	}
	return out
}

func TestParseDesignExample(t *testing.T) {
	r, errs := ParseReferral([]byte(designExample))
	if errs != nil {
		t.Fatalf("Parse: %v", errs)
	}
	if r.To != "shelter" || r.Priority != "urgent" || r.Person.Pseudonym != "V-2026-0042" ||
		r.Person.Age == nil || *r.Person.Age != 17 || r.Person.Sex != "female" ||
		!slices.Equal(r.Person.Languages, []string{"id", "sas"}) ||
		!slices.Equal(r.Needs, []string{"shelter", "medical", "psychosocial"}) ||
		r.Identified == nil || r.Identified.Date != "2026-11-20" || r.Risk != "high" ||
		r.Consent == nil || !r.Consent.Given || r.Consent.Method != "guardian" ||
		r.Consent.RecordedAt.Format("2006-01-02T15:04:05Z07:00") != "2026-11-20T09:00:00Z" ||
		r.Notes != "free text" {
		t.Fatalf("Parse: unexpected result %+v", r)
	}
	if minor, err := r.Age().Minor(); !minor || err != nil {
		t.Fatalf("Age().Minor() = %v, %v, want true, nil", minor, err)
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		body  []byte
		check func(t *testing.T, r *Referral)
	}{
		{"design example", []byte(designExample), nil},
		{"minimal", []byte(`{"to":"dinsos-ntb","person":{"pseudonym":"C1","age_range":"18-25"},
			"needs":["legal"],"consent":{"given":true,"purposes":["services"],"method":"verbal",
			"recorded_at":"2026-11-20T09:00:00+08:00"}}`),
			func(t *testing.T, r *Referral) {
				if r.Priority != policy.PriorityNormal {
					t.Errorf("priority = %q, want normal when absent", r.Priority)
				}
				if r.Person.Age != nil || r.Person.AgeRange != "18-25" {
					t.Errorf("person = %+v", r.Person)
				}
			}},
		{"every optional field", body(t, func(m map[string]any) {
			m["case_ref"] = "IOM/NTB:2026.0042"
			m["destination"] = "MY"
			obj(m, "consent")["expires_at"] = "2027-11-20T09:00:00Z"
			obj(m, "identified")["date"] = "2026-11-20T07:30:00.123+08:00"
			m["consent_override"] = map[string]any{"justification": "guardian unreachable;\nimmediate danger"}
		}), func(t *testing.T, r *Referral) {
			if r.CaseRef != "IOM/NTB:2026.0042" || r.Destination != "MY" || r.ConsentOverride == nil ||
				r.Consent.ExpiresAt == nil {
				t.Errorf("optional fields lost: %+v", r)
			}
		}},
		{"age zero", body(t, func(m map[string]any) { obj(m, "person")["age"] = 0 }), nil},
		{"age 120", body(t, func(m map[string]any) { obj(m, "person")["age"] = 120 }), nil},
		{"age range one year", body(t, func(m map[string]any) {
			delete(obj(m, "person"), "age")
			obj(m, "person")["age_range"] = "0-0"
		}), nil},
		{"override without consent", body(t, func(m map[string]any) {
			delete(m, "consent")
			m["consent_override"] = map[string]any{"justification": "life at risk, no guardian reachable"}
		}), func(t *testing.T, r *Referral) {
			if r.Consent != nil || r.ConsentOverride == nil {
				t.Errorf("consent = %v, override = %v", r.Consent, r.ConsentOverride)
			}
		}},
		{"consent refused without purposes", body(t, func(m map[string]any) {
			c := obj(m, "consent")
			c["given"] = false
			delete(c, "purposes")
		}), nil},
		{"every enumeration value", body(t, func(m map[string]any) {
			m["exploitation"] = []string{"sexual", "labour", "forced-marriage", "organ-removal", "other"}
			m["needs"] = []string{"shelter", "medical", "psychosocial", "legal", "repatriation",
				"reintegration", "family-tracing", "documentation"}
			obj(m, "consent")["purposes"] = []string{"services", "law-enforcement", "statement"}
		}), nil},
		{"unicode and newlines in notes", body(t, func(m map[string]any) {
			m["notes"] = "Korban berbicara bahasa Sasak.\n\tTidak ada dokumen. 名前なし — ok"
		}), nil},
		{"notes at limit", body(t, func(m map[string]any) { m["notes"] = strings.Repeat("é", MaxNotesBytes/2) }), nil},
		{"pseudonym of 64 characters", body(t, func(m map[string]any) {
			obj(m, "person")["pseudonym"] = "V" + strings.Repeat("0", 63)
		}), nil},
		{"pseudonym without digit (the network's rule is policy's)", body(t, func(m map[string]any) {
			obj(m, "person")["pseudonym"] = "SitiAminah"
		}), nil},
		{"age range open", body(t, func(m map[string]any) {
			delete(obj(m, "person"), "age")
			obj(m, "person")["age_range"] = "18+"
		}), nil},
		{"agency id of 63 characters", body(t, func(m map[string]any) { m["to"] = strings.Repeat("a", 63) }), nil},
		{"whitespace around the value", []byte(" \n" + designExample + "\n\t "), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, errs := ParseReferral(tt.body)
			if errs != nil {
				t.Fatalf("Parse: %v", errs)
			}
			if r == nil {
				t.Fatal("Parse returned nil and no errors")
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want []fe
	}{
		// Decoding.
		{"empty", []byte(``), []fe{{"", CodeSyntax}}},
		{"whitespace only", []byte(" \n"), []fe{{"", CodeSyntax}}},
		{"truncated", []byte(designExample[:100]), []fe{{"", CodeSyntax}}},
		{"not JSON", []byte(`to=shelter`), []fe{{"", CodeSyntax}}},
		{"missing colon", []byte(`{"to" "shelter"}`), []fe{{"", CodeSyntax}}},
		{"trailing comma", []byte(`{"to":"shelter",}`), []fe{{"", CodeSyntax}}},
		{"two values", []byte(designExample + designExample), []fe{{"", CodeTrailingData}}},
		{"trailing garbage", []byte(designExample + "x"), []fe{{"", CodeTrailingData}}},
		{"invalid UTF-8", append([]byte(`{"to":"`), 0xff, '"', '}'), []fe{{"", CodeEncoding}}},
		{"too large", bytes.Repeat([]byte(" "), MaxReferralBytes+1), []fe{{"", CodeTooLarge}}},
		{"too deep", []byte(`{"notes":[[[[[[[[[[[[1]]]]]]]]]]]]}`), []fe{{"", CodeSyntax}}},
		{"duplicate key", []byte(`{"to":"shelter","to":"police"}`), []fe{{"/to", CodeDuplicateKey}}},
		{"duplicate nested key", []byte(`{"person":{"age":17,"age":30}}`), []fe{{"/person/age", CodeDuplicateKey}}},
		{"array", []byte(`[]`), []fe{{"", CodeType}}},
		{"string", []byte(`"referral"`), []fe{{"", CodeType}}},
		{"null", []byte(`null`), []fe{{"", CodeType}}},
		{"empty object", []byte(`{}`), []fe{{"/to", CodeRequired}, {"/person", CodeRequired},
			{"/needs", CodeRequired}, {"/consent", CodeRequired}}},

		// Fields that must not be there.
		{"unknown field", body(t, func(m map[string]any) { m["colour"] = "red" }), []fe{{"/colour", CodeUnknownField}}},
		{"name at top", body(t, func(m map[string]any) { m["name"] = "Siti" }), []fe{{"/name", CodeForbidden}}},
		{"full name of person", body(t, func(m map[string]any) { obj(m, "person")["full_name"] = "Siti A" }),
			[]fe{{"/person/full_name", CodeForbidden}}},
		{"unknown person field", body(t, func(m map[string]any) { obj(m, "person")["surname"] = "A" }),
			[]fe{{"/person/surname", CodeUnknownField}}},
		{"recorded_by from body", body(t, func(m map[string]any) { obj(m, "consent")["recorded_by"] = "mallory" }),
			[]fe{{"/consent/recorded_by", CodeForbidden}}},
		{"from in body", body(t, func(m map[string]any) { m["from"] = "police" }), []fe{{"/from", CodeForbidden}}},
		{"pointer escaping", []byte(strings.Replace(designExample, `"to"`, `"a/b~c":1,"to"`, 1)),
			[]fe{{"/a~1b~0c", CodeUnknownField}}},
		{"overlong unknown key", []byte(strings.Replace(designExample, `"to"`, `"`+strings.Repeat("k", 500)+`":1,"to"`, 1)),
			[]fe{{"", CodeUnknownField}}},

		// to and priority.
		{"to missing", body(t, func(m map[string]any) { delete(m, "to") }), []fe{{"/to", CodeRequired}}},
		{"to upper case", body(t, func(m map[string]any) { m["to"] = "Shelter" }), []fe{{"/to", CodeFormat}}},
		{"to with slash", body(t, func(m map[string]any) { m["to"] = "shelter/x" }), []fe{{"/to", CodeFormat}}},
		{"to too long", body(t, func(m map[string]any) { m["to"] = strings.Repeat("a", 64) }), []fe{{"/to", CodeFormat}}},
		{"to leading dash", body(t, func(m map[string]any) { m["to"] = "-shelter" }), []fe{{"/to", CodeFormat}}},
		{"to empty", body(t, func(m map[string]any) { m["to"] = "" }), []fe{{"/to", CodeEmpty}}},
		{"to number", body(t, func(m map[string]any) { m["to"] = 7 }), []fe{{"/to", CodeType}}},
		{"to null", body(t, func(m map[string]any) { m["to"] = nil }), []fe{{"/to", CodeType}}},
		{"priority unknown", body(t, func(m map[string]any) { m["priority"] = "high" }), []fe{{"/priority", CodeEnum}}},
		{"priority case", body(t, func(m map[string]any) { m["priority"] = "Urgent" }), []fe{{"/priority", CodeEnum}}},

		// person.
		{"person missing", body(t, func(m map[string]any) { delete(m, "person") }), []fe{{"/person", CodeRequired}}},
		{"person not object", body(t, func(m map[string]any) { m["person"] = "V-1" }), []fe{{"/person", CodeType}}},
		{"pseudonym missing", body(t, func(m map[string]any) { delete(obj(m, "person"), "pseudonym") }),
			[]fe{{"/person/pseudonym", CodeRequired}}},
		{"pseudonym looks like a name", body(t, func(m map[string]any) { obj(m, "person")["pseudonym"] = "Siti Aminah" }),
			[]fe{{"/person/pseudonym", CodeFormat}}},
		{"pseudonym too long", body(t, func(m map[string]any) { obj(m, "person")["pseudonym"] = "V" + strings.Repeat("0", 64) }),
			[]fe{{"/person/pseudonym", CodeFormat}}},
		{"pseudonym control character", body(t, func(m map[string]any) { obj(m, "person")["pseudonym"] = "V-1\n" }),
			[]fe{{"/person/pseudonym", CodeFormat}}},
		{"sex unknown value", body(t, func(m map[string]any) { obj(m, "person")["sex"] = "f" }),
			[]fe{{"/person/sex", CodeEnum}}},
		{"age negative", body(t, func(m map[string]any) { obj(m, "person")["age"] = -1 }), []fe{{"/person/age", CodeRange}}},
		{"age 121", body(t, func(m map[string]any) { obj(m, "person")["age"] = 121 }), []fe{{"/person/age", CodeRange}}},
		{"age fractional", body(t, func(m map[string]any) { obj(m, "person")["age"] = 17.5 }), []fe{{"/person/age", CodeType}}},
		{"age exponent", []byte(strings.Replace(designExample, `"age": 17`, `"age": 1.7e1`, 1)), []fe{{"/person/age", CodeType}}},
		{"age huge", []byte(strings.Replace(designExample, `"age": 17`, `"age": 99999999999999999999999`, 1)),
			[]fe{{"/person/age", CodeRange}}},
		{"age with zero fraction", []byte(strings.Replace(designExample, `"age": 17`, `"age": 17.0`, 1)),
			[]fe{{"/person/age", CodeType}}},
		{"age string", body(t, func(m map[string]any) { obj(m, "person")["age"] = "17" }), []fe{{"/person/age", CodeType}}},
		{"age and range", body(t, func(m map[string]any) { obj(m, "person")["age_range"] = "15-17" }),
			[]fe{{"/person/age_range", CodeConflict}}},
		{"no age at all", body(t, func(m map[string]any) { delete(obj(m, "person"), "age") }),
			[]fe{{"/person/age", CodeRequired}}},
		{"age range reversed", body(t, func(m map[string]any) {
			delete(obj(m, "person"), "age")
			obj(m, "person")["age_range"] = "17-15"
		}), []fe{{"/person/age_range", CodeRange}}},
		{"age range over 120", body(t, func(m map[string]any) {
			delete(obj(m, "person"), "age")
			obj(m, "person")["age_range"] = "100-130"
		}), []fe{{"/person/age_range", CodeFormat}}},
		{"age range format", body(t, func(m map[string]any) {
			delete(obj(m, "person"), "age")
			obj(m, "person")["age_range"] = "15 to 17"
		}), []fe{{"/person/age_range", CodeFormat}}},
		{"age range leading zero", body(t, func(m map[string]any) {
			delete(obj(m, "person"), "age")
			obj(m, "person")["age_range"] = "05-07"
		}), []fe{{"/person/age_range", CodeFormat}}},
		{"nationality lower case", body(t, func(m map[string]any) { obj(m, "person")["nationality"] = "id" }),
			[]fe{{"/person/nationality", CodeFormat}}},
		{"nationality name", body(t, func(m map[string]any) { obj(m, "person")["nationality"] = "Indonesia" }),
			[]fe{{"/person/nationality", CodeFormat}}},
		{"language repeated", body(t, func(m map[string]any) { obj(m, "person")["languages"] = []string{"id", "id"} }),
			[]fe{{"/person/languages/1", CodeDuplicateItem}}},
		{"language malformed", body(t, func(m map[string]any) { obj(m, "person")["languages"] = []string{"Bahasa"} }),
			[]fe{{"/person/languages/0", CodeFormat}}},
		{"too many languages", body(t, func(m map[string]any) {
			var l []string
			for i := range 11 {
				l = append(l, fmt.Sprintf("x%c", 'a'+i))
			}
			obj(m, "person")["languages"] = l
		}), []fe{{"/person/languages", CodeTooMany}}},
		{"languages empty", body(t, func(m map[string]any) { obj(m, "person")["languages"] = []string{} }),
			[]fe{{"/person/languages", CodeEmpty}}},

		// Lists of enumerations.
		{"needs missing", body(t, func(m map[string]any) { delete(m, "needs") }), []fe{{"/needs", CodeRequired}}},
		{"needs empty", body(t, func(m map[string]any) { m["needs"] = []string{} }), []fe{{"/needs", CodeEmpty}}},
		{"needs not array", body(t, func(m map[string]any) { m["needs"] = "shelter" }), []fe{{"/needs", CodeType}}},
		{"need unknown", body(t, func(m map[string]any) { m["needs"] = []string{"shelter", "money"} }),
			[]fe{{"/needs/1", CodeEnum}}},
		{"need repeated", body(t, func(m map[string]any) { m["needs"] = []string{"shelter", "medical", "shelter"} }),
			[]fe{{"/needs/2", CodeDuplicateItem}}},
		{"need number", body(t, func(m map[string]any) { m["needs"] = []any{1} }), []fe{{"/needs/0", CodeType}}},
		{"too many needs", body(t, func(m map[string]any) {
			m["needs"] = []string{"shelter", "medical", "psychosocial", "legal", "repatriation",
				"reintegration", "family-tracing", "documentation", "shelter"}
		}), []fe{{"/needs", CodeTooMany}, {"/needs/8", CodeDuplicateItem}}},
		{"exploitation unknown", body(t, func(m map[string]any) { m["exploitation"] = []string{"begging"} }),
			[]fe{{"/exploitation/0", CodeEnum}}},
		{"risk unknown", body(t, func(m map[string]any) { m["risk"] = "extreme" }), []fe{{"/risk", CodeEnum}}},

		// identified, destination, case_ref, notes.
		{"identified date malformed", body(t, func(m map[string]any) { obj(m, "identified")["date"] = "20/11/2026" }),
			[]fe{{"/identified/date", CodeFormat}}},
		{"identified date impossible", body(t, func(m map[string]any) { obj(m, "identified")["date"] = "2026-02-30" }),
			[]fe{{"/identified/date", CodeFormat}}},
		{"identified place multiline", body(t, func(m map[string]any) { obj(m, "identified")["place"] = "a\nb" }),
			[]fe{{"/identified/place", CodeFormat}}},
		{"identified place too long", body(t, func(m map[string]any) { obj(m, "identified")["place"] = strings.Repeat("x", 201) }),
			[]fe{{"/identified/place", CodeTooLong}}},
		{"identified unknown field", body(t, func(m map[string]any) { obj(m, "identified")["officer"] = "x" }),
			[]fe{{"/identified/officer", CodeUnknownField}}},
		{"destination name", body(t, func(m map[string]any) { m["destination"] = "Malaysia" }), []fe{{"/destination", CodeFormat}}},
		{"case_ref with space", body(t, func(m map[string]any) { m["case_ref"] = "IOM 42" }), []fe{{"/case_ref", CodeFormat}}},
		{"notes too long", body(t, func(m map[string]any) { m["notes"] = strings.Repeat("x", MaxNotesBytes+1) }),
			[]fe{{"/notes", CodeTooLong}}},
		{"notes too long in bytes", body(t, func(m map[string]any) { m["notes"] = strings.Repeat("é", MaxNotesBytes/2+1) }),
			[]fe{{"/notes", CodeTooLong}}},
		{"notes control character", body(t, func(m map[string]any) { m["notes"] = "bell\a" }), []fe{{"/notes", CodeFormat}}},
		{"notes bidi override", body(t, func(m map[string]any) { m["notes"] = "abc\u202edef" }), []fe{{"/notes", CodeFormat}}},
		{"notes blank", body(t, func(m map[string]any) { m["notes"] = " \n " }), []fe{{"/notes", CodeEmpty}}},
		{"notes empty", body(t, func(m map[string]any) { m["notes"] = "" }), []fe{{"/notes", CodeEmpty}}},

		// consent.
		{"consent missing", body(t, func(m map[string]any) { delete(m, "consent") }), []fe{{"/consent", CodeRequired}}},
		{"consent given missing", body(t, func(m map[string]any) { delete(obj(m, "consent"), "given") }),
			[]fe{{"/consent/given", CodeRequired}}},
		{"consent given string", body(t, func(m map[string]any) { obj(m, "consent")["given"] = "yes" }),
			[]fe{{"/consent/given", CodeType}}},
		{"consent purposes missing", body(t, func(m map[string]any) { delete(obj(m, "consent"), "purposes") }),
			[]fe{{"/consent/purposes", CodeRequired}}},
		{"consent purpose unknown", body(t, func(m map[string]any) { obj(m, "consent")["purposes"] = []string{"research"} }),
			[]fe{{"/consent/purposes/0", CodeEnum}}},
		{"consent method missing", body(t, func(m map[string]any) { delete(obj(m, "consent"), "method") }),
			[]fe{{"/consent/method", CodeRequired}}},
		{"consent method unknown", body(t, func(m map[string]any) { obj(m, "consent")["method"] = "implied" }),
			[]fe{{"/consent/method", CodeEnum}}},
		{"consent recorded_at missing", body(t, func(m map[string]any) { delete(obj(m, "consent"), "recorded_at") }),
			[]fe{{"/consent/recorded_at", CodeRequired}}},
		{"consent recorded_at date only", body(t, func(m map[string]any) { obj(m, "consent")["recorded_at"] = "2026-11-20" }),
			[]fe{{"/consent/recorded_at", CodeFormat}}},
		{"consent recorded_at no zone", body(t, func(m map[string]any) { obj(m, "consent")["recorded_at"] = "2026-11-20T09:00:00" }),
			[]fe{{"/consent/recorded_at", CodeFormat}}},
		{"consent recorded_at space", body(t, func(m map[string]any) { obj(m, "consent")["recorded_at"] = "2026-11-20 09:00:00Z" }),
			[]fe{{"/consent/recorded_at", CodeFormat}}},
		{"consent expires before recorded", body(t, func(m map[string]any) {
			obj(m, "consent")["expires_at"] = "2026-11-20T08:00:00Z"
		}), []fe{{"/consent/expires_at", CodeRange}}},
		{"consent witness too long", body(t, func(m map[string]any) { obj(m, "consent")["witness"] = strings.Repeat("w", 201) }),
			[]fe{{"/consent/witness", CodeTooLong}}},
		{"consent not object", body(t, func(m map[string]any) { m["consent"] = true }), []fe{{"/consent", CodeType}}},

		// consent_override.
		{"override with normal priority", body(t, func(m map[string]any) {
			m["priority"] = "normal"
			m["consent_override"] = map[string]any{"justification": "x"}
		}), []fe{{"/priority", CodeConflict}}},
		{"override without priority", body(t, func(m map[string]any) {
			delete(m, "priority")
			m["consent_override"] = map[string]any{"justification": "x"}
		}), []fe{{"/priority", CodeConflict}}},
		{"override with bad priority reports priority only", body(t, func(m map[string]any) {
			m["priority"] = "now"
			m["consent_override"] = map[string]any{"justification": "x"}
		}), []fe{{"/priority", CodeEnum}}},
		{"override justification missing", body(t, func(m map[string]any) { m["consent_override"] = map[string]any{} }),
			[]fe{{"/consent_override/justification", CodeRequired}}},
		{"override justification blank", body(t, func(m map[string]any) {
			m["consent_override"] = map[string]any{"justification": "   "}
		}), []fe{{"/consent_override/justification", CodeEmpty}}},
		{"override justification too long", body(t, func(m map[string]any) {
			m["consent_override"] = map[string]any{"justification": strings.Repeat("j", maxReasonChars+1)}
		}), []fe{{"/consent_override/justification", CodeTooLong}}},
		{"override unknown field", body(t, func(m map[string]any) {
			m["consent_override"] = map[string]any{"justification": "x", "by": "boss"}
		}), []fe{{"/consent_override/by", CodeUnknownField}}},

		// Several at once, in document order.
		{"several errors", []byte(`{"to":"X","person":{"pseudonym":"V-1","age":200},"needs":[],
			"consent":{"given":true,"purposes":["services"],"method":"verbal","recorded_at":"x"},"extra":1}`),
			[]fe{{"/to", CodeFormat}, {"/person/age", CodeRange}, {"/needs", CodeEmpty},
				{"/consent/recorded_at", CodeFormat}, {"/extra", CodeUnknownField}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, errs := ParseReferral(tt.body)
			if r != nil {
				t.Fatalf("Parse accepted the body: %+v", r)
			}
			got := strip(errs)
			if !sameSet(got, tt.want) {
				t.Fatalf("errors = %v, want %v\n%v", got, tt.want, errs)
			}
			for _, e := range errs {
				if e.Message == "" {
					t.Errorf("error %v has no message", e)
				}
			}
		})
	}
}

func sameSet(a, b []fe) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func TestParseErrorsNeverEchoValues(t *testing.T) {
	const secret = "Siti Aminah binti Ahmad"
	b := body(t, func(m map[string]any) {
		obj(m, "person")["pseudonym"] = secret
		obj(m, "person")["sex"] = secret
		m["to"] = secret
		m["risk"] = secret
		m["needs"] = []string{secret}
		obj(m, "consent")["recorded_at"] = secret
		obj(m, "identified")["date"] = secret
	})
	_, errs := ParseReferral(b)
	if len(errs) != 7 {
		t.Fatalf("got %d errors, want 7: %v", len(errs), errs)
	}
	for _, e := range errs {
		if strings.Contains(e.Message, "Siti") || strings.Contains(e.Field, "Siti") {
			t.Errorf("error echoes the value: %v", e)
		}
	}
}

func TestParseErrorCap(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{`)
	for i := range 500 {
		fmt.Fprintf(&sb, `"k%d":1,`, i)
	}
	sb.WriteString(`"to":"shelter"}`)
	_, errs := ParseReferral([]byte(sb.String()))
	if len(errs) != MaxErrors {
		t.Fatalf("got %d errors, want %d", len(errs), MaxErrors)
	}
	if last := errs[len(errs)-1]; last.Code != CodeTooManyErrors {
		t.Fatalf("last error = %v, want code %s", last, CodeTooManyErrors)
	}
}

func TestParseReferralReceived(t *testing.T) {
	withRecorder := body(t, func(m map[string]any) { obj(m, "consent")["recorded_by"] = "caseworker-7" })
	tests := []struct {
		name string
		body []byte
		want []fe
	}{
		{"recorder present", withRecorder, nil},
		{"recorder missing", []byte(designExample), []fe{{"/consent/recorded_by", CodeRequired}}},
		{"recorder multiline", body(t, func(m map[string]any) { obj(m, "consent")["recorded_by"] = "a\nb" }),
			[]fe{{"/consent/recorded_by", CodeFormat}}},
		{"override only needs no recorder", body(t, func(m map[string]any) {
			delete(m, "consent")
			m["consent_override"] = map[string]any{"justification": "x"}
		}), nil},
		{"name still refused", body(t, func(m map[string]any) {
			obj(m, "consent")["recorded_by"] = "caseworker-7"
			obj(m, "person")["name"] = "x"
		}), []fe{{"/person/name", CodeForbidden}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, errs := ParseReferralReceived(tt.body)
			if got := strip(errs); !sameSet(got, tt.want) {
				t.Fatalf("errors = %v, want %v", errs, tt.want)
			}
			if (r == nil) == (tt.want == nil) {
				t.Fatalf("referral = %v with errors %v", r, errs)
			}
			if r != nil && r.Consent != nil && r.Consent.RecordedBy != "caseworker-7" {
				t.Fatalf("recorded_by = %q", r.Consent.RecordedBy)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	r, errs := ParseReferral(body(t, func(m map[string]any) {
		obj(m, "consent")["expires_at"] = "2027-01-01T00:00:00+07:00"
		m["case_ref"] = "C-1"
	}))
	if errs != nil {
		t.Fatal(errs)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	r2, errs := ParseReferral(b)
	if errs != nil {
		t.Fatalf("ParseReferral(Marshal(r)): %v\n%s", errs, b)
	}
	b2, _ := json.Marshal(r2)
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the body:\n%s\n%s", b, b2)
	}
	// What the gateway stores after setting the recorder reads back.
	r.Consent.RecordedBy = "caseworker-7"
	b, _ = json.Marshal(r)
	if _, errs := ParseReferralReceived(b); errs != nil {
		t.Fatalf("ParseReceived: %v\n%s", errs, b)
	}
}

func TestParseStatusChange(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *StatusChange
		errs []fe
	}{
		{"accepted", `{"status":"accepted"}`, &StatusChange{Status: "accepted"}, nil},
		{"declined with reason", `{"status":"declined","reason":"no bed free;\ntry dinsos"}`,
			&StatusChange{Status: "declined", Reason: "no bed free;\ntry dinsos"}, nil},
		{"in-progress", `{"status":"in-progress"}`, &StatusChange{Status: "in-progress"}, nil},
		{"completed", `{"status":"completed"}`, &StatusChange{Status: "completed"}, nil},
		{"withdrawn", `{"status":"withdrawn","reason":"sent in error"}`,
			&StatusChange{Status: "withdrawn", Reason: "sent in error"}, nil},
		{"status missing", `{"reason":"x"}`, nil, []fe{{"/status", CodeRequired}}},
		{"status set by the system", `{"status":"delivered"}`, nil, []fe{{"/status", CodeEnum}}},
		{"status failed", `{"status":"failed"}`, nil, []fe{{"/status", CodeEnum}}},
		{"status number", `{"status":1}`, nil, []fe{{"/status", CodeType}}},
		{"reason too long", `{"status":"declined","reason":"` + strings.Repeat("r", maxReasonChars+1) + `"}`,
			nil, []fe{{"/reason", CodeTooLong}}},
		{"reason control character", `{"status":"declined","reason":"a\u0000b"}`, nil, []fe{{"/reason", CodeFormat}}},
		{"reason null", `{"status":"declined","reason":null}`, nil, []fe{{"/reason", CodeType}}},
		{"unknown field", `{"status":"accepted","by":"x"}`, nil, []fe{{"/by", CodeUnknownField}}},
		{"duplicate status", `{"status":"accepted","status":"withdrawn"}`, nil, []fe{{"/status", CodeDuplicateKey}}},
		{"trailing data", `{"status":"accepted"} {}`, nil, []fe{{"", CodeTrailingData}}},
		{"array", `["accepted"]`, nil, []fe{{"", CodeType}}},
		{"empty", ``, nil, []fe{{"", CodeSyntax}}},
		{"too large", `{"status":"accepted","reason":"` + strings.Repeat("r", MaxStatusChangeBytes) + `"}`,
			nil, []fe{{"", CodeTooLarge}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := ParseStatusChange([]byte(tt.body))
			if !sameSet(strip(errs), tt.errs) {
				t.Fatalf("errors = %v, want %v", errs, tt.errs)
			}
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Fatalf("ParseStatusChange = %+v, want %+v", got, tt.want)
			}
		})
	}
}
