// Package body reads request and envelope bodies: the JSON a caller sends
// to a gateway's HTTP API, and the plaintext of the envelopes gateways send
// each other (docs/ARCHITECTURE.md §4).
//
// Every byte of a body is hostile until a Parse function has accepted it;
// a body it accepts is well formed in every field, so later code (policy,
// crypto, store) never sees a malformed one.
//
// # One source of truth
//
// The shape of every body is a component schema of the gateway's OpenAPI
// description (package openapi, JSON Schema 2020-12): types, required
// fields, enumerations, patterns, lengths and most cross-field rules live
// there and nowhere else. Parse functions run, in order:
//
//  1. strict decoding, which a schema cannot express: at most the size
//     limit of the body, valid UTF-8, exactly one JSON value, no trailing
//     data, no duplicate keys, bounded nesting;
//  2. validation against the body's schema ([SchemaNames]);
//  3. the few rules a schema cannot say, in Go: numbers written as plain
//     integers, limits in bytes of UTF-8 (notes, statement text), age
//     ranges in order (A <= B), consent.expires_at after recorded_at.
//
// Step 3 runs only on a body that passed step 2.
//
// # Errors
//
// Errors are field level ([FieldError]: an RFC 6901 pointer, a code and a
// message), in document order, at most [MaxErrors]. Messages never echo a
// submitted value, since values may be personal data and errors get
// logged; they may quote what the schema allows (an enumeration, a
// limit). A schema may carry "x-rujukan-error": {"code", "message"}, which
// names the code and message of a failing pattern, format, const, not,
// anyOf, oneOf or required of that schema.
//
// # Caveats
//
// Parse functions have no clock (a due date in the past is the gateway's
// to refuse) and no directory (whether an agency exists). A pseudonym gets
// only a loose charset and length bound here; the network's pseudonym rule
// is policy's.
package body

import (
	"reflect"
	"time"

	"github.com/rujukan/rujukan/policy"
)

// Size limits, in bytes. Gateways answer a larger request with 413 before
// reading it all.
const (
	MaxReferralBytes         = 64 << 10
	MaxStatusChangeBytes     = 8 << 10
	MaxStatementRequestBytes = 16 << 10
	MaxConsentBytes          = 16 << 10
	MaxResponseBytes         = 96 << 10
	MaxStatusBodyBytes       = 8 << 10
	MaxStatementBodyBytes    = 96 << 10

	// MaxNotesBytes bounds free-text notes (of a referral and of a consent
	// decision), in bytes of UTF-8.
	MaxNotesBytes = 8 << 10
	// MaxStatementTextBytes bounds the text of a statement, in bytes of
	// UTF-8.
	MaxStatementTextBytes = 64 << 10
	// MaxErrors is the most field errors a Parse function returns; a last
	// error with code CodeTooManyErrors says more were found.
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

// Referral is a referral body (schemas ReferralInput and Referral). The
// JSON tags are the wire names.
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
	Risk string `json:"risk,omitempty"`
	// Consent is the consent decision. In a body sent to the API its
	// RecordedBy is empty (the gateway sets it from the token); in a
	// received body it is set.
	Consent         *policy.Consent  `json:"consent,omitempty"`
	ConsentOverride *ConsentOverride `json:"consent_override,omitempty"`
	// Notes is free text, at most MaxNotesBytes.
	Notes string `json:"notes,omitempty"`
	// Attachments are the files sent with it: only ids in a body sent to
	// the API, every field in a received one.
	Attachments []Attachment `json:"attachments,omitempty"`
	// ThreadKey is the key of the referral's thread (crypto.ThreadKey),
	// set by the sending gateway in the sealed body only.
	ThreadKey string `json:"thread_key,omitempty"`
}

// Attachment is a file sent with a message (schemas AttachmentRef and
// Attachment). In a body sent to the API only ID is set; the gateway fills
// in the rest from the upload before it seals the body.
type Attachment struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
	Size int64  `json:"size"`
	// SHA256 is the hex SHA-256 of the file.
	SHA256 string `json:"sha256,omitempty"`
	// Key is the age file key of the sealed file, base64 without padding.
	Key string `json:"key,omitempty"`
	// SealedSize is the size of the sealed file that travels.
	SealedSize int64 `json:"sealed_size,omitempty"`
}

