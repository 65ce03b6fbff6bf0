package referral_test

import (
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/referral"
)

func ExampleParse() {
	_, errs := referral.Parse([]byte(`{
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

func ExampleReferral_Minor() {
	r, _ := referral.Parse([]byte(`{"to": "shelter", "person": {"pseudonym": "V-7", "age_range": "16-20"},
		"needs": ["shelter"], "priority": "urgent", "consent_override": {"justification": "in danger tonight"}}`))
	minor, known := r.Minor()
	fmt.Println(minor, known)
	// Output: true false
}
