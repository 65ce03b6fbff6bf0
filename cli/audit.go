package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	// WitnessDBs are other gateways' databases (by name), read while
	// their gateways are stopped: the log must extend the checkpoint of it
	// each one holds. OptionalWitnesses skips one that cannot be read
	// (its gateway running) with a note instead of failing.
	WitnessDBs        map[string]string
	OptionalWitnesses bool
	// WitnessURL and WitnessToken ask a running witness gateway
	// (GET /v1/audit/witnesses, audit:read there).
	WitnessURL, WitnessToken string
}

func runAudit(ctx context.Context, env Env, args []string) error {
	const usage = "audit: usage: rujukan audit verify (--config gateway.yaml | --data DIR --agency ID | --db FILE --agency ID --directory FILE --authority KEY) [--export FILE | --url URL --token T] [--witness-db FILE]... [--witness-url URL --witness-token T]"
	if len(args) == 0 || args[0] != "verify" {
		return errors.New(usage)
	}
	fs := newFlagSet(env, "audit verify")
	var c AuditVerifyConfig
	config := fs.String("config", "", "the gateway's config file: takes the other flags from it")
	data := fs.String("data", "", "the data folder of rujukan dev: with --agency, takes the other flags from it")
	fs.StringVar(&c.DB, "db", "", "the gateway database (DATA/gateway.db)")
	fs.StringVar(&c.Agency, "agency", "", "agency id of the gateway (with --data: which gateway)")
	fs.StringVar(&c.Directory, "directory", "", "signed network directory file")
	fs.StringVar(&c.Authority, "authority", "", "network authority public key: base64, or @file")
	export := fs.String("export", "", "verify an audit export file (GET /v1/audit/export) instead of a database")
	url := fs.String("url", "", "ask a running gateway at this base URL instead of reading its database")
	token := fs.String("token", "", "with --url: a bearer token with audit:read")
	witnessDBs := map[string]string{}
	fs.Func("witness-db", "another gateway's database, its gateway stopped: the log must extend the checkpoint of it that gateway witnessed (repeat for more; with --data, every other gateway of the folder is consulted)", func(v string) error {
		witnessDBs[v] = v
		return nil
	})
	witnessURL := fs.String("witness-url", "", "a running witness gateway: the log must extend the checkpoint of it that gateway witnessed")
	witnessToken := fs.String("witness-token", "", "with --witness-url: a bearer token of that gateway with audit:read")
	if err := parseFlags(fs, args[1:], false); err != nil {
		return err
	}
	switch {
	case *export != "" && *url != "":
		return errors.New("audit verify: give --export or --url, not both")
	case (*export != "" || *url != "") && c.DB != "":
		return errors.New("audit verify: --db is for a stopped gateway's database; --export and --url need no database")
	case *url == "" && *token != "":
		return errors.New("audit verify: --token goes with --url")
	}
	needDB := *export == "" && *url == ""
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
		if c, err = devAuditConfig(*data, c.Agency, needDB); err != nil {
			return err
		}
	}
	if *export != "" && (len(witnessDBs) > 0 || *witnessURL != "") {
		return errors.New("audit verify: an export is checked against its own checkpoint; witnesses are for --db, --data, --config and --url")
	}
	if *witnessToken != "" && *witnessURL == "" {
		return errors.New("audit verify: --witness-token goes with --witness-url")
	}
	if len(witnessDBs) > 0 || c.WitnessDBs == nil {
		c.WitnessDBs, c.OptionalWitnesses = witnessDBs, false
	}
	c.WitnessURL, c.WitnessToken = *witnessURL, *witnessToken
	printWitnessed := func(lines []string) {
		for _, l := range lines {
			fmt.Fprintln(env.Stdout, l)
		}
	}
	switch {
	case *export != "":
		rep, err := AuditVerifyExport(c, *export)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "audit export of %s verifies: %d events in the checkpoint's tree of %d, checkpoint:\n%s", c.Agency, rep.Events, rep.Size, rep.Checkpoint)
	case *url != "":
		rep, err := AuditVerifyURL(ctx, c, *url, *token)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "audit log of %s verifies (gateway at %s): %d events, checkpoint:\n%s", c.Agency, *url, rep.Events, rep.Checkpoint)
		printWitnessed(rep.Witnessed)
	default:
		rep, err := AuditVerify(c)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "audit log of %s verifies: %d events, checkpoint:\n%s", c.Agency, rep.Events, rep.Checkpoint)
		printWitnessed(rep.Witnessed)
	}
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
	return devAuditConfig(data, agency, true)
}

