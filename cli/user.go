package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
)

func init() {
	register(Command{
		Name:    "user",
		Summary: "manage a gateway's web app accounts (user add|list|disable|enable|reset|totp)",
		Run:     runUser,
	})
}

const userUsage = "user: usage: rujukan user add|list|disable|enable|reset|totp (--config gateway.yaml | --data DIR --agency ID) [--name NAME] [--role ROLE]... [--password-file FILE]"

// UserConfig names one gateway's store and what opening it needs: the
// agency's signing key (it signs the audit head of every change) and the
// signed directory (the agency's kind, which bounds the roles' scopes).
type UserConfig struct {
	// DB is the gateway database; Keys the agency's key folder (signing.pem).
	DB   string
	Keys string
	// Agency is the gateway's agency id; Directory and Authority find its
	// kind in the signed network directory.
	Agency    string
	Directory string
	Authority string
	// TOTPRoles are the roles that must sign in with a one-time code (the
	// gateway config's web.totp_roles).
	TOTPRoles []staff.Role
	// Argon are the hash parameters of new passwords (zero: the default).
	Argon staff.Params
	// Actor is who the changes are recorded as; empty means
	// "<agency>/cli:<login name>".
	Actor string
}

// UserConfigFromGateway takes a UserConfig from a gateway config.
func UserConfigFromGateway(gc gateway.Config) UserConfig {
	c := UserConfig{DB: filepath.Join(gc.Data, gatewayDBFile), Keys: gc.Keys, Agency: gc.Agency,
		Directory: gc.Directory, Authority: gc.Authority}
	for _, r := range gc.Web.TOTPRoles {
		c.TOTPRoles = append(c.TOTPRoles, staff.Role(r))
	}
	return c
}

// DevUserConfig returns the UserConfig of one agency's gateway in the data
// folder of `rujukan dev` (see DevGatewayConfig).
func DevUserConfig(data, agency string) (UserConfig, error) {
	if agency == "" {
		return UserConfig{}, errors.New("user: --data needs --agency")
	}
	if !crypto.ValidSlug(agency) {
		return UserConfig{}, fmt.Errorf("user: --agency %q is not an agency id", agency)
	}
	gc := DevGatewayConfig(data, agency, "")
	if _, err := os.Stat(filepath.Join(data, "network.json")); err != nil {
		return UserConfig{}, fmt.Errorf("user: %s is not a rujukan dev data folder (no network.json)", data)
	}
	if _, err := os.Stat(gc.Keys); err != nil {
		return UserConfig{}, fmt.Errorf("user: unknown agency %q: %s has no agencies/%s", agency, data, agency)
	}
	return UserConfigFromGateway(gc), nil
}

// OpenAccounts opens the gateway's store for its accounts. It fails with
// store.ErrLocked while the gateway runs. The caller closes the store.
func OpenAccounts(c UserConfig) (*staff.Accounts, *store.DB, error) {
	if c.DB == "" || c.Keys == "" || c.Agency == "" || c.Directory == "" || c.Authority == "" {
		return nil, nil, errors.New("user: give --config gateway.yaml, or --data DIR with --agency ID")
	}
	for _, r := range c.TOTPRoles {
		if !staff.ValidRole(r) {
			return nil, nil, fmt.Errorf("user: web.totp_roles: unknown role %q", r)
		}
	}
	auth, err := crypto.ParseAuthorityKey(c.Authority)
	if err != nil {
		return nil, nil, fmt.Errorf("user: authority: %w", err)
	}
	dir, err := crypto.LoadDirectory(c.Directory, auth)
	if err != nil {
		return nil, nil, fmt.Errorf("user: %w", err)
	}
	a, ok := dir.Agency(c.Agency)
	if !ok {
		return nil, nil, fmt.Errorf("user: agency %q is not in the directory %s", c.Agency, c.Directory)
	}
	key, err := crypto.LoadEd25519PrivateKey(filepath.Join(c.Keys, crypto.SigningKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("user: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.DB), 0o700); err != nil {
		return nil, nil, fmt.Errorf("user: %w", err)
	}
	signer, err := crypto.NewAuditNoteSigner(c.Agency, key)
	if err != nil {
		return nil, nil, fmt.Errorf("user: %w", err)
	}
	db, err := store.Open(c.DB, signer)
	if errors.Is(err, store.ErrLocked) {
		return nil, nil, fmt.Errorf("user: the gateway of %s is running and holds its store %s (%w); stop it first", c.Agency, c.DB, store.ErrLocked)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("user: %w", err)
	}
	actor := c.Actor
	if actor == "" {
		actor = c.Agency + "/cli"
		if u, err := user.Current(); err == nil && u.Username != "" {
			actor += ":" + u.Username
		}
	}
	return staff.New(db, c.Agency, a.Kind, staff.Options{TOTPRoles: c.TOTPRoles, Argon: c.Argon, Actor: actor}), db, nil
}

// userArgon are the hash parameters of passwords set by the user command
// (zero: the default); tests lower them.
var userArgon staff.Params

// roleFlag collects --role values, repeated or comma-separated.
type roleFlag []staff.Role

func (r *roleFlag) String() string { return fmt.Sprint(*r) }

func (r *roleFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !staff.ValidRole(staff.Role(s)) {
			return fmt.Errorf("unknown role %q (roles: caseworker, consent-recorder, investigator, operator)", s)
		}
		*r = append(*r, staff.Role(s))
	}
	return nil
}

// generatedPasswordLen is the length of a password the CLI makes up.
const generatedPasswordLen = 20

// passwordAlphabet leaves out characters easily misread (0 O 1 l I).
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// GeneratePassword returns a random password of 20 letters and digits
// (about 116 bits).
func GeneratePassword() (string, error) {
	b := make([]byte, generatedPasswordLen)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b[i] = passwordAlphabet[n.Int64()]
	}
	return string(b), nil
}

