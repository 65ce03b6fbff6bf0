package gateway

import (
	"errors"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/policy"
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
	Fields []body.FieldError
}

func (e *InvalidError) Error() string {
	if len(e.Fields) == 0 {
		return "invalid body"
	}
	return "invalid body: " + e.Fields[0].Field + ": " + e.Fields[0].Message
}

func invalid(field, code, msg string) error {
	return &InvalidError{Fields: []body.FieldError{{Field: field, Code: code, Message: msg}}}
}

// fieldErrors turns a parser's field errors into an error, or nil.
func fieldErrors(fe []body.FieldError) error {
	if len(fe) == 0 {
		return nil
	}
	return &InvalidError{Fields: fe}
}

// Reasons of the refusals this package makes itself (policy and crypto
// have their own), as they appear in audit events and rejected receipts.
const (
	ReasonBodyInvalid     = "body-invalid"
	ReasonBodyMismatch    = "body-mismatch"
	ReasonIDCollision     = "id-collision"
	ReasonKindUnsupported = "kind-unsupported"
	ReasonReceiptInvalid  = "receipt-invalid"
	ReasonReceiptMismatch = "receipt-hash-mismatch"
	ReasonReplay          = "replay"
	ReasonSenderMismatch  = "sender-mismatch"
	ReasonUndelivered     = "undelivered-by-deadline"
	// ReasonRecipientRevoked: the recipient was revoked before the envelope left.
	ReasonRecipientRevoked = "recipient-revoked"
	// Witnessing: a checkpoint or cosignature that does not verify, and a
	// checkpoint that does not extend the last one this witness holds.
	ReasonCheckpointInvalid  = "checkpoint-invalid"
	ReasonCosignatureInvalid = "cosignature-invalid"
	ReasonFork               = "fork"
	ReasonRollback           = "rollback"
)

// permanent marks an incoming envelope that can never be accepted: it is
// audited, answered with a rejected receipt where the sender is verified,
// and terminated at the broker.
type permanent struct {
	reason   string
	err      error
	verified bool // the sender's signature checked out
}

func (p *permanent) Error() string { return p.reason + ": " + p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

func reject(reason string, err error, verified bool) error {
	return &permanent{reason: reason, err: err, verified: verified}
}

// refuse is reject for a verified envelope whose content the rules refuse.
func refuse(reason string, err error) error { return reject(reason, err, true) }

// refusePolicy refuses a verified envelope for a policy error, with its
// reason code.
func refusePolicy(err error) error { return refuse(policy.ReasonOf(err), err) }

// errDuplicate is a redelivery of an envelope already stored: ack quietly.
var errDuplicate = errors.New("duplicate delivery")

// errNotYet is an envelope that cannot be applied yet (a status that
// arrived before its referral): it waits, for a bounded time.
var errNotYet = errors.New("not applicable yet")

// errParked is an envelope set aside to wait: ack it at the broker.
var errParked = errors.New("waiting for another envelope")
