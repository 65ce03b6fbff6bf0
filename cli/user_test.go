package cli

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

var cheapArgon = staff.Params{Time: 1, Memory: 64, Threads: 1}

func init() { userArgon = cheapArgon }

// login signs in at agency's store in the dev data folder, as the web app
// would, and closes the store again.
func login(t *testing.T, data, agency, name, password string) (*staff.Session, error) {
	t.Helper()
	c, err := DevUserConfig(data, agency)
	if err != nil {
		t.Fatal(err)
	}
	accts, db, err := OpenAccounts(c)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return accts.Login(name, password, "", "127.0.0.1")
}

var shownPassword = regexp.MustCompile(`password \(shown once\): (\S+)`)

func TestUserCommand(t *testing.T) {
	data := t.TempDir()
	mustDevNetwork(t, data)
	dev := []string{"--data", data, "--agency", "shelter"}

	out, _, err := runCLI(t, append([]string{"user", "add", "--name", "rina", "--role", "caseworker,consent-recorder", "--role", "operator"}, dev...)...)
	if err != nil {
		t.Fatal(err)
	}
	m := shownPassword.FindStringSubmatch(out)
	if m == nil || len(m[1]) != generatedPasswordLen {
		t.Fatalf("no generated password in %q", out)
	}
	s, err := login(t, data, "shelter", "rina", m[1])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Roles, []staff.Role{staff.RoleCaseworker, staff.RoleConsentRecorder, staff.RoleOperator}) ||
		!slices.Equal(s.Principal.Scopes, staff.ScopesFor(s.Roles, policy.KindShelter)) {
		t.Fatalf("session %+v", s)
	}

	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("a password from a file\n"), 0o600)
	out, _, err = runCLI(t, append([]string{"user", "add", "--name", "dewi", "--role", "caseworker", "--password-file", pwFile}, dev...)...)
	if err != nil || strings.Contains(out, "a password from a file") || strings.Contains(out, "shown once") {
		t.Fatalf("add with a password file: %q %v", out, err)
	}
	if _, err := login(t, data, "shelter", "dewi", "a password from a file"); err != nil {
		t.Fatal(err)
	}

	out, _, err = runCLI(t, append([]string{"user", "list"}, dev...)...)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^dewi\s+caseworker\s+active\s+no\s`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^rina\s+caseworker,consent-recorder,operator\s+active\s+no\s`).MatchString(out) ||
		strings.Contains(out, "argon2") {
		t.Fatalf("list:\n%s", out)
	}

	if _, _, err := runCLI(t, append([]string{"user", "disable", "--name", "dewi"}, dev...)...); err != nil {
		t.Fatal(err)
	}
	if _, err := login(t, data, "shelter", "dewi", "a password from a file"); !errors.Is(err, staff.ErrBadLogin) {
		t.Fatalf("disabled: %v", err)
	}
	out, _, _ = runCLI(t, append([]string{"user", "list"}, dev...)...)
	if !regexp.MustCompile(`(?m)^dewi\s+caseworker\s+disabled\s`).MatchString(out) {
		t.Fatalf("list after disable:\n%s", out)
	}
	if _, _, err := runCLI(t, append([]string{"user", "enable", "--name", "dewi"}, dev...)...); err != nil {
		t.Fatal(err)
	}

	out, _, err = runCLI(t, append([]string{"user", "reset", "--name", "rina"}, dev...)...)
	if err != nil {
		t.Fatal(err)
	}
	m2 := shownPassword.FindStringSubmatch(out)
	if m2 == nil || m2[1] == m[1] {
		t.Fatalf("reset: %q", out)
	}
	if _, err := login(t, data, "shelter", "rina", m[1]); !errors.Is(err, staff.ErrBadLogin) {
		t.Fatalf("old password: %v", err)
	}
	if _, err := login(t, data, "shelter", "rina", m2[1]); err != nil {
		t.Fatalf("new password: %v", err)
	}

	out, _, err = runCLI(t, append([]string{"user", "totp", "--name", "rina"}, dev...)...)
	if err != nil || !strings.Contains(out, "otpauth://totp/") {
		t.Fatalf("totp: %q %v", out, err)
	}
	if _, err := login(t, data, "shelter", "rina", m2[1]); !errors.Is(err, staff.ErrNeedCode) {
		t.Fatalf("after totp: %v", err)
	}

	// An account of the shelter does not exist at IOM.
	if _, err := login(t, data, "iom", "rina", m2[1]); !errors.Is(err, staff.ErrBadLogin) {
		t.Fatalf("at iom: %v", err)
	}
}

