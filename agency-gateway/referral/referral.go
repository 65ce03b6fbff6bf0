// Package referral parses and validates the body of a referral and of a
// referral status change, as sent to a gateway's HTTP API (DESIGN section 7).
//
// The fields follow IOM's Human Trafficking Case Data Standard (HTCDS 2.0)
// where they overlap. Every byte of a body is hostile until Parse has
// accepted it; a body Parse accepts is well formed in every field, so later
// code (policy, crypto, store) never sees a malformed referral.
//
// # Guarantees
//
//   - Decoding is strict: exactly one JSON value, valid UTF-8, no trailing
//     data, no duplicate keys, no unknown fields, no nulls, bounded nesting,
//     bounded size ([MaxBodyBytes]).
//   - The person is named by a pseudonym only: there is no name field, and a
//     pseudonym must look like a case code (letters, digits, '.', '_', '-',
//     at least one digit, no spaces), which keeps "First Last" out.
//   - consent.recorded_by is refused in a body: the gateway sets it from the
//     token of the caller. [ParseReceived] reads bodies that went through a
//     gateway and requires it.
//   - Every enumeration is exactly the one of DESIGN section 7, every list
//     is short and free of repeats, every text is bounded and free of
//     control and bidirectional-override characters.
//   - Errors are field level ([FieldError], an RFC 6901 pointer and a code)
//     and never echo a submitted value, since values may be personal data
//     and errors get logged. At most [MaxErrors] are returned.
//
// # Decisions
//
// At least one of person.age and person.age_range is required, never both:
// the consent rules depend on whether the person is a minor. Absent priority
// means "normal", and Parse fills it in. A referral carries consent, or a
// consent_override (which needs priority "urgent"), or both; whether the
// consent covers the referral is a policy decision, not a validation one.
//
// # Caveats
//
// Parse has no clock: it does not refuse dates in the future. Whether the
// recipient agency exists is a directory question the gateway answers.
package referral

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Size limits.
const (
	// MaxBodyBytes is the largest referral body Parse accepts. Gateways
	// answer a larger request with 413 before reading it all.
	MaxBodyBytes = 64 << 10
	// MaxStatusBodyBytes is the largest status change body
	// ParseStatusChange accepts.
	MaxStatusBodyBytes = 8 << 10
	// MaxNotesBytes bounds the free-text notes, in bytes of UTF-8.
	MaxNotesBytes = 8 << 10
	// MaxReasonChars bounds a status change reason and a consent override
	// justification, in characters.
	MaxReasonChars = 2000
	// MaxErrors is the most field errors Parse returns; a last error with
	// code CodeTooManyErrors says more were found.
	MaxErrors = 50
)

// Error codes of a FieldError.
const (
	CodeSyntax        = "syntax"          // not one well-formed JSON value
	CodeEncoding      = "encoding"        // not valid UTF-8
	CodeTooLarge      = "too-large"       // body over the size limit
	CodeTrailingData  = "trailing-data"   // more after the JSON value
	CodeDuplicateKey  = "duplicate-key"   // a key repeated in one object
	CodeUnknownField  = "unknown-field"   // a field the body does not have
	CodeForbidden     = "forbidden-field" // a field the caller may not set
	CodeType          = "type"            // wrong JSON type (null included)
	CodeRequired      = "required"        // missing field
	CodeEmpty         = "empty"           // empty string or list where a value is needed
	CodeEnum          = "enum"            // not one of the allowed values
	CodeFormat        = "format"          // does not match the required format
	CodeRange         = "range"           // number or date out of range
	CodeTooLong       = "too-long"        // text over its limit
	CodeTooMany       = "too-many"        // list over its limit
	CodeDuplicateItem = "duplicate-item"  // a value repeated in a list
	CodeConflict      = "conflict"        // fields that exclude each other
	CodeTooManyErrors = "too-many-errors" // errors truncated at MaxErrors
)

// FieldError is one problem with one field of a body. Field is an RFC 6901
// JSON pointer into the body ("/person/age"; "" for the whole body). It
// converts to problem.FieldError with a plain type conversion.
type FieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Code + ": " + e.Message
	}
	return e.Field + ": " + e.Code + ": " + e.Message
}

