package policy

import (
	"errors"
)

// Classes of refusal. Every [*Error] unwraps to exactly one of them, so a
// caller maps a decision to an HTTP status with errors.Is.
var (
	// ErrInvalidToken is the class of token failures: the request is not
	// authenticated (HTTP 401, WWW-Authenticate error="invalid_token").
	ErrInvalidToken = errors.New("invalid token")
	// ErrInsufficientScope is the class of a token that lacks the scope an
	// action needs (HTTP 403, WWW-Authenticate error="insufficient_scope").
	ErrInsufficientScope = errors.New("insufficient scope")
	// ErrDenied is the class of requests refused by a network rule, by the
	// consent rules or because the caller is not a party to the object
	// (HTTP 403).
	ErrDenied = errors.New("denied by policy")
	// ErrConflict is the class of state transitions that are not allowed
	// from the current state, or not for the caller's role (HTTP 409).
	ErrConflict = errors.New("illegal state transition")
	// ErrInvalidInput is the class of facts that are themselves invalid,
	// such as a consent record with an unknown method (HTTP 422).
	ErrInvalidInput = errors.New("invalid input")
)

// Configuration and parsing errors (not decisions).
var (
	// ErrConfig is returned by NewVerifier for an unusable configuration.
	ErrConfig = errors.New("invalid verifier configuration")
	// ErrJWKSMalformed is returned by ParseJWKS for a key set that is not
	// valid RFC 7517 JSON of a supported key type.
	ErrJWKSMalformed = errors.New("malformed JWKS")
	// ErrRulesMalformed is returned by ParseRules for network rules that are
	// not valid, complete and strictly formed.
	ErrRulesMalformed = errors.New("malformed network rules")
	// ErrMint is returned by MintToken for claims it refuses to sign.
	ErrMint = errors.New("cannot mint token")
)

// Reason codes of token failures (class ErrInvalidToken).
const (
	ReasonTokenMissing        = "token-missing"
	ReasonTokenTooLarge       = "token-too-large"
	ReasonTokenMalformed      = "token-malformed"
	ReasonTokenAlgorithm      = "token-algorithm"
	ReasonTokenType           = "token-type"
	ReasonTokenIssuer         = "token-issuer"
	ReasonTokenKey            = "token-key"
	ReasonTokenSignature      = "token-signature"
	ReasonTokenExpired        = "token-expired"
	ReasonTokenNotYetValid    = "token-not-yet-valid"
	ReasonTokenIssuedInFuture = "token-issued-in-future"
	ReasonTokenClaimMissing   = "token-claim-missing"
	ReasonTokenAudience       = "token-audience"
	ReasonTokenScope          = "token-scope"
	// ReasonTokenClaimInvalid: a claim has the wrong JSON type (exp, iat
	// or nbf not a number), a value out of range, or a sub or jti that is
	// not short printable text.
	ReasonTokenClaimInvalid = "token-claim-invalid"
	// ReasonTokenScopeNotAllowed: the token carries a scope that staff of
	// this gateway's agency kind may not hold (VerifierConfig.Kind).
	ReasonTokenScopeNotAllowed = "token-scope-not-allowed"
)

// Reason codes of authorization decisions.
const (
	// ReasonScopeMissing: the token lacks the action's scope
	// (class ErrInsufficientScope).
	ReasonScopeMissing = "scope-missing"
	// ReasonActionUnknown: Decide was asked about an action it does not know.
	ReasonActionUnknown = "action-unknown"
	// ReasonPrincipalInvalid: the principal has no agency or subject.
	ReasonPrincipalInvalid = "principal-invalid"
	// ReasonNotParty: the caller's agency is neither sender nor recipient
	// of the object.
	ReasonNotParty = "not-party"
	// ReasonWrongRole: the caller's agency is a party to the object, but
	// not the one that may take this action (e.g. answering one's own
	// statement request).
	ReasonWrongRole = "wrong-role"
)

// Reason codes of network-rule decisions (class ErrDenied).
const (
	ReasonRuleNotAllowed    = "rule-not-allowed"
	ReasonRuleOpenRequest   = "rule-no-open-request"
	ReasonRuleCounterpart   = "rule-not-counterpart"
	ReasonRuleSelfAddressed = "rule-self-addressed"
)

