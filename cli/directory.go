package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// defaultRules are the network rules of a new draft.
var defaultRules json.RawMessage = policy.DefaultRulesJSON()

func init() {
	register(Command{
		Name:    "directory",
		Summary: "create, edit, sign and verify the network directory (init|add|rotate|revoke|sign|verify)",
		Run:     runDirectory,
	})
}

const directoryUsage = `usage: rujukan directory SUBCOMMAND [flags]

  init    --out DRAFT --authority-key authority.pem [--network NAME]
  add     --draft DRAFT AGENCY.json...
  revoke  --draft DRAFT --agency ID [--key KID]
  rotate  --draft DRAFT [--retire-for 720h] AGENCY.json...   (new keys for agencies already in it)
          --draft DRAFT [--retire-for 720h] --keys KEYDIR [--use encrypt,sign,nats]
                                        (also make the new keys in the agency's key folder)
  sign    --draft DRAFT --authority-key authority.pem --out network.json
  verify  --authority PUB|@file network.json`

func runDirectory(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(env.Stderr, directoryUsage)
		return ErrUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet(env, "directory "+sub)
	switch sub {
	case "init":
		out := fs.String("out", "", "draft directory file to create (required)")
		key := fs.String("authority-key", "", "authority private key (PKCS#8 PEM); created with a .pub next to it if missing (required)")
		network := fs.String("network", crypto.DefaultNetwork, "network name")
		if err := parseFlags(fs, args, false); err != nil {
			return err
		}
		return DirectoryInit(env, *out, *key, *network)
	case "add":
		draft := fs.String("draft", "", "draft directory file (required)")
		if err := parseFlags(fs, args, true); err != nil {
			return err
		}
		return DirectoryAdd(env, *draft, fs.Args())
	case "rotate":
		var c RotateConfig
		fs.StringVar(&c.Draft, "draft", "", "draft directory file (required)")
		fs.DurationVar(&c.RetireFor, "retire-for", DefaultRetireFor,
			"how long envelopes sealed to or signed with a replaced key are still accepted; 0 revokes the replaced keys at once")
		fs.Var((*listFlag)(&c.KeyDirs), "keys", "an agency's key folder: make its new keys there first (repeatable)")
		use := fs.String("use", "encrypt,sign,nats", "with --keys: which keys to replace")
		if err := parseFlags(fs, args, true); err != nil {
			return err
		}
		c.Entries = fs.Args()
		var err error
		if c.Uses, err = parseUses(*use); err != nil {
			return fmt.Errorf("directory rotate: %w", err)
		}
		return DirectoryRotate(env, c, time.Now())
	case "revoke":
		draft := fs.String("draft", "", "draft directory file (required)")
		agency := fs.String("agency", "", "agency id (required)")
		key := fs.String("key", "", "key id to revoke (default: revoke the whole agency)")
		if err := parseFlags(fs, args, false); err != nil {
			return err
		}
		return DirectoryRevoke(env, *draft, *agency, *key)
	case "sign":
		draft := fs.String("draft", "", "draft directory file (required)")
		key := fs.String("authority-key", "", "authority private key (PKCS#8 PEM) (required)")
		out := fs.String("out", "", "signed directory file to write (required)")
		if err := parseFlags(fs, args, false); err != nil {
			return err
		}
		return DirectorySign(env, *draft, *key, *out, time.Now())
	case "verify":
		auth := fs.String("authority", "", "authority public key: standard base64, or @file (required)")
		if err := parseFlags(fs, args, true); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("directory verify: give exactly one signed directory file")
		}
		return DirectoryVerify(env, *auth, fs.Arg(0))
	default:
		fmt.Fprintln(env.Stderr, directoryUsage)
		return fmt.Errorf("directory: unknown subcommand %q", sub)
	}
}

