package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Consent purposes.
const (
	PurposeServices       = "services"
	PurposeLawEnforcement = "law-enforcement"
	PurposeStatement      = "statement"
)

// Consent methods.
const (
	MethodWritten  = "written"
	MethodVerbal   = "verbal"
	MethodGuardian = "guardian"
)

// Witness roles. A minor's consent needs MethodGuardian or a witness whose
// role is WitnessSocialWorker.
const (
	WitnessSocialWorker = "social-worker"
	WitnessGuardian     = "guardian"
	WitnessInterpreter  = "interpreter"
	WitnessOther        = "other"
)

// Priorities of a referral.
const (
	PriorityNormal = "normal"
	PriorityUrgent = "urgent"
)

// AdultAge is the age of majority for consent (Indonesian child protection
// law: under 18 is a child).
const AdultAge = 18

// Limits of free-text consent fields.
const (
	MinJustification = 10
	MaxJustification = 2000
	maxWitness       = 200
)

// Consent is a victim's consent decision as recorded by a caseworker (the
// "consent" object of a referral body, and the body of a statement
// request's consent record).
type Consent struct {
	Given    bool     `json:"given"`
	Purposes []string `json:"purposes,omitempty"`
	Method   string   `json:"method"`
	// Witness names who witnessed the consent, and WitnessRole what they
	// are (social-worker, guardian, interpreter, other).
	Witness     string `json:"witness,omitempty"`
	WitnessRole string `json:"witness_role,omitempty"`
	// RecordedBy is the token subject of the caseworker who recorded the
	// consent. The gateway sets it from the token, never from a body.
	RecordedBy string    `json:"recorded_by,omitempty"`
	RecordedAt time.Time `json:"recorded_at"`
	// ExpiresAt, when set, ends the consent.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Validate checks that the record is well formed at time now (it does not
// check what it covers). Errors are *Error with ReasonConsentInvalid.
func (c *Consent) Validate(now time.Time) error {
	bad := func(format string, args ...any) error {
		return deny(ReasonConsentInvalid, fmt.Sprintf(format, args...))
	}
	switch c.Method {
	case MethodWritten, MethodVerbal, MethodGuardian:
	case "":
		return bad("method is missing")
	default:
		return bad("method %q is not written, verbal or guardian", clip(c.Method))
	}
	for i, p := range c.Purposes {
		if p != PurposeServices && p != PurposeLawEnforcement && p != PurposeStatement {
			return bad("purpose %q is not services, law-enforcement or statement", clip(p))
		}
		if slices.Contains(c.Purposes[:i], p) {
			return bad("purpose %q appears twice", p)
		}
	}
	if c.Given && len(c.Purposes) == 0 {
		return bad("consent given for no purpose")
	}
	if len(c.Witness) > maxWitness || !utf8.ValidString(c.Witness) {
		return bad("witness is longer than %d bytes or not UTF-8", maxWitness)
	}
	switch c.WitnessRole {
	case "", WitnessSocialWorker, WitnessGuardian, WitnessInterpreter, WitnessOther:
	default:
		return bad("witness_role %q is not social-worker, guardian, interpreter or other", clip(c.WitnessRole))
	}
	if c.WitnessRole != "" && strings.TrimSpace(c.Witness) == "" {
		return bad("witness_role without a witness")
	}
	if c.RecordedAt.IsZero() {
		return bad("recorded_at is missing")
	}
	if c.RecordedAt.After(now.Add(MaxLeeway)) {
		return bad("recorded_at is in the future")
	}
	if c.ExpiresAt != nil && !c.ExpiresAt.After(c.RecordedAt) {
		return bad("expires_at is not after recorded_at")
	}
	return nil
}

// covers checks that a valid record gives consent for purpose at now, and
// meets the rule for minors.
func (c *Consent) covers(purpose string, minor bool, now time.Time) error {
	if !c.Given {
		return deny(ReasonConsentRefused, "the person did not consent")
	}
	if !slices.Contains(c.Purposes, purpose) {
		return deny(ReasonConsentPurpose, "consent does not cover "+purpose)
	}
	if c.ExpiresAt != nil && !now.Before(*c.ExpiresAt) {
		return deny(ReasonConsentExpired, "consent expired")
	}
	if minor && c.Method != MethodGuardian && (c.WitnessRole != WitnessSocialWorker || strings.TrimSpace(c.Witness) == "") {
		return deny(ReasonConsentMinor, "a person under 18 (or of unknown age) needs a guardian's consent or a social worker as witness")
	}
	return nil
}

// Age is what is known of a person's age: an age in years, an age range
// such as "15-17" or "18+", or neither.
type Age struct {
	Years *int
	Range string
}

// Minor reports whether the person may be under 18: a known age under 18,
// a range whose lower bound is under 18, or no age at all. A person whose
// age is not known is treated as a child until shown otherwise, as child
// protection guidance asks.
func (a Age) Minor() (bool, error) {
	if a.Years != nil {
		if *a.Years < 0 || *a.Years > 150 {
			return false, deny(ReasonInputInvalid, "age is out of range")
		}
		return *a.Years < AdultAge, nil
	}
	if a.Range == "" {
		return true, nil
	}
	lo, ok := parseAgeRange(a.Range)
	if !ok {
		return false, deny(ReasonInputInvalid, fmt.Sprintf("age_range %q is not N-M or N+", clip(a.Range)))
	}
	return lo < AdultAge, nil
}

// parseAgeRange returns the lower bound of "N-M" (N <= M) or "N+".
func parseAgeRange(s string) (int, bool) {
	num := func(t string) (int, bool) {
		if len(t) == 0 || len(t) > 3 {
			return 0, false
		}
		for _, c := range t {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		n, err := strconv.Atoi(t)
		return n, err == nil && n <= 150
	}
	if lo, ok := strings.CutSuffix(s, "+"); ok {
		return num(lo)
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, false
	}
	lo, ok1 := num(a)
	hi, ok2 := num(b)
	return lo, ok1 && ok2 && lo <= hi
}

// ReferralFacts are what the consent rules of a referral look at.
type ReferralFacts struct {
	// ToKind is the kind of the receiving agency.
	ToKind string
	// Priority is normal or urgent.
	Priority string
	// Age of the person.
	Age Age
	// Consent is the recorded consent, or nil if none was recorded.
	Consent *Consent
	// OverrideJustification is the written justification for sending
	// without consent; empty when no override is asked for.
	OverrideJustification string
}

// ConsentDecision is an allowed referral: either consent covers it, or it
// goes as an override that the gateway must audit as one.
type ConsentDecision struct {
	// Override is true when the referral is allowed without valid consent.
	Override bool
	// Waived is the reason code the referral would have been denied with
	// (consent-missing, consent-refused, ...) when Override is true.
	Waived string
}

// CheckReferralConsent applies the consent rules to a referral by principal
// p at time now:
//
//   - to the police, consent must cover law-enforcement; to any other kind,
//     services;
//   - a person under 18, or of unknown age, needs consent by method
//     guardian or a witness whose role is social-worker;
//   - without valid consent covering the purpose, the referral is allowed
//     only as an override: priority urgent, the consent:override scope,
//     and a written justification of at least MinJustification characters.
//
// It returns the decision, or an *Error: ReasonConsentInvalid or
// ReasonInputInvalid (class ErrInvalidInput) for malformed facts; the
// consent reason (consent-missing, consent-refused, consent-purpose,
// consent-expired, consent-minor) when no override is asked for; an
// override reason (override-not-urgent, override-scope,
// override-justification) when one is asked for and not allowed.
func CheckReferralConsent(p Principal, f ReferralFacts, now time.Time) (ConsentDecision, error) {
	if f.Priority != PriorityNormal && f.Priority != PriorityUrgent {
		return ConsentDecision{}, deny(ReasonInputInvalid, fmt.Sprintf("priority %q is not normal or urgent", clip(f.Priority)))
	}
	if f.ToKind == "" {
		return ConsentDecision{}, deny(ReasonInputInvalid, "receiving agency kind is missing")
	}
	minor, err := f.Age.Minor()
	if err != nil {
		return ConsentDecision{}, err
	}
	purpose := PurposeServices
	if f.ToKind == KindPolice {
		purpose = PurposeLawEnforcement
	}
	var cerr error
	if f.Consent == nil {
		cerr = deny(ReasonConsentMissing, "no consent recorded")
	} else {
		if err := f.Consent.Validate(now); err != nil {
			return ConsentDecision{}, err
		}
		cerr = f.Consent.covers(purpose, minor, now)
	}
	if cerr == nil {
		return ConsentDecision{}, nil
	}
	j := strings.TrimSpace(f.OverrideJustification)
	if j == "" {
		return ConsentDecision{}, cerr
	}
	switch {
	case f.Priority != PriorityUrgent:
		return ConsentDecision{}, deny(ReasonOverrideNotUrgent, "a consent override needs priority urgent")
	case !p.HasScope(ScopeConsentOverride):
		return ConsentDecision{}, deny(ReasonOverrideScope, "a consent override needs scope "+ScopeConsentOverride)
	case utf8.RuneCountInString(j) < MinJustification || len(j) > MaxJustification || !utf8.ValidString(j):
		return ConsentDecision{}, deny(ReasonOverrideJustification,
			fmt.Sprintf("a consent override needs a written justification of %d to %d characters", MinJustification, MaxJustification))
	}
	return ConsentDecision{Override: true, Waived: ReasonOf(cerr)}, nil
}

// StatementFacts are what the rules for sending a statement look at.
type StatementFacts struct {
	// The statement request being answered: its current state, due date
	// (zero for none), requesting police agency and holding agency.
	RequestState string
	RequestDue   time.Time
	RequestFrom  string
	RequestTo    string
	// The statement: its sender and recipient agency ids.
	From string
	To   string
	// Age of the person.
	Age Age
	// Consent is the consent recorded for this request, or nil.
	Consent *Consent
}

// RequestOpen reports whether a statement request in state with due date
// due (zero for none) can still be answered at now. A queued request is
// open: the requesting gateway may not yet have recorded its publication
// when the answer arrives.
func RequestOpen(state string, due, now time.Time) bool {
	switch state {
	case SRQueued, SRSent, SRDelivered, SRRead, SRConsentGiven, SRConsentRefused:
	default:
		return false
	}
	return due.IsZero() || now.Before(due)
}

// CheckStatement applies the rules for a statement at time now: it answers
// an open, unexpired request; it goes from the agency the request was sent
// to, back to the police agency that sent it; and consent covering
// "statement" was recorded for that request (with the rule for minors).
// There is no override. Both gateways call it.
func CheckStatement(f StatementFacts, now time.Time) error {
	if !RequestOpen(f.RequestState, time.Time{}, now) {
		return deny(ReasonRequestNotOpen, fmt.Sprintf("statement request is %q, not open", clip(f.RequestState)))
	}
	if !f.RequestDue.IsZero() && !now.Before(f.RequestDue) {
		return deny(ReasonRequestExpired, "statement request is past its due date")
	}
	if f.From == "" || f.From != f.RequestTo {
		return deny(ReasonNotParty, "only the agency the request was sent to may answer it")
	}
	if f.To == "" || f.To != f.RequestFrom {
		return deny(ReasonNotRequester, "a statement goes only to the police agency that requested it")
	}
	minor, err := f.Age.Minor()
	if err != nil {
		return err
	}
	if f.Consent == nil {
		return deny(ReasonConsentMissing, "no consent recorded for this request")
	}
	if err := f.Consent.Validate(now); err != nil {
		return err
	}
	return f.Consent.covers(PurposeStatement, minor, now)
}
