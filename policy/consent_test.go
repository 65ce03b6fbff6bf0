package policy

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func years(n int) Age { return Age{Years: &n} }

func TestCheckReferralConsent(t *testing.T) {
	staff := Principal{Agency: "iom", Subject: "cw", Scopes: ScopesForKind(KindIOM)}
	noOverride := Principal{Agency: "iom", Subject: "cw", Scopes: []string{ScopeReferralSend}}
	recorded := testNow.Add(-time.Hour)
	later := testNow.Add(24 * time.Hour)
	earlier := testNow.Add(-time.Minute)
	services := &Consent{Given: true, Purposes: []string{PurposeServices}, Method: MethodWritten, RecordedAt: recorded}
	law := &Consent{Given: true, Purposes: []string{PurposeLawEnforcement}, Method: MethodVerbal, RecordedAt: recorded}
	guardian := &Consent{Given: true, Purposes: []string{PurposeServices}, Method: MethodGuardian, RecordedAt: recorded}
	witnessed := &Consent{Given: true, Purposes: []string{PurposeServices}, Method: MethodVerbal, Witness: "S. Rahma", WitnessRole: WitnessSocialWorker, RecordedAt: recorded}
	otherWitness := &Consent{Given: true, Purposes: []string{PurposeServices}, Method: MethodVerbal, Witness: "A. Putra", WitnessRole: WitnessInterpreter, RecordedAt: recorded}
	refused := &Consent{Given: false, Method: MethodWritten, RecordedAt: recorded}
	expired := &Consent{Given: true, Purposes: []string{PurposeServices}, Method: MethodWritten, RecordedAt: recorded, ExpiresAt: &earlier}
	current := &Consent{Given: true, Purposes: []string{PurposeServices}, Method: MethodWritten, RecordedAt: recorded, ExpiresAt: &later}
	why := "Child at immediate risk at the airport; guardian unreachable."

	tests := []struct {
		name     string
		p        Principal
		f        ReferralFacts
		reason   string
		override bool
	}{
		{"services consent to shelter", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(25), Consent: services}, "", false},
		{"services consent to dinsos", staff, ReferralFacts{ToKind: KindDinsos, Priority: PriorityNormal, Age: years(25), Consent: services}, "", false},
		{"services consent to a new kind", staff, ReferralFacts{ToKind: "ngo", Priority: PriorityNormal, Age: years(25), Consent: services}, "", false},
		{"law-enforcement consent to police", staff, ReferralFacts{ToKind: KindPolice, Priority: PriorityNormal, Age: years(30), Consent: law}, "", false},
		{"services consent to police", staff, ReferralFacts{ToKind: KindPolice, Priority: PriorityNormal, Age: years(30), Consent: services}, ReasonConsentPurpose, false},
		{"law-enforcement consent to shelter", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(30), Consent: law}, ReasonConsentPurpose, false},
		{"no consent", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(25)}, ReasonConsentMissing, false},
		{"consent refused", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(25), Consent: refused}, ReasonConsentRefused, false},
		{"consent expired", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(25), Consent: expired}, ReasonConsentExpired, false},
		{"consent not yet expired", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(25), Consent: current}, "", false},
		{"minor with guardian consent", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(17), Consent: guardian}, "", false},
		{"minor with social worker witness", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(16), Consent: witnessed}, "", false},
		{"minor with own written consent", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(17), Consent: services}, ReasonConsentMinor, false},
		{"minor with interpreter witness", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(15), Consent: otherWitness}, ReasonConsentMinor, false},
		{"age range under 18", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: Age{Range: "15-17"}, Consent: services}, ReasonConsentMinor, false},
		{"age range spanning 18", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: Age{Range: "16-20"}, Consent: services}, ReasonConsentMinor, false},
		{"age range adult", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: Age{Range: "18-24"}, Consent: services}, "", false},
		{"age range open adult", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: Age{Range: "25+"}, Consent: services}, "", false},
		{"age unknown is treated as a minor", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Consent: services}, ReasonConsentMinor, false},
		{"age unknown with guardian", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Consent: guardian}, "", false},
		{"exactly 18", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(18), Consent: services}, "", false},
		{"bad age range", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: Age{Range: "17-15"}, Consent: services}, ReasonInputInvalid, false},
		{"age range words", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: Age{Range: "teen"}, Consent: services}, ReasonInputInvalid, false},
		{"negative age", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(-1), Consent: services}, ReasonInputInvalid, false},
		{"unknown priority", staff, ReferralFacts{ToKind: KindShelter, Priority: "asap", Age: years(25), Consent: services}, ReasonInputInvalid, false},
		{"no receiving kind", staff, ReferralFacts{Priority: PriorityNormal, Age: years(25), Consent: services}, ReasonInputInvalid, false},
		{"override of missing consent", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(16), OverrideJustification: why}, "", true},
		{"override of refused consent", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(30), Consent: refused, OverrideJustification: why}, "", true},
		{"override to police", staff, ReferralFacts{ToKind: KindPolice, Priority: PriorityUrgent, Age: years(30), Consent: services, OverrideJustification: why}, "", true},
		{"override of a minor's own consent", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(15), Consent: services, OverrideJustification: why}, "", true},
		{"override not urgent", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityNormal, Age: years(30), OverrideJustification: why}, ReasonOverrideNotUrgent, false},
		{"override without scope", noOverride, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(30), OverrideJustification: why}, ReasonOverrideScope, false},
		{"override by police staff", Principal{Agency: "police", Subject: "p", Scopes: ScopesForKind(KindPolice)}, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(30), OverrideJustification: why}, ReasonOverrideScope, false},
		{"override with a short justification", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(30), OverrideJustification: "urgent"}, ReasonOverrideJustification, false},
		{"urgent without justification", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(30)}, ReasonConsentMissing, false},
		{"blank justification", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(30), OverrideJustification: "   \n "}, ReasonConsentMissing, false},
		{"valid consent with a justification is no override", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(30), Consent: services, OverrideJustification: why}, "", false},
		{"malformed consent is not overridable", staff, ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(30), Consent: &Consent{Given: true, Purposes: []string{PurposeServices}, Method: "telepathy", RecordedAt: recorded}, OverrideJustification: why}, ReasonConsentInvalid, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := CheckReferralConsent(tc.p, tc.f, testNow)
			wantReason(t, err, tc.reason)
			if d.Override != tc.override {
				t.Fatalf("override = %v, want %v", d.Override, tc.override)
			}
			if d.Override && d.Waived == "" {
				t.Error("override without the waived reason")
			}
		})
	}
}

