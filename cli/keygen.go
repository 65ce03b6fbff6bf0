package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

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
}

func runKeygen(ctx context.Context, env Env, args []string) error {
	var c KeygenConfig
	fs := newFlagSet(env, "keygen")
	fs.StringVar(&c.Agency, "agency", "", "agency id, a lowercase slug such as iom or dinsos-ntb (required)")
	fs.StringVar(&c.Kind, "kind", "", "agency kind: iom, dinsos, police, shelter, ... (required)")
	fs.StringVar(&c.Name, "name", "", "display name (default: the agency id)")
	fs.StringVar(&c.Out, "out", "", "directory to write the key files to (required)")
	fs.BoolVar(&c.Force, "force", false, "replace existing private key files")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	return Keygen(env, c)
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
