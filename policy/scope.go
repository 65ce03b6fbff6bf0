package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Scopes of the gateway API (agency-gateway/openapi/openapi.json).
const (
	ScopeReferralSend     = "referral:send"
	ScopeReferralRead     = "referral:read"
	ScopeReferralUpdate   = "referral:update"
	ScopeStatementRequest = "statement:request"
	ScopeStatementRead    = "statement:read"
	ScopeStatementRespond = "statement:respond"
	ScopeConsentRecord    = "consent:record"
	ScopeConsentOverride  = "consent:override"
	ScopeAuditRead        = "audit:read"
)

// AllScopes lists every scope, in a fixed order.
var AllScopes = []string{
	ScopeReferralSend, ScopeReferralRead, ScopeReferralUpdate,
	ScopeStatementRequest, ScopeStatementRead, ScopeStatementRespond,
	ScopeConsentRecord, ScopeConsentOverride, ScopeAuditRead,
}

// Agency kinds with rules of their own. Other kinds are allowed in the
// directory; they get what the rules give them.
const (
	KindIOM     = "iom"
	KindDinsos  = "dinsos"
	KindPolice  = "police"
	KindShelter = "shelter"
)

// ScopesForKind returns every scope a member of staff of an agency of the
// given kind may hold: referral:* and audit:read for everyone;
// statement:request and statement:read for the police; statement:read,
// statement:respond, consent:record and consent:override for every other
// kind. The police cannot override consent: they are the party the consent
// rules protect victims from being handed to without it.
func ScopesForKind(kind string) []string {
	s := []string{ScopeReferralSend, ScopeReferralRead, ScopeReferralUpdate}
	if kind == KindPolice {
		s = append(s, ScopeStatementRequest, ScopeStatementRead)
	} else {
		s = append(s, ScopeStatementRead, ScopeStatementRespond, ScopeConsentRecord, ScopeConsentOverride)
	}
	return append(s, ScopeAuditRead)
}

// MayOverride reports whether staff of an agency of the given kind may ever
// hold consent:override (every kind but the police). A receiving gateway
// judges a peer's referral with a Principal whose Scopes are
// ScopesForKind(senderKind), so CheckReferralConsent refuses an override
// from a police sender with ReasonOverrideScope, whatever its token said.
func MayOverride(kind string) bool {
	return slices.Contains(ScopesForKind(kind), ScopeConsentOverride)
}

// Action is one API operation of a gateway (one per route of the API
// description, agency-gateway/openapi/openapi.json).
type Action string

// Actions.
const (
	ActionReferralSend     Action = "referral.send"     // POST /v1/referrals
	ActionReferralList     Action = "referral.list"     // GET /v1/referrals
	ActionReferralRead     Action = "referral.read"     // GET /v1/referrals/{id}
	ActionReferralStatus   Action = "referral.status"   // POST /v1/referrals/{id}/status
	ActionReferralReceipts Action = "referral.receipts" // GET /v1/referrals/{id}/receipts

	ActionStatementRequestSend Action = "statement-request.send"    // POST /v1/statement-requests
	ActionStatementRequestList Action = "statement-request.list"    // GET /v1/statement-requests
	ActionStatementRequestRead Action = "statement-request.read"    // GET /v1/statement-requests/{id}
	ActionConsentRecord        Action = "statement-request.consent" // POST /v1/statement-requests/{id}/consent
	ActionStatementRespond     Action = "statement-request.respond" // POST /v1/statement-requests/{id}/response

	ActionAuditList   Action = "audit.list"   // GET /v1/audit
	ActionAuditVerify Action = "audit.verify" // GET /v1/audit/verify
)

// Party says which end of an object an action needs the caller to be.
type Party int

// Parties.
const (
	// AnyParty: sender or recipient.
	AnyParty Party = iota
	// SenderParty: the agency that sent the object.
	SenderParty
	// RecipientParty: the agency the object was sent to.
	RecipientParty
)

