package body_test

import (
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/body"
)

func ExampleParseReferral() {
	_, errs := body.ParseReferral([]byte(`{
		"to": "Shelter",
		"person": {"full_name": "Siti Aminah", "pseudonym": "V-2026-0042", "age": 17},
		"needs": ["shelter", "shelter"],
		"consent": {"given": true, "purposes": ["services"], "method": "guardian",
		            "recorded_by": "someone", "recorded_at": "2026-11-20T09:00:00Z"}
	}`))
	for _, e := range errs {
		fmt.Println(e)
	}
	// Output:
	// /to: format: must be an agency id: a lowercase slug of at most 63 characters
	// /person/full_name: forbidden-field: the person is named by pseudonym only, never by name
	// /needs/1: duplicate-item: repeats an earlier item
	// /consent/recorded_by: forbidden-field: is set by the gateway from the caller's token, never taken from the body
}

func ExampleReferral_Age() {
	r, _ := body.ParseReferral([]byte(`{"to": "shelter", "person": {"pseudonym": "V-7", "age_range": "16-20"},
		"needs": ["shelter"], "priority": "urgent", "consent_override": {"justification": "in danger tonight"}}`))
	minor, err := r.Age().Minor()
	fmt.Println(minor, err)
	// Output: true <nil>
}

func ExampleParseStatementRequest() {
	_, errs := body.ParseStatementRequest([]byte(`{"to": "shelter", "pseudonym": "V-2026-0042",
		"referral_id": "01JD5X", "legal_basis": "LP/B/123/XI/2026/NTB", "purpose": "curiosity",
		"questions": [], "due": "2026-12-01"}`))
	for _, e := range errs {
		fmt.Println(e)
	}
	// Output:
	// /referral_id: conflict: give only one of pseudonym, referral_id
	// /purpose: enum: must be one of: investigation, prosecution, victim-identification
	// /questions: empty: must have at least one item; leave the field out instead
	// /due: format: must be an RFC 3339 timestamp such as 2026-11-20T09:00:00Z
}

func ExampleParseConsent() {
	d, _ := body.ParseConsent([]byte(`{"given": true, "purposes": ["statement"], "method": "guardian"}`))
	fmt.Println(d.Given, d.Purposes, d.Method)
	_, errs := body.ParseConsent([]byte(`{"given": true, "method": "guardian", "recorded_by": "me"}`))
	for _, e := range errs {
		fmt.Println(e)
	}
	// Output:
	// true [statement] guardian
	// /recorded_by: forbidden-field: is set by the gateway from the caller's token, never taken from the body
	// /purposes: required: is required when consent is given
}

func ExampleParseResponse() {
	r, _ := body.ParseResponse([]byte(`{"decline": {"reason": "no-consent"}}`))
	fmt.Println(r.Statement == nil, r.Decline.Reason)
	_, errs := body.ParseResponse([]byte(`{}`))
	fmt.Println(errs)
	// Output:
	// true no-consent
	// [/statement: required: one of statement, decline is required]
}

func ExampleParseStatusBody() {
	s, _ := body.ParseStatusBody([]byte(`{"ref": "01JD5X", "status": "accepted", "by": "shelter",
		"at": "2026-11-21T09:00:00Z"}`))
	fmt.Println(s.Ref, s.Status, s.At.Format("2006-01-02"))
	// Output: 01JD5X accepted 2026-11-21
}
