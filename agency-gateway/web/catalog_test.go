package web

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/openapi"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/policy"
)

func catalogs(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, l := range languages {
		raw, err := assets.ReadFile("locales/" + l + ".json")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		out[l] = m
	}
	return out
}

// TestCatalogsComplete: both languages have the same keys, none empty.
func TestCatalogsComplete(t *testing.T) {
	cats := catalogs(t)
	for _, a := range languages {
		for k, v := range cats[a] {
			if v == "" {
				t.Errorf("%s: %s is empty", a, k)
			}
			for _, b := range languages {
				if _, ok := cats[b][k]; !ok {
					t.Errorf("%s has %s, %s does not", a, k, b)
				}
			}
		}
	}
}

var (
	templateKey = regexp.MustCompile(`\.T "([^"]+)"`)
	// goKey matches the message ids named in Go code.
	goKey = regexp.MustCompile(`"((?:nav|error|login|field|list|referral|request|age|delivery)\.[a-z0-9._-]*[a-z0-9])"`)
)

// TestKeysUsedExist: every message id a template or handler names is in
// the catalogs.
func TestKeysUsedExist(t *testing.T) {
	cats := catalogs(t)
	check := func(where, key string) {
		for _, l := range languages {
			if _, ok := cats[l][key]; !ok {
				t.Errorf("%s uses %q, missing in %s.json", where, key, l)
			}
		}
	}
	fs.WalkDir(assets, "templates", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, _ := assets.ReadFile(p)
		for _, m := range templateKey.FindAllStringSubmatch(string(raw), -1) {
			check(p, m[1])
		}
		return nil
	})
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if filepath.Ext(f) != ".go" || regexp.MustCompile(`_test\.go$`).MatchString(f) {
			continue
		}
		raw, _ := os.ReadFile(f)
		for _, m := range goKey.FindAllStringSubmatch(string(raw), -1) {
			check(f, m[1])
		}
	}
	// pages titled by nav keys built from a box
	for _, b := range []string{"inbox", "outbox"} {
		check("referrals", "nav."+b)
		check("requests", "nav.requests."+b)
	}
}

// TestEnumerationsTranslated: every value of every enumeration shown is in
// the catalogs: the API description's enumerations, roles, statuses,
// field error codes and the policy reasons the pages show.
func TestEnumerationsTranslated(t *testing.T) {
	cats := catalogs(t)
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Enum []string `json:"enum"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openapi.JSON, &doc); err != nil {
		t.Fatal(err)
	}
	groups := map[string]string{
		"Priority": "priority", "Sex": "sex", "Exploitation": "exploitation", "Need": "need", "Risk": "risk",
		"ConsentPurpose": "purpose", "ConsentMethod": "method", "WitnessRole": "witness", "ReferralStatus": "status",
		"StatementRequestStatus": "status", "StatementPurpose": "srpurpose", "DeclineReason": "decline",
		"Outcome": "outcome", "Box": "box",
	}
	need := map[string]bool{}
	for schema, group := range groups {
		s, ok := doc.Components.Schemas[schema]
		if !ok || len(s.Enum) == 0 {
			t.Fatalf("schema %s has no enumeration", schema)
		}
		for _, v := range s.Enum {
			need[group+"."+v] = true
		}
	}
	// the lists the forms offer are the API's
	for group, vs := range map[string][]string{"priority": priorities, "sex": sexes, "exploitation": exploitations,
		"need": needs, "risk": risks, "purpose": purposes, "method": methods, "witness": witnessRoles,
		"srpurpose": srPurposes, "decline": declineReasons, "action": statusChanges} {
		for _, v := range vs {
			need[group+"."+v] = true
		}
	}
	for _, r := range staff.Roles {
		need["role."+string(r)] = true
	}
	for _, s := range append(policy.ReferralMachine.States, policy.StatementRequestMachine.States...) {
		need["status."+s] = true
	}
	for _, e := range []string{"delivered", "read", "rejected"} {
		need["receipt."+e] = true
		need["event.status-"+e] = true
		need["event.statement-"+e] = true
	}
	for _, c := range []string{body.CodeSyntax, body.CodeEncoding, body.CodeTooLarge, body.CodeTrailingData,
		body.CodeDuplicateKey, body.CodeUnknownField, body.CodeForbidden, body.CodeType, body.CodeRequired,
		body.CodeEmpty, body.CodeEnum, body.CodeFormat, body.CodeRange, body.CodeTooLong, body.CodeTooMany,
		body.CodeDuplicateItem, body.CodeConflict, body.CodeTooManyErrors} {
		need["fielderr."+c] = true
	}
	for _, r := range []string{policy.ReasonScopeMissing, policy.ReasonActionUnknown, policy.ReasonPrincipalInvalid,
		policy.ReasonNotParty, policy.ReasonWrongRole, policy.ReasonRuleNotAllowed, policy.ReasonRuleOpenRequest,
		policy.ReasonRuleCounterpart, policy.ReasonRuleSelfAddressed, policy.ReasonConsentMissing,
		policy.ReasonConsentRefused, policy.ReasonConsentPurpose, policy.ReasonConsentExpired, policy.ReasonConsentMinor,
		policy.ReasonConsentInvalid, policy.ReasonOverrideNotUrgent, policy.ReasonOverrideScope,
		policy.ReasonOverrideJustification, policy.ReasonRequestNotOpen, policy.ReasonRequestExpired,
		policy.ReasonNotRequester, policy.ReasonInputInvalid, policy.ReasonPseudonymInvalid,
		policy.ReasonTransitionIllegal, policy.ReasonTransitionRole, policy.ReasonStateUnknown} {
		need["reason."+r] = true
	}
	for m := 1; m <= 12; m++ {
		need["month."+strconv.Itoa(m)] = true
	}
	for k := range need {
		for _, l := range languages {
			if _, ok := cats[l][k]; !ok {
				t.Errorf("%s.json lacks %s", l, k)
			}
		}
	}
}