// readPasswordFile reads a password from a file: its whole content but a
// final line ending.
func readPasswordFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("user: --password-file: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, staff.MaxPassword+3))
	if err != nil {
		return "", fmt.Errorf("user: --password-file: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	if len(pw) > staff.MaxPassword {
		return "", fmt.Errorf("user: --password-file: the password is longer than %d bytes", staff.MaxPassword)
	}
	if strings.ContainsAny(pw, "\r\n") {
		return "", errors.New("user: --password-file: the file holds more than one line")
	}
	return pw, nil
}

func runUser(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 {
		return errors.New(userUsage)
	}
	sub := args[0]
	switch sub {
	case "add", "list", "disable", "enable", "reset", "totp":
	default:
		return errors.New(userUsage)
	}
	fs := newFlagSet(env, "user "+sub)
	config := fs.String("config", "", "the gateway's config file")
	data := fs.String("data", "", "the data folder of rujukan dev (with --agency)")
	agency := fs.String("agency", "", "agency id of the gateway (with --data: which gateway; with --config: must match)")
	var name string
	var roles roleFlag
	var pwFile string
	if sub != "list" {
		fs.StringVar(&name, "name", "", "account name: 1-64 characters a-z 0-9 . _ - (required)")
	}
	if sub == "add" {
		fs.Var(&roles, "role", "role: caseworker, consent-recorder, investigator, operator (repeat, or separate with commas)")
	}
	if sub == "add" || sub == "reset" {
		fs.StringVar(&pwFile, "password-file", "", "file holding the password (default: generate one and print it once)")
	}
	if err := parseFlags(fs, args[1:], false); err != nil {
		return err
	}
	var c UserConfig
	switch {
	case *config != "" && *data != "":
		return fmt.Errorf("user %s: give --config or --data, not both", sub)
	case *config != "":
		gc, err := gateway.LoadConfig(*config, env.Getenv)
		if err != nil {
			return fmt.Errorf("user %s: %w", sub, err)
		}
		if *agency != "" && *agency != gc.Agency {
			return fmt.Errorf("user %s: --agency %s, but %s is the config of %s", sub, *agency, *config, gc.Agency)
		}
		c = UserConfigFromGateway(gc)
	case *data != "":
		var err error
		if c, err = DevUserConfig(*data, *agency); err != nil {
			return err
		}
	default:
		return errors.New(userUsage)
	}
	c.Argon = userArgon
	if sub != "list" && name == "" {
		return fmt.Errorf("user %s: --name is required", sub)
	}
	if sub == "add" && len(roles) == 0 {
		return errors.New("user add: --role is required")
	}
	password, generated := "", false
	if sub == "add" || sub == "reset" {
		var err error
		if pwFile != "" {
			password, err = readPasswordFile(pwFile)
		} else {
			password, err = GeneratePassword()
			generated = true
		}
		if err != nil {
			return err
		}
	}
	accts, db, err := OpenAccounts(c)
	if err != nil {
		return err
	}
	defer db.Close()
	out := env.Stdout
	switch sub {
	case "add":
		if err := accts.Add(name, roles, password); err != nil {
			return fmt.Errorf("user add: %w", err)
		}
		fmt.Fprintf(out, "added %s at %s (roles: %s)\n", name, c.Agency, joinRoles(roles))
		if generated {
			fmt.Fprintf(out, "password (shown once): %s\n", password)
		}
		if accts.RequiresTOTP(roles) {
			url, err := accts.EnrollTOTP(name)
			if err != nil {
				return fmt.Errorf("user add: %s was added but its one-time code could not be set up (run rujukan user totp): %w", name, err)
			}
			fmt.Fprintf(out, "one-time codes are required for these roles; add this to an authenticator app (shown once):\n%s\n", url)
		}
	case "list":
		users, err := accts.List()
		if err != nil {
			return fmt.Errorf("user list: %w", err)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLES\tSTATUS\tTOTP\tCREATED")
		for _, u := range users {
			status := "active"
			switch {
			case u.Disabled:
				status = "disabled"
			case u.Locked:
				status = "locked"
			}
			totp := "no"
			if u.TOTP {
				totp = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, joinRoles(u.Roles), status, totp, u.Created.UTC().Format("2006-01-02 15:04Z"))
		}
		tw.Flush()
	case "disable":
		if err := accts.Disable(name); err != nil {
			return fmt.Errorf("user disable: %s: %w", name, err)
		}
		fmt.Fprintf(out, "disabled %s at %s; its sessions are ended\n", name, c.Agency)
	case "enable":
		if err := accts.Enable(name); err != nil {
			return fmt.Errorf("user enable: %s: %w", name, err)
		}
		fmt.Fprintf(out, "enabled %s at %s\n", name, c.Agency)
	case "reset":
		if err := accts.Reset(name, password); err != nil {
			return fmt.Errorf("user reset: %s: %w", name, err)
		}
		fmt.Fprintf(out, "new password for %s at %s; the account is unlocked and its sessions are ended\n", name, c.Agency)
		if generated {
			fmt.Fprintf(out, "password (shown once): %s\n", password)
		}
	case "totp":
		url, err := accts.EnrollTOTP(name)
		if err != nil {
			return fmt.Errorf("user totp: %s: %w", name, err)
		}
		fmt.Fprintf(out, "new one-time code secret for %s at %s (any earlier one no longer works); add this to an authenticator app (shown once):\n%s\n", name, c.Agency, url)
	}
	return nil
}

func joinRoles(roles []staff.Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}
