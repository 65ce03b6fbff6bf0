package policy

import (
	"fmt"
	"slices"
)

// Role is who makes a state transition.
type Role string

// Roles.
const (
	// RoleSender is the agency that sent the referral or request.
	RoleSender Role = "sender"
	// RoleRecipient is the agency it was sent to.
	RoleRecipient Role = "recipient"
	// RoleSystem is the gateway itself: publish acknowledgements, receipts
	// and deadlines.
	RoleSystem Role = "system"
)

// Referral states (after FHIR Task; docs/ARCHITECTURE.md §3).
const (
	RefQueued     = "queued"
	RefSent       = "sent"
	RefDelivered  = "delivered"
	RefRead       = "read"
	RefAccepted   = "accepted"
	RefDeclined   = "declined"
	RefInProgress = "in-progress"
	RefCompleted  = "completed"
	RefWithdrawn  = "withdrawn"
	RefFailed     = "failed"
)

// Statement-request states.
const (
	SRQueued         = "queued"
	SRSent           = "sent"
	SRDelivered      = "delivered"
	SRRead           = "read"
	SRConsentGiven   = "consent-given"
	SRConsentRefused = "consent-refused"
	SRAnswered       = "answered"
	SRDeclined       = "declined"
	SRExpired        = "expired"
	SRFailed         = "failed"
)

// Edge is one allowed transition and the one role that may make it.
type Edge struct {
	From string
	To   string
	By   Role
}

// Machine is a state machine as data.
//
// Concurrent changes. Both parties of an object may change it at the same
// moment: the recipient declines while the sender withdraws. Each gateway
// applies its own change, then receives the other's status envelope, which
// is no longer a legal transition from the state it has reached. Both
// gateways settle such a status by one rule, so that they end in the same
// state: the incoming state replaces the current one when it Supersedes
// it, although no edge leads there; otherwise the status is refused (with
// a signed rejected receipt) and the current state stays. State a
// supersedes state b when a comes before b in Precedence, or a is in
// Precedence and b is not; a state outside Precedence supersedes nothing.
// A status that is a legal transition is applied as usual.
//
// For referrals the precedence is completed, withdrawn, declined: a
// decline and a withdrawal sent at the same moment both end withdrawn (the
// sender's decision about its own referral stands), and a completion wins
// over a withdrawal (the service was given; the record must say so). For
// statement requests it is answered, declined, expired: a statement sent
// as the request expires stands, and a decline wins over an expiry.
type Machine struct {
	Name    string
	Initial string
	States  []string
	Edges   []Edge
	// Precedence lists states, highest first, for settling concurrent
	// changes (Supersedes).
	Precedence []string
}

// ReferralMachine is the referral state machine:
//
//	queued -> sent -> delivered -> read -> accepted | declined
//	delivered -> declined (declined from the list, unopened: no bed free)
//	accepted -> in-progress -> completed
//	queued, sent -> failed (system: rejected or undelivered by the deadline)
//	any open state -> withdrawn (sender)
//
// queued -> sent and sent -> delivered are the system's (publish
// acknowledgement, delivered receipt); read, accepted, declined,
// in-progress and completed are the recipient's. Precedence: completed,
// withdrawn, declined.
var ReferralMachine = &Machine{
	Name:    "referral",
	Initial: RefQueued,
	States: []string{RefQueued, RefSent, RefDelivered, RefRead, RefAccepted, RefDeclined,
		RefInProgress, RefCompleted, RefWithdrawn, RefFailed},
	Edges: []Edge{
		{RefQueued, RefSent, RoleSystem},
		{RefQueued, RefFailed, RoleSystem},
		{RefSent, RefDelivered, RoleSystem},
		{RefSent, RefFailed, RoleSystem},
		{RefDelivered, RefRead, RoleRecipient},
		{RefRead, RefAccepted, RoleRecipient},
		{RefRead, RefDeclined, RoleRecipient},
		{RefDelivered, RefDeclined, RoleRecipient},
		{RefAccepted, RefInProgress, RoleRecipient},
		{RefInProgress, RefCompleted, RoleRecipient},
		{RefQueued, RefWithdrawn, RoleSender},
		{RefSent, RefWithdrawn, RoleSender},
		{RefDelivered, RefWithdrawn, RoleSender},
		{RefRead, RefWithdrawn, RoleSender},
		{RefAccepted, RefWithdrawn, RoleSender},
		{RefInProgress, RefWithdrawn, RoleSender},
	},
	Precedence: []string{RefCompleted, RefWithdrawn, RefDeclined},
}

