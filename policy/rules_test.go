package policy

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultRulesRoundTrip(t *testing.T) {
	r, err := ParseRules(DefaultRulesJSON())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, DefaultRules()) {
		t.Fatalf("parsed %+v, want %+v", r, DefaultRules())
	}
}

func TestRulesAllow(t *testing.T) {
	r, err := ParseRules(DefaultRulesJSON())
	if err != nil {
		t.Fatal(err)
	}
	open := Facts{OpenRequest: true}
	cp := Facts{Counterpart: true}
	tests := []struct {
		name          string
		msg, from, to string
		facts         Facts
		reason        string
	}{
		{"referral iom to shelter", MsgReferral, "iom", "shelter", Facts{}, ""},
		{"referral shelter to iom", MsgReferral, "shelter", "iom", Facts{}, ""},
		{"referral dinsos to police", MsgReferral, "dinsos", "police", Facts{}, ""},
		{"referral police to shelter", MsgReferral, "police", "shelter", Facts{}, ""},
		{"referral iom to iom kind", MsgReferral, "iom", "iom", Facts{FromAgency: "iom-ntb", ToAgency: "iom-jkt"}, ""},
		{"referral to itself", MsgReferral, "iom", "iom", Facts{FromAgency: "iom", ToAgency: "iom"}, ReasonRuleSelfAddressed},
		{"referral from an unlisted kind", MsgReferral, "ngo", "shelter", Facts{}, ReasonRuleNotAllowed},
		{"referral to an unlisted kind", MsgReferral, "iom", "ngo", Facts{}, ReasonRuleNotAllowed},
		{"referral with empty kind", MsgReferral, "", "shelter", Facts{}, ReasonRuleNotAllowed},
		{"referral from wildcard kind", MsgReferral, "*", "shelter", Facts{}, ReasonRuleNotAllowed},
		{"statement request police to iom", MsgStatementRequest, "police", "iom", Facts{}, ""},
		{"statement request police to dinsos", MsgStatementRequest, "police", "dinsos", Facts{}, ""},
		{"statement request police to shelter", MsgStatementRequest, "police", "shelter", Facts{}, ""},
		{"statement request iom to shelter", MsgStatementRequest, "iom", "shelter", Facts{}, ReasonRuleNotAllowed},
		{"statement request police to police", MsgStatementRequest, "police", "police", Facts{}, ReasonRuleNotAllowed},
		{"statement request shelter to police", MsgStatementRequest, "shelter", "police", Facts{}, ReasonRuleNotAllowed},
		{"statement shelter to police answering", MsgStatement, "shelter", "police", open, ""},
		{"statement iom to police answering", MsgStatement, "iom", "police", open, ""},
		{"statement dinsos to police answering", MsgStatement, "dinsos", "police", open, ""},
		{"statement without open request", MsgStatement, "shelter", "police", Facts{}, ReasonRuleOpenRequest},
		{"statement with counterpart only", MsgStatement, "shelter", "police", cp, ReasonRuleOpenRequest},
		{"statement to shelter", MsgStatement, "iom", "shelter", open, ReasonRuleNotAllowed},
		{"statement from police", MsgStatement, "police", "police", open, ReasonRuleNotAllowed},
		{"status to counterpart", MsgStatus, "shelter", "iom", cp, ""},
		{"status from police to counterpart", MsgStatus, "police", "shelter", cp, ""},
		{"status to a stranger", MsgStatus, "shelter", "iom", Facts{}, ReasonRuleCounterpart},
		{"receipt to counterpart", MsgReceipt, "shelter", "iom", cp, ""},
		{"receipt to a stranger", MsgReceipt, "shelter", "iom", Facts{}, ReasonRuleCounterpart},
		{"receipt from a new kind to counterpart", MsgReceipt, "ngo", "iom", cp, ""},
		{"unknown message kind", "invoice", "iom", "shelter", cp, ReasonRuleNotAllowed},
		{"empty message kind", "", "iom", "shelter", cp, ReasonRuleNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Allow(tc.msg, tc.from, tc.to, tc.facts)
			wantReason(t, err, tc.reason)
			if err != nil && !errors.Is(err, ErrDenied) {
				t.Errorf("%v is not ErrDenied", err)
			}
		})
	}
}

// A hand-built Rules value cannot loosen the conditions of a kind.
func TestRulesAllowEnforcesRequiredConditions(t *testing.T) {
	r := &Rules{Version: 1, Allowed: []Rule{
		{Kind: MsgStatement, From: []string{"*"}, To: []string{"*"}},
		{Kind: MsgStatus, From: []string{"*"}, To: []string{"*"}},
	}}
	wantReason(t, r.Allow(MsgStatement, "iom", "police", Facts{}), ReasonRuleOpenRequest)
	wantReason(t, r.Allow(MsgStatus, "iom", "police", Facts{}), ReasonRuleCounterpart)
	var nilRules *Rules
	wantReason(t, nilRules.Allow(MsgReferral, "iom", "police", Facts{}), ReasonRuleNotAllowed)
}

