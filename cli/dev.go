package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/run"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

func init() {
	register(Command{
		Name:    "dev",
		Summary: "run the broker and the iom, dinsos, police and shelter gateways on this machine",
		Run:     runDev,
	})
}

// DevAgency is one agency of the development network.
type DevAgency struct {
	ID, Kind, Name string
	// Port is the gateway's HTTP port.
	Port int
}

// DevAgencies are the agencies `rujukan dev` creates.
var DevAgencies = []DevAgency{
	{"iom", policy.KindIOM, "IOM Indonesia", 8081},
	{"dinsos", policy.KindDinsos, "Dinas Sosial", 8082},
	{"police", policy.KindPolice, "Kepolisian (PPA unit)", 8083},
	{"shelter", policy.KindShelter, "RPTC shelter", 8084},
}

// DevConfig is what `rujukan dev` needs.
type DevConfig struct {
	Data string
	// Host is the address everything listens on (a loopback address).
	Host       string
	BrokerPort int
	// BasePort, when not zero, replaces the gateway ports with BasePort,
	// BasePort+1, ... (0 in tests picks free ports).
	BasePort  int
	RandPorts bool
	TokenTTL  time.Duration
	Logger    *slog.Logger
	// OnOutcome is called with the delivery outcome of every referral a
	// gateway sent (rujukan bench uses it to time deliveries).
	OnOutcome func(agency, id, outcome string)
	// Argon are the hash parameters of the dev accounts' passwords made on
	// first use (zero: staff.DefaultParams); tests may lower them.
	Argon staff.Params
}

// DevStack is a running development network.
type DevStack struct {
	Broker   *broker.Server
	Gateways map[string]*run.Running
	Tokens   map[string]string
	// Accounts are the web app accounts of each agency, as written to
	// DATA/accounts.txt.
	Accounts map[string][]DevAccount
	order    []string
}

func runDev(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "dev")
	cfg := DevConfig{}
	fs.StringVar(&cfg.Data, "data", "./rujukan-data", "data directory (keys, directory, broker and gateway state)")
	fs.StringVar(&cfg.Host, "host", "127.0.0.1", "loopback address to listen on")
	fs.IntVar(&cfg.BrokerPort, "broker-port", 4222, "NATS port")
	fs.IntVar(&cfg.BasePort, "http-port", 8081, "HTTP port of the first gateway (iom); the others follow")
	fs.DurationVar(&cfg.TokenTTL, "token-ttl", 24*time.Hour, "lifetime of the printed dev tokens")
	memLimit := fs.Int64("memory-limit", devMemoryLimit, "soft limit of the process's memory in `bytes` (Go's runtime limit; 0: none; GOMEMLIMIT wins)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	cfg.Logger = newLogger(env)
	ml, err := setMemoryLimit(env, *memLimit)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	cfg.Logger.Info("memory limit", "limit", ml)
	st, err := StartDev(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Rujukan dev network is up. Data: %s\nBroker: %s\n  metrics: %s/metrics\n\n", cfg.Data, st.Broker.ClientURL(), st.Broker.MetricsURL())
	for _, id := range st.order {
		fmt.Fprintf(env.Stdout, "%-8s %s\n  metrics: %s/metrics\n  token (%s): %s\n\n", id, st.Gateways[id].URL,
			st.Gateways[id].MetricsURL, filepath.Join(cfg.Data, "tokens", id+".jwt"), st.Tokens[id])
	}
	fmt.Fprintf(env.Stdout, "Web app accounts (also in %s):\n", filepath.Join(cfg.Data, devAccountsFile))
	for _, id := range st.order {
		fmt.Fprintf(env.Stdout, "%-8s %s/ui/\n", id, strings.TrimSuffix(st.Gateways[id].URL, "/"))
		for _, a := range st.Accounts[id] {
			fmt.Fprintf(env.Stdout, "  %-17s %s\n", a.Name, a.Password)
		}
	}
	fmt.Fprintln(env.Stdout)
	fmt.Fprintln(env.Stdout, "Press Ctrl-C to stop; send SIGHUP to reload network.json after you re-sign it.")
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(env.Stdout, "shutting down")
			return st.Close()
		case <-hup:
			if err := st.Reload(filepath.Join(cfg.Data, "network.json")); err != nil {
				cfg.Logger.Error("directory reload refused; the directory in force is kept", "err", err)
			}
		}
	}
}