func TestUserCommandErrors(t *testing.T) {
	data := t.TempDir()
	mustDevNetwork(t, data)
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("short\n"), 0o600)
	dev := []string{"--data", data, "--agency", "iom"}
	if _, _, err := runCLI(t, append([]string{"user", "add", "--name", "ana", "--role", "caseworker"}, dev...)...); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"user"}, "usage"},
		{[]string{"user", "remove"}, "usage"},
		{[]string{"user", "list"}, "usage"},
		{[]string{"user", "list", "--data", data}, "--data needs --agency"},
		{[]string{"user", "list", "--data", data, "--agency", "nobody"}, "unknown agency"},
		{[]string{"user", "list", "--data", t.TempDir(), "--agency", "iom"}, "not a rujukan dev data folder"},
		{[]string{"user", "list", "--data", data, "--agency", "iom", "--config", "x.yaml"}, "not both"},
		{append([]string{"user", "add", "--role", "caseworker"}, dev...), "--name is required"},
		{append([]string{"user", "add", "--name", "budi"}, dev...), "--role is required"},
		{append([]string{"user", "add", "--name", "budi", "--role", "admin"}, dev...), "unknown role"},
		{append([]string{"user", "add", "--name", "Budi", "--role", "caseworker"}, dev...), "account name"},
		{append([]string{"user", "add", "--name", "ana", "--role", "caseworker"}, dev...), staff.ErrExists.Error()},
		{append([]string{"user", "add", "--name", "budi", "--role", "caseworker", "--password-file", short}, dev...), "too short"},
		{append([]string{"user", "add", "--name", "budi", "--role", "caseworker", "--password-file", "/nonexistent"}, dev...), "--password-file"},
		{append([]string{"user", "disable", "--name", "nobody"}, dev...), staff.ErrNotFound.Error()},
		{append([]string{"user", "reset", "--name", "nobody"}, dev...), staff.ErrNotFound.Error()},
		{append([]string{"user", "totp", "--name", "nobody"}, dev...), staff.ErrNotFound.Error()},
	}
	for _, c := range cases {
		_, _, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line with %q", c.args, err, c.want)
		}
	}

	// While the gateway runs, its store is locked.
	gc := DevGatewayConfig(data, "iom", "")
	key, err := crypto.LoadEd25519PrivateKey(filepath.Join(gc.Keys, crypto.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(gc.Data, gatewayDBFile), mustAuditSigner(t, gc.Agency, key))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, _, err = runCLI(t, append([]string{"user", "list"}, dev...)...)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "running") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("locked store: %v", err)
	}
}

