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
  rotate  --draft DRAFT AGENCY.json...   (new keys for agencies already in it)
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
		draft := fs.String("draft", "", "draft directory file (required)")
		if err := parseFlags(fs, args, true); err != nil {
			return err
		}
		return DirectoryRotate(env, *draft, fs.Args())
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

// DirectoryRotate replaces the keys of agencies already in a draft with
// those of new entries for them, revoking (and keeping) the old ones, and
// prints what changed.
func DirectoryRotate(env Env, draft string, entries []string) error {
	if draft == "" || len(entries) == 0 {
		return errors.New("directory rotate: --draft and at least one AGENCY.json are required")
	}
	d, err := readDraft(draft)
	if err != nil {
		return fmt.Errorf("directory rotate: %w", err)
	}
	for _, p := range entries {
		a, err := readAgencyEntry(p)
		if err != nil {
			return fmt.Errorf("directory rotate: %w", err)
		}
		before := map[string]crypto.Status{}
		if cur, ok := d.Agency(a.ID); ok {
			for _, k := range cur.Keys {
				before[k.ID] = k.Status
			}
		}
		if err := d.Rotate(*a); err != nil {
			return fmt.Errorf("directory rotate: %s: %w", p, err)
		}
		cur, _ := d.Agency(a.ID)
		for _, k := range cur.Keys {
			switch old, had := before[k.ID]; {
			case !had:
				fmt.Fprintf(env.Stdout, "%s: new %s key %s\n", a.ID, k.Use, k.ID)
			case old != k.Status:
				fmt.Fprintf(env.Stdout, "%s: %s key %s is now %s\n", a.ID, k.Use, k.ID, k.Status)
			}
		}
	}
	if err := writeDraft(draft, d); err != nil {
		return fmt.Errorf("directory rotate: %w", err)
	}
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
		fmt.Fprintf(env.Stdout, "revoked agency %s\n", agency)
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