// devAuditConfig is DevAuditConfig; without needDB it leaves the database
// out (to verify an export or a running gateway).
func devAuditConfig(data, agency string, needDB bool) (AuditVerifyConfig, error) {
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
	if !needDB {
		return AuditVerifyConfig{Agency: agency, Directory: gc.Directory, Authority: gc.Authority}, nil
	}
	if _, err := os.Stat(db); err != nil {
		return AuditVerifyConfig{}, fmt.Errorf("audit verify: agency %s has no gateway database %s (has its gateway run?)", agency, db)
	}
	return AuditVerifyConfig{DB: db, Agency: agency, Directory: gc.Directory, Authority: gc.Authority,
		WitnessDBs: witnessDBs(data, agency), OptionalWitnesses: true}, nil
}

// AuditVerify checks every event of a gateway's audit log, as stored, by
// recomputing its Merkle tree, and the signed checkpoint against the
// agency's signing keys in the directory; then that the log extends the
// checkpoint of it each witness holds (a log rolled back to an older copy
// verifies on its own). The error names the first bad sequence number and
// what is wrong.
func AuditVerify(c AuditVerifyConfig) (AuditResult, error) {
	if c.DB == "" || c.Agency == "" || c.Directory == "" || c.Authority == "" {
		return AuditResult{}, errors.New("audit verify: --db, --agency, --directory and --authority are required (or --config, or --data with --agency)")
	}
	known, err := agencyCheckpointKeys(c)
	if err != nil {
		return AuditResult{}, err
	}
	hs, notes, err := held(context.Background(), c, known)
	if err != nil {
		return AuditResult{}, err
	}
	db, err := store.OpenReadOnly(c.DB)
	if errors.Is(err, store.ErrLocked) {
		return AuditResult{}, fmt.Errorf("audit verify: the gateway of %s is running (%w: %s); stop it first, or ask it: --url URL --token T", c.Agency, store.ErrLocked, c.DB)
	}
	if err != nil {
		return AuditResult{}, fmt.Errorf("audit verify: %w", err)
	}
	defer db.Close()
	rep, err := db.VerifyAuditWith(known)
	if err != nil {
		return AuditResult{AuditReport: rep}, fmt.Errorf("audit verify: %s: %w", c.DB, err)
	}
	if err := checkHeldDB(db, hs); err != nil {
		return AuditResult{AuditReport: rep}, fmt.Errorf("audit verify: %s: %w", c.DB, err)
	}
	return AuditResult{AuditReport: rep, Witnessed: witnessLines(hs, notes)}, nil
}

func witnessLines(hs []heldCheckpoint, notes []string) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.line())
	}
	out = append(out, notes...)
	if len(hs) == 0 {
		out = append(out, "no witness checkpoint was consulted: a rollback of the whole log to an older copy would not show (give --witness-db or --witness-url)")
	}
	return out
}

// agencyCheckpointKeys returns the verifiers of the agency's checkpoints:
// its signing keys in the signed directory. After a rotation an older key
// may have signed a checkpoint, so each signing key of the agency is known.
func agencyCheckpointKeys(c AuditVerifyConfig) (note.Verifiers, error) {
	if c.Agency == "" || c.Directory == "" || c.Authority == "" {
		return nil, errors.New("audit verify: --agency, --directory and --authority are required (or --config, or --data with --agency)")
	}
	auth, err := crypto.ParseAuthorityKey(c.Authority)
	if err != nil {
		return nil, fmt.Errorf("audit verify: --authority: %w", err)
	}
	dir, err := crypto.LoadDirectory(c.Directory, auth)
	if err != nil {
		return nil, fmt.Errorf("audit verify: %w", err)
	}
	a, ok := dir.Agency(c.Agency)
	if !ok {
		return nil, fmt.Errorf("audit verify: agency %q is not in the directory", c.Agency)
	}
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
		return nil, fmt.Errorf("audit verify: agency %s has no signing key in the directory", c.Agency)
	}
	return note.VerifierList(known...), nil
}