func TestParseRules(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"defaults", string(DefaultRulesJSON()), true},
		{"minimal", `{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}]}`, true},
		{"empty", ``, false},
		{"whitespace", "  \n", false},
		{"null", `null`, false},
		{"not an object", `[1,2]`, false},
		{"unknown field", `{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}],"deny":[]}`, false},
		{"unknown rule field", `{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"],"unless":"x"}]}`, false},
		{"trailing data", `{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}]} {}`, false},
		{"version 2", `{"version":2,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}]}`, false},
		{"version missing", `{"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}]}`, false},
		{"no rules", `{"version":1,"allow":[]}`, false},
		{"unknown message kind", `{"version":1,"allow":[{"kind":"invoice","from":["iom"],"to":["shelter"]}]}`, false},
		{"empty from", `{"version":1,"allow":[{"kind":"referral","from":[],"to":["shelter"]}]}`, false},
		{"missing to", `{"version":1,"allow":[{"kind":"referral","from":["iom"]}]}`, false},
		{"kind not a slug", `{"version":1,"allow":[{"kind":"referral","from":["IOM"],"to":["shelter"]}]}`, false},
		{"kind with glob", `{"version":1,"allow":[{"kind":"referral","from":["i*"],"to":["shelter"]}]}`, false},
		{"unknown condition", `{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"],"requires":["friday"]}]}`, false},
		{"statement without open-request", `{"version":1,"allow":[{"kind":"statement","from":["iom"],"to":["police"]}]}`, false},
		{"status without counterpart", `{"version":1,"allow":[{"kind":"status","from":["*"],"to":["*"]}]}`, false},
		{"receipt without counterpart", `{"version":1,"allow":[{"kind":"receipt","from":["*"],"to":["*"],"requires":["open-request"]}]}`, false},
		{"too large", `{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}]}` + strings.Repeat(" ", MaxRulesSize), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules(json.RawMessage(tc.in))
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok && !errors.Is(err, ErrRulesMalformed) {
				t.Fatalf("got %v, want ErrRulesMalformed", err)
			}
		})
	}
}