// DirectoryInit writes a new draft directory at out, and creates the
// authority key pair (keyPath, and keyPath with .pub for .pem) if keyPath
// does not exist.
func DirectoryInit(env Env, out, keyPath, network string) error {
	if out == "" || keyPath == "" {
		return errors.New("directory init: --out and --authority-key are required")
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("directory init: %s already exists", out)
	}
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		pubPath := authorityPubPath(keyPath)
		pub, err := crypto.GenerateAuthorityKey(keyPath, pubPath)
		if err != nil {
			return fmt.Errorf("directory init: %w", err)
		}
		fmt.Fprintf(env.Stdout, "authority key created: %s (public key %s, id %s)\n", keyPath, pubPath, crypto.AuthorityKeyID(pub))
	} else if err != nil {
		return fmt.Errorf("directory init: %w", err)
	} else if _, err := crypto.LoadEd25519PrivateKey(keyPath); err != nil {
		return fmt.Errorf("directory init: %w", err)
	}
	d := crypto.NewDirectory(network, defaultRules)
	if err := writeDraft(out, d); err != nil {
		return fmt.Errorf("directory init: %w", err)
	}
	fmt.Fprintf(env.Stdout, "draft written: %s\n", out)
	return nil
}

func authorityPubPath(keyPath string) string {
	return strings.TrimSuffix(keyPath, filepath.Ext(keyPath)) + ".pub"
}

// DirectoryAdd adds new agency entries (agency.json files) to a draft. An
// agency already in it is refused: DirectoryRotate replaces keys.
func DirectoryAdd(env Env, draft string, entries []string) error {
	if draft == "" || len(entries) == 0 {
		return errors.New("directory add: --draft and at least one AGENCY.json are required")
	}
	d, err := readDraft(draft)
	if err != nil {
		return fmt.Errorf("directory add: %w", err)
	}
	for _, p := range entries {
		a, err := readAgencyEntry(p)
		if err != nil {
			return fmt.Errorf("directory add: %w", err)
		}
		if err := d.Add(*a); err != nil {
			return fmt.Errorf("directory add: %s: %w", p, err)
		}
		fmt.Fprintf(env.Stdout, "added %s (%s)\n", a.ID, a.Kind)
	}
	if err := writeDraft(draft, d); err != nil {
		return fmt.Errorf("directory add: %w", err)
	}
	return nil
}

// DefaultRetireFor is how long a rotation keeps the replaced encryption and
// signing keys acceptable for new arrivals: the broker's default MaxAge and
// the gateways' default delivery deadline, so that whatever was sealed or
// signed before the rotation and is still deliverable is accepted.
const DefaultRetireFor = 720 * time.Hour

// RotateConfig is the configuration of `directory rotate`.
type RotateConfig struct {
	Draft string
	// Entries are new agency entries (agency.json) for agencies in the
	// draft.
	Entries []string
	// KeyDirs are agencies' key folders whose keys of Uses are replaced
	// first (crypto.RotateAgencyKeys); their agency.json is then applied.
	KeyDirs []string
	Uses    []crypto.KeyUse
	// RetireFor is how long replaced encryption and signing keys stay
	// acceptable for new arrivals (their not_after); zero revokes them.
	RetireFor time.Duration
}

