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