// Reload puts a re-signed directory file in force at the broker and at
// every gateway.
func (s *DevStack) Reload(path string) error {
	signed, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := s.Broker.Reload(signed); err != nil {
		return err
	}
	var errs []error
	for _, id := range s.order {
		if err := s.Gateways[id].Gateway.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// StartDev creates the development network on first use (authority,
// directory, keys of the four agencies) and starts the broker and the four
// gateways. A second start reuses the data directory.
func StartDev(ctx context.Context, cfg DevConfig) (*DevStack, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if ip := net.ParseIP(cfg.Host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("dev: --host %q is not a loopback address; the dev network is for one machine", cfg.Host)
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if err := InitDevNetwork(cfg.Data); err != nil {
		return nil, err
	}
	// Accounts go into the gateways' stores before the gateways hold them.
	accounts, err := InitDevAccounts(cfg.Data, cfg.Argon)
	if err != nil {
		return nil, err
	}
	authPath := filepath.Join(cfg.Data, "authority", "authority.pub")
	authority, err := crypto.ParseAuthorityKey("@" + authPath)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	signed, err := os.ReadFile(filepath.Join(cfg.Data, "network.json"))
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	bcfg := broker.DefaultConfig()
	bcfg.Listen = net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.BrokerPort))
	if cfg.RandPorts {
		bcfg.Listen = net.JoinHostPort(cfg.Host, "-1")
	}
	bcfg.DataDir = filepath.Join(cfg.Data, "broker")
	// The broker's metrics just below the gateways' (9080).
	bport := cfg.BasePort - 1 + devMetricsOffset
	if cfg.RandPorts || cfg.BasePort == 0 {
		bport = 0
	}
	bcfg.Metrics = net.JoinHostPort(cfg.Host, strconv.Itoa(bport))
	bcfg.Directory = signed
	bcfg.Authority = authority
	bcfg.Logger = cfg.Logger.With("component", "broker")
	b, err := broker.New(bcfg)
	if err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	st := &DevStack{Broker: b, Gateways: map[string]*run.Running{}, Tokens: map[string]string{}, Accounts: accounts}
	if err := os.MkdirAll(filepath.Join(cfg.Data, "tokens"), 0o700); err != nil {
		st.Close()
		return nil, fmt.Errorf("dev: %w", err)
	}
	for i, a := range DevAgencies {
		gc := DevGatewayConfig(cfg.Data, a.ID, b.ClientURL())
		port := a.Port
		if cfg.BasePort != 0 {
			port = cfg.BasePort + i
		}
		if cfg.RandPorts {
			port = 0
		}
		gc.HTTP.Listen = net.JoinHostPort(cfg.Host, strconv.Itoa(port))
		// Metrics on their own port, 1000 above the API's (9081..9084).
		mport := port + devMetricsOffset
		if cfg.RandPorts {
			mport = 0
		}
		gc.Metrics.Listen = net.JoinHostPort(cfg.Host, strconv.Itoa(mport))
		opt := gateway.Options{Logger: cfg.Logger.With("component", "gateway")}
		if cfg.OnOutcome != nil {
			agency := a.ID
			opt.OnOutcome = func(id, outcome string) { cfg.OnOutcome(agency, id, outcome) }
		}
		r, err := run.Start(ctx, gc, opt)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("dev: gateway %s: %w", a.ID, err)
		}
		st.Gateways[a.ID] = r
		st.order = append(st.order, a.ID)
		tok, err := MintDevToken(TokenConfig{Data: cfg.Data, Agency: a.ID, Subject: "dev-" + a.ID, TTL: cfg.TokenTTL})
		if err != nil {
			st.Close()
			return nil, err
		}
		if err := crypto.WritePrivateFile(filepath.Join(cfg.Data, "tokens", a.ID+".jwt"), []byte(tok+"\n"), true); err != nil {
			st.Close()
			return nil, err
		}
		st.Tokens[a.ID] = tok
	}
	return st, nil
}