// DirectoryRotate replaces the keys of agencies already in a draft with
// those of new entries for them, keeping the old ones (retired until
// now+RetireFor, or revoked), and prints which keys are active, which are
// retired (and where a retired age identity's private key stays) and which
// are revoked. With KeyDirs it first makes the new keys in each agency's key
// folder; the folder must match the draft, and the agency's gateway must be
// stopped until the signed directory is in force.
func DirectoryRotate(env Env, c RotateConfig, now time.Time) error {
	if c.Draft == "" || len(c.Entries)+len(c.KeyDirs) == 0 {
		return errors.New("directory rotate: --draft and at least one AGENCY.json or --keys KEYDIR are required")
	}
	if c.RetireFor < 0 {
		return errors.New("directory rotate: --retire-for must not be negative")
	}
	d, err := readDraft(c.Draft)
	if err != nil {
		return fmt.Errorf("directory rotate: %w", err)
	}
	var until time.Time
	if c.RetireFor > 0 {
		until = now.Add(c.RetireFor)
	}
	type job struct {
		path    string // agency.json
		keyDir  string // the agency's key folder, when known
		rotated *crypto.RotatedKeys
	}
	var jobs []job
	for _, p := range c.Entries {
		jobs = append(jobs, job{path: p, keyDir: filepath.Dir(p)})
	}
	// Check every key folder against the draft before changing any.
	for _, kd := range c.KeyDirs {
		p := filepath.Join(kd, crypto.AgencyFile)
		a, err := readAgencyEntry(p)
		if err != nil {
			return fmt.Errorf("directory rotate: %w", err)
		}
		if err := inSync(d, a); err != nil {
			return fmt.Errorf("directory rotate: %s: %w", kd, err)
		}
	}
	for _, kd := range c.KeyDirs {
		var nk crypto.NATSKey
		if slices.Contains(c.Uses, crypto.UseNATS) {
			if nk, err = broker.NewNATSKey(); err != nil {
				return fmt.Errorf("directory rotate: %w", err)
			}
		}
		r, err := crypto.RotateAgencyKeys(kd, c.Uses, nk)
		if err != nil {
			return fmt.Errorf("directory rotate: %s: %w", kd, err)
		}
		fmt.Fprintf(env.Stdout, "%s: new keys written to %s; keep its gateway stopped until the signed directory is in force at the broker and the other gateways, then start it\n", r.Entry.ID, kd)
		jobs = append(jobs, job{path: filepath.Join(kd, crypto.AgencyFile), keyDir: kd, rotated: r})
	}
	for _, j := range jobs {
		a, err := readAgencyEntry(j.path)
		if err != nil {
			return fmt.Errorf("directory rotate: %w", err)
		}
		before := map[string]crypto.Status{}
		if cur, ok := d.Agency(a.ID); ok {
			for _, k := range cur.Keys {
				before[k.ID] = k.Status
			}
		}
		if err := d.Rotate(*a, until); err != nil {
			return fmt.Errorf("directory rotate: %s: %w", j.path, err)
		}
		cur, _ := d.Agency(a.ID)
		printKeys(env, cur, before, j.keyDir)
	}
	if err := writeDraft(c.Draft, d); err != nil {
		return fmt.Errorf("directory rotate: %w", err)
	}
	fmt.Fprintf(env.Stdout, "draft updated: %s; next: rujukan directory sign, then reload the broker and every gateway before starting the rotated gateways\n", c.Draft)
	return nil
}

// inSync checks that an agency's key folder holds the keys the draft lists
// as active, so that a rotation retires the right ones.
func inSync(d *crypto.Directory, a *crypto.Agency) error {
	cur, ok := d.Agency(a.ID)
	switch {
	case !ok:
		return fmt.Errorf("agency %q: %w", a.ID, crypto.ErrNotInDirectory)
	case cur.Status != crypto.StatusActive:
		return fmt.Errorf("%w: %s", crypto.ErrAgencyRevoked, a.ID)
	case cur.Kind != a.Kind:
		return fmt.Errorf("%w: %s is %s, the key folder says %s", crypto.ErrKindChange, a.ID, cur.Kind, a.Kind)
	}
	for _, use := range []crypto.KeyUse{crypto.UseEncrypt, crypto.UseSign, crypto.UseNATS} {
		want, _ := cur.ActiveKey(use)
		got, _ := a.ActiveKey(use)
		if want == nil || got == nil || want.ID != got.ID {
			return fmt.Errorf("the key folder's %s key is not the active one the draft lists for %s; refusing to rotate keys out of step", use, a.ID)
		}
	}
	return nil
}