func TestConsentValidate(t *testing.T) {
	recorded := testNow.Add(-time.Hour)
	before := recorded.Add(-time.Second)
	ok := Consent{Given: true, Purposes: []string{PurposeServices, PurposeStatement}, Method: MethodWritten, RecordedAt: recorded}
	tests := []struct {
		name string
		mod  func(*Consent)
		ok   bool
	}{
		{"valid", func(*Consent) {}, true},
		{"refusal needs no purpose", func(c *Consent) { c.Given = false; c.Purposes = nil }, true},
		{"no method", func(c *Consent) { c.Method = "" }, false},
		{"unknown method", func(c *Consent) { c.Method = "implied" }, false},
		{"unknown purpose", func(c *Consent) { c.Purposes = []string{"marketing"} }, false},
		{"duplicate purpose", func(c *Consent) { c.Purposes = []string{PurposeServices, PurposeServices} }, false},
		{"given for nothing", func(c *Consent) { c.Purposes = nil }, false},
		{"no recorded_at", func(c *Consent) { c.RecordedAt = time.Time{} }, false},
		{"recorded in the future", func(c *Consent) { c.RecordedAt = testNow.Add(time.Hour) }, false},
		{"expires before recorded", func(c *Consent) { c.ExpiresAt = &before }, false},
		{"unknown witness role", func(c *Consent) { c.Witness = "x"; c.WitnessRole = "friend" }, false},
		{"witness role without witness", func(c *Consent) { c.WitnessRole = WitnessSocialWorker }, false},
		{"witness too long", func(c *Consent) { c.Witness = string(make([]byte, 201)) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate(testNow)
			if tc.ok {
				wantReason(t, err, "")
				return
			}
			wantReason(t, err, ReasonConsentInvalid)
			if !errors.Is(err, ErrInvalidInput) {
				t.Errorf("%v is not ErrInvalidInput", err)
			}
		})
	}
}

