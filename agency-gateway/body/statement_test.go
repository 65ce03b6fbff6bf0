package body

import (
	"os"
	"strings"
	"testing"
	"time"
)

// caseT is one named body and the errors it must give (nil: accepted).
type caseT struct {
	name string
	body string
	want []fe
}

func runCases[T any](t *testing.T, parse func([]byte) (*T, []FieldError), cases []caseT) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			v, errs := parse([]byte(tt.body))
			if (v == nil) == (errs == nil) {
				t.Fatalf("returned %v and %v", v, errs)
			}
			if !sameSet(strip(errs), tt.want) {
				t.Fatalf("errors = %v, want %v", errs, tt.want)
			}
			for _, e := range errs {
				if e.Message == "" {
					t.Errorf("error %v has no message", e)
				}
			}
		})
	}
}

func example(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/examples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const goodSR = `{"to":"shelter","pseudonym":"V-2026-0042","legal_basis":"LP/B/123/XI/2026/NTB",
	"purpose":"prosecution","questions":["q1","q2\nmore"],"due":"2026-12-01T00:00:00Z"}`

func TestParseStatementRequest(t *testing.T) {
	sr, errs := ParseStatementRequest([]byte(example(t, "statement-request.json")))
	if errs != nil {
		t.Fatal(errs)
	}
	if sr.To != "shelter" || sr.ReferralID == "" || sr.Pseudonym != "" || sr.Purpose != "investigation" ||
		len(sr.Questions) != 2 || !sr.Due.Equal(time.Date(2026, 12, 15, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("%+v", sr)
	}
	many := `["` + strings.Repeat(`q","`, 50) + `q"]`
	runCases(t, ParseStatementRequest, []caseT{
		{"pseudonym", goodSR, nil},
		{"every purpose: investigation", strings.Replace(goodSR, "prosecution", "investigation", 1), nil},
		{"every purpose: victim-identification", strings.Replace(goodSR, "prosecution", "victim-identification", 1), nil},
		{"legal basis of 128", strings.Replace(goodSR, "LP/B/123/XI/2026/NTB", strings.Repeat("L", 128), 1), nil},
		{"both names", strings.Replace(goodSR, `"pseudonym"`, `"referral_id":"01JD5X","pseudonym"`, 1),
			[]fe{{"/referral_id", CodeConflict}}},
		{"no name", strings.Replace(goodSR, `"pseudonym":"V-2026-0042",`, ``, 1), []fe{{"/pseudonym", CodeRequired}}},
		{"referral id too long", strings.Replace(goodSR, `"pseudonym":"V-2026-0042"`, `"referral_id":"`+strings.Repeat("a", 65)+`"`, 1),
			[]fe{{"/referral_id", CodeFormat}}},
		{"referral id with slash", strings.Replace(goodSR, `"pseudonym":"V-2026-0042"`, `"referral_id":"a/b"`, 1),
			[]fe{{"/referral_id", CodeFormat}}},
		{"legal basis missing", strings.Replace(goodSR, `"legal_basis":"LP/B/123/XI/2026/NTB",`, ``, 1),
			[]fe{{"/legal_basis", CodeRequired}}},
		{"legal basis with space", strings.Replace(goodSR, "LP/B/123", "LP B 123", 1), []fe{{"/legal_basis", CodeFormat}}},
		{"legal basis too long", strings.Replace(goodSR, "LP/B/123/XI/2026/NTB", strings.Repeat("L", 129), 1),
			[]fe{{"/legal_basis", CodeFormat}}},
		{"purpose unknown", strings.Replace(goodSR, "prosecution", "curiosity", 1), []fe{{"/purpose", CodeEnum}}},
		{"questions empty", strings.Replace(goodSR, `["q1","q2\nmore"]`, `[]`, 1), []fe{{"/questions", CodeEmpty}}},
		{"questions too many", strings.Replace(goodSR, `["q1","q2\nmore"]`, many, 1), []fe{{"/questions", CodeTooMany}}},
		{"question blank", strings.Replace(goodSR, `"q1"`, `"  "`, 1), []fe{{"/questions/0", CodeEmpty}}},
		{"question too long", strings.Replace(goodSR, `"q1"`, `"`+strings.Repeat("q", 2001)+`"`, 1), []fe{{"/questions/0", CodeTooLong}}},
		{"question bidi", strings.Replace(goodSR, `"q1"`, `"a\u2067b"`, 1), []fe{{"/questions/0", CodeFormat}}},
		{"due missing", strings.Replace(goodSR, `,"due":"2026-12-01T00:00:00Z"`, ``, 1), []fe{{"/due", CodeRequired}}},
		{"due date only", strings.Replace(goodSR, `2026-12-01T00:00:00Z`, `2026-12-01`, 1), []fe{{"/due", CodeFormat}}},
		{"to upper case", strings.Replace(goodSR, `"to":"shelter"`, `"to":"Shelter"`, 1), []fe{{"/to", CodeFormat}}},
		{"unknown field", strings.Replace(goodSR, `"to"`, `"from":"police","to"`, 1), []fe{{"/from", CodeUnknownField}}},
		{"duplicate key", strings.Replace(goodSR, `"to"`, `"due":"x","to"`, 1), []fe{{"/due", CodeDuplicateKey}}},
		{"too large", `{"questions":["` + strings.Repeat("q", MaxStatementRequestBytes) + `"]}`, []fe{{"", CodeTooLarge}}},
	})
}

func TestParseConsent(t *testing.T) {
	d, errs := ParseConsent([]byte(example(t, "consent.json")))
	if errs != nil {
		t.Fatal(errs)
	}
	if !d.Given || d.Method != "guardian" || d.Person == nil || d.Person.Age == nil || *d.Person.Age != 17 {
		t.Fatalf("%+v", d)
	}
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	c := d.Consent("worker-3", at)
	if err := c.Validate(at); err != nil || c.RecordedBy != "worker-3" {
		t.Fatalf("Consent: %+v %v", c, err)
	}
	if minor, _ := d.Person.PolicyAge().Minor(); !minor {
		t.Fatal("17 is a minor")
	}
	runCases(t, ParseConsent, []caseT{
		{"refused", `{"given":false,"method":"verbal"}`, nil},
		{"age range", `{"given":false,"method":"written","person":{"age_range":"18-25"}}`, nil},
		{"given without purposes", `{"given":true,"method":"verbal"}`, []fe{{"/purposes", CodeRequired}}},
		{"given missing", `{"method":"verbal"}`, []fe{{"/given", CodeRequired}}},
		{"method missing", `{"given":false}`, []fe{{"/method", CodeRequired}}},
		{"method unknown", `{"given":false,"method":"implied"}`, []fe{{"/method", CodeEnum}}},
		{"purpose repeated", `{"given":true,"method":"verbal","purposes":["statement","statement"]}`,
			[]fe{{"/purposes/1", CodeDuplicateItem}}},
		{"witness role without witness", `{"given":false,"method":"verbal","witness_role":"guardian"}`,
			[]fe{{"/witness", CodeRequired}}},
		{"witness role unknown", `{"given":false,"method":"verbal","witness":"x","witness_role":"boss"}`,
			[]fe{{"/witness_role", CodeEnum}}},
		{"recorded_by", `{"given":false,"method":"verbal","recorded_by":"me"}`, []fe{{"/recorded_by", CodeForbidden}}},
		{"recorded_at", `{"given":false,"method":"verbal","recorded_at":"2026-11-20T09:00:00Z"}`,
			[]fe{{"/recorded_at", CodeForbidden}}},
		{"both ages", `{"given":false,"method":"verbal","person":{"age":17,"age_range":"15-17"}}`,
			[]fe{{"/person/age_range", CodeConflict}}},
		{"empty person", `{"given":false,"method":"verbal","person":{}}`, []fe{{"/person/age", CodeRequired}}},
		{"person name", `{"given":false,"method":"verbal","person":{"age":3,"name":"x"}}`,
			[]fe{{"/person/name", CodeUnknownField}}},
		{"age range reversed", `{"given":false,"method":"verbal","person":{"age_range":"17-15"}}`,
			[]fe{{"/person/age_range", CodeRange}}},
		{"notes too long in bytes", `{"given":false,"method":"verbal","notes":"` + strings.Repeat("é", MaxNotesBytes/2+1) + `"}`,
			[]fe{{"/notes", CodeTooLong}}},
		{"given string", `{"given":"yes","method":"verbal"}`, []fe{{"/given", CodeType}}},
	})
}

const goodStatement = `{"text":"It began in Praya.\nThen the airport.","language":"id",
	"taken_at":"2026-11-25T10:30:00+08:00","taken_by":"S. Rahma"}`

func TestParseResponse(t *testing.T) {
	r, errs := ParseResponse([]byte(example(t, "response.json")))
	if errs != nil || r.Statement == nil || r.Decline != nil || r.Statement.Language != "id" {
		t.Fatalf("%+v %v", r, errs)
	}
	r, errs = ParseResponse([]byte(example(t, "response-decline.json")))
	if errs != nil || r.Decline == nil || r.Decline.Reason != "no-consent" {
		t.Fatalf("%+v %v", r, errs)
	}
	runCases(t, ParseResponse, []caseT{
		{"statement", `{"statement":` + goodStatement + `}`, nil},
		{"decline other", `{"decline":{"reason":"other","detail":"moved abroad"}}`, nil},
		{"decline not-known", `{"decline":{"reason":"not-known"}}`, nil},
		{"decline risk", `{"decline":{"reason":"risk-to-victim"}}`, nil},
		{"neither", `{}`, []fe{{"/statement", CodeRequired}}},
		{"both", `{"statement":` + goodStatement + `,"decline":{"reason":"other"}}`, []fe{{"/decline", CodeConflict}}},
		{"decline reason unknown", `{"decline":{"reason":"busy"}}`, []fe{{"/decline/reason", CodeEnum}}},
		{"decline detail too long", `{"decline":{"reason":"other","detail":"` + strings.Repeat("d", 2001) + `"}}`,
			[]fe{{"/decline/detail", CodeTooLong}}},
		{"statement text missing", `{"statement":{"language":"id","taken_at":"2026-11-25T10:30:00Z","taken_by":"x"}}`,
			[]fe{{"/statement/text", CodeRequired}}},
		{"statement language", strings.Replace(`{"statement":`+goodStatement+`}`, `"id"`, `"Bahasa"`, 1),
			[]fe{{"/statement/language", CodeFormat}}},
		{"statement taken_at", strings.Replace(`{"statement":`+goodStatement+`}`, `2026-11-25T10:30:00+08:00`, `yesterday`, 1),
			[]fe{{"/statement/taken_at", CodeFormat}}},
		{"statement taken_by two lines", strings.Replace(`{"statement":`+goodStatement+`}`, `S. Rahma`, `S.\nRahma`, 1),
			[]fe{{"/statement/taken_by", CodeFormat}}},
		{"statement text too long in bytes", `{"statement":{"text":"` + strings.Repeat("é", MaxStatementTextBytes/2+1) +
			`","language":"id","taken_at":"2026-11-25T10:30:00Z","taken_by":"x"}}`, []fe{{"/statement/text", CodeTooLong}}},
		{"statement text control", strings.Replace(`{"statement":`+goodStatement+`}`, `Praya.`, `Praya.\u0007`, 1),
			[]fe{{"/statement/text", CodeFormat}}},
		{"too large", `{"statement":{"text":"` + strings.Repeat("t", MaxResponseBytes) + `"}}`, []fe{{"", CodeTooLarge}}},
	})
}

func TestParseStatusBody(t *testing.T) {
	good := `{"ref":"01JD5X","status":"declined","reason":"no-capacity","detail":"no bed free","by":"shelter","at":"2026-11-21T09:00:00Z"}`
	s, errs := ParseStatusBody([]byte(good))
	if errs != nil || s.Ref != "01JD5X" || s.Status != "declined" || s.Reason != "no-capacity" || s.By != "shelter" || s.At.IsZero() {
		t.Fatalf("%+v %v", s, errs)
	}
	runCases(t, ParseStatusBody, []caseT{
		{"good", good, nil},
		{"minimal", `{"ref":"a","status":"consent-given","by":"worker-3@shelter","at":"2026-11-21T09:00:00Z"}`, nil},
		{"ref missing", `{"status":"read","by":"x","at":"2026-11-21T09:00:00Z"}`, []fe{{"/ref", CodeRequired}}},
		{"ref too long", `{"ref":"` + strings.Repeat("r", 65) + `","status":"read","by":"x","at":"2026-11-21T09:00:00Z"}`,
			[]fe{{"/ref", CodeFormat}}},
		{"status upper case", `{"ref":"a","status":"Read","by":"x","at":"2026-11-21T09:00:00Z"}`, []fe{{"/status", CodeFormat}}},
		{"status too long", `{"ref":"a","status":"` + strings.Repeat("s", 33) + `","by":"x","at":"2026-11-21T09:00:00Z"}`,
			[]fe{{"/status", CodeFormat}}},
		{"reason free text", `{"ref":"a","status":"read","reason":"no bed","by":"x","at":"2026-11-21T09:00:00Z"}`,
			[]fe{{"/reason", CodeFormat}}},
		{"by control", `{"ref":"a","status":"read","by":"x\u0000","at":"2026-11-21T09:00:00Z"}`, []fe{{"/by", CodeFormat}}},
		{"by too long", `{"ref":"a","status":"read","by":"` + strings.Repeat("b", 301) + `","at":"2026-11-21T09:00:00Z"}`,
			[]fe{{"/by", CodeTooLong}}},
		{"at missing", `{"ref":"a","status":"read","by":"x"}`, []fe{{"/at", CodeRequired}}},
		{"detail too long", `{"ref":"a","status":"read","detail":"` + strings.Repeat("d", 2001) + `","by":"x","at":"2026-11-21T09:00:00Z"}`,
			[]fe{{"/detail", CodeTooLong}}},
	})
}

const goodEnvConsent = `{"given":true,"purposes":["statement"],"method":"guardian","recorded_by":"worker-3",
	"recorded_at":"2026-11-22T10:00:00Z"}`

func TestParseStatementBody(t *testing.T) {
	good := `{"ref":"01JD6A","statement":` + goodStatement + `,"consent":` + goodEnvConsent + `,"person":{"age":17}}`
	s, errs := ParseStatementBody([]byte(good))
	if errs != nil || s.Ref != "01JD6A" || s.Consent.RecordedBy != "worker-3" || s.Person.Age == nil || s.Statement.Text == "" {
		t.Fatalf("%+v %v", s, errs)
	}
	noRecorder := strings.Replace(goodEnvConsent, `"recorded_by":"worker-3",`, ``, 1)
	runCases(t, ParseStatementBody, []caseT{
		{"good", good, nil},
		{"no person", `{"ref":"a","statement":` + goodStatement + `,"consent":` + goodEnvConsent + `}`, nil},
		{"consent without recorder", `{"ref":"a","statement":` + goodStatement + `,"consent":` + noRecorder + `}`,
			[]fe{{"/consent/recorded_by", CodeRequired}}},
		{"consent expires early", `{"ref":"a","statement":` + goodStatement + `,"consent":` +
			strings.Replace(goodEnvConsent, `"given"`, `"expires_at":"2026-11-21T10:00:00Z","given"`, 1) + `}`,
			[]fe{{"/consent/expires_at", CodeRange}}},
		{"statement missing", `{"ref":"a","consent":` + goodEnvConsent + `}`, []fe{{"/statement", CodeRequired}}},
		{"person empty", `{"ref":"a","statement":` + goodStatement + `,"consent":` + goodEnvConsent + `,"person":{}}`,
			[]fe{{"/person/age", CodeRequired}}},
		{"person age range reversed", `{"ref":"a","statement":` + goodStatement + `,"consent":` + goodEnvConsent +
			`,"person":{"age_range":"9-5"}}`, []fe{{"/person/age_range", CodeRange}}},
		{"person age fraction", `{"ref":"a","statement":` + goodStatement + `,"consent":` + goodEnvConsent +
			`,"person":{"age":1e1}}`, []fe{{"/person/age", CodeType}}},
	})
}
