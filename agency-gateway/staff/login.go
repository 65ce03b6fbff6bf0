package staff

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
)

// totpPeriod is the time step of one-time codes; a code of the step
// before or after the current one is accepted too (clock drift).
const totpPeriod = 30

// sessionIDLen is the length of a session id: 32 random bytes, base64url
// without padding.
const sessionIDLen = 43

// Login signs a user in and returns a new session.
//
// It answers ErrBadLogin alike for an unknown name, a wrong password, a
// disabled account and a wrong code, and hashes the password even for an
// unknown name, so neither the answer nor its timing tells which names
// exist. When the password is right and a code is needed but code is
// empty, it answers ErrNeedCode. A code is needed when the user has
// enrolled one, or holds a role of Options.TOTPRoles; a user who must use
// a code but has not enrolled one cannot sign in (ErrBadLogin, audited as
// totp-not-enrolled) until an administrator enrolls them (rujukan user
// totp).
//
// LockAfter consecutive failures lock the account for LockFor: ErrLocked,
// even with the right password; a success resets the count. AddrFailures
// failures from one address (addr: the client's IP, without port) within
// AddrWindow lock that address out (ErrLocked) for the rest of the window;
// this count is kept in memory. Every success, failure and lockout is an
// audit event; attempts refused because their address is locked are not
// (the lockout itself is), so a flood cannot fill the log.
func (a *Accounts) Login(name, password, code, addr string) (*Session, error) {
	now := a.now()
	addr = addrKey(addr)
	if a.addrLocked(addr, now) {
		return nil, ErrLocked
	}
	if len(name) > MaxName || len(password) > MaxPassword || len(code) > MaxCode {
		return nil, a.fail(nil, "", addr, "too-long", now)
	}
	name = strings.ToLower(strings.TrimSpace(name))
	code = strings.ReplaceAll(code, " ", "")
	// One sign-in at a time per account and per address, and a bounded
	// number in all: a burst of guesses is refused, not queued, so every
	// guess that is checked is counted before the next one is.
	release, ok := a.enter(name, addr)
	if !ok {
		return nil, ErrBusy
	}
	defer release()

	var acc *store.StaffAccount
	if ValidName(name) {
		err := a.db.View(func(tx *store.Tx) error {
			var err error
			acc, err = tx.StaffAccount(name)
			return err
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if acc != nil && acc.LockedUntil.After(now) {
		return nil, a.fail(acc, name, addr, "locked", now)
	}
	if acc == nil {
		checkPassword(a.dummyHash(), password)
		return nil, a.fail(nil, "", addr, "unknown-account", now)
	}
	switch {
	case !checkPassword(acc.Hash, password):
		return nil, a.fail(acc, name, addr, "wrong-password", now)
	case acc.Disabled:
		return nil, a.fail(acc, name, addr, "disabled", now)
	}
	var step int64
	if acc.TOTPSecret != "" || a.RequiresTOTP(rolesOf(acc.Roles)) {
		if acc.TOTPSecret == "" {
			return nil, a.fail(acc, name, addr, "totp-not-enrolled", now)
		}
		if code == "" {
			return nil, ErrNeedCode
		}
		if step = checkCode(acc.TOTPSecret, code, now); step == 0 || step <= acc.TOTPStep {
			return nil, a.fail(acc, name, addr, "wrong-code", now)
		}
	}
	return a.begin(acc, name, addr, step, now)
}

// begin records a successful sign-in and creates its session.
func (a *Accounts) begin(checked *store.StaffAccount, name, addr string, step int64, now time.Time) (*Session, error) {
	id, err := randomToken()
	if err != nil {
		return nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return nil, err
	}
	now = now.UTC()
	var acc *store.StaffAccount
	err = a.db.Update(func(tx *store.Tx) error {
		var err error
		if acc, err = tx.StaffAccount(name); err != nil {
			return err
		}
		// Changed while the password was being checked: reset, disabled,
		// locked, or the same code used by a concurrent sign-in.
		if acc.Hash != checked.Hash || acc.Disabled || acc.LockedUntil.After(now) || (step != 0 && step <= acc.TOTPStep) {
			return ErrBadLogin
		}
		acc.Failures, acc.LockedUntil = 0, time.Time{}
		if step != 0 {
			acc.TOTPStep = step
		}
		if err := tx.PutStaffAccount(acc); err != nil {
			return err
		}
		// Sessions that have run out are removed as new ones begin.
		if _, err := tx.DeleteStaffSessions(func(s *store.StaffSession) bool { return expired(s, now) }); err != nil {
			return err
		}
		if err := tx.PutStaffSession(sessionKey(id), &store.StaffSession{User: name, CSRF: csrf, Created: now, Seen: now, Addr: addr}); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{At: now, Actor: a.agency + "/" + name, Action: ActLogin, Object: name,
			Outcome: "signed-in", Detail: addrDetail(addr)})
	})
	if errors.Is(err, ErrBadLogin) {
		return nil, a.fail(checked, name, addr, "changed", now)
	}
	if err != nil {
		return nil, err
	}
	return a.session(id, acc, &store.StaffSession{User: name, CSRF: csrf, Created: now, Seen: now}), nil
}

// fail records a failed sign-in: the address's count, the account's count
// (and its lockout), the audit event. acc is nil for an unknown or
// malformed name, which is then left out of the log (it may be a password
// typed in the wrong field). It returns the error to give the caller.
func (a *Accounts) fail(acc *store.StaffAccount, name, addr, reason string, now time.Time) error {
	addrLocked := a.addrFail(addr, now)
	now = now.UTC()
	answer := ErrBadLogin
	if reason == "locked" {
		answer = ErrLocked
	}
	err := a.db.Update(func(tx *store.Tx) error {
		detail := addrDetail(addr)
		ev := store.AuditEvent{At: now, Actor: "web:" + addr, Action: ActLogin, Outcome: "refused", Reason: reason, Detail: detail}
		if acc != nil {
			ev.Object = name
		}
		if err := tx.Audit(ev); err != nil {
			return err
		}
		if addrLocked {
			if err := tx.Audit(store.AuditEvent{At: now, Actor: "web:" + addr, Action: ActLockout, Outcome: "address-locked",
				Reason: "too-many-failures", Detail: map[string]string{"addr": addr, "until": now.Add(AddrWindow).Format(time.RFC3339)}}); err != nil {
				return err
			}
		}
		if acc == nil || reason == "locked" {
			return nil
		}
		cur, err := tx.StaffAccount(name)
		if err != nil {
			return err
		}
		if !cur.LockedUntil.IsZero() && !cur.LockedUntil.After(now) {
			cur.Failures, cur.LockedUntil = 0, time.Time{} // an old lock ran out
		}
		cur.Failures++
		if cur.Failures >= LockAfter && !cur.LockedUntil.After(now) {
			cur.LockedUntil = now.Add(LockFor)
			if err := tx.Audit(store.AuditEvent{At: now, Actor: "web:" + addr, Action: ActLockout, Object: name, Outcome: "account-locked",
				Reason: "too-many-failures", Detail: map[string]string{"until": cur.LockedUntil.Format(time.RFC3339)}}); err != nil {
				return err
			}
		}
		return tx.PutStaffAccount(cur)
	})
	if err != nil {
		return err
	}
	return answer
}

func addrDetail(addr string) map[string]string {
	if addr == "" {
		return nil
	}
	return map[string]string{"addr": addr}
}

// maxInFlight bounds the sign-ins being checked at once in this process.
const maxInFlight = 8

// enter admits a sign-in attempt for name from addr, unless one is being
// checked for either already or too many are in flight.
func (a *Accounts) enter(name, addr string) (func(), bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inFlight == nil {
		a.inFlight = map[string]bool{}
	}
	kn, ka := "n:"+name, "a:"+addr
	if a.inFlight[kn] || a.inFlight[ka] || len(a.inFlight) >= 2*maxInFlight {
		return nil, false
	}
	a.inFlight[kn], a.inFlight[ka] = true, true
	return func() {
		a.mu.Lock()
		delete(a.inFlight, kn)
		delete(a.inFlight, ka)
		a.mu.Unlock()
	}, true
}

// addrKey is the key an address is limited by: an IPv4 address, or the
// /64 network of an IPv6 one (a host is given a whole /64).
func addrKey(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil || ip.To4() != nil {
		return addr
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// addrLocked reports whether addr is locked out now.
func (a *Accounts) addrLocked(addr string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.addrs[addr]
	if w == nil {
		return false
	}
	if now.Sub(w.start) >= AddrWindow {
		delete(a.addrs, addr)
		return false
	}
	return w.n >= AddrFailures
}

// addrFail counts a failure from addr and reports whether it locked the
// address.
func (a *Accounts) addrFail(addr string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.addrs[addr]
	if w == nil || now.Sub(w.start) >= AddrWindow {
		if len(a.addrs) >= maxAddrs {
			for k, v := range a.addrs {
				if now.Sub(v.start) >= AddrWindow {
					delete(a.addrs, k)
				}
			}
			for k := range a.addrs { // still full: forget one at random
				if len(a.addrs) < maxAddrs {
					break
				}
				delete(a.addrs, k)
			}
		}
		w = &addrWindow{start: now}
		a.addrs[addr] = w
	}
	w.n++
	return w.n == AddrFailures
}

// dummyHash is a hash of a random password with the current parameters,
// checked for unknown names so they take as long as known ones.
func (a *Accounts) dummyHash() string {
	a.dummyOnce.Do(func() {
		pw, _ := randomToken()
		a.dummy, _ = hashPassword(pw, a.argon)
	})
	return a.dummy
}

// checkCode returns the time step of the one-time code if it is right for
// now or the step before or after, else 0.
func checkCode(secret, code string, now time.Time) int64 {
	if len(code) != 6 {
		return 0
	}
	var found int64
	for _, d := range []int64{-1, 0, 1} {
		t := now.Add(time.Duration(d*totpPeriod) * time.Second)
		want, err := totp.GenerateCodeCustom(secret, t, totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			found = t.Unix() / totpPeriod
		}
	}
	return found
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("staff: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sessionKey is what a session is stored under: the SHA-256 of its id, so
// the database file holds no live session id.
func sessionKey(id string) []byte {
	h := sha256.Sum256([]byte("rujukan/v1/staff-session\x00" + id))
	return h[:]
}

func expired(s *store.StaffSession, now time.Time) bool {
	return now.Sub(s.Seen) > IdleTimeout || now.Sub(s.Created) > MaxAge
}

func (a *Accounts) session(id string, acc *store.StaffAccount, s *store.StaffSession) *Session {
	roles := rolesOf(acc.Roles)
	return &Session{
		ID:    id,
		User:  acc.Name,
		Roles: roles,
		Principal: policy.Principal{Agency: a.agency, Subject: acc.Name, Scopes: ScopesFor(roles, a.kind),
			Expiry: s.Created.Add(MaxAge)},
		CSRF:    s.CSRF,
		Created: s.Created,
		Seen:    s.Seen,
	}
}

// Session returns the session with the given id, with the account's
// roles as they are now. It answers ErrNoSession for an unknown or ended
// session, one idle for longer than IdleTimeout or older than MaxAge, and
// one whose account is disabled or gone. It records the time the session
// was seen, writing it at most once a minute.
func (a *Accounts) Session(id string) (*Session, error) { return a.lookup(id, true) }

// Peek is Session without counting as use: for requests the user did not
// make (a page's live-update stream), which must not keep an idle session
// alive.
func (a *Accounts) Peek(id string) (*Session, error) { return a.lookup(id, false) }

func (a *Accounts) lookup(id string, use bool) (*Session, error) {
	if len(id) != sessionIDLen {
		return nil, ErrNoSession
	}
	key := sessionKey(id)
	now := a.now().UTC()
	var s *store.StaffSession
	var acc *store.StaffAccount
	err := a.db.View(func(tx *store.Tx) error {
		var err error
		if s, err = tx.StaffSession(key); err != nil {
			return err
		}
		acc, err = tx.StaffAccount(s.User)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	if expired(s, now) || acc.Disabled {
		err := a.db.Update(func(tx *store.Tx) error { return tx.DeleteStaffSession(key) })
		if err != nil {
			return nil, err
		}
		return nil, ErrNoSession
	}
	if use && now.Sub(s.Seen) >= seenEvery {
		err := a.db.Batch(func(tx *store.Tx) error {
			cur, err := tx.StaffSession(key)
			if err != nil {
				return err
			}
			cur.Seen = now
			return tx.PutStaffSession(key, cur)
		})
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrNoSession // ended meanwhile
		}
		if err != nil {
			return nil, err
		}
		s.Seen = now
	}
	return a.session(id, acc, s), nil
}

// Logout ends a session (ErrNoSession when there is none).
func (a *Accounts) Logout(id string) error {
	if len(id) != sessionIDLen {
		return ErrNoSession
	}
	key := sessionKey(id)
	now := a.now().UTC()
	err := a.db.Update(func(tx *store.Tx) error {
		s, err := tx.StaffSession(key)
		if err != nil {
			return err
		}
		if err := tx.DeleteStaffSession(key); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{At: now, Actor: a.agency + "/" + s.User, Action: ActLogout, Object: s.User, Outcome: "signed-out"})
	})
	if errors.Is(err, store.ErrNotFound) {
		return ErrNoSession
	}
	return err
}