// Enumerations of DESIGN section 7.
var (
	sexes        = []string{"female", "male", "other", "unknown"}
	exploitation = []string{"sexual", "labour", "forced-marriage", "organ-removal", "other"}
	needs        = []string{"shelter", "medical", "psychosocial", "legal", "repatriation",
		"reintegration", "family-tracing", "documentation"}
	risks      = []string{"low", "medium", "high"}
	priorities = []string{PriorityNormal, PriorityUrgent}
	purposes   = []string{"services", "law-enforcement", "statement"}
	methods    = []string{"written", "verbal", "guardian"}
	// witnessRoles are the roles a consent witness may have; a minor's
	// consent needs method guardian or a social-worker witness.
	witnessRoles = []string{"social-worker", "guardian", "interpreter", "other"}
	statuses     = []string{"accepted", "declined", "in-progress", "completed", "withdrawn"}
)

// Priorities.
const (
	PriorityNormal = "normal"
	PriorityUrgent = "urgent"
)

// Enumerations returns every enumeration the validator enforces, keyed by
// the JSON pointer of the field with array indexes left out ("/needs",
// "/person/sex", "/consent/purposes"; "/status" is the status change body).
// The maps and slices are fresh copies.
func Enumerations() map[string][]string {
	return map[string][]string{
		"/person/sex":           slices.Clone(sexes),
		"/exploitation":         slices.Clone(exploitation),
		"/needs":                slices.Clone(needs),
		"/risk":                 slices.Clone(risks),
		"/priority":             slices.Clone(priorities),
		"/consent/purposes":     slices.Clone(purposes),
		"/consent/method":       slices.Clone(methods),
		"/consent/witness_role": slices.Clone(witnessRoles),
		"/status":               slices.Clone(statuses),
	}
}

// Referral is a referral body. The JSON tags are the wire names.
type Referral struct {
	// To is the recipient agency id, a lowercase slug.
	To string `json:"to"`
	// Priority is "normal" (filled in when absent) or "urgent".
	Priority string `json:"priority"`
	// CaseRef is the sender's own case reference (a code, never a name).
	CaseRef string `json:"case_ref,omitempty"`
	Person  Person `json:"person"`
	// Exploitation lists the forms of exploitation identified.
	Exploitation []string    `json:"exploitation,omitempty"`
	Identified   *Identified `json:"identified,omitempty"`
	// Destination is the ISO 3166-1 alpha-2 code of the country of
	// destination (where the person was exploited), as in HTCDS.
	Destination string `json:"destination,omitempty"`
	// Needs lists the services the person is referred for (at least one).
	Needs []string `json:"needs"`
	// Risk is the assessed risk: low, medium or high.
	Risk            string           `json:"risk,omitempty"`
	Consent         *Consent         `json:"consent,omitempty"`
	ConsentOverride *ConsentOverride `json:"consent_override,omitempty"`
	// Notes is free text, at most MaxNotesBytes.
	Notes string `json:"notes,omitempty"`
}

// Person describes the referred person without naming them.
type Person struct {
	// Pseudonym is a case code such as "V-2026-0042", never a name.
	Pseudonym string `json:"pseudonym"`
	Sex       string `json:"sex,omitempty"`
	// Age in years, 0..120. Exactly one of Age and AgeRange is set.
	Age *int `json:"age,omitempty"`
	// AgeRange is "A-B" with 0 <= A <= B <= 120, e.g. "15-17".
	AgeRange string `json:"age_range,omitempty"`
	// Nationality is an ISO 3166-1 alpha-2 code such as "ID".
	Nationality string `json:"nationality,omitempty"`
	// Languages are ISO 639 / BCP 47 language tags such as "id" or "sas".
	Languages []string `json:"languages,omitempty"`
}

// Identified says when, where and by whom the person was identified.
type Identified struct {
	// Date is YYYY-MM-DD or an RFC 3339 timestamp.
	Date  string `json:"date,omitempty"`
	Place string `json:"place,omitempty"`
	By    string `json:"by,omitempty"`
}

