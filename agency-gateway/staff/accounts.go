package staff

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pquerna/otp/totp"
	"github.com/rujukan/rujukan/agency-gateway/store"
)

// Audit actions of accounts and sign-ins. Events name the account (staff
// names are not personal data of victims) and never carry a password, a
// hash, a one-time code or a session id.
const (
	ActAccountAdd     store.Action = "staff.account.add"
	ActAccountDisable store.Action = "staff.account.disable"
	ActAccountEnable  store.Action = "staff.account.enable"
	ActAccountReset   store.Action = "staff.account.reset"
	ActAccountTOTP    store.Action = "staff.account.totp"
	ActLogin          store.Action = "staff.login"
	ActLockout        store.Action = "staff.lockout"
	ActLogout         store.Action = "staff.logout"
)

// More limits.
const (
	// MaxName is the longest account name, in bytes.
	MaxName = 64
	// MaxPassword is the longest password, in bytes.
	MaxPassword = 1024
	// MaxCode is the longest one-time code field, in bytes.
	MaxCode = 16
	// LockFor is how long an account or an address stays locked.
	LockFor = 15 * time.Minute
	// AddrFailures failed sign-ins from one address within AddrWindow lock
	// that address out for the rest of the window.
	AddrFailures = 50
	AddrWindow   = 15 * time.Minute
	// seenEvery is how often a session's Seen is written: a page view does
	// not cost a disk sync each time.
	seenEvery = time.Minute
	// maxAddrs bounds the per-address failure table.
	maxAddrs = 10000
)

// Options configure Accounts.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TOTPRoles are the roles whose users must sign in with a one-time
	// code.
	TOTPRoles []Role
	// Argon are the cost parameters of new password hashes; zero means
	// DefaultParams. Tests lower them.
	Argon Params
	// Actor is who account changes (add, disable, reset, enroll) are
	// recorded as in the audit log; empty means the agency itself.
	Actor string
}

// User is what may be shown of an account: no hash, no secret.
type User struct {
	Name     string
	Roles    []Role
	Disabled bool
	// TOTP says whether the user has enrolled a second factor.
	TOTP bool
	// Locked says whether the account is locked out after failed
	// sign-ins.
	Locked  bool
	Created time.Time
}

// Accounts are the staff accounts of one agency's gateway, kept in its
// store. Accounts of one agency exist only in that agency's store, so
// nobody signs in at another agency's gateway with them.
type Accounts struct {
	db        *store.DB
	agency    string
	kind      string
	now       func() time.Time
	totpRoles []Role
	argon     Params
	actor     string

	dummyOnce sync.Once
	dummy     string

	mu       sync.Mutex
	addrs    map[string]*addrWindow
	inFlight map[string]bool // "n:"+name and "a:"+addr of sign-ins being checked
}

type addrWindow struct {
	start time.Time
	n     int
}

// New returns the accounts of agency (of the given directory kind) in db.
func New(db *store.DB, agency, kind string, opt Options) *Accounts {
	a := &Accounts{db: db, agency: agency, kind: kind, now: opt.Now, totpRoles: slices.Clone(opt.TOTPRoles),
		argon: opt.Argon, actor: opt.Actor, addrs: map[string]*addrWindow{}}
	if a.now == nil {
		a.now = time.Now
	}
	if a.argon == (Params{}) {
		a.argon = DefaultParams
	}
	if a.actor == "" {
		a.actor = agency
	}
	return a
}

// ValidName reports whether name can name an account: 1 to 64 characters
// of a-z, 0-9, '.', '_' and '-', starting with a letter or digit.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxName {
		return false
	}
	for i, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// RequiresTOTP reports whether a user with roles must sign in with a
// one-time code because of one of them.
func (a *Accounts) RequiresTOTP(roles []Role) bool {
	for _, r := range roles {
		if slices.Contains(a.totpRoles, r) {
			return true
		}
	}
	return false
}

func checkRoles(roles []Role) error {
	if len(roles) == 0 {
		return errors.New("an account needs at least one role")
	}
	for _, r := range roles {
		if !ValidRole(r) {
			return fmt.Errorf("unknown role %q (roles: %s)", r, roleList())
		}
	}
	return nil
}