// StatementRequestMachine is the statement-request state machine:
//
//	queued -> sent -> delivered -> read -> consent-given | consent-refused
//	consent-given -> answered | declined ; consent-refused -> declined
//	consent-given <-> consent-refused (the person changes their mind)
//	delivered, read -> declined (e.g. the person is not with this agency)
//	any open state -> expired (system, past the due date)
//	queued, sent -> failed (system: rejected or undelivered by the deadline)
//
// queued -> sent and sent -> delivered are the system's (publish
// acknowledgement, delivered receipt), like every expiry; the rest is the
// recipient's (the holding agency). Precedence: answered, declined,
// expired.
var StatementRequestMachine = &Machine{
	Name:    "statement-request",
	Initial: SRQueued,
	States: []string{SRQueued, SRSent, SRDelivered, SRRead, SRConsentGiven, SRConsentRefused,
		SRAnswered, SRDeclined, SRExpired, SRFailed},
	Edges: []Edge{
		{SRQueued, SRSent, RoleSystem},
		{SRSent, SRDelivered, RoleSystem},
		{SRDelivered, SRRead, RoleRecipient},
		{SRRead, SRConsentGiven, RoleRecipient},
		{SRRead, SRConsentRefused, RoleRecipient},
		{SRConsentRefused, SRConsentGiven, RoleRecipient},
		{SRConsentGiven, SRConsentRefused, RoleRecipient},
		{SRConsentGiven, SRAnswered, RoleRecipient},
		{SRConsentGiven, SRDeclined, RoleRecipient},
		{SRConsentRefused, SRDeclined, RoleRecipient},
		{SRRead, SRDeclined, RoleRecipient},
		{SRDelivered, SRDeclined, RoleRecipient},
		{SRQueued, SRFailed, RoleSystem},
		{SRSent, SRFailed, RoleSystem},
		{SRQueued, SRExpired, RoleSystem},
		{SRSent, SRExpired, RoleSystem},
		{SRDelivered, SRExpired, RoleSystem},
		{SRRead, SRExpired, RoleSystem},
		{SRConsentGiven, SRExpired, RoleSystem},
		{SRConsentRefused, SRExpired, RoleSystem},
	},
	Precedence: []string{SRAnswered, SRDeclined, SRExpired},
}

// Valid reports whether s is a state of m.
func (m *Machine) Valid(s string) bool { return slices.Contains(m.States, s) }

// Terminal reports whether s is a state of m with no way out.
func (m *Machine) Terminal(s string) bool {
	if !m.Valid(s) {
		return false
	}
	for _, e := range m.Edges {
		if e.From == s {
			return false
		}
	}
	return true
}

// Supersedes reports whether state a wins over state b when the two parties
// changed the same object at the same moment: a comes before b in
// m.Precedence, or a is in it and b is not (see Machine). It is false when
// a == b, when neither is in m.Precedence, and for a nil m.
func (m *Machine) Supersedes(a, b string) bool {
	if m == nil {
		return false
	}
	i := slices.Index(m.Precedence, a)
	if i < 0 {
		return false
	}
	j := slices.Index(m.Precedence, b)
	return j < 0 || i < j
}

// Next returns the states role may move m to from s.
func (m *Machine) Next(s string, role Role) []string {
	var out []string
	for _, e := range m.Edges {
		if e.From == s && e.By == role {
			out = append(out, e.To)
		}
	}
	return out
}

// Transition says whether role may move machine m from state from to state
// to. It returns nil, or an *Error: ReasonStateUnknown (class
// ErrInvalidInput) for a state m does not have, ReasonTransitionIllegal
// (class ErrConflict) when m has no such transition, ReasonTransitionRole
// (class ErrConflict) when the transition exists but belongs to another
// role.
func Transition(m *Machine, from, to string, role Role) error {
	if m == nil {
		return deny(ReasonStateUnknown, "no state machine")
	}
	for _, s := range []string{from, to} {
		if !m.Valid(s) {
			return deny(ReasonStateUnknown, fmt.Sprintf("%q is not a %s state", clip(s), m.Name))
		}
	}
	for _, e := range m.Edges {
		if e.From == from && e.To == to {
			if e.By == role {
				return nil
			}
			return deny(ReasonTransitionRole, fmt.Sprintf("%s %s -> %s is for the %s, not the %s", m.Name, from, to, e.By, clip(string(role))))
		}
	}
	return deny(ReasonTransitionIllegal, fmt.Sprintf("%s cannot go from %s to %s", m.Name, from, to))
}