func TestUserCommandConfig(t *testing.T) {
	data := t.TempDir()
	mustDevNetwork(t, data)
	gc := DevGatewayConfig(data, "police", "")
	cfg := filepath.Join(t.TempDir(), "gateway.yaml")
	yaml := "agency: police\nkeys: " + gc.Keys + "\ndirectory: " + gc.Directory + "\nauthority: \"" + gc.Authority +
		"\"\ndata: " + gc.Data + "\nissuers:\n  - issuer: " + gc.Issuers[0].Issuer + "\n    jwks: " + gc.Issuers[0].JWKS +
		"\nweb:\n  totp_roles: [investigator]\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "user", "add", "--config", cfg, "--name", "budi", "--role", "investigator")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "otpauth://totp/") || !shownPassword.MatchString(out) {
		t.Fatalf("add with a role that needs codes: %q", out)
	}
	out, _, err = runCLI(t, "user", "add", "--config", cfg, "--name", "ani", "--role", "caseworker")
	if err != nil || strings.Contains(out, "otpauth://") {
		t.Fatalf("add without codes: %q %v", out, err)
	}
	out, _, err = runCLI(t, "user", "list", "--config", cfg)
	if err != nil || !regexp.MustCompile(`(?m)^budi\s+investigator\s+active\s+yes\s`).MatchString(out) {
		t.Fatalf("list:\n%s %v", out, err)
	}
	if _, _, err := runCLI(t, "user", "list", "--config", cfg, "--agency", "iom"); err == nil || !strings.Contains(err.Error(), "config of police") {
		t.Fatalf("--agency against the config: %v", err)
	}
	// Audit events of the changes name the command line as the actor.
	key, _ := crypto.LoadEd25519PrivateKey(filepath.Join(gc.Keys, crypto.SigningKeyFile))
	db, err := store.Open(filepath.Join(gc.Data, gatewayDBFile), mustAuditSigner(t, gc.Agency, key))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var evs []store.AuditEvent
	db.View(func(tx *store.Tx) error { evs, err = tx.AuditEvents(0, 100); return err })
	if len(evs) != 3 || evs[0].Action != staff.ActAccountAdd || evs[1].Action != staff.ActAccountTOTP || !strings.HasPrefix(evs[0].Actor, "police/cli") {
		t.Fatalf("audit %+v", evs)
	}
}

func TestDevAccounts(t *testing.T) {
	data := t.TempDir()
	mustDevNetwork(t, data)
	first, err := InitDevAccounts(data, cheapArgon)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(data, devAccountsFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("accounts.txt: %v %v", fi, err)
	}
	raw, _ := os.ReadFile(path)
	lines := 0
	for _, l := range strings.Split(string(raw), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			if len(strings.Fields(l)) != 4 {
				t.Fatalf("line %q", l)
			}
			lines++
		}
	}
	if lines != 12 {
		t.Fatalf("%d accounts in accounts.txt:\n%s", lines, raw)
	}
	for _, a := range DevAgencies {
		accs := first[a.ID]
		if len(accs) != 3 {
			t.Fatalf("%s: %+v", a.ID, accs)
		}
		for _, acc := range accs {
			if acc.Name != string(acc.Roles[0]) || len(acc.Password) != generatedPasswordLen {
				t.Fatalf("%s: %+v", a.ID, acc)
			}
			if len(staff.ScopesFor(acc.Roles, a.Kind)) == 0 {
				t.Errorf("%s %s: a role without scopes", a.ID, acc.Name)
			}
		}
		names := []string{accs[0].Name, accs[1].Name, accs[2].Name}
		if a.Kind == policy.KindPolice != slices.Contains(names, "investigator") {
			t.Errorf("%s: %v", a.ID, names)
		}
	}
	s, err := login(t, data, "police", "investigator", first["police"][1].Password)
	if err != nil || !slices.Contains(s.Principal.Scopes, policy.ScopeStatementRequest) {
		t.Fatalf("police investigator: %+v %v", s, err)
	}

	// A second run reuses the file and changes nothing.
	second, err := InitDevAccounts(data, cheapArgon)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range DevAgencies {
		if !slices.EqualFunc(first[a.ID], second[a.ID], func(x, y DevAccount) bool {
			return x.Name == y.Name && x.Password == y.Password && slices.Equal(x.Roles, y.Roles)
		}) {
			t.Fatalf("%s: %+v then %+v", a.ID, first[a.ID], second[a.ID])
		}
		if _, err := login(t, data, a.ID, "operator", second[a.ID][2].Password); err != nil {
			t.Fatalf("%s operator: %v", a.ID, err)
		}
	}
	if raw2, _ := os.ReadFile(path); string(raw2) != string(raw) {
		t.Fatal("accounts.txt rewritten")
	}

	// A first run that stopped before writing the file: the accounts get
	// the new passwords.
	os.Remove(path)
	third, err := InitDevAccounts(data, cheapArgon)
	if err != nil {
		t.Fatal(err)
	}
	if third["iom"][0].Password == first["iom"][0].Password {
		t.Fatal("same password twice")
	}
	if _, err := login(t, data, "iom", "caseworker", third["iom"][0].Password); err != nil {
		t.Fatal(err)
	}
}