func roleList() string {
	s := make([]string, len(Roles))
	for i, r := range Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

func checkPasswordRules(password string) error {
	if utf8.RuneCountInString(password) < MinPassword {
		return fmt.Errorf("%w: at least %d characters", ErrWeakPassword, MinPassword)
	}
	if len(password) > MaxPassword {
		return fmt.Errorf("the password is longer than %d bytes", MaxPassword)
	}
	return nil
}

func rolesOf(s []string) []Role {
	out := make([]Role, len(s))
	for i, r := range s {
		out[i] = Role(r)
	}
	return out
}

func roleStrings(roles []Role) []string {
	var out []string
	for _, r := range roles {
		if !slices.Contains(out, string(r)) {
			out = append(out, string(r))
		}
	}
	return out
}

// Add creates an account. The name must satisfy ValidName, each role
// ValidRole, and the password be at least MinPassword characters
// (ErrWeakPassword). A taken name is ErrExists.
func (a *Accounts) Add(name string, roles []Role, password string) error {
	if !ValidName(name) {
		return fmt.Errorf("account name %q: use 1 to %d characters a-z 0-9 . _ - starting with a letter or digit", name, MaxName)
	}
	if err := checkRoles(roles); err != nil {
		return err
	}
	if err := checkPasswordRules(password); err != nil {
		return err
	}
	hash, err := hashPassword(password, a.argon)
	if err != nil {
		return err
	}
	now := a.now().UTC()
	rs := roleStrings(roles)
	return a.db.Update(func(tx *store.Tx) error {
		if _, err := tx.StaffAccount(name); err == nil {
			return ErrExists
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.PutStaffAccount(&store.StaffAccount{Name: name, Roles: rs, Hash: hash, Created: now, Updated: now}); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{At: now, Actor: a.actor, Action: ActAccountAdd, Object: name, Outcome: "added",
			Detail: map[string]string{"roles": strings.Join(rs, ",")}})
	})
}

// List returns every account, by name.
func (a *Accounts) List() ([]User, error) {
	var out []User
	now := a.now()
	err := a.db.View(func(tx *store.Tx) error {
		all, err := tx.StaffAccounts()
		for _, acc := range all {
			out = append(out, userOf(&acc, now))
		}
		return err
	})
	return out, err
}

// Get returns one account (ErrNotFound).
func (a *Accounts) Get(name string) (User, error) {
	var u User
	err := a.db.View(func(tx *store.Tx) error {
		acc, err := a.account(tx, name)
		if err != nil {
			return err
		}
		u = userOf(acc, a.now())
		return nil
	})
	return u, err
}

func userOf(acc *store.StaffAccount, now time.Time) User {
	return User{Name: acc.Name, Roles: rolesOf(acc.Roles), Disabled: acc.Disabled, TOTP: acc.TOTPSecret != "",
		Locked: acc.LockedUntil.After(now), Created: acc.Created}
}

func (a *Accounts) account(tx *store.Tx, name string) (*store.StaffAccount, error) {
	if !ValidName(name) {
		return nil, ErrNotFound
	}
	acc, err := tx.StaffAccount(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	return acc, err
}

// change runs fn on an existing account and stores it with its audit event,
// ending the account's sessions when end is set.
func (a *Accounts) change(name string, act store.Action, outcome string, end bool, fn func(*store.StaffAccount)) error {
	now := a.now().UTC()
	return a.db.Update(func(tx *store.Tx) error {
		acc, err := a.account(tx, name)
		if err != nil {
			return err
		}
		fn(acc)
		acc.Updated = now
		if err := tx.PutStaffAccount(acc); err != nil {
			return err
		}
		var detail map[string]string
		if end {
			n, err := tx.DeleteStaffSessions(func(s *store.StaffSession) bool { return s.User == name })
			if err != nil {
				return err
			}
			detail = map[string]string{"sessions_ended": fmt.Sprint(n)}
		}
		return tx.Audit(store.AuditEvent{At: now, Actor: a.actor, Action: act, Object: name, Outcome: outcome, Detail: detail})
	})
}

// Disable stops an account from signing in and ends its sessions.
func (a *Accounts) Disable(name string) error {
	return a.change(name, ActAccountDisable, "disabled", true, func(acc *store.StaffAccount) { acc.Disabled = true })
}

// Enable lets a disabled account sign in again.
func (a *Accounts) Enable(name string) error {
	return a.change(name, ActAccountEnable, "enabled", false, func(acc *store.StaffAccount) { acc.Disabled = false })
}

// Reset gives an account a new password, unlocks it and ends its
// sessions.
func (a *Accounts) Reset(name, password string) error {
	if err := checkPasswordRules(password); err != nil {
		return err
	}
	if err := a.db.View(func(tx *store.Tx) error { _, err := a.account(tx, name); return err }); err != nil {
		return err
	}
	hash, err := hashPassword(password, a.argon)
	if err != nil {
		return err
	}
	return a.change(name, ActAccountReset, "reset", true, func(acc *store.StaffAccount) {
		acc.Hash, acc.Failures, acc.LockedUntil = hash, 0, time.Time{}
	})
}

// EnrollTOTP gives an account a new one-time code secret, replacing any
// earlier one, and returns it as an otpauth:// URL for an authenticator
// app. From then on the user signs in with a code.
func (a *Accounts) EnrollTOTP(name string) (string, error) {
	if err := a.db.View(func(tx *store.Tx) error { _, err := a.account(tx, name); return err }); err != nil {
		return "", err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "Rujukan " + a.agency, AccountName: name + "@" + a.agency})
	if err != nil {
		return "", err
	}
	// A new second factor (say, for a lost phone) ends the sessions made
	// with the old one.
	err = a.change(name, ActAccountTOTP, "enrolled", true, func(acc *store.StaffAccount) {
		acc.TOTPSecret, acc.TOTPStep = key.Secret(), 0
	})
	if err != nil {
		return "", err
	}
	return key.URL(), nil
}