// Consent is the person's (or guardian's) consent decision.
type Consent struct {
	Given    bool     `json:"given"`
	Purposes []string `json:"purposes,omitempty"`
	Method   string   `json:"method"`
	Witness  string   `json:"witness,omitempty"`
	// WitnessRole is the witness's role: social-worker, guardian,
	// interpreter or other.
	WitnessRole string `json:"witness_role,omitempty"`
	// RecordedBy is the token subject of the caseworker who sent the
	// referral. The gateway sets it; a body that carries it is refused.
	RecordedBy string    `json:"recorded_by,omitempty"`
	RecordedAt time.Time `json:"recorded_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
}

// ConsentOverride sends an urgent referral without (covering) consent. The
// gateway allows it only to a token with the consent:override scope and
// audits it as an override.
type ConsentOverride struct {
	Justification string `json:"justification"`
}

// StatusChange is the body of POST /v1/referrals/{id}/status.
type StatusChange struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Minor reports whether the person is, or may be, under 18. known is true
// when the age or the whole age range is on one side of 18. When it is not
// (a range such as "16-20", or no age at all), minor is true: a person who
// may be a child is treated as one (the presumption of minority).
func (r *Referral) Minor() (minor bool, known bool) {
	lo, hi, ok := r.AgeBounds()
	switch {
	case !ok:
		return true, false
	case hi < 18:
		return true, true
	case lo >= 18:
		return false, true
	default:
		return true, false
	}
}

// AgeBounds returns the person's age as an inclusive range: [age, age] for
// an age, [A, B] for an age range "A-B". ok is false when neither is set or
// the range is malformed.
func (r *Referral) AgeBounds() (lo, hi int, ok bool) {
	if r.Person.Age != nil {
		return *r.Person.Age, *r.Person.Age, true
	}
	return parseAgeRange(r.Person.AgeRange)
}

var (
	slugRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	pseudonymRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	caseRefRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$`)
	countryRE   = regexp.MustCompile(`^[A-Z]{2}$`)
	languageRE  = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$`)
	ageRangeRE  = regexp.MustCompile(`^(0|[1-9][0-9]{0,2})-(0|[1-9][0-9]{0,2})$`)
	dateRE      = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
)

// Patterns the validator applies, as regular expressions (RE2 syntax, also
// valid ECMA-262), for the API description to repeat.
const (
	PatternSlug      = `^[a-z0-9][a-z0-9-]{0,62}$`
	PatternPseudonym = `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`
	PatternCaseRef   = `^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$`
	PatternCountry   = `^[A-Z]{2}$`
	PatternLanguage  = `^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$`
	PatternAgeRange  = `^(0|[1-9][0-9]{0,2})-(0|[1-9][0-9]{0,2})$`
)

// Text limits, in characters.
const (
	maxPlace     = 200
	maxBy        = 200
	maxWitness   = 200
	maxRecorder  = 256
	maxLanguages = 10
)

func parseAgeRange(s string) (lo, hi int, ok bool) {
	m := ageRangeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	lo, _ = strconv.Atoi(m[1])
	hi, _ = strconv.Atoi(m[2])
	if lo > hi || hi > 120 {
		return 0, 0, false
	}
	return lo, hi, true
}

// Parse decodes and validates a referral body sent by a caller of the HTTP
// API. It returns the referral, or nil and the field errors (in document
// order, at most MaxErrors). consent.recorded_by is refused.
func Parse(b []byte) (*Referral, []FieldError) {
	return parse(b, false)
}

// ParseReceived decodes and validates a referral body that went through a
// gateway, such as the plaintext of a verified envelope: the same rules as
// Parse, except that consent.recorded_by is required instead of refused.
func ParseReceived(b []byte) (*Referral, []FieldError) {
	return parse(b, true)
}

func parse(b []byte, received bool) (*Referral, []FieldError) {
	root, fe := decodeChecked(b, MaxBodyBytes)
	if fe != nil {
		return nil, []FieldError{*fe}
	}
	c := &checker{}
	r := c.referral(root, received)
	if len(c.errs) > 0 {
		return nil, c.result()
	}
	return r, nil
}

// ParseStatusChange decodes and validates the body of a status change:
// {"status": accepted | declined | in-progress | completed | withdrawn,
// "reason": optional text of at most MaxReasonChars characters}. Whether the
// change is allowed from the current state is a policy decision.
func ParseStatusChange(b []byte) (*StatusChange, []FieldError) {
	root, fe := decodeChecked(b, MaxStatusBodyBytes)
	if fe != nil {
		return nil, []FieldError{*fe}
	}
	c := &checker{}
	m := c.object(root, "", []string{"status", "reason"}, nil)
	if m == nil {
		return nil, c.result()
	}
	s := &StatusChange{}
	s.Status, _ = c.enum(m, "", "status", true, statuses)
	s.Reason, _ = c.text(m, "", "reason", false, textSpec{maxChars: MaxReasonChars, multiline: true})
	if len(c.errs) > 0 {
		return nil, c.result()
	}
	return s, nil
}

func decodeChecked(b []byte, limit int) (*node, *FieldError) {
	if len(b) > limit {
		return nil, &FieldError{Field: "", Code: CodeTooLarge,
			Message: "the body is larger than " + strconv.Itoa(limit) + " bytes"}
	}
	if !utf8.Valid(b) {
		return nil, &FieldError{Field: "", Code: CodeEncoding, Message: "the body is not valid UTF-8"}
	}
	return decode(b)
}

// checker collects field errors while it walks a decoded body.
type checker struct {
	errs []FieldError
}

func (c *checker) add(field, code, msg string) {
	c.errs = append(c.errs, FieldError{Field: field, Code: code, Message: msg})
}

func (c *checker) result() []FieldError {
	if len(c.errs) > MaxErrors {
		out := slices.Clone(c.errs[:MaxErrors-1])
		return append(out, FieldError{Field: "", Code: CodeTooManyErrors,
			Message: "more errors were found; fix these first"})
	}
	return c.errs
}

// object checks that n is an object whose keys are all in allowed; keys in
// forbidden are reported with their reason. It returns the members by key,
// or nil when n is not an object.
func (c *checker) object(n *node, ptr string, allowed []string, forbidden map[string]string) map[string]*node {
	if n.kind != 'o' {
		c.add(ptr, CodeType, "must be an object, not "+n.typeName())
		return nil
	}
	m := make(map[string]*node, len(n.members))
	for _, mem := range n.members {
		kp := childPointer(ptr, mem.key)
		if why, ok := forbidden[mem.key]; ok {
			c.add(kp, CodeForbidden, why)
			continue
		}
		if !slices.Contains(allowed, mem.key) {
			if kp == ptr {
				c.add(kp, CodeUnknownField, "has a field with an overlong unknown name")
			} else {
				c.add(kp, CodeUnknownField, "is not a field of this object")
			}
			continue
		}
		m[mem.key] = mem.val
	}
	return m
}

// field returns member key of m and its pointer, reporting a missing
// required member and a null.
func (c *checker) field(m map[string]*node, ptr, key string, required bool) (*node, string) {
	p := ptr + "/" + key
	n, ok := m[key]
	if !ok {
		if required {
			c.add(p, CodeRequired, "is required")
		}
		return nil, p
	}
	if n.kind == 'z' {
		c.add(p, CodeType, "must not be null; leave the field out instead")
		return nil, p
	}
	return n, p
}

func (c *checker) str(m map[string]*node, ptr, key string, required bool) (string, string, bool) {
	n, p := c.field(m, ptr, key, required)
	if n == nil {
		return "", p, false
	}
	if n.kind != 's' {
		c.add(p, CodeType, "must be a string, not "+n.typeName())
		return "", p, false
	}
	if n.str == "" {
		c.add(p, CodeEmpty, "must not be empty")
		return "", p, false
	}
	return n.str, p, true
}

func (c *checker) enum(m map[string]*node, ptr, key string, required bool, allowed []string) (string, bool) {
	s, p, ok := c.str(m, ptr, key, required)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		c.add(p, CodeEnum, "must be one of: "+strings.Join(allowed, ", "))
		return "", false
	}
	return s, true
}

func (c *checker) pattern(m map[string]*node, ptr, key string, required bool, re *regexp.Regexp, what string) (string, bool) {
	s, p, ok := c.str(m, ptr, key, required)
	if !ok {
		return "", false
	}
	if !re.MatchString(s) {
		c.add(p, CodeFormat, "must be "+what)
		return "", false
	}
	return s, true
}

type textSpec struct {
	maxChars  int // 0: no limit in characters
	maxBytes  int // 0: no limit in bytes
	multiline bool
}

func (c *checker) text(m map[string]*node, ptr, key string, required bool, spec textSpec) (string, bool) {
	s, p, ok := c.str(m, ptr, key, required)
	if !ok {
		return "", false
	}
	if spec.maxBytes > 0 && len(s) > spec.maxBytes {
		c.add(p, CodeTooLong, "must be at most "+strconv.Itoa(spec.maxBytes)+" bytes")
		return "", false
	}
	if spec.maxChars > 0 && utf8.RuneCountInString(s) > spec.maxChars {
		c.add(p, CodeTooLong, "must be at most "+strconv.Itoa(spec.maxChars)+" characters")
		return "", false
	}
	if !cleanText(s, spec.multiline) {
		if spec.multiline {
			c.add(p, CodeFormat, "must not contain control characters other than tab and newline, or bidirectional overrides")
		} else {
			c.add(p, CodeFormat, "must be one line without control characters or bidirectional overrides")
		}
		return "", false
	}
	if strings.TrimSpace(s) == "" {
		c.add(p, CodeEmpty, "must not be blank")
		return "", false
	}
	return s, true
}

// cleanText reports whether s has no control characters (but tab, newline
// and carriage return when multiline) and no bidirectional formatting
// characters, which can make a text display as something it is not.
func cleanText(s string, multiline bool) bool {
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			if !multiline {
				return false
			}
		case unicode.IsControl(r):
			return false
		case r == '\u061c' || r == '\u200e' || r == '\u200f' ||
			(r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069'):
			return false
		}
	}
	return true
}

// list checks an array of enumerated or patterned strings: at least one
// item when required, at most maxItems, no repeats.
func (c *checker) list(m map[string]*node, ptr, key string, required bool, maxItems int, check func(string) bool, what string) []string {
	n, p := c.field(m, ptr, key, required)
	if n == nil {
		return nil
	}
	if n.kind != 'a' {
		c.add(p, CodeType, "must be an array, not "+n.typeName())
		return nil
	}
	if len(n.items) == 0 {
		c.add(p, CodeEmpty, "must have at least one item; leave the field out instead")
		return nil
	}
	if len(n.items) > maxItems {
		c.add(p, CodeTooMany, "must have at most "+strconv.Itoa(maxItems)+" items")
		return nil
	}
	out := make([]string, 0, len(n.items))
	bad := false
	for i, it := range n.items {
		ip := p + "/" + strconv.Itoa(i)
		switch {
		case it.kind != 's':
			c.add(ip, CodeType, "must be a string, not "+it.typeName())
			bad = true
		case !check(it.str):
			c.add(ip, CodeEnum, "must be "+what)
			bad = true
		case slices.Contains(out, it.str):
			c.add(ip, CodeDuplicateItem, "repeats an earlier item")
			bad = true
		default:
			out = append(out, it.str)
		}
	}
	if bad {
		return nil
	}
	return out
}

func oneOf(allowed []string) (func(string) bool, string) {
	return func(s string) bool { return slices.Contains(allowed, s) }, "one of: " + strings.Join(allowed, ", ")
}

func (c *checker) enumList(m map[string]*node, ptr, key string, required bool, allowed []string) []string {
	check, what := oneOf(allowed)
	return c.list(m, ptr, key, required, len(allowed), check, what)
}

func (c *checker) timestamp(m map[string]*node, ptr, key string, required bool) (time.Time, bool) {
	s, p, ok := c.str(m, ptr, key, required)
	if !ok {
		return time.Time{}, false
	}
	t, err := parseRFC3339(s)
	if err != nil {
		c.add(p, CodeFormat, "must be an RFC 3339 timestamp such as 2026-11-20T09:00:00Z")
		return time.Time{}, false
	}
	return t, true
}

// parseRFC3339 parses an RFC 3339 date-time with a 'T' separator and a
// year from 1900 to 9999.
func parseRFC3339(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	if len(s) < 20 || s[10] != 'T' || t.Year() < 1900 {
		return time.Time{}, errBadTime
	}
	return t, nil
}

var errBadTime = &time.ParseError{Message: "not an RFC 3339 date-time"}

func validDate(s string) bool {
	if dateRE.MatchString(s) {
		t, err := time.Parse(time.DateOnly, s)
		return err == nil && t.Year() >= 1900
	}
	_, err := parseRFC3339(s)
	return err == nil
}

func (c *checker) referral(root *node, received bool) *Referral {
	top := []string{"to", "priority", "case_ref", "person", "exploitation", "identified",
		"destination", "needs", "risk", "consent", "consent_override", "notes"}
	m := c.object(root, "", top, map[string]string{
		"name":      "the person is named by person.pseudonym only, never by name",
		"full_name": "the person is named by person.pseudonym only, never by name",
		"from":      "the sender is the agency of this gateway",
	})
	if m == nil {
		return nil
	}
	r := &Referral{}
	r.To, _ = c.pattern(m, "", "to", true, slugRE, "an agency id: a lowercase slug of at most 63 characters")
	r.Priority, _ = c.enum(m, "", "priority", false, priorities)
	if _, present := m["priority"]; !present {
		r.Priority = PriorityNormal
	}
	r.CaseRef, _ = c.pattern(m, "", "case_ref", false, caseRefRE,
		"a case code of at most 64 letters, digits and . _ : / -")
	if n, p := c.field(m, "", "person", true); n != nil {
		r.Person = c.person(n, p)
	}
	r.Exploitation = c.enumList(m, "", "exploitation", false, exploitation)
	if n, p := c.field(m, "", "identified", false); n != nil {
		r.Identified = c.identified(n, p)
	}
	r.Destination, _ = c.pattern(m, "", "destination", false, countryRE, "an ISO 3166-1 alpha-2 country code such as MY")
	r.Needs = c.enumList(m, "", "needs", true, needs)
	r.Risk, _ = c.enum(m, "", "risk", false, risks)
	if n, p := c.field(m, "", "consent", false); n != nil {
		r.Consent = c.consent(n, p, received)
	}
	if n, p := c.field(m, "", "consent_override", false); n != nil {
		r.ConsentOverride = c.override(n, p)
		// An invalid priority has been reported already.
		if pn := m["priority"]; r.Priority != PriorityUrgent && (pn == nil || r.Priority != "") {
			c.add(p, CodeConflict, "is allowed only with priority urgent")
		}
	}
	_, hasConsent := m["consent"]
	_, hasOverride := m["consent_override"]
	if !hasConsent && !hasOverride {
		c.add("/consent", CodeRequired, "is required, unless an urgent referral carries a consent_override")
	}
	r.Notes, _ = c.text(m, "", "notes", false, textSpec{maxBytes: MaxNotesBytes, multiline: true})
	return r
}

func (c *checker) person(n *node, ptr string) Person {
	var p Person
	m := c.object(n, ptr, []string{"pseudonym", "sex", "age", "age_range", "nationality", "languages"},
		map[string]string{
			"name":      "the person is named by pseudonym only, never by name",
			"full_name": "the person is named by pseudonym only, never by name",
		})
	if m == nil {
		return p
	}
	if s, sp, ok := c.str(m, ptr, "pseudonym", true); ok {
		if !pseudonymRE.MatchString(s) || !strings.ContainsAny(s, "0123456789") {
			c.add(sp, CodeFormat, "must be a case code such as V-2026-0042 (at most 64 letters, digits, . _ -, "+
				"with at least one digit and no spaces), never a name")
		} else {
			p.Pseudonym = s
		}
	}
	p.Sex, _ = c.enum(m, ptr, "sex", false, sexes)
	if an, ap := c.field(m, ptr, "age", false); an != nil {
		if an.kind != 'n' {
			c.add(ap, CodeType, "must be an integer, not "+an.typeName())
		} else if age, err := strconv.Atoi(an.str); err != nil {
			c.add(ap, CodeType, "must be a whole number of years")
		} else if age < 0 || age > 120 {
			c.add(ap, CodeRange, "must be from 0 to 120")
		} else {
			p.Age = &age
		}
	}
	if s, rp, ok := c.str(m, ptr, "age_range", false); ok {
		if !ageRangeRE.MatchString(s) {
			c.add(rp, CodeFormat, `must be "A-B" such as "15-17"`)
		} else if _, _, ok := parseAgeRange(s); !ok {
			c.add(rp, CodeRange, `must be "A-B" with 0 <= A <= B <= 120`)
		} else {
			p.AgeRange = s
		}
	}
	_, hasAge := m["age"]
	_, hasRange := m["age_range"]
	switch {
	case hasAge && hasRange:
		c.add(ptr+"/age_range", CodeConflict, "give age or age_range, not both")
	case !hasAge && !hasRange:
		c.add(ptr+"/age", CodeRequired, "age or age_range is required (the consent rules depend on it)")
	}
	p.Nationality, _ = c.pattern(m, ptr, "nationality", false, countryRE, "an ISO 3166-1 alpha-2 country code such as ID")
	p.Languages = c.list(m, ptr, "languages", false, maxLanguages, languageRE.MatchString,
		"a language tag such as id or sas")
	return p
}

func (c *checker) identified(n *node, ptr string) *Identified {
	m := c.object(n, ptr, []string{"date", "place", "by"}, nil)
	if m == nil {
		return nil
	}
	id := &Identified{}
	if s, dp, ok := c.str(m, ptr, "date", false); ok {
		if validDate(s) {
			id.Date = s
		} else {
			c.add(dp, CodeFormat, "must be a date (YYYY-MM-DD) or an RFC 3339 timestamp")
		}
	}
	id.Place, _ = c.text(m, ptr, "place", false, textSpec{maxChars: maxPlace})
	id.By, _ = c.text(m, ptr, "by", false, textSpec{maxChars: maxBy})
	return id
}

func (c *checker) consent(n *node, ptr string, received bool) *Consent {
	allowed := []string{"given", "purposes", "method", "witness", "witness_role", "recorded_at", "expires_at"}
	forbidden := map[string]string{
		"recorded_by": "is set by the gateway from the caller's token, never taken from the body",
	}
	if received {
		allowed = append(allowed, "recorded_by")
		forbidden = nil
	}
	m := c.object(n, ptr, allowed, forbidden)
	if m == nil {
		return nil
	}
	cs := &Consent{}
	if gn, gp := c.field(m, ptr, "given", true); gn != nil {
		if gn.kind != 'b' {
			c.add(gp, CodeType, "must be a boolean, not "+gn.typeName())
		} else {
			cs.Given = gn.b
		}
	}
	cs.Purposes = c.enumList(m, ptr, "purposes", false, purposes)
	if gn := m["given"]; gn != nil && gn.kind == 'b' && gn.b {
		if _, ok := m["purposes"]; !ok {
			c.add(ptr+"/purposes", CodeRequired, "is required when consent is given")
		}
	}
	cs.Method, _ = c.enum(m, ptr, "method", true, methods)
	cs.Witness, _ = c.text(m, ptr, "witness", false, textSpec{maxChars: maxWitness})
	cs.WitnessRole, _ = c.enum(m, ptr, "witness_role", false, witnessRoles)
	if cs.WitnessRole != "" && cs.Witness == "" {
		c.add(ptr+"/witness", CodeRequired, "is required when witness_role is given")
	}
	if received {
		cs.RecordedBy, _ = c.text(m, ptr, "recorded_by", true, textSpec{maxChars: maxRecorder})
	}
	var recOK bool
	cs.RecordedAt, recOK = c.timestamp(m, ptr, "recorded_at", true)
	if exp, ok := c.timestamp(m, ptr, "expires_at", false); ok {
		if recOK && !exp.After(cs.RecordedAt) {
			c.add(ptr+"/expires_at", CodeRange, "must be after recorded_at")
		} else {
			cs.ExpiresAt = exp
		}
	}
	return cs
}

func (c *checker) override(n *node, ptr string) *ConsentOverride {
	m := c.object(n, ptr, []string{"justification"}, nil)
	if m == nil {
		return nil
	}
	o := &ConsentOverride{}
	o.Justification, _ = c.text(m, ptr, "justification", true, textSpec{maxChars: MaxReasonChars, multiline: true})
	return o
}