// AuditVerifyExport checks an audit export (GET /v1/audit/export): the
// checkpoint's signature with the agency's keys in the directory and every
// event's inclusion in its tree. The error names the first bad sequence
// number.
func AuditVerifyExport(c AuditVerifyConfig, file string) (store.ExportReport, error) {
	known, err := agencyCheckpointKeys(c)
	if err != nil {
		return store.ExportReport{}, err
	}
	f, err := os.Open(file)
	if err != nil {
		return store.ExportReport{}, fmt.Errorf("audit verify: %w", err)
	}
	defer f.Close()
	rep, err := store.VerifyExport(f, known)
	if err != nil {
		return rep, fmt.Errorf("audit verify: %s: %w", file, err)
	}
	return rep, nil
}

// AuditVerifyURL asks a running gateway to verify its log (GET
// /v1/audit/verify) and for its checkpoint (GET /v1/audit/checkpoint), and
// checks both checkpoints' signatures here with the agency's keys in the
// directory: a gateway cannot vouch for itself with a key of its own. Then
// it checks, with consistency proofs from the gateway, that the log
// extends the checkpoint of it each witness holds.
func AuditVerifyURL(ctx context.Context, c AuditVerifyConfig, base, token string) (AuditResult, error) {
	known, err := agencyCheckpointKeys(c)
	if err != nil {
		return AuditResult{}, err
	}
	hs, notes, err := held(ctx, c, known)
	if err != nil {
		return AuditResult{}, err
	}
	base = strings.TrimSuffix(base, "/")
	rep, latest, err := auditVerifyURL(ctx, known, base, token)
	if err != nil {
		return AuditResult{AuditReport: rep}, err
	}
	if err := checkHeldURL(ctx, base, token, latest, hs); err != nil {
		return AuditResult{AuditReport: rep}, err
	}
	return AuditResult{AuditReport: rep, Witnessed: witnessLines(hs, notes)}, nil
}

// auditVerifyURL asks the gateway to verify its log and checks what it
// answers; it returns the latest checkpoint, opened.
func auditVerifyURL(ctx context.Context, known note.Verifiers, base, token string) (store.AuditReport, store.Checkpoint, error) {
	if token == "" {
		return store.AuditReport{}, store.Checkpoint{}, errors.New("audit verify: --url needs --token (a token with audit:read)")
	}
	var v gateway.AuditVerification
	if err := getAuditJSON(ctx, base+"/v1/audit/verify", token, &v); err != nil {
		return store.AuditReport{}, store.Checkpoint{}, err
	}
	if !v.OK {
		return store.AuditReport{Events: v.Events}, store.Checkpoint{}, fmt.Errorf("audit verify: %s: %w: %s", base, store.ErrAuditBroken, strings.TrimPrefix(v.Error, store.ErrAuditBroken.Error()+": "))
	}
	var cp gateway.AuditCheckpoint
	if err := getAuditJSON(ctx, base+"/v1/audit/checkpoint", token, &cp); err != nil {
		return store.AuditReport{}, store.Checkpoint{}, err
	}
	verified, err := store.OpenCheckpoint([]byte(v.Checkpoint), known)
	if err != nil {
		return store.AuditReport{}, store.Checkpoint{}, fmt.Errorf("audit verify: %s: %w: the checkpoint the gateway verified is not signed by the agency's key: %v", base, store.ErrAuditBroken, err)
	}
	latest, err := store.OpenCheckpoint([]byte(cp.Checkpoint), known)
	if err != nil {
		return store.AuditReport{}, store.Checkpoint{}, fmt.Errorf("audit verify: %s: %w: the checkpoint is not signed by the agency's key: %v", base, store.ErrAuditBroken, err)
	}
	if verified.Size != v.Events || latest.Size < verified.Size {
		return store.AuditReport{}, store.Checkpoint{}, fmt.Errorf("audit verify: %s: %w: the gateway verified %d events against a checkpoint of %d, and now serves a checkpoint of %d", base, store.ErrAuditBroken, v.Events, verified.Size, latest.Size)
	}
	return store.AuditReport{Events: latest.Size, Root: cp.Root, Checkpoint: cp.Checkpoint}, latest, nil
}

// getAuditJSON GETs one audit resource of a gateway.
func getAuditJSON(ctx context.Context, url, token string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Detail, Title string
		}
		json.Unmarshal(body, &p)
		msg := p.Detail
		if msg == "" {
			msg = p.Title
		}
		return fmt.Errorf("audit verify: GET %s: %s: %s", url, resp.Status, msg)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("audit verify: GET %s: %w", url, err)
	}
	return nil
}
