package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"golang.org/x/mod/sumdb/note"
)

func init() {
	register(Command{
		Name:    "audit",
		Summary: "verify a gateway's Merkle audit log against its signed checkpoint (audit verify)",
		Run:     runAudit,
	})
}

// AuditVerifyConfig names the database to check and where its head key
// comes from: the agency's signing keys in the signed directory, so an
// auditor needs no private key.
type AuditVerifyConfig struct {
	DB        string
	Agency    string
	Directory string
	Authority string
}

func runAudit(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("audit: usage: rujukan audit verify (--config gateway.yaml | --data DIR --agency ID | --db FILE --agency ID --directory FILE --authority KEY)")
	}
	fs := newFlagSet(env, "audit verify")
	var c AuditVerifyConfig
	config := fs.String("config", "", "the gateway's config file: takes the other flags from it")
	data := fs.String("data", "", "the data folder of rujukan dev: with --agency, takes the other flags from it")
	fs.StringVar(&c.DB, "db", "", "the gateway database (DATA/gateway.db)")
	fs.StringVar(&c.Agency, "agency", "", "agency id of the gateway (with --data: which gateway)")
	fs.StringVar(&c.Directory, "directory", "", "signed network directory file")
	fs.StringVar(&c.Authority, "authority", "", "network authority public key: base64, or @file")
	if err := parseFlags(fs, args[1:], false); err != nil {
		return err
	}
	switch {
	case *config != "" && *data != "":
		return errors.New("audit verify: give --config or --data, not both")
	case *config != "":
		gc, err := gateway.LoadConfig(*config, env.Getenv)
		if err != nil {
			return err
		}
		c = AuditVerifyConfig{DB: filepath.Join(gc.Data, gatewayDBFile), Agency: gc.Agency, Directory: gc.Directory, Authority: gc.Authority}
	case *data != "":
		if c.DB != "" || c.Directory != "" || c.Authority != "" {
			return errors.New("audit verify: --data takes --db, --directory and --authority from the data folder; give only --agency")
		}
		var err error
		if c, err = DevAuditConfig(*data, c.Agency); err != nil {
			return err
		}
	}
	rep, err := AuditVerify(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "audit log of %s verifies: %d events, checkpoint:\n%s", c.Agency, rep.Events, rep.Checkpoint)
	return nil
}

// gatewayDBFile is the name of the gateway's database in its data folder.
const gatewayDBFile = "gateway.db"

// DevAuditConfig returns the audit verify configuration of one agency's
// gateway in the data folder of `rujukan dev` (see DevGatewayConfig): the
// database DATA/gateways/<agency>/gateway.db, the directory
// DATA/network.json and the authority key DATA/authority/authority.pub.
// It refuses an agency that has no keys or no gateway database there.
func DevAuditConfig(data, agency string) (AuditVerifyConfig, error) {
	if agency == "" {
		return AuditVerifyConfig{}, errors.New("audit verify: --data needs --agency")
	}
	if !crypto.ValidSlug(agency) {
		return AuditVerifyConfig{}, fmt.Errorf("audit verify: --agency %q is not an agency id", agency)
	}
	gc := DevGatewayConfig(data, agency, "")
	if _, err := os.Stat(filepath.Join(data, "network.json")); err != nil {
		return AuditVerifyConfig{}, fmt.Errorf("audit verify: %s is not a rujukan dev data folder (no network.json)", data)
	}
	if _, err := os.Stat(gc.Keys); err != nil {
		return AuditVerifyConfig{}, fmt.Errorf("audit verify: unknown agency %q: %s has no agencies/%s", agency, data, agency)
	}
	db := filepath.Join(gc.Data, gatewayDBFile)
	if _, err := os.Stat(db); err != nil {
		return AuditVerifyConfig{}, fmt.Errorf("audit verify: agency %s has no gateway database %s (has its gateway run?)", agency, db)
	}
	return AuditVerifyConfig{DB: db, Agency: agency, Directory: gc.Directory, Authority: gc.Authority}, nil
}

// AuditVerify checks every event of a gateway's audit log, as stored, by
// recomputing its Merkle tree, and the signed checkpoint against the
// agency's signing keys in the directory. The error names the first bad
// sequence number and what is wrong.
func AuditVerify(c AuditVerifyConfig) (store.AuditReport, error) {
	if c.DB == "" || c.Agency == "" || c.Directory == "" || c.Authority == "" {
		return store.AuditReport{}, errors.New("audit verify: --db, --agency, --directory and --authority are required (or --config, or --data with --agency)")
	}
	auth, err := crypto.ParseAuthorityKey(c.Authority)
	if err != nil {
		return store.AuditReport{}, fmt.Errorf("audit verify: --authority: %w", err)
	}
	dir, err := crypto.LoadDirectory(c.Directory, auth)
	if err != nil {
		return store.AuditReport{}, fmt.Errorf("audit verify: %w", err)
	}
	a, ok := dir.Agency(c.Agency)
	if !ok {
		return store.AuditReport{}, fmt.Errorf("audit verify: agency %q is not in the directory", c.Agency)
	}
	db, err := store.OpenReadOnly(c.DB)
	if errors.Is(err, store.ErrLocked) {
		return store.AuditReport{}, fmt.Errorf("audit verify: the gateway of %s is running (%w: %s); stop it first, or ask it: GET /v1/audit/verify", c.Agency, store.ErrLocked, c.DB)
	}
	if err != nil {
		return store.AuditReport{}, fmt.Errorf("audit verify: %w", err)
	}
	defer db.Close()
	// The checkpoint is signed with the agency's signing key; after a
	// rotation an older key may have signed it, so each key of the agency
	// is known to the verifier.
	var known []note.Verifier
	for _, k := range a.Keys {
		if k.Use != crypto.UseSign {
			continue
		}
		pub, err := crypto.ParseSigningPublicKey(k.Public)
		if err != nil {
			continue
		}
		v, err := crypto.AuditNoteVerifier(c.Agency, pub)
		if err != nil {
			continue
		}
		known = append(known, v)
	}
	if len(known) == 0 {
		return store.AuditReport{}, fmt.Errorf("audit verify: %s: the agency has no signing key in the directory", c.DB)
	}
	rep, err := db.VerifyAuditWith(note.VerifierList(known...))
	if err != nil {
		return rep, fmt.Errorf("audit verify: %s: %w", c.DB, err)
	}
	return rep, nil
}
