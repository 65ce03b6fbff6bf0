package staff

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// testParams make hashing cheap in tests.
var testParams = Params{Time: 1, Memory: 64, Threads: 1}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	acc  *Accounts
	db   *store.DB
	path string
	clk  *clock
}

func openStore(t *testing.T) (*store.DB, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gateway.db")
	signer, err := crypto.NewAuditNoteSigner("test", priv)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(path, signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func newFixture(t *testing.T, agency, kind string, totpRoles ...Role) *fixture {
	t.Helper()
	db, path := openStore(t)
	clk := &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	return &fixture{acc: New(db, agency, kind, Options{Now: clk.Now, TOTPRoles: totpRoles, Argon: testParams}), db: db, path: path, clk: clk}
}

const pw = "correct horse battery"

func (f *fixture) add(t *testing.T, name string, roles ...Role) {
	t.Helper()
	if err := f.acc.Add(name, roles, pw); err != nil {
		t.Fatalf("add %s: %v", name, err)
	}
}

func (f *fixture) audit(t *testing.T) []store.AuditEvent {
	t.Helper()
	var evs []store.AuditEvent
	err := f.db.View(func(tx *store.Tx) error {
		var err error
		evs, err = tx.AuditEvents(0, 100000)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func count(evs []store.AuditEvent, act store.Action, outcome, reason string) int {
	n := 0
	for _, e := range evs {
		if e.Action == act && (outcome == "" || e.Outcome == outcome) && (reason == "" || e.Reason == reason) {
			n++
		}
	}
	return n
}

func TestAddListDisableReset(t *testing.T) {
	f := newFixture(t, "shelter", policy.KindShelter)
	f.add(t, "caseworker", RoleCaseworker)
	f.add(t, "ana.op", RoleOperator, RoleConsentRecorder)
	if err := f.acc.Add("ana.op", []Role{RoleOperator}, pw); !errors.Is(err, ErrExists) {
		t.Fatalf("add twice: %v", err)
	}
	users, err := f.acc.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Name != "ana.op" || users[1].Name != "caseworker" {
		t.Fatalf("list: %+v", users)
	}
	if !slices.Equal(users[0].Roles, []Role{RoleOperator, RoleConsentRecorder}) || users[0].Disabled || users[0].TOTP || users[0].Locked {
		t.Fatalf("list: %+v", users[0])
	}
	if !users[0].Created.Equal(f.clk.Now()) {
		t.Fatalf("created %v", users[0].Created)
	}

	if err := f.acc.Disable("ana.op"); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.acc.Get("ana.op"); !u.Disabled {
		t.Fatal("not disabled")
	}
	if _, err := f.acc.Login("ana.op", pw, "", "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("disabled login: %v", err)
	}
	if err := f.acc.Enable("ana.op"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.acc.Login("ana.op", pw, "", "10.0.0.1"); err != nil {
		t.Fatalf("enabled login: %v", err)
	}

	if err := f.acc.Reset("caseworker", "a new long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.acc.Login("caseworker", pw, "", "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("old password after reset: %v", err)
	}
	if _, err := f.acc.Login("caseworker", "a new long password", "", "10.0.0.1"); err != nil {
		t.Fatalf("new password after reset: %v", err)
	}
	for _, err := range []error{f.acc.Disable("nobody"), f.acc.Reset("nobody", pw), f.acc.Enable("Nobody")} {
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown account: %v", err)
		}
	}
	if _, err := f.acc.EnrollTOTP("nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("enroll unknown: %v", err)
	}
}

func TestAddRules(t *testing.T) {
	f := newFixture(t, "iom", policy.KindIOM)
	cases := []struct {
		name  string
		roles []Role
		pw    string
		weak  bool
	}{
		{"", []Role{RoleCaseworker}, pw, false},
		{"Ana", []Role{RoleCaseworker}, pw, false},
		{"ana smith", []Role{RoleCaseworker}, pw, false},
		{".ana", []Role{RoleCaseworker}, pw, false},
		{strings.Repeat("a", 65), []Role{RoleCaseworker}, pw, false},
		{"ana", nil, pw, false},
		{"ana", []Role{"admin"}, pw, false},
		{"ana", []Role{RoleCaseworker}, "short", true},
		{"ana", []Role{RoleCaseworker}, "elevenchars", true},
		{"ana", []Role{RoleCaseworker}, strings.Repeat("x", MaxPassword+1), false},
	}
	for _, c := range cases {
		err := f.acc.Add(c.name, c.roles, c.pw)
		if err == nil || errors.Is(err, ErrWeakPassword) != c.weak {
			t.Errorf("Add(%q, %v, %d chars) = %v", c.name, c.roles, len(c.pw), err)
		}
	}
	// Twelve characters, counted as characters, not bytes.
	if err := f.acc.Add(strings.Repeat("a", 64), []Role{RoleCaseworker}, "kata sandi é"); err != nil {
		t.Fatal(err)
	}
	if err := f.acc.Reset(strings.Repeat("a", 64), "short"); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("reset with a short password: %v", err)
	}
	if users, _ := f.acc.List(); len(users) != 1 {
		t.Fatalf("refused adds were stored: %+v", users)
	}
}

func TestLogin(t *testing.T) {
	f := newFixture(t, "police", policy.KindPolice)
	f.add(t, "budi", RoleInvestigator, RoleOperator)
	s, err := f.acc.Login("Budi ", pw, "", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if s.User != "budi" || !s.Has(RoleInvestigator) || s.Has(RoleCaseworker) || len(s.ID) != 43 || len(s.CSRF) != 43 || s.ID == s.CSRF {
		t.Fatalf("session: %+v", s)
	}
	p := s.Principal
	if p.Agency != "police" || p.Subject != "budi" || !slices.Equal(p.Scopes, ScopesFor(s.Roles, policy.KindPolice)) || len(p.Scopes) == 0 {
		t.Fatalf("principal: %+v", p)
	}
	got, err := f.acc.Session(s.ID)
	if err != nil || got.User != "budi" || got.CSRF != s.CSRF || !slices.Equal(got.Principal.Scopes, p.Scopes) {
		t.Fatalf("session lookup: %+v %v", got, err)
	}
	for _, c := range []struct{ name, pw string }{
		{"budi", "wrong password!"},
		{"budi", ""},
		{"siti", pw},
		{"", pw},
		{"bad name", pw},
		{strings.Repeat("b", 65), pw},
		{"budi", strings.Repeat("x", MaxPassword+1)},
	} {
		if _, err := f.acc.Login(c.name, c.pw, "", "10.0.0.2"); !errors.Is(err, ErrBadLogin) {
			t.Errorf("Login(%q, %d chars) = %v", c.name, len(c.pw), err)
		}
	}
	if _, err := f.acc.Login("budi", pw, strings.Repeat("1", MaxCode+1), "10.0.0.2"); !errors.Is(err, ErrBadLogin) {
		t.Errorf("long code: %v", err)
	}
	if _, err := f.acc.Session("no such session"); !errors.Is(err, ErrNoSession) {
		t.Fatal(err)
	}
	if _, err := f.acc.Session(strings.Repeat("A", 43)); !errors.Is(err, ErrNoSession) {
		t.Fatal(err)
	}
}

func TestLockout(t *testing.T) {
	f := newFixture(t, "iom", policy.KindIOM)
	f.add(t, "ana", RoleCaseworker)
	for i := range LockAfter - 1 {
		if _, err := f.acc.Login("ana", "wrong password!", "", "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	// A success resets the count.
	if _, err := f.acc.Login("ana", pw, "", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	for range LockAfter - 1 {
		f.acc.Login("ana", "wrong password!", "", "10.0.0.1")
	}
	if u, _ := f.acc.Get("ana"); u.Locked {
		t.Fatal("locked before the tenth failure in a row")
	}
	if _, err := f.acc.Login("ana", "wrong password!", "", "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatal(err)
	}
	if u, _ := f.acc.Get("ana"); !u.Locked {
		t.Fatal("not locked after ten failures")
	}
	if _, err := f.acc.Login("ana", pw, "", "10.0.0.9"); !errors.Is(err, ErrLocked) {
		t.Fatalf("right password while locked: %v", err)
	}
	f.clk.Add(LockFor - time.Second)
	if _, err := f.acc.Login("ana", pw, "", "10.0.0.9"); !errors.Is(err, ErrLocked) {
		t.Fatalf("right password while still locked: %v", err)
	}
	f.clk.Add(2 * time.Second)
	if _, err := f.acc.Login("ana", pw, "", "10.0.0.9"); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
	// After a lock ran out, it takes ten new failures to lock again.
	for range LockAfter - 1 {
		f.acc.Login("ana", "wrong password!", "", "10.0.0.1")
	}
	if u, _ := f.acc.Get("ana"); u.Locked {
		t.Fatal("locked again too soon")
	}
	f.acc.Login("ana", "wrong password!", "", "10.0.0.1")
	if u, _ := f.acc.Get("ana"); !u.Locked {
		t.Fatal("not locked again")
	}
	// Reset unlocks.
	if err := f.acc.Reset("ana", "another long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.acc.Login("ana", "another long password", "", "10.0.0.1"); err != nil {
		t.Fatalf("after reset: %v", err)
	}
	evs := f.audit(t)
	if n := count(evs, ActLockout, "account-locked", "too-many-failures"); n != 2 {
		t.Fatalf("%d lockout events", n)
	}
	if n := count(evs, ActLogin, "refused", "locked"); n != 2 {
		t.Fatalf("%d refusals while locked", n)
	}
}

func TestAddressLimit(t *testing.T) {
	f := newFixture(t, "dinsos", policy.KindDinsos)
	f.add(t, "ana", RoleCaseworker)
	for i := range AddrFailures {
		if _, err := f.acc.Login("guess"+string(rune('a'+i%26)), pw, "", "192.0.2.7"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if _, err := f.acc.Login("ana", pw, "", "192.0.2.7"); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked address: %v", err)
	}
	if _, err := f.acc.Login("ana", pw, "", "192.0.2.8"); err != nil {
		t.Fatalf("other address: %v", err)
	}
	f.clk.Add(AddrWindow)
	if _, err := f.acc.Login("ana", pw, "", "192.0.2.7"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	evs := f.audit(t)
	if n := count(evs, ActLockout, "address-locked", ""); n != 1 {
		t.Fatalf("%d address lockouts", n)
	}
	for _, e := range evs {
		if e.Action == ActLogin && e.Reason == "unknown-account" && e.Object != "" {
			t.Fatalf("an unknown name was logged: %+v", e)
		}
	}
}

func codeAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTOTP(t *testing.T) {
	f := newFixture(t, "shelter", policy.KindShelter, RoleConsentRecorder)
	f.add(t, "rina", RoleConsentRecorder)
	f.add(t, "dewi", RoleCaseworker)
	// The role needs a code; without one enrolled, no sign-in.
	if _, err := f.acc.Login("rina", pw, "", "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("not enrolled: %v", err)
	}
	if !f.acc.RequiresTOTP([]Role{RoleCaseworker, RoleConsentRecorder}) || f.acc.RequiresTOTP([]Role{RoleCaseworker}) {
		t.Fatal("RequiresTOTP")
	}
	u, err := f.acc.EnrollTOTP("rina")
	if err != nil {
		t.Fatal(err)
	}
	key, err := otp.NewKeyFromURL(u)
	if err != nil || key.Type() != "totp" || key.AccountName() != "rina@shelter" {
		t.Fatalf("otpauth url %q: %v", u, err)
	}
	if got, _ := f.acc.Get("rina"); !got.TOTP {
		t.Fatal("not shown as enrolled")
	}
	if _, err := f.acc.Login("rina", pw, "", "10.0.0.1"); !errors.Is(err, ErrNeedCode) {
		t.Fatalf("no code: %v", err)
	}
	if _, err := f.acc.Login("rina", "wrong password!", "", "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("wrong password, no code: %v", err)
	}
	now := f.clk.Now()
	wrong := codeAt(t, key.Secret(), now.Add(-5*time.Minute))
	if _, err := f.acc.Login("rina", pw, wrong, "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("wrong code: %v", err)
	}
	code := codeAt(t, key.Secret(), now)
	if _, err := f.acc.Login("rina", "wrong password!", code, "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("right code, wrong password: %v", err)
	}
	if _, err := f.acc.Login("rina", pw, code[:3]+" "+code[3:], "10.0.0.1"); err != nil {
		t.Fatalf("right code: %v", err)
	}
	if _, err := f.acc.Login("rina", pw, code, "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("the same code twice: %v", err)
	}
	f.clk.Add(30 * time.Second)
	// The step before is accepted (clock drift), but not a step already used.
	if _, err := f.acc.Login("rina", pw, code, "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("a used code in the next step: %v", err)
	}
	if _, err := f.acc.Login("rina", pw, codeAt(t, key.Secret(), f.clk.Now().Add(30*time.Second)), "10.0.0.1"); err != nil {
		t.Fatalf("the next step's code: %v", err)
	}

	// A user whose roles need no code but who enrolled one uses it.
	if _, err := f.acc.Login("dewi", pw, "", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	u2, err := f.acc.EnrollTOTP("dewi")
	if err != nil {
		t.Fatal(err)
	}
	key2, _ := otp.NewKeyFromURL(u2)
	if _, err := f.acc.Login("dewi", pw, "", "10.0.0.1"); !errors.Is(err, ErrNeedCode) {
		t.Fatalf("enrolled, no code: %v", err)
	}
	if _, err := f.acc.Login("dewi", pw, codeAt(t, key2.Secret(), f.clk.Now()), "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if n := count(f.audit(t), ActLogin, "refused", "totp-not-enrolled"); n != 1 {
		t.Fatalf("%d totp-not-enrolled refusals", n)
	}
}

func TestSessionExpiry(t *testing.T) {
	f := newFixture(t, "iom", policy.KindIOM)
	f.add(t, "ana", RoleCaseworker)

	// Idle.
	s, err := f.acc.Login("ana", pw, "", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Add(20 * time.Second)
	got, err := f.acc.Session(s.ID)
	if err != nil || !got.Seen.Equal(s.Seen) {
		t.Fatalf("seen written within the minute: %+v %v", got, err)
	}
	f.clk.Add(IdleTimeout - 20*time.Second)
	got, err = f.acc.Session(s.ID)
	if err != nil || !got.Seen.Equal(f.clk.Now()) {
		t.Fatalf("at the idle limit: %+v %v", got, err)
	}
	f.clk.Add(IdleTimeout + time.Second)
	if _, err := f.acc.Session(s.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("idle: %v", err)
	}
	f.clk.Add(-IdleTimeout) // the session was removed, not only refused
	if _, err := f.acc.Session(s.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("idle session kept: %v", err)
	}

	// Maximum age, however busy.
	s, err = f.acc.Login("ana", pw, "", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for elapsed := time.Duration(0); elapsed < MaxAge; elapsed += 20 * time.Minute {
		if _, err := f.acc.Session(s.ID); err != nil {
			t.Fatalf("after %v: %v", elapsed, err)
		}
		f.clk.Add(20 * time.Minute)
	}
	f.clk.Add(time.Second)
	if _, err := f.acc.Session(s.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("older than MaxAge: %v", err)
	}
}

func TestLogoutResetDisableEndSessions(t *testing.T) {
	f := newFixture(t, "iom", policy.KindIOM)
	f.add(t, "ana", RoleCaseworker)
	f.add(t, "budi", RoleOperator)
	login := func(name string) *Session {
		t.Helper()
		s, err := f.acc.Login(name, pw, "", "10.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1, s2, other := login("ana"), login("ana"), login("budi")
	if err := f.acc.Logout(s1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.acc.Session(s1.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after logout: %v", err)
	}
	if err := f.acc.Logout(s1.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("logout twice: %v", err)
	}
	if _, err := f.acc.Session(s2.ID); err != nil {
		t.Fatalf("the other session: %v", err)
	}
	if err := f.acc.Reset("ana", pw+"!"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.acc.Session(s2.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after reset: %v", err)
	}
	if _, err := f.acc.Session(other.ID); err != nil {
		t.Fatalf("another user's session after reset: %v", err)
	}
	if err := f.acc.Disable("budi"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.acc.Session(other.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after disable: %v", err)
	}
	if n := count(f.audit(t), ActLogout, "signed-out", ""); n != 1 {
		t.Fatalf("%d logout events", n)
	}
}

func TestStoredSecrets(t *testing.T) {
	f := newFixture(t, "iom", policy.KindIOM)
	f.add(t, "ana", RoleCaseworker)
	s, err := f.acc.Login("ana", pw, "", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	f.db.View(func(tx *store.Tx) error { keys = tx.StaffSessionKeys(); return nil })
	if len(keys) != 1 || !bytes.Equal(keys[0], sessionKey(s.ID)) || bytes.Contains(keys[0], []byte(s.ID)) {
		t.Fatalf("stored session keys: %q", keys)
	}
	f.db.Close()
	raw, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{s.ID, pw} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("the database file holds %q", secret)
		}
	}
	if !bytes.Contains(raw, []byte("$argon2id$v=19$m=64,t=1,p=1$")) {
		t.Fatal("no argon2id hash in the database file")
	}
}

func TestAuditEvents(t *testing.T) {
	f := newFixture(t, "shelter", policy.KindShelter)
	f.add(t, "rina", RoleConsentRecorder, RoleCaseworker)
	url, err := f.acc.EnrollTOTP("rina")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := otp.NewKeyFromURL(url)
	code := codeAt(t, key.Secret(), f.clk.Now())
	f.acc.Login("rina", "wrong password!", code, "10.0.0.1")
	f.acc.Login("rina", pw, "000000", "10.0.0.1")
	s, err := f.acc.Login("rina", pw, code, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f.acc.Login("not-a-user", "typed my password here", "", "10.0.0.1")
	if err := f.acc.Reset("rina", "second long password"); err != nil {
		t.Fatal(err)
	}
	if err := f.acc.Disable("rina"); err != nil {
		t.Fatal(err)
	}
	evs := f.audit(t)
	for _, want := range []struct {
		act             store.Action
		outcome, reason string
	}{
		{ActAccountAdd, "added", ""},
		{ActAccountTOTP, "enrolled", ""},
		{ActLogin, "refused", "wrong-password"},
		{ActLogin, "refused", "wrong-code"},
		{ActLogin, "signed-in", ""},
		{ActLogin, "refused", "unknown-account"},
		{ActAccountReset, "reset", ""},
		{ActAccountDisable, "disabled", ""},
	} {
		if count(evs, want.act, want.outcome, want.reason) != 1 {
			t.Errorf("no single %s %s %s event", want.act, want.outcome, want.reason)
		}
	}
	for _, e := range evs {
		if e.Action == ActLogin && e.Outcome == "signed-in" && (e.Actor != "shelter/rina" || e.Object != "rina" || e.Detail["addr"] != "10.0.0.1") {
			t.Errorf("sign-in event: %+v", e)
		}
	}
	var hash string
	f.db.View(func(tx *store.Tx) error { a, _ := tx.StaffAccount("rina"); hash = a.Hash; return nil })
	raw, _ := json.Marshal(evs)
	for _, secret := range []string{pw, "wrong password!", "typed my password here", "not-a-user", "second long password",
		code, key.Secret(), s.ID, s.CSRF, hash, "argon2id"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("audit log holds %q", secret)
		}
	}
	if _, err := f.db.VerifyAudit(); err != nil {
		t.Fatal(err)
	}
}

// TestOtherAgency: accounts live in their gateway's store; another
// gateway does not know them.
func TestOtherAgency(t *testing.T) {
	iom := newFixture(t, "iom", policy.KindIOM)
	shelter := newFixture(t, "shelter", policy.KindShelter)
	iom.add(t, "ana", RoleCaseworker)
	if _, err := shelter.acc.Login("ana", pw, "", "10.0.0.1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("iom account at the shelter: %v", err)
	}
	s, err := iom.acc.Login("ana", pw, "", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shelter.acc.Session(s.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("iom session at the shelter: %v", err)
	}
	shelter.add(t, "ana", RoleCaseworker)
	if _, err := shelter.acc.Session(s.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("iom session at the shelter with a namesake: %v", err)
	}
	if s.Principal.Agency != "iom" {
		t.Fatal(s.Principal)
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := hashPassword(pw, testParams)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := hashPassword(pw, testParams)
	if h == h2 {
		t.Fatal("same salt twice")
	}
	if !checkPassword(h, pw) || checkPassword(h, pw+"x") || checkPassword(h, "") {
		t.Fatal("checkPassword")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$", strings.Replace(h, "t=1", "t=0", 1)} {
		if checkPassword(bad, pw) {
			t.Fatalf("matched %q", bad)
		}
	}
	if _, _, _, err := parseHash(h); err != nil {
		t.Fatal(err)
	}
}