// printKeys says, for one agency after a rotation, which keys are active,
// which are retired (with how long they are accepted and, for encryption
// keys, where their private key stays) and which are revoked.
func printKeys(env Env, a *crypto.Agency, before map[string]crypto.Status, keyDir string) {
	mark := func(k crypto.PublicKey) string {
		if old, had := before[k.ID]; !had {
			return " (new)"
		} else if old != k.Status {
			return " (was " + string(old) + ")"
		}
		return ""
	}
	var active []string
	for _, k := range a.Keys {
		if k.Status == crypto.StatusActive {
			active = append(active, fmt.Sprintf("%s %s%s", k.Use, k.ID, mark(k)))
		}
	}
	fmt.Fprintf(env.Stdout, "%s: active: %s\n", a.ID, strings.Join(active, ", "))
	for _, k := range a.Keys {
		until := k.NotAfter.UTC().Format(time.RFC3339)
		where := crypto.RetiredIdentityPath(keyDir, k.ID)
		if _, err := os.Stat(where); err != nil {
			where = filepath.Join("<"+a.ID+"'s key folder>", crypto.RetiredDir, "age-"+k.ID+".key")
		}
		switch {
		case k.Status == crypto.StatusRetired && k.Use == crypto.UseEncrypt:
			fmt.Fprintf(env.Stdout, "%s: retired for decryption: encrypt %s%s, new arrivals sealed to it accepted until %s; "+
				"its private key stays in %s, where the gateway keeps it to open them and what its inbox already holds\n",
				a.ID, k.ID, mark(k), until, where)
		case k.Status == crypto.StatusRetired:
			fmt.Fprintf(env.Stdout, "%s: retired: %s %s%s, envelopes signed with it accepted until %s; what it signed before still verifies\n",
				a.ID, k.Use, k.ID, mark(k), until)
		case k.Status == crypto.StatusRevoked && mark(k) != "":
			what := "the broker refuses its login and closes its connections from its next reload"
			switch k.Use {
			case crypto.UseSign:
				what = "envelopes signed with it are refused from the next reload; what it signed before still verifies"
			case crypto.UseEncrypt:
				what = "envelopes sealed to it are refused from the next reload; its private key, kept in " + where +
					", still opens what the inbox already holds"
			}
			fmt.Fprintf(env.Stdout, "%s: revoked: %s %s%s, %s\n", a.ID, k.Use, k.ID, mark(k), what)
		}
	}
}

// parseUses parses a comma-separated list of key uses.
func parseUses(s string) ([]crypto.KeyUse, error) {
	var uses []crypto.KeyUse
	for _, f := range strings.Split(s, ",") {
		u := crypto.KeyUse(strings.TrimSpace(f))
		if u != crypto.UseEncrypt && u != crypto.UseSign && u != crypto.UseNATS {
			return nil, fmt.Errorf("--use: %q is not a key use (encrypt, sign, nats)", f)
		}
		if !slices.Contains(uses, u) {
			uses = append(uses, u)
		}
	}
	return uses, nil
}

// listFlag is a flag that may be given more than once.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	*l = append(*l, v)
	return nil
}

// DirectoryRevoke marks an agency, or one of its keys, revoked in a draft.
func DirectoryRevoke(env Env, draft, agency, key string) error {
	if draft == "" || agency == "" {
		return errors.New("directory revoke: --draft and --agency are required")
	}
	d, err := readDraft(draft)
	if err != nil {
		return fmt.Errorf("directory revoke: %w", err)
	}
	if err := d.Revoke(agency, key); err != nil {
		return fmt.Errorf("directory revoke: %w", err)
	}
	if err := writeDraft(draft, d); err != nil {
		return fmt.Errorf("directory revoke: %w", err)
	}
	if key == "" {
		fmt.Fprintf(env.Stdout, "revoked agency %s: once the signed directory is reloaded, the broker closes its connections "+
			"and refuses its login, and every gateway refuses its envelopes, those still waiting in an inbox included\n", agency)
	} else {
		fmt.Fprintf(env.Stdout, "revoked key %s of agency %s\n", key, agency)
	}
	return nil
}