// The consent object of a referral body (openapi.json) decodes into Consent.
func TestConsentJSON(t *testing.T) {
	var c Consent
	in := `{"given": true, "purposes": ["services"], "method": "guardian",
	        "witness": "social worker S. Rahma", "recorded_at": "2026-11-20T09:00:00Z"}`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if !c.Given || c.Method != MethodGuardian || c.Purposes[0] != PurposeServices || !c.RecordedAt.Equal(testNow) {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(testNow); err != nil {
		t.Fatal(err)
	}
}

func TestCheckStatement(t *testing.T) {
	recorded := testNow.Add(-time.Hour)
	consent := &Consent{Given: true, Purposes: []string{PurposeStatement}, Method: MethodWritten, RecordedAt: recorded}
	base := StatementFacts{
		RequestState: SRConsentGiven, RequestDue: testNow.Add(72 * time.Hour),
		RequestFrom: "police", RequestTo: "shelter", From: "shelter", To: "police",
		Age: years(30), Consent: consent,
	}
	tests := []struct {
		name   string
		mod    func(*StatementFacts)
		reason string
	}{
		{"answers open request with consent", func(*StatementFacts) {}, ""},
		{"no due date", func(f *StatementFacts) { f.RequestDue = time.Time{} }, ""},
		{"request read (police side view)", func(f *StatementFacts) { f.RequestState = SRRead }, ""},
		{"request already answered", func(f *StatementFacts) { f.RequestState = SRAnswered }, ReasonRequestNotOpen},
		{"request declined", func(f *StatementFacts) { f.RequestState = SRDeclined }, ReasonRequestNotOpen},
		{"request expired state", func(f *StatementFacts) { f.RequestState = SRExpired }, ReasonRequestNotOpen},
		{"no request", func(f *StatementFacts) { f.RequestState = "" }, ReasonRequestNotOpen},
		{"past due date", func(f *StatementFacts) { f.RequestDue = testNow.Add(-time.Second) }, ReasonRequestExpired},
		{"to another police agency", func(f *StatementFacts) { f.To = "police-ntb" }, ReasonNotRequester},
		{"from an agency not asked", func(f *StatementFacts) { f.From = "iom" }, ReasonNotParty},
		{"no consent", func(f *StatementFacts) { f.Consent = nil }, ReasonConsentMissing},
		{"consent refused", func(f *StatementFacts) { c := *consent; c.Given = false; f.Consent = &c }, ReasonConsentRefused},
		{"consent for services only", func(f *StatementFacts) { c := *consent; c.Purposes = []string{PurposeServices}; f.Consent = &c }, ReasonConsentPurpose},
		{"consent expired", func(f *StatementFacts) {
			c := *consent
			e := testNow.Add(-time.Minute)
			c.ExpiresAt = &e
			f.Consent = &c
		}, ReasonConsentExpired},
		{"minor without guardian", func(f *StatementFacts) { f.Age = years(16) }, ReasonConsentMinor},
		{"minor with guardian", func(f *StatementFacts) { f.Age = years(16); c := *consent; c.Method = MethodGuardian; f.Consent = &c }, ""},
		{"malformed consent", func(f *StatementFacts) { c := *consent; c.Method = "nod"; f.Consent = &c }, ReasonConsentInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			tc.mod(&f)
			wantReason(t, CheckStatement(f, testNow), tc.reason)
		})
	}
}

func TestRequestOpen(t *testing.T) {
	due := testNow.Add(time.Hour)
	for _, s := range StatementRequestMachine.States {
		want := !StatementRequestMachine.Terminal(s)
		if got := RequestOpen(s, due, testNow); got != want {
			t.Errorf("RequestOpen(%s) = %v, want %v", s, got, want)
		}
	}
	if RequestOpen(SRRead, testNow, testNow) {
		t.Error("request open at its due date")
	}
}
