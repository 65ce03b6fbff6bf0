// Package body: TEMPORARY stub.
package body

import (
	"encoding/json"
	"time"

	"github.com/rujukan/rujukan/policy"
)

type FieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

type Referral struct {
	To              string           `json:"to"`
	Priority        string           `json:"priority"`
	CaseRef         string           `json:"case_ref,omitempty"`
	Person          Person           `json:"person"`
	Exploitation    []string         `json:"exploitation,omitempty"`
	Needs           []string         `json:"needs"`
	Risk            string           `json:"risk,omitempty"`
	Consent         *policy.Consent  `json:"consent,omitempty"`
	ConsentOverride *ConsentOverride `json:"consent_override,omitempty"`
	Notes           string           `json:"notes,omitempty"`
}
type Person struct {
	Pseudonym string `json:"pseudonym"`
	Age       *int   `json:"age,omitempty"`
	AgeRange  string `json:"age_range,omitempty"`
}
type ConsentOverride struct {
	Justification string `json:"justification"`
}

func (r *Referral) Age() policy.Age { return policy.Age{Years: r.Person.Age, Range: r.Person.AgeRange} }

type StatusChange struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}
type StatementRequest struct {
	To         string    `json:"to"`
	Pseudonym  string    `json:"pseudonym,omitempty"`
	ReferralID string    `json:"referral_id,omitempty"`
	LegalBasis string    `json:"legal_basis"`
	Purpose    string    `json:"purpose"`
	Questions  []string  `json:"questions"`
	Due        time.Time `json:"due"`
}
type AgeInfo struct {
	Age      *int   `json:"age,omitempty"`
	AgeRange string `json:"age_range,omitempty"`
}
type ConsentDecision struct {
	Given       bool     `json:"given"`
	Purposes    []string `json:"purposes,omitempty"`
	Method      string   `json:"method"`
	WitnessRole string   `json:"witness_role,omitempty"`
	Witness     string   `json:"witness,omitempty"`
	Notes       string   `json:"notes,omitempty"`
	Person      *AgeInfo `json:"person,omitempty"`
}
type Response struct {
	Statement *Statement `json:"statement,omitempty"`
	Decline   *Decline   `json:"decline,omitempty"`
}
type Statement struct {
	Text     string    `json:"text"`
	Language string    `json:"language"`
	TakenAt  time.Time `json:"taken_at"`
	TakenBy  string    `json:"taken_by"`
}
type Decline struct {
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}
type StatusBody struct {
	Ref    string    `json:"ref"`
	Status string    `json:"status"`
	Reason string    `json:"reason,omitempty"`
	Detail string    `json:"detail,omitempty"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}
type StatementBody struct {
	Ref       string         `json:"ref"`
	Statement Statement      `json:"statement"`
	Consent   policy.Consent `json:"consent"`
	Person    AgeInfo        `json:"person"`
}

func parse[T any](b []byte) (*T, []FieldError) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, []FieldError{{Code: "syntax", Message: "bad"}}
	}
	return &v, nil
}

func ParseReferral(b []byte) (*Referral, []FieldError) {
	r, e := parse[Referral](b)
	if r != nil && r.Priority == "" {
		r.Priority = "normal"
	}
	return r, e
}
func ParseReferralReceived(b []byte) (*Referral, []FieldError) { return parse[Referral](b) }
func ParseStatusChange(b []byte) (*StatusChange, []FieldError) { return parse[StatusChange](b) }
func ParseStatementRequest(b []byte) (*StatementRequest, []FieldError) {
	return parse[StatementRequest](b)
}
func ParseConsent(b []byte) (*ConsentDecision, []FieldError)     { return parse[ConsentDecision](b) }
func ParseResponse(b []byte) (*Response, []FieldError)           { return parse[Response](b) }
func ParseStatusBody(b []byte) (*StatusBody, []FieldError)       { return parse[StatusBody](b) }
func ParseStatementBody(b []byte) (*StatementBody, []FieldError) { return parse[StatementBody](b) }