// DirectorySign signs a draft with the authority key and writes it to out.
// The new version is one above both the draft and the directory already at
// out (verified with the same authority), so a signed directory never goes
// backwards; the draft is updated to the signed version.
func DirectorySign(env Env, draft, keyPath, out string, now time.Time) error {
	if draft == "" || keyPath == "" || out == "" {
		return errors.New("directory sign: --draft, --authority-key and --out are required")
	}
	key, err := crypto.LoadEd25519PrivateKey(keyPath)
	if err != nil {
		return fmt.Errorf("directory sign: %w", err)
	}
	d, err := readDraft(draft)
	if err != nil {
		return fmt.Errorf("directory sign: %w", err)
	}
	next := d.Version + 1
	if _, err := os.Stat(out); err == nil {
		cur, err := crypto.LoadDirectory(out, key.Public().(ed25519.PublicKey))
		if err != nil {
			return fmt.Errorf("directory sign: the existing signed directory does not verify, refusing to replace it: %w", err)
		}
		if cur.Version >= next {
			next = cur.Version + 1
		}
	}
	d.Version = next
	d.IssuedAt = now.UTC().Truncate(time.Second)
	signed, err := crypto.SignDirectory(d, key)
	if err != nil {
		return fmt.Errorf("directory sign: %w", err)
	}
	if err := writePublicFile(out, signed); err != nil {
		return fmt.Errorf("directory sign: %w", err)
	}
	if err := writeDraft(draft, d); err != nil {
		return fmt.Errorf("directory sign: %w", err)
	}
	fmt.Fprintf(env.Stdout, "signed directory version %d with %d agencies: %s\n", d.Version, len(d.Agencies), out)
	return nil
}

// DirectoryVerify verifies a signed directory against the authority public
// key and prints its version and agencies.
func DirectoryVerify(env Env, authority, path string) error {
	if authority == "" {
		return errors.New("directory verify: --authority is required")
	}
	pub, err := crypto.ParseAuthorityKey(authority)
	if err != nil {
		return fmt.Errorf("directory verify: %w", err)
	}
	d, err := crypto.LoadDirectory(path, pub)
	if err == nil {
		err = broker.CheckDirectory(d)
	}
	if err != nil {
		return fmt.Errorf("directory verify: %w", err)
	}
	fmt.Fprintf(env.Stdout, "directory %s: network %s, version %d, issued %s, signed by authority %s\n",
		path, d.Network, d.Version, d.IssuedAt.Format(time.RFC3339), crypto.AuthorityKeyID(pub))
	for _, a := range d.Agencies {
		fmt.Fprintf(env.Stdout, "  %-20s %-10s %-8s %s\n", a.ID, a.Kind, a.Status, a.Name)
		for _, k := range a.Keys {
			if k.Status == crypto.StatusRetired {
				fmt.Fprintf(env.Stdout, "    %-8s %s %s until %s\n", k.Use, k.ID, k.Status, k.NotAfter.UTC().Format(time.RFC3339))
				continue
			}
			fmt.Fprintf(env.Stdout, "    %-8s %s %s\n", k.Use, k.ID, k.Status)
		}
	}
	return nil
}

func readDraft(path string) (*crypto.Directory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, crypto.MaxDirectorySize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	d, err := crypto.ParseDraft(b)
	if err == nil {
		err = broker.CheckDirectory(d)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// readAgencyEntry reads an agency entry (agency.json) and checks its NATS
// key with the broker's nkey parser, which crypto does not have.
func readAgencyEntry(path string) (*crypto.Agency, error) {
	a, err := crypto.ReadAgencyFile(path)
	if err != nil {
		return nil, err
	}
	if err := broker.CheckAgency(a); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

func writeDraft(path string, d *crypto.Directory) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if err := broker.CheckDirectory(d); err != nil {
		return err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode draft: %w", err)
	}
	return writePublicFile(path, append(b, '\n'))
}

// writePublicFile replaces a file atomically (temporary file and rename).
func writePublicFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return nil
}
