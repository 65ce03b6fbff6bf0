package policy

import (
	"errors"
	"slices"
	"testing"
)

func TestScopesForKind(t *testing.T) {
	tests := []struct {
		kind string
		want []string
	}{
		{KindPolice, []string{"referral:send", "referral:read", "referral:update", "statement:request", "statement:read", "audit:read"}},
		{KindIOM, []string{"referral:send", "referral:read", "referral:update", "statement:read", "statement:respond", "consent:record", "consent:override", "audit:read"}},
		{KindDinsos, []string{"referral:send", "referral:read", "referral:update", "statement:read", "statement:respond", "consent:record", "consent:override", "audit:read"}},
		{KindShelter, []string{"referral:send", "referral:read", "referral:update", "statement:read", "statement:respond", "consent:record", "consent:override", "audit:read"}},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			if got := ScopesForKind(tc.kind); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if slices.Contains(ScopesForKind(KindPolice), ScopeConsentOverride) {
		t.Error("police may override consent")
	}
}

func TestDecide(t *testing.T) {
	p := func(scopes ...string) Principal {
		return Principal{Agency: "shelter", Subject: "cw", Scopes: scopes}
	}
	all := p(AllScopes...)
	none := p()
	inbox := Resource{From: "iom", To: "shelter"}
	outbox := Resource{From: "shelter", To: "police"}
	other := Resource{From: "iom", To: "police"}

	tests := []struct {
		name   string
		p      Principal
		a      Action
		r      Resource
		reason string
	}{
		{"send referral", p(ScopeReferralSend), ActionReferralSend, Resource{}, ""},
		{"send referral without scope", p(ScopeReferralRead), ActionReferralSend, Resource{}, ReasonScopeMissing},
		{"list referrals", p(ScopeReferralRead), ActionReferralList, Resource{}, ""},
		{"list referrals without scope", p(ScopeReferralSend), ActionReferralList, Resource{}, ReasonScopeMissing},
		{"read inbox referral", p(ScopeReferralRead), ActionReferralRead, inbox, ""},
		{"read outbox referral", p(ScopeReferralRead), ActionReferralRead, outbox, ""},
		{"read referral without scope", p(ScopeAuditRead), ActionReferralRead, inbox, ReasonScopeMissing},
		{"read another pair's referral", all, ActionReferralRead, other, ReasonNotParty},
		{"read referral with no parties", all, ActionReferralRead, Resource{}, ReasonNotParty},
		{"update referral status", p(ScopeReferralUpdate), ActionReferralStatus, inbox, ""},
		{"update referral status without scope", p(ScopeReferralRead), ActionReferralStatus, inbox, ReasonScopeMissing},
		{"update another pair's referral", all, ActionReferralStatus, other, ReasonNotParty},
		{"receipts with referral:read", p(ScopeReferralRead), ActionReferralReceipts, outbox, ""},
		{"receipts with audit:read", p(ScopeAuditRead), ActionReferralReceipts, outbox, ""},
		{"receipts without scope", p(ScopeReferralSend), ActionReferralReceipts, outbox, ReasonScopeMissing},
		{"send statement request", p(ScopeStatementRequest), ActionStatementRequestSend, Resource{}, ""},
		{"send statement request without scope", p(ScopeStatementRead), ActionStatementRequestSend, Resource{}, ReasonScopeMissing},
		{"list statement requests", p(ScopeStatementRead), ActionStatementRequestList, Resource{}, ""},
		{"list statement requests without scope", p(ScopeReferralRead), ActionStatementRequestList, Resource{}, ReasonScopeMissing},
		{"read statement request", p(ScopeStatementRead), ActionStatementRequestRead, Resource{From: "police", To: "shelter"}, ""},
		{"read statement request without scope", p(ScopeReferralRead), ActionStatementRequestRead, Resource{From: "police", To: "shelter"}, ReasonScopeMissing},
		{"read another agency's statement request", all, ActionStatementRequestRead, Resource{From: "police", To: "iom"}, ReasonNotParty},
		{"record consent as recipient", p(ScopeConsentRecord), ActionConsentRecord, Resource{From: "police", To: "shelter"}, ""},
		{"record consent without scope", p(ScopeStatementRespond), ActionConsentRecord, Resource{From: "police", To: "shelter"}, ReasonScopeMissing},
		{"record consent on own request", Principal{Agency: "police", Subject: "x", Scopes: AllScopes}, ActionConsentRecord, Resource{From: "police", To: "shelter"}, ReasonWrongRole},
		{"record consent as outsider", all, ActionConsentRecord, Resource{From: "police", To: "iom"}, ReasonNotParty},
		{"respond as recipient", p(ScopeStatementRespond), ActionStatementRespond, Resource{From: "police", To: "shelter"}, ""},
		{"respond without scope", p(ScopeConsentRecord), ActionStatementRespond, Resource{From: "police", To: "shelter"}, ReasonScopeMissing},
		{"respond to own request", Principal{Agency: "police", Subject: "x", Scopes: AllScopes}, ActionStatementRespond, Resource{From: "police", To: "shelter"}, ReasonWrongRole},
		{"respond as outsider", all, ActionStatementRespond, Resource{From: "police", To: "dinsos"}, ReasonNotParty},
		{"list audit", p(ScopeAuditRead), ActionAuditList, Resource{}, ""},
		{"list audit without scope", p(ScopeReferralRead), ActionAuditList, Resource{}, ReasonScopeMissing},
		{"verify audit", p(ScopeAuditRead), ActionAuditVerify, Resource{}, ""},
		{"verify audit without scope", none, ActionAuditVerify, Resource{}, ReasonScopeMissing},
		{"unknown action", all, Action("referral.delete"), inbox, ReasonActionUnknown},
		{"principal without agency", Principal{Subject: "x", Scopes: AllScopes}, ActionReferralSend, Resource{}, ReasonPrincipalInvalid},
		{"principal without subject", Principal{Agency: "shelter", Scopes: AllScopes}, ActionReferralSend, Resource{}, ReasonPrincipalInvalid},
		{"scope prefix is not the scope", p("referral:sen", "referral"), ActionReferralSend, Resource{}, ReasonScopeMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Decide(tc.p, tc.a, tc.r)
			wantReason(t, err, tc.reason)
			if tc.reason == ReasonScopeMissing && !errors.Is(err, ErrInsufficientScope) {
				t.Errorf("%v is not ErrInsufficientScope", err)
			}
			if tc.reason != "" && tc.reason != ReasonScopeMissing && !errors.Is(err, ErrDenied) {
				t.Errorf("%v is not ErrDenied", err)
			}
		})
	}
}