// devMetricsOffset puts a dev gateway's metrics listener 1000 ports above
// its API.
const devMetricsOffset = 1000

// DevGatewayConfig is the gateway config of one dev agency.
func DevGatewayConfig(data, id, brokerURL string) gateway.Config {
	gc := gateway.DefaultConfig()
	gc.Agency = id
	gc.Keys = filepath.Join(data, "agencies", id)
	gc.Directory = filepath.Join(data, "network.json")
	gc.Authority = "@" + filepath.Join(data, "authority", "authority.pub")
	gc.Broker.URL = brokerURL
	gc.Broker.NKeySeed = filepath.Join(gc.Keys, crypto.NATSSeedFile)
	gc.Issuers = []gateway.IssuerConfig{{Issuer: policy.DevIssuer(id), JWKS: filepath.Join(gc.Keys, crypto.JWKSFile)}}
	gc.Data = filepath.Join(data, "gateways", id)
	return gc
}

// InitDevNetwork creates the authority, the agencies' keys and the signed
// directory, unless network.json already exists.
func InitDevNetwork(data string) error {
	signedPath := filepath.Join(data, "network.json")
	if _, err := os.Stat(signedPath); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dev: %w", err)
	}
	authDir := filepath.Join(data, "authority")
	if err := os.MkdirAll(authDir, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	keyPath := filepath.Join(authDir, "authority.pem")
	if _, err := crypto.GenerateAuthorityKey(keyPath, filepath.Join(authDir, "authority.pub")); err != nil && !errors.Is(err, crypto.ErrKeyFileExists) {
		return fmt.Errorf("dev: %w", err)
	}
	priv, err := crypto.LoadEd25519PrivateKey(keyPath)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	dir := crypto.NewDirectory("rujukan-dev", policy.DefaultRulesJSON())
	for _, a := range DevAgencies {
		agencyDir := filepath.Join(data, "agencies", a.ID)
		nk, err := broker.NewNATSKey()
		if err != nil {
			return fmt.Errorf("dev: keys of %s: %w", a.ID, err)
		}
		entry, err := crypto.WriteAgencyKeys(agencyDir, a.ID, a.Kind, a.Name, nk, true)
		if err != nil {
			return fmt.Errorf("dev: keys of %s: %w", a.ID, err)
		}
		if err := dir.Add(*entry); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	dir.IssuedAt = time.Now().UTC().Truncate(time.Second)
	signed, err := crypto.SignDirectory(dir, priv)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if err := os.WriteFile(signedPath+".tmp", signed, 0o644); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	return os.Rename(signedPath+".tmp", signedPath)
}

// Close stops the gateways, then the broker.
func (s *DevStack) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// The gateways stop side by side: each may wait up to two seconds for
	// its pulls from the broker to end (client.Close), which one after the
	// other added up.
	errs := make([]error, len(s.order)+1)
	var wg sync.WaitGroup
	for i, id := range s.order {
		wg.Go(func() { errs[i] = s.Gateways[id].Close(ctx) })
	}
	wg.Wait()
	errs[len(s.order)] = s.Broker.Close()
	return errors.Join(errs...)
}

// DevAccount is one web app account of the development network.
type DevAccount struct {
	Name     string
	Roles    []staff.Role
	Password string
}

// devAccountsFile holds the dev accounts and their passwords, in the data
// folder: a line per account, "agency name roles password", roles
// separated by commas; lines starting with # are comments.
const devAccountsFile = "accounts.txt"

// DevRoles are the roles of the accounts `rujukan dev` makes at an agency
// of kind, one account per role, named after it.
func DevRoles(kind string) []staff.Role {
	if kind == policy.KindPolice {
		return []staff.Role{staff.RoleCaseworker, staff.RoleInvestigator, staff.RoleOperator}
	}
	return []staff.Role{staff.RoleCaseworker, staff.RoleConsentRecorder, staff.RoleOperator}
}

