package gateway

import (
	"errors"

	"github.com/rujukan/rujukan/agency-gateway/referral"
)

// Errors the HTTP layer maps to statuses. Policy refusals keep their own
// classes (policy.ErrInvalidToken, ErrInsufficientScope, ErrDenied,
// ErrConflict, ErrInvalidInput).
var (
	// ErrNotFound is returned for an id this gateway does not hold, or holds
	// but the caller's agency may not see.
	ErrNotFound = errors.New("not found")
	// ErrBadRequest is returned for a malformed query (bad cursor, box or
	// limit).
	ErrBadRequest = errors.New("bad request")
)

// InvalidError is a request body that failed validation, field by field.
type InvalidError struct {
	Fields []referral.FieldError
}

func (e *InvalidError) Error() string {
	if len(e.Fields) == 0 {
		return "invalid body"
	}
	return "invalid body: " + e.Fields[0].Field + ": " + e.Fields[0].Message
}

func invalid(field, code, msg string) error {
	return &InvalidError{Fields: []referral.FieldError{{Field: field, Code: code, Message: msg}}}
}

// permanent marks an incoming envelope that can never be accepted: it is
// audited, answered with a rejected receipt where the sender is verified,
// and terminated at the broker.
type permanent struct {
	reason string
	err    error
}

func (p *permanent) Error() string { return p.reason + ": " + p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

func reject(reason string, err error) error { return &permanent{reason: reason, err: err} }

// errDuplicate is a redelivery of an envelope already stored: ack quietly.
var errDuplicate = errors.New("duplicate delivery")

// errNotYet is an envelope that cannot be applied yet (a status that
// arrived before its referral): the broker delivers it again later.
var errNotYet = errors.New("not applicable yet")