// Every action needs a scope: a principal holding every scope but the
// action's own is refused.
func TestDecideEveryActionNeedsItsScope(t *testing.T) {
	for _, a := range Actions() {
		t.Run(string(a), func(t *testing.T) {
			need := RequiredScopes(a)
			if len(need) == 0 {
				t.Fatal("action has no scope")
			}
			var rest []string
			for _, s := range AllScopes {
				if !slices.Contains(need, s) {
					rest = append(rest, s)
				}
			}
			r := Resource{From: "police", To: "shelter"}
			err := Decide(Principal{Agency: "shelter", Subject: "cw", Scopes: rest}, a, r)
			wantReason(t, err, ReasonScopeMissing)
			for _, s := range need {
				if err := Decide(Principal{Agency: "shelter", Subject: "cw", Scopes: []string{s}}, a, r); err != nil {
					t.Errorf("with %s: %v", s, err)
				}
			}
		})
	}
}

func TestMayOverride(t *testing.T) {
	tests := []struct {
		kind string
		want bool
	}{
		{KindPolice, false},
		{KindIOM, true},
		{KindDinsos, true},
		{KindShelter, true},
		{"ngo", true},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			if got := MayOverride(tc.kind); got != tc.want {
				t.Fatalf("MayOverride(%q) = %v, want %v", tc.kind, got, tc.want)
			}
			if got := slices.Contains(ScopesForKind(tc.kind), ScopeConsentOverride); got != tc.want {
				t.Fatalf("ScopesForKind(%q) holds consent:override = %v, want %v", tc.kind, got, tc.want)
			}
		})
	}
}

// The receiving gateway judges a peer's referral by the scopes of the
// sender's kind, not by anything the sender claims: a police sender's
// override is refused, another kind's is allowed.
func TestPeerOverrideByKind(t *testing.T) {
	why := "Child at immediate risk at the airport; guardian unreachable."
	f := ReferralFacts{ToKind: KindShelter, Priority: PriorityUrgent, Age: years(16), OverrideJustification: why}
	tests := []struct {
		kind   string
		reason string
	}{
		{KindPolice, ReasonOverrideScope},
		{KindIOM, ""},
		{KindDinsos, ""},
		{KindShelter, ""},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			peer := Principal{Agency: "sender-" + tc.kind, Subject: "peer", Scopes: ScopesForKind(tc.kind)}
			d, err := CheckReferralConsent(peer, f, testNow)
			wantReason(t, err, tc.reason)
			if err == nil && (!d.Override || d.Waived != ReasonConsentMissing) {
				t.Fatalf("decision %+v, want an override of consent-missing", d)
			}
			if err != nil && !errors.Is(err, ErrDenied) {
				t.Fatalf("%v is not ErrDenied", err)
			}
		})
	}
}