// actionRule is what an action needs.
type actionRule struct {
	// anyOf: the principal needs one of these scopes.
	anyOf []string
	// object: the action is on one existing object, so the caller's
	// agency must be a party to it.
	object bool
	// party: which party, for object actions.
	party Party
}

var actions = map[Action]actionRule{
	ActionReferralSend:     {anyOf: []string{ScopeReferralSend}},
	ActionReferralList:     {anyOf: []string{ScopeReferralRead}},
	ActionReferralRead:     {anyOf: []string{ScopeReferralRead}, object: true},
	ActionReferralStatus:   {anyOf: []string{ScopeReferralUpdate}, object: true},
	ActionReferralReceipts: {anyOf: []string{ScopeReferralRead, ScopeAuditRead}, object: true},

	ActionStatementRequestSend: {anyOf: []string{ScopeStatementRequest}},
	ActionStatementRequestList: {anyOf: []string{ScopeStatementRead}},
	ActionStatementRequestRead: {anyOf: []string{ScopeStatementRead}, object: true},
	ActionConsentRecord:        {anyOf: []string{ScopeConsentRecord}, object: true, party: RecipientParty},
	ActionStatementRespond:     {anyOf: []string{ScopeStatementRespond}, object: true, party: RecipientParty},

	ActionAuditList:   {anyOf: []string{ScopeAuditRead}},
	ActionAuditVerify: {anyOf: []string{ScopeAuditRead}},
}

// Actions returns every action Decide knows.
func Actions() []Action {
	out := make([]Action, 0, len(actions))
	for a := range actions {
		out = append(out, a)
	}
	return out
}

// RequiredScopes returns the scopes of which an action needs one, for the
// scope parameter of an RFC 6750 insufficient_scope challenge.
func RequiredScopes(a Action) []string { return actions[a].anyOf }

// Resource is the object an action is on. Leave it zero for actions that
// create or list (send, list, audit).
type Resource struct {
	// From and To are the agency ids of the object's sender and recipient.
	From string
	To   string
}

// Decide says whether principal p may take action a on resource r. It
// returns nil to allow, or an *Error: ReasonScopeMissing (class
// ErrInsufficientScope) when the token lacks the scope, ReasonNotParty when
// the caller's agency is not a party to the object, ReasonWrongRole when it
// is the wrong party (answering or recording consent on its own statement
// request), ReasonActionUnknown or ReasonPrincipalInvalid otherwise.
//
// Decide covers the caller; the network rules (Rules.Allow), the consent
// rules (CheckReferralConsent, CheckStatement) and the state machines
// (Transition) cover the message and the object.
func Decide(p Principal, a Action, r Resource) error {
	rule, ok := actions[a]
	if !ok {
		return deny(ReasonActionUnknown, fmt.Sprintf("unknown action %q", clip(string(a))))
	}
	if p.Agency == "" || p.Subject == "" {
		return deny(ReasonPrincipalInvalid, "principal has no agency or subject")
	}
	held := false
	for _, s := range rule.anyOf {
		if p.HasScope(s) {
			held = true
			break
		}
	}
	if !held {
		return deny(ReasonScopeMissing, "needs scope "+strings.Join(rule.anyOf, " or "))
	}
	if !rule.object {
		return nil
	}
	if r.From == "" || r.To == "" {
		return deny(ReasonNotParty, "object has no sender or recipient")
	}
	switch rule.party {
	case SenderParty:
		if p.Agency == r.From {
			return nil
		}
	case RecipientParty:
		if p.Agency == r.To {
			return nil
		}
	default:
		if p.Agency == r.From || p.Agency == r.To {
			return nil
		}
	}
	if p.Agency == r.From || p.Agency == r.To {
		return deny(ReasonWrongRole, fmt.Sprintf("agency %q is not the party that may take action %s", p.Agency, a))
	}
	return deny(ReasonNotParty, fmt.Sprintf("agency %q is not a party to this object", p.Agency))
}
