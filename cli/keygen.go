package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
)

func init() {
	register(Command{
		Name:    "keygen",
		Summary: "generate the keys of one agency and its directory entry",
		Run:     runKeygen,
	})
}

// KeygenConfig is the configuration of the keygen command.
type KeygenConfig struct {
	Agency string // agency id (slug)
	Kind   string // agency kind (slug)
	Name   string // display name; the id when empty
	Out    string // key directory
	Force  bool   // replace existing private keys
	// Rotate replaces the keys of Uses in an existing key folder, keeping
	// the old age identity under retired/ (crypto.RotateAgencyKeys).
	Rotate bool
	Uses   []crypto.KeyUse
}

func runKeygen(ctx context.Context, env Env, args []string) error {
	var c KeygenConfig
	fs := newFlagSet(env, "keygen")
	fs.StringVar(&c.Agency, "agency", "", "agency id, a lowercase slug such as iom or dinsos-ntb (required)")
	fs.StringVar(&c.Kind, "kind", "", "agency kind: iom, dinsos, police, shelter, ... (required)")
	fs.StringVar(&c.Name, "name", "", "display name (default: the agency id)")
	fs.StringVar(&c.Out, "out", "", "directory to write the key files to (required)")
	fs.BoolVar(&c.Force, "force", false, "replace existing private key files")
	fs.BoolVar(&c.Rotate, "rotate", false, "replace the keys in --out, keeping the old age identity for decryption (retired/)")
	use := fs.String("use", "encrypt,sign,nats", "with --rotate: which keys to replace")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if c.Rotate {
		var err error
		if c.Uses, err = parseUses(*use); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		return KeygenRotate(env, c)
	}
	return Keygen(env, c)
}

// KeygenRotate replaces an agency's keys in its key folder c.Out, keeping
// the old age identity under retired/ for decryption, and prints what to
// do next. The agency's gateway must be stopped meanwhile.
func KeygenRotate(env Env, c KeygenConfig) error {
	if c.Out == "" {
		return errors.New("keygen --rotate: --out (the agency's key folder) is required")
	}
	if c.Force {
		return errors.New("keygen: --rotate and --force do not go together: --force replaces every key without keeping the old age identity")
	}
	var nk crypto.NATSKey
	if slices.Contains(c.Uses, crypto.UseNATS) {
		var err error
		if nk, err = broker.NewNATSKey(); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
	}
	r, err := crypto.RotateAgencyKeys(c.Out, c.Uses, nk)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if (c.Agency != "" && c.Agency != r.Entry.ID) || (c.Kind != "" && c.Kind != r.Entry.Kind) {
		// Only said afterwards: the folder's own entry decides.
		fmt.Fprintf(env.Stderr, "note: %s holds agency %s (%s)\n", c.Out, r.Entry.ID, r.Entry.Kind)
	}
	fmt.Fprintf(env.Stdout, "agency %s (%s): new keys written to %s\n", r.Entry.ID, r.Entry.Kind, c.Out)
	for _, use := range []crypto.KeyUse{crypto.UseEncrypt, crypto.UseSign, crypto.UseNATS} {
		if id, ok := r.New[use]; ok {
			fmt.Fprintf(env.Stdout, "  %-8s key %s replaces %s\n", use, id, r.Replaced[use])
		}
	}
	if r.RetiredIdentity != "" {
		fmt.Fprintf(env.Stdout, "retired age identity %s kept for decryption only: %s\n", r.Replaced[crypto.UseEncrypt], r.RetiredIdentity)
	}
	fmt.Fprintf(env.Stdout, "directory entry: %s; the network authority runs: rujukan directory rotate --draft DRAFT %s\n",
		filepath.Join(c.Out, crypto.AgencyFile), filepath.Join(c.Out, crypto.AgencyFile))
	return nil
}

// Keygen writes the key files of one agency and prints where they are.
func Keygen(env Env, c KeygenConfig) error {
	if c.Agency == "" || c.Kind == "" || c.Out == "" {
		return errors.New("keygen: --agency, --kind and --out are required")
	}
	nk, err := broker.NewNATSKey()
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	a, err := crypto.WriteAgencyKeys(c.Out, c.Agency, c.Kind, c.Name, nk, c.Force)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintf(env.Stdout, "agency %s (%s): keys written to %s\n", a.ID, a.Kind, c.Out)
	for _, k := range a.Keys {
		fmt.Fprintf(env.Stdout, "  %-8s key %s\n", k.Use, k.ID)
	}
	fmt.Fprintf(env.Stdout, "directory entry: %s\n", filepath.Join(c.Out, crypto.AgencyFile))
	return nil
}
