// Package staff keeps the accounts of an agency's own staff for the web
// app: names, roles, argon2id password hashes, optional TOTP second
// factors, server-side sessions and login limits, in the gateway's store.
// A signed-in user acts as a policy.Principal whose scopes come from the
// user's roles, never more than the agency's kind may hold.
package staff

import (
	"errors"
	"slices"
	"time"

	"github.com/rujukan/rujukan/policy"
)

// Role is a job at an agency; each maps to policy scopes.
type Role string

// Roles.
const (
	// RoleCaseworker sends, receives and follows referrals.
	RoleCaseworker Role = "caseworker"
	// RoleConsentRecorder records victims' consent and answers statement
	// requests at a holding agency.
	RoleConsentRecorder Role = "consent-recorder"
	// RoleInvestigator requests victim statements (police).
	RoleInvestigator Role = "investigator"
	// RoleOperator audits deliveries and the audit log.
	RoleOperator Role = "operator"
)

// Roles lists every role.
var Roles = []Role{RoleCaseworker, RoleConsentRecorder, RoleInvestigator, RoleOperator}

// roleScopes are the scopes each role asks for.
var roleScopes = map[Role][]string{
	RoleCaseworker:      {policy.ScopeReferralSend, policy.ScopeReferralRead, policy.ScopeReferralUpdate},
	RoleConsentRecorder: {policy.ScopeStatementRead, policy.ScopeStatementRespond, policy.ScopeConsentRecord},
	RoleInvestigator:    {policy.ScopeStatementRequest, policy.ScopeStatementRead},
	RoleOperator:        {policy.ScopeAuditRead, policy.ScopeReferralRead, policy.ScopeStatementRead},
}

// ValidRole reports whether r is a role.
func ValidRole(r Role) bool { return slices.Contains(Roles, r) }

// ScopesFor returns the scopes of roles at an agency of kind: what the
// roles ask for, and only what staff of that kind may hold.
func ScopesFor(roles []Role, kind string) []string {
	allowed := policy.ScopesForKind(kind)
	var out []string
	for _, r := range roles {
		for _, s := range roleScopes[r] {
			if slices.Contains(allowed, s) && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Session is a signed-in user's server-side session.
type Session struct {
	// ID is the random session id the cookie carries.
	ID string
	// User is the account name; Roles its roles.
	User  string
	Roles []Role
	// Principal is who the user acts as: the agency, the account name as
	// subject, the scopes of the roles.
	Principal policy.Principal
	// CSRF is the token every form of this session must carry.
	CSRF    string
	Created time.Time
	Seen    time.Time
}

// Has reports whether the session's user holds role r.
func (s *Session) Has(r Role) bool { return slices.Contains(s.Roles, r) }

// Session limits.
const (
	// IdleTimeout ends a session not used for this long.
	IdleTimeout = 30 * time.Minute
	// MaxAge ends every session this long after sign-in.
	MaxAge = 12 * time.Hour
	// MinPassword is the shortest password, in characters.
	MinPassword = 12
	// LockAfter wrong passwords lock an account.
	LockAfter = 10
)

// Errors.
var (
	// ErrBadLogin is returned for a wrong name, password or code, and for
	// a disabled account: the caller learns no more than that.
	ErrBadLogin = errors.New("wrong name, password or code")
	// ErrLocked is returned while an account or an address is locked out
	// after too many failed attempts.
	ErrLocked = errors.New("too many failed sign-ins; try again later")
	// ErrNeedCode is returned when the password is right and a second
	// factor is required but was not given.
	ErrNeedCode = errors.New("a one-time code is required")
	// ErrBusy is returned when a sign-in for the same account or from the
	// same address is being checked, or too many are: try again shortly.
	ErrBusy = errors.New("sign-in busy; try again shortly")
	// ErrNoSession is returned for an unknown, ended or expired session.
	ErrNoSession = errors.New("no such session")
	// ErrExists is returned when adding an account whose name is taken.
	ErrExists = errors.New("an account with this name exists")
	// ErrNotFound is returned for an unknown account.
	ErrNotFound = errors.New("no such account")
	// ErrWeakPassword is returned for a password shorter than MinPassword.
	ErrWeakPassword = errors.New("the password is too short")
)
