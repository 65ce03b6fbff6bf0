package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// The web app's staff accounts and their sessions (package staff decides
// what they mean; the store only keeps them).
var (
	bucketStaffAccounts = []byte("staff-accounts")
	bucketStaffSessions = []byte("staff-sessions")
)

func init() {
	allBuckets = append(allBuckets, bucketStaffAccounts, bucketStaffSessions)
}

// StaffAccount is one staff member's account for the web app. Hash is an
// encoded password hash and TOTPSecret a second factor's secret: neither is
// ever shown or logged.
type StaffAccount struct {
	Name       string   `json:"name"`
	Roles      []string `json:"roles"`
	Hash       string   `json:"hash"`
	TOTPSecret string   `json:"totp_secret,omitempty"`
	// TOTPStep is the time step of the last one-time code accepted, so a
	// code is never accepted twice.
	TOTPStep int64 `json:"totp_step,omitempty"`
	Disabled bool  `json:"disabled,omitempty"`
	// Failures counts consecutive failed sign-ins; LockedUntil is set when
	// they reach the limit.
	Failures    int       `json:"failures,omitempty"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

// StaffSession is a signed-in user's session, kept under a hash of its id
// (the id itself is never stored).
type StaffSession struct {
	User    string    `json:"user"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	Seen    time.Time `json:"seen"`
	// Addr is the client address that signed in.
	Addr string `json:"addr,omitempty"`
}

// StaffAccount returns the account with the given name (ErrNotFound).
func (t *Tx) StaffAccount(name string) (*StaffAccount, error) {
	b := t.b(bucketStaffAccounts)
	if b == nil { // a read-only store from before accounts existed
		return nil, ErrNotFound
	}
	var a StaffAccount
	if err := getJSON(b, []byte(name), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// PutStaffAccount stores (or replaces) an account under its name.
func (t *Tx) PutStaffAccount(a *StaffAccount) error {
	if a.Name == "" {
		return fmt.Errorf("store: staff account without a name")
	}
	return putJSON(t.b(bucketStaffAccounts), []byte(a.Name), a)
}

// StaffAccounts returns every account, by name.
func (t *Tx) StaffAccounts() ([]StaffAccount, error) {
	var out []StaffAccount
	b := t.b(bucketStaffAccounts)
	if b == nil {
		return nil, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		var a StaffAccount
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("corrupt staff account %q: %w", k, err)
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// StaffSession returns the session stored under key (ErrNotFound).
func (t *Tx) StaffSession(key []byte) (*StaffSession, error) {
	b := t.b(bucketStaffSessions)
	if b == nil {
		return nil, ErrNotFound
	}
	var s StaffSession
	if err := getJSON(b, key, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// PutStaffSession stores (or replaces) a session under key.
func (t *Tx) PutStaffSession(key []byte, s *StaffSession) error {
	return putJSON(t.b(bucketStaffSessions), key, s)
}

// DeleteStaffSession removes the session stored under key.
func (t *Tx) DeleteStaffSession(key []byte) error {
	return t.b(bucketStaffSessions).Delete(key)
}

// DeleteStaffSessions removes every session for which drop returns true
// and reports how many it removed.
func (t *Tx) DeleteStaffSessions(drop func(*StaffSession) bool) (int, error) {
	var keys [][]byte
	err := t.b(bucketStaffSessions).ForEach(func(k, v []byte) error {
		var s StaffSession
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("corrupt staff session: %w", err)
		}
		if drop(&s) {
			keys = append(keys, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	b := t.b(bucketStaffSessions)
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// StaffSessionKeys returns the keys of every stored session (for tests
// and audits: they are hashes, never session ids).
func (t *Tx) StaffSessionKeys() [][]byte {
	var out [][]byte
	b := t.b(bucketStaffSessions)
	if b == nil {
		return nil
	}
	b.ForEach(func(k, _ []byte) error {
		out = append(out, append([]byte(nil), k...))
		return nil
	})
	return out
}