// Reason codes of consent and statement decisions (class ErrDenied, except
// ReasonConsentInvalid, ReasonInputInvalid and ReasonPseudonymInvalid, which
// are ErrInvalidInput).
const (
	ReasonConsentMissing        = "consent-missing"
	ReasonConsentRefused        = "consent-refused"
	ReasonConsentPurpose        = "consent-purpose"
	ReasonConsentExpired        = "consent-expired"
	ReasonConsentMinor          = "consent-minor"
	ReasonConsentInvalid        = "consent-invalid"
	ReasonOverrideNotUrgent     = "override-not-urgent"
	ReasonOverrideScope         = "override-scope"
	ReasonOverrideJustification = "override-justification"
	ReasonRequestNotOpen        = "request-not-open"
	ReasonRequestExpired        = "request-expired"
	ReasonNotRequester          = "not-requester"
	// ReasonInputInvalid: a fact is itself invalid, such as an unknown
	// priority or a malformed age range (class ErrInvalidInput).
	ReasonInputInvalid = "input-invalid"
	// ReasonPseudonymInvalid: a person's pseudonym is not of the form the
	// network rules set (Rules.CheckPseudonym; class ErrInvalidInput). The
	// detail never repeats the value: it may be a real name.
	ReasonPseudonymInvalid = "pseudonym-invalid"
)

// Reason codes of state transitions (class ErrConflict, except
// ReasonStateUnknown which is ErrInvalidInput).
const (
	ReasonTransitionIllegal = "transition-illegal"
	ReasonTransitionRole    = "transition-role"
	ReasonStateUnknown      = "state-unknown"
)

var reasonClass = map[string]error{
	ReasonTokenMissing:        ErrInvalidToken,
	ReasonTokenTooLarge:       ErrInvalidToken,
	ReasonTokenMalformed:      ErrInvalidToken,
	ReasonTokenAlgorithm:      ErrInvalidToken,
	ReasonTokenType:           ErrInvalidToken,
	ReasonTokenIssuer:         ErrInvalidToken,
	ReasonTokenKey:            ErrInvalidToken,
	ReasonTokenSignature:      ErrInvalidToken,
	ReasonTokenExpired:        ErrInvalidToken,
	ReasonTokenNotYetValid:    ErrInvalidToken,
	ReasonTokenIssuedInFuture: ErrInvalidToken,
	ReasonTokenClaimMissing:   ErrInvalidToken,
	ReasonTokenAudience:       ErrInvalidToken,
	ReasonTokenScope:          ErrInvalidToken,
	ReasonTokenClaimInvalid:   ErrInvalidToken,

	ReasonTokenScopeNotAllowed: ErrInvalidToken,

	ReasonScopeMissing:     ErrInsufficientScope,
	ReasonActionUnknown:    ErrDenied,
	ReasonPrincipalInvalid: ErrDenied,
	ReasonNotParty:         ErrDenied,
	ReasonWrongRole:        ErrDenied,

	ReasonRuleNotAllowed:    ErrDenied,
	ReasonRuleOpenRequest:   ErrDenied,
	ReasonRuleCounterpart:   ErrDenied,
	ReasonRuleSelfAddressed: ErrDenied,

	ReasonConsentMissing:        ErrDenied,
	ReasonConsentRefused:        ErrDenied,
	ReasonConsentPurpose:        ErrDenied,
	ReasonConsentExpired:        ErrDenied,
	ReasonConsentMinor:          ErrDenied,
	ReasonConsentInvalid:        ErrInvalidInput,
	ReasonOverrideNotUrgent:     ErrDenied,
	ReasonOverrideScope:         ErrDenied,
	ReasonOverrideJustification: ErrDenied,
	ReasonRequestNotOpen:        ErrDenied,
	ReasonRequestExpired:        ErrDenied,
	ReasonNotRequester:          ErrDenied,
	ReasonInputInvalid:          ErrInvalidInput,
	ReasonPseudonymInvalid:      ErrInvalidInput,

	ReasonTransitionIllegal: ErrConflict,
	ReasonTransitionRole:    ErrConflict,
	ReasonStateUnknown:      ErrInvalidInput,
}

// Error is a refusal: a stable reason code for audit events, problem types
// and receipts, and a detail for people. It unwraps to its class
// (ErrInvalidToken, ErrInsufficientScope, ErrDenied, ErrConflict or
// ErrInvalidInput). The detail never contains personal data, but it may
// contain claim values of a rejected token; show token details only to the
// token's holder.
type Error struct {
	Reason string
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Reason
	}
	return e.Reason + ": " + e.Detail
}

// Unwrap returns the class of the reason.
func (e *Error) Unwrap() error {
	if c, ok := reasonClass[e.Reason]; ok {
		return c
	}
	return ErrDenied
}

// ReasonOf returns the reason code carried by err, or "" if err is nil or
// carries none.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func deny(reason, detail string) error { return &Error{Reason: reason, Detail: detail} }

// KnownReason reports whether code is one of this package's reason codes.
// A peer's receipt names its reason; only known codes are recorded.
func KnownReason(code string) bool {
	_, ok := reasonClass[code]
	return ok
}