// InitDevAccounts makes sure every dev agency's gateway store has the web
// app accounts of DATA/accounts.txt, and returns them by agency. On first
// use it makes the accounts (DevRoles, random passwords) and writes the
// file; later it reads the file and adds only accounts missing from a
// store. It opens the stores, so it runs before the gateways start.
func InitDevAccounts(data string, argon staff.Params) (map[string][]DevAccount, error) {
	path := filepath.Join(data, devAccountsFile)
	accounts, err := readDevAccounts(path)
	fresh := errors.Is(err, fs.ErrNotExist)
	if err != nil && !fresh {
		return nil, err
	}
	if fresh {
		accounts = map[string][]DevAccount{}
		for _, a := range DevAgencies {
			for _, r := range DevRoles(a.Kind) {
				pw, err := GeneratePassword()
				if err != nil {
					return nil, fmt.Errorf("dev: %w", err)
				}
				accounts[a.ID] = append(accounts[a.ID], DevAccount{Name: string(r), Roles: []staff.Role{r}, Password: pw})
			}
		}
	}
	// Each agency in its own store, at once: hashing is the slow part.
	errs := make([]error, len(DevAgencies))
	var wg sync.WaitGroup
	for i, a := range DevAgencies {
		wg.Go(func() { errs[i] = ensureDevAccounts(data, a, accounts[a.ID], argon, fresh) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if fresh {
		var b strings.Builder
		b.WriteString("# Rujukan dev web app accounts: agency name roles password\n")
		for _, a := range DevAgencies {
			for _, acc := range accounts[a.ID] {
				fmt.Fprintf(&b, "%s %s %s %s\n", a.ID, acc.Name, joinRoles(acc.Roles), acc.Password)
			}
		}
		if err := crypto.WritePrivateFile(path, []byte(b.String()), true); err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
	}
	return accounts, nil
}

// ensureDevAccounts adds the accounts missing from agency a's store. When
// the passwords are new (fresh), an account already there (left by a first
// run that stopped before writing accounts.txt) gets the new password.
func ensureDevAccounts(data string, a DevAgency, want []DevAccount, argon staff.Params, fresh bool) error {
	gc := DevGatewayConfig(data, a.ID, "")
	key, err := crypto.LoadEd25519PrivateKey(filepath.Join(gc.Keys, crypto.SigningKeyFile))
	if err != nil {
		return fmt.Errorf("dev: accounts of %s: %w", a.ID, err)
	}
	if err := os.MkdirAll(gc.Data, 0o700); err != nil {
		return fmt.Errorf("dev: accounts of %s: %w", a.ID, err)
	}
	signer, err := crypto.NewAuditNoteSigner(a.ID, key)
	if err != nil {
		return fmt.Errorf("dev: accounts of %s: %w", a.ID, err)
	}
	db, err := store.Open(filepath.Join(gc.Data, gatewayDBFile), signer)
	if err != nil {
		return fmt.Errorf("dev: accounts of %s: %w", a.ID, err)
	}
	defer db.Close()
	accts := staff.New(db, a.ID, a.Kind, staff.Options{Argon: argon, Actor: a.ID + "/dev"})
	for _, acc := range want {
		err := accts.Add(acc.Name, acc.Roles, acc.Password)
		if errors.Is(err, staff.ErrExists) {
			if !fresh {
				continue
			}
			err = accts.Reset(acc.Name, acc.Password)
		}
		if err != nil {
			return fmt.Errorf("dev: account %s of %s: %w", acc.Name, a.ID, err)
		}
	}
	return nil
}

// readDevAccounts reads accounts.txt.
func readDevAccounts(path string) (map[string][]DevAccount, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("dev: %w", err)
	}
	out := map[string][]DevAccount{}
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("dev: %s line %d: want \"agency name roles password\"", path, i+1)
		}
		var roles roleFlag
		if err := roles.Set(f[2]); err != nil || len(roles) == 0 {
			return nil, fmt.Errorf("dev: %s line %d: bad roles %q", path, i+1, f[2])
		}
		out[f[0]] = append(out[f[0]], DevAccount{Name: f[1], Roles: roles, Password: f[3]})
	}
	return out, nil
}