func TestParseRulesPseudonym(t *testing.T) {
	rules := func(p string) string {
		b, _ := json.Marshal(p)
		return `{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}],"pseudonym":` + string(b) + `}`
	}
	tests := []struct {
		name    string
		pattern string
		ok      bool
	}{
		{"default", DefaultPseudonymPattern, true},
		{"two letters and six digits", `^[A-Z]{2}-[0-9]{6}$`, true},
		{"alternation inside the anchors", `^(?:V|IOM)-[0-9]{4}-[0-9]{4}$`, true},
		{"capture group", `^([A-Z]+)-[0-9]+$`, true},
		{"at the size cap", `^` + strings.Repeat("A", MaxPseudonymPattern-2) + `$`, true},
		{"over the size cap", `^` + strings.Repeat("A", MaxPseudonymPattern-1) + `$`, false},
		{"does not compile", `^[A-Z$`, false},
		{"Perl lookahead (not RE2)", `^(?=V)[A-Z]-[0-9]+$`, false},
		{"no anchors", `[A-Z]-[0-9]+`, false},
		{"no end anchor", `^[A-Z]-[0-9]+`, false},
		{"no start anchor", `[A-Z]-[0-9]+$`, false},
		{"anchors only on one branch", `^V-[0-9]+$|[a-z]+`, false},
		{"anchors on each branch", `^V-[0-9]+$|^X-[0-9]+$`, false},
		{"escaped dollar at the end", `^V-[0-9]+\$`, false},
		{"multi-line flag", `(?m)^V-[0-9]+$`, false},
		{"multi-line flag after the caret", `^(?m)V-[0-9]+$`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRules(json.RawMessage(rules(tc.pattern)))
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if r.Pseudonym != tc.pattern {
					t.Fatalf("pattern %q, want %q", r.Pseudonym, tc.pattern)
				}
				return
			}
			if !errors.Is(err, ErrRulesMalformed) {
				t.Fatalf("got %v, want ErrRulesMalformed", err)
			}
		})
	}
	// Rules without the field (every directory signed before it existed)
	// use the default.
	r, err := ParseRules(json.RawMessage(`{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Pseudonym != "" || r.CheckPseudonym("V-2026-0042") != nil || r.CheckPseudonym("Budi2") == nil {
		t.Fatalf("rules without a pattern: %+v", r)
	}
	if !strings.Contains(string(DefaultRulesJSON()), `"pseudonym"`) {
		t.Errorf("new directories do not carry the pattern: %s", DefaultRulesJSON())
	}
}

func TestCheckPseudonym(t *testing.T) {
	def, err := ParseRules(DefaultRulesJSON())
	if err != nil {
		t.Fatal(err)
	}
	custom, err := ParseRules(json.RawMessage(`{"version":1,"allow":[{"kind":"referral","from":["iom"],"to":["shelter"]}],"pseudonym":"^[A-Z]{2}[0-9]{6}$"}`))
	if err != nil {
		t.Fatal(err)
	}
	hand := &Rules{Version: 1, Allowed: def.Allowed} // built by hand: no compiled pattern
	handCustom := &Rules{Version: 1, Allowed: def.Allowed, Pseudonym: `^[A-Z]{2}[0-9]{6}$`}
	handBad := &Rules{Version: 1, Allowed: def.Allowed, Pseudonym: `[A-Z]+`}
	var none *Rules
	// Changed after parsing: the compiled pattern must not be stale.
	changed, _ := ParseRules(DefaultRulesJSON())
	changed.Pseudonym = `^[A-Z]{2}[0-9]{6}$`

	tests := []struct {
		name string
		r    *Rules
		s    string
		ok   bool
	}{
		{"case code", def, "V-2026-0042", true},
		{"IOM case code", def, "IOM-2026-000123", true},
		{"four letters", def, "DSOS-2026-001", true},
		{"six digits", def, "SH-2025-999999", true},
		{"name with a year", def, "Siti-Aminah-1990", false},
		{"name with a dot", def, "Siti.Aminah1", false},
		{"lowercase name", def, "aminah.siti.1", false},
		{"name and digit", def, "Budi2", false},
		{"name, dash, digit", def, "Budi-2", false},
		{"name with a space", def, "siti 2", false},
		{"lowercase code", def, "v-2026-0042", false},
		{"five letters", def, "SITIA-2026-0042", false},
		{"two-digit number", def, "V-2026-42", false},
		{"seven-digit number", def, "V-2026-0000042", false},
		{"trailing newline", def, "V-2026-0042\n", false},
		{"trailing name on a new line", def, "V-2026-0042\nSiti Aminah", false},
		{"leading space", def, " V-2026-0042", false},
		{"fullwidth digits", def, "V-２０２６-0042", false},
		{"empty", def, "", false},
		{"invalid UTF-8", def, "V-2026-0042\xff", false},
		{"very long", def, strings.Repeat("V", 10000), false},
		{"custom pattern", custom, "IO123456", true},
		{"custom pattern refuses the default form", custom, "V-2026-0042", false},
		{"hand-built rules use the default", hand, "V-2026-0042", true},
		{"hand-built rules refuse a name", hand, "Budi2", false},
		{"hand-built custom pattern", handCustom, "IO123456", true},
		{"hand-built custom pattern refuses", handCustom, "V-2026-0042", false},
		{"hand-built unanchored pattern refuses all", handBad, "ABC", false},
		{"pattern changed after parsing", changed, "IO123456", true},
		{"pattern changed after parsing refuses the old form", changed, "V-2026-0042", false},
		{"nil rules use the default", none, "V-2026-0042", true},
		{"nil rules refuse a name", none, "Siti Aminah", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.CheckPseudonym(tc.s)
			if tc.ok {
				wantReason(t, err, "")
				return
			}
			wantReason(t, err, ReasonPseudonymInvalid)
			if !errors.Is(err, ErrInvalidInput) {
				t.Errorf("%v is not ErrInvalidInput", err)
			}
			if tc.s != "" && strings.Contains(err.Error(), tc.s) {
				t.Errorf("error %q repeats the value", err)
			}
		})
	}
}

// The default pattern is compiled once and shared: parsed default rules
// equal DefaultRules and do not compile it again.
func TestDefaultPseudonymShared(t *testing.T) {
	r, err := ParseRules(DefaultRulesJSON())
	if err != nil {
		t.Fatal(err)
	}
	if r.pseudonymRE != defaultPseudonymRE || DefaultRules().pseudonymRE != defaultPseudonymRE {
		t.Fatal("default pattern compiled again")
	}
	if DefaultRules().Pseudonym != DefaultPseudonymPattern {
		t.Fatal("DefaultRules has no pseudonym pattern")
	}
	if n := testing.AllocsPerRun(100, func() { _ = r.CheckPseudonym("V-2026-0042") }); n != 0 {
		t.Errorf("CheckPseudonym allocates %v times", n)
	}
}