// MaxAttachments is the most files one message carries.
const MaxAttachments = 20

// Person describes the referred person without naming them.
type Person struct {
	// Pseudonym is a case code such as "V-2026-0042", never a name.
	Pseudonym string `json:"pseudonym"`
	Sex       string `json:"sex,omitempty"`
	// Age in years, 0..120. Exactly one of Age and AgeRange is set.
	Age *int `json:"age,omitempty"`
	// AgeRange is "A-B" with 0 <= A <= B <= 120, e.g. "15-17", or "A+".
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

// ConsentOverride sends an urgent referral without (covering) consent. The
// gateway allows it only to a token with the consent:override scope and
// audits it as an override.
type ConsentOverride struct {
	Justification string `json:"justification"`
}

// Age returns what the referral says of the person's age, for policy.
func (r *Referral) Age() policy.Age {
	return policy.Age{Years: r.Person.Age, Range: r.Person.AgeRange}
}

// StatusChange is the body of POST /v1/referrals/{id}/status.
type StatusChange struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// StatementRequest is a police request for a victim statement: the body
// of POST /v1/statement-requests and the plaintext of a statement-request
// envelope (schema StatementRequest). Exactly one of Pseudonym and
// ReferralID is set.
type StatementRequest struct {
	To         string    `json:"to"`
	Pseudonym  string    `json:"pseudonym,omitempty"`
	ReferralID string    `json:"referral_id,omitempty"`
	LegalBasis string    `json:"legal_basis"`
	Purpose    string    `json:"purpose"`
	Questions  []string  `json:"questions"`
	Due        time.Time `json:"due"`
	// Attachments are the files sent with it (as in Referral).
	Attachments []Attachment `json:"attachments,omitempty"`
	// ThreadKey is as in Referral.
	ThreadKey string `json:"thread_key,omitempty"`
}

// AgeInfo is what is known of a person's age: exactly one of Age and
// AgeRange when it was given, neither when it was not.
type AgeInfo struct {
	Age      *int   `json:"age,omitempty"`
	AgeRange string `json:"age_range,omitempty"`
}

// PolicyAge returns the age for policy.
func (a AgeInfo) PolicyAge() policy.Age {
	return policy.Age{Years: a.Age, Range: a.AgeRange}
}

// ConsentDecision is the body of POST /v1/statement-requests/{id}/consent
// (schema ConsentDecision). The gateway sets who recorded it and when.
type ConsentDecision struct {
	Given       bool     `json:"given"`
	Purposes    []string `json:"purposes,omitempty"`
	Method      string   `json:"method"`
	WitnessRole string   `json:"witness_role,omitempty"`
	Witness     string   `json:"witness,omitempty"`
	Notes       string   `json:"notes,omitempty"`
	Person      *AgeInfo `json:"person,omitempty"`
}

// Consent returns the decision as policy's consent record, recorded by the
// token subject by at time at.
func (d *ConsentDecision) Consent(by string, at time.Time) policy.Consent {
	return policy.Consent{
		Given:       d.Given,
		Purposes:    d.Purposes,
		Method:      d.Method,
		Witness:     d.Witness,
		WitnessRole: d.WitnessRole,
		RecordedBy:  by,
		RecordedAt:  at,
	}
}

// Response is the body of POST /v1/statement-requests/{id}/response
// (schema StatementResponse): exactly one of Statement and Decline.
type Response struct {
	Statement *Statement `json:"statement,omitempty"`
	Decline   *Decline   `json:"decline,omitempty"`
	// Attachments are ids of files uploaded to send with the statement.
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Statement is a victim statement.
type Statement struct {
	// Text is at most MaxStatementTextBytes.
	Text string `json:"text"`
	// Language is a BCP 47 language tag such as "id".
	Language string    `json:"language"`
	TakenAt  time.Time `json:"taken_at"`
	TakenBy  string    `json:"taken_by"`
}

// Decline says why no statement is given.
type Decline struct {
	// Reason is no-consent, risk-to-victim, not-known or other.
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// StatusBody is the plaintext of a status envelope (schema StatusEnvelope):
// a state change of the referral or statement request Ref.
type StatusBody struct {
	Ref    string    `json:"ref"`
	Status string    `json:"status"`
	Reason string    `json:"reason,omitempty"`
	Detail string    `json:"detail,omitempty"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// StatementBody is the plaintext of a statement envelope (schema
// StatementEnvelope): the statement answering request Ref, the consent
// recorded for it (RecordedBy and RecordedAt set), and what is known of the
// person's age (the zero AgeInfo when nothing is).
type StatementBody struct {
	Ref       string         `json:"ref"`
	Statement Statement      `json:"statement"`
	Consent   policy.Consent `json:"consent"`
	Person    AgeInfo        `json:"person,omitzero"`
	// Attachments are the files sent with the statement.
	Attachments []Attachment `json:"attachments,omitempty"`
}

// ParseReferral decodes and validates a referral body sent by a caller of
// the HTTP API (schema ReferralInput). consent.recorded_by is refused.
// Absent priority is filled in as normal.
func ParseReferral(b []byte) (*Referral, []FieldError) {
	r, errs := parse[Referral](b, referralInput)
	if r != nil && r.Priority == "" {
		r.Priority = policy.PriorityNormal
	}
	return r, errs
}

// ParseReferralReceived decodes and validates a referral body that went
// through a gateway, such as the plaintext of a verified envelope (schema
// Referral): the same rules as ParseReferral, except that
// consent.recorded_by is required instead of refused.
func ParseReferralReceived(b []byte) (*Referral, []FieldError) {
	r, errs := parse[Referral](b, referralReceived)
	if r != nil && r.Priority == "" {
		r.Priority = policy.PriorityNormal
	}
	return r, errs
}

// ParseStatusChange decodes and validates the body of a referral status
// change (schema StatusChange). Whether the change is allowed from the
// current state is a policy decision.
func ParseStatusChange(b []byte) (*StatusChange, []FieldError) {
	return parse[StatusChange](b, statusChange)
}

// ParseStatementRequest decodes and validates a statement request sent to
// the API (schema StatementRequestInput).
func ParseStatementRequest(b []byte) (*StatementRequest, []FieldError) {
	return parse[StatementRequest](b, statementRequestInput)
}

// ParseStatementRequestReceived decodes and validates the plaintext of a
// statement-request envelope (schema StatementRequest).
func ParseStatementRequestReceived(b []byte) (*StatementRequest, []FieldError) {
	return parse[StatementRequest](b, statementRequest)
}

// ParseConsent decodes and validates a consent decision on a statement
// request (schema ConsentDecision). recorded_by and recorded_at are
// refused.
func ParseConsent(b []byte) (*ConsentDecision, []FieldError) {
	return parse[ConsentDecision](b, consentDecision)
}

// ParseResponse decodes and validates the answer to a statement request
// (schema StatementResponse).
func ParseResponse(b []byte) (*Response, []FieldError) {
	return parse[Response](b, response)
}

// ParseStatusBody decodes and validates the plaintext of a status envelope
// (schema StatusEnvelope).
func ParseStatusBody(b []byte) (*StatusBody, []FieldError) {
	return parse[StatusBody](b, statusBody)
}

// ParseStatementBody decodes and validates the plaintext of a statement
// envelope (schema StatementEnvelope).
func ParseStatementBody(b []byte) (*StatementBody, []FieldError) {
	return parse[StatementBody](b, statementBody)
}

// parse runs the three steps of the package documentation.
func parse[T any](b []byte, k *form) (*T, []FieldError) {
	inst, fe := decodeChecked(b, k.limit)
	if fe != nil {
		return nil, []FieldError{*fe}
	}
	if errs := k.validate(b, inst); errs != nil {
		return nil, errs
	}
	v := new(T)
	if err := assign(reflect.ValueOf(v).Elem(), inst); err != nil {
		// The schema accepted what Go cannot read: a bug, not the caller's.
		return nil, []FieldError{{Field: "", Code: CodeSyntax, Message: "the body cannot be read"}}
	}
	c := &checker{}
	k.rules(c, v)
	if len(c.errs) > 0 {
		return nil, c.result(b)
	}
	return v, nil
}
