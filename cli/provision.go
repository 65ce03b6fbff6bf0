package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

func init() {
	register(Command{
		Name:    "provision",
		Summary: "create keys, directory, TLS CA and per-service folders for a containerized network",
		Run:     runProvision,
	})
}

// ProvisionConfig is what `rujukan provision` needs.
type ProvisionConfig struct {
	Out string
	// BrokerHost is the broker's host name as the gateways reach it.
	BrokerHost string
	// BrokerHosts, when set, provisions a broker cluster instead: the host
	// names of its nodes (3 to 5) as the gateways and the other nodes
	// reach them. See provisionCluster.
	BrokerHosts []string
	// Agencies to create, id and kind.
	Agencies []DevAgency
	// UID and GID, when >= 0, own each service's folder (broker/,
	// agencies/<id>/): containers run as an unprivileged user.
	UID, GID int
	// UserUID and UserGID, when >= 0, own what a person reads or keeps:
	// OUT itself, OUT/ca.pem, tokens/, authority/ and ca/.
	UserUID, UserGID int
	TokenTTL         time.Duration
}

func runProvision(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "provision")
	cfg := ProvisionConfig{UID: -1, GID: -1, UserUID: -1, UserGID: -1}
	fs.StringVar(&cfg.Out, "out", "", "output folder (required)")
	fs.StringVar(&cfg.BrokerHost, "broker-host", "broker", "host name of the broker as the gateways reach it")
	brokerHosts := fs.String("broker-hosts", "", "comma-separated host `names` of the nodes of a broker cluster (3 to 5), instead of --broker-host")
	owner := fs.String("owner", "", "UID:GID to own each service's folder, broker/ (brokers/<host>/) and agencies/<id>/ (default: the current user)")
	userOwner := fs.String("user-owner", "", "UID:GID, or @PATH for the owner of PATH, to own OUT, OUT/ca.pem, tokens/, authority/, ca/ (and operator/) (default: the current user)")
	agencies := fs.String("agencies", "iom:iom,dinsos:dinsos,police:police,shelter:shelter", "comma-separated id:kind pairs")
	fs.DurationVar(&cfg.TokenTTL, "token-ttl", 24*time.Hour, "lifetime of the development tokens written to OUT/tokens")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if cfg.Out == "" {
		return errors.New("provision: --out is required")
	}
	var err error
	if cfg.UID, cfg.GID, err = parseOwner("--owner", *owner, false); err != nil {
		return err
	}
	if cfg.UserUID, cfg.UserGID, err = parseOwner("--user-owner", *userOwner, true); err != nil {
		return err
	}
	if *brokerHosts != "" {
		if flagGiven(fs, "broker-host") {
			return errors.New("provision: give --broker-host (one broker) or --broker-hosts (a cluster), not both")
		}
		cfg.BrokerHosts = strings.Split(*brokerHosts, ",")
		if err := checkBrokerHosts(cfg.BrokerHosts); err != nil {
			return fmt.Errorf("provision: --broker-hosts: %w", err)
		}
	}
	for _, pair := range strings.Split(*agencies, ",") {
		id, kind, ok := strings.Cut(pair, ":")
		if !ok || !crypto.ValidSlug(id) || !crypto.ValidSlug(kind) {
			return fmt.Errorf("provision: --agencies: %q is not id:kind", pair)
		}
		cfg.Agencies = append(cfg.Agencies, DevAgency{ID: id, Kind: kind, Name: id})
	}
	done, err := Provision(cfg)
	if err != nil {
		return err
	}
	if done && len(cfg.BrokerHosts) > 0 {
		fmt.Fprintf(env.Stdout, "provisioned %d agencies and a cluster of %d brokers in %s\n", len(cfg.Agencies), len(cfg.BrokerHosts), cfg.Out)
	} else if done {
		fmt.Fprintf(env.Stdout, "provisioned %d agencies in %s\n", len(cfg.Agencies), cfg.Out)
	} else {
		fmt.Fprintf(env.Stdout, "%s is already provisioned; nothing changed\n", cfg.Out)
	}
	return nil
}

// Provision writes, under cfg.Out, one folder per service holding only
// what that service may see: broker/ (the signed directory, authority
// public key, TLS server certificate), agencies/<id>/ (that agency's
// private keys, the directory, the CA certificate, the gateway's HTTPS
// certificate and gateway.yaml), and authority/ and ca/ (kept by whoever
// runs the network). OUT/ca.pem is the CA certificate a person's client
// trusts (curl --cacert), and tokens/ holds a development token per
// agency. It does nothing when cfg.Out is already provisioned.
func Provision(cfg ProvisionConfig) (bool, error) {
	marker, other := provisionMarkers(cfg)
	if _, err := os.Stat(marker); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if _, err := os.Stat(other); err == nil {
		return false, fmt.Errorf("provision: %s is provisioned for %s", cfg.Out, otherLayout(cfg))
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 24 * time.Hour
	}
	dirs := []string{"authority", "ca", "tokens"}
	if len(cfg.BrokerHosts) == 0 {
		dirs = append(dirs, "broker")
	}
	for _, a := range cfg.Agencies {
		dirs = append(dirs, filepath.Join("agencies", a.ID))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(cfg.Out, d), 0o700); err != nil {
			return false, err
		}
	}
	authKey := filepath.Join(cfg.Out, "authority", "authority.pem")
	authPub := filepath.Join(cfg.Out, "authority", "authority.pub")
	if _, err := crypto.GenerateAuthorityKey(authKey, authPub); err != nil && !errors.Is(err, crypto.ErrKeyFileExists) {
		return false, err
	}
	priv, err := crypto.LoadEd25519PrivateKey(authKey)
	if err != nil {
		return false, err
	}
	dir := crypto.NewDirectory("rujukan", policy.DefaultRulesJSON())
	for _, a := range cfg.Agencies {
		nk, err := broker.NewNATSKey()
		if err != nil {
			return false, err
		}
		entry, err := crypto.WriteAgencyKeys(filepath.Join(cfg.Out, "agencies", a.ID), a.ID, a.Kind, a.Name, nk, true)
		if err != nil {
			return false, err
		}
		if err := dir.Add(*entry); err != nil {
			return false, err
		}
	}
	dir.IssuedAt = time.Now().UTC().Truncate(time.Second)
	signed, err := crypto.SignDirectory(dir, priv)
	if err != nil {
		return false, err
	}
	if err := writeAuthorityCopies(filepath.Join(cfg.Out, "authority"), dir, signed); err != nil {
		return false, err
	}
	pub, err := os.ReadFile(authPub)
	if err != nil {
		return false, err
	}
	ca, err := crypto.NewCA("rujukan broker CA", 5*365*24*time.Hour)
	if err != nil {
		return false, err
	}
	if err := ca.WriteFiles(filepath.Join(cfg.Out, "ca", "ca.pem"), filepath.Join(cfg.Out, "ca", "ca-key.pem")); err != nil {
		return false, err
	}
	if err := ca.WriteFiles(filepath.Join(cfg.Out, "ca.pem"), ""); err != nil {
		return false, err
	}
	if len(cfg.BrokerHosts) > 0 {
		if err := provisionCluster(cfg, ca, signed, pub); err != nil {
			return false, err
		}
	} else if err := writeBrokerFolder(filepath.Join(cfg.Out, "broker"), ca, cfg.BrokerHost, []string{cfg.BrokerHost}, pub, nil); err != nil {
		return false, err
	}
	for _, a := range cfg.Agencies {
		ad := filepath.Join(cfg.Out, "agencies", a.ID)
		files := map[string][]byte{"network.json": signed, "authority.pub": pub, "ca.pem": ca.CertPEM,
			"gateway.yaml": []byte(containerGatewayConfig(a.ID, gatewayBrokerURL(cfg)))}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(ad, name), data, 0o644); err != nil {
				return false, err
			}
		}
		if err := writeGatewayHTTPSCert(ca, ad, a.ID); err != nil {
			return false, err
		}
		tok, err := MintDevToken(TokenConfig{Data: cfg.Out, Agency: a.ID, Subject: "dev-" + a.ID, TTL: cfg.TokenTTL})
		if err != nil {
			return false, err
		}
		if err := crypto.WritePrivateFile(filepath.Join(cfg.Out, "tokens", a.ID+".jwt"), []byte(tok+"\n"), true); err != nil {
			return false, err
		}
	}
	// The marker goes last: a run that failed half way starts over.
	if err := os.WriteFile(marker, signed, 0o644); err != nil {
		return false, err
	}
	if err := provisionOwners(cfg); err != nil {
		os.Remove(marker)
		return false, err
	}
	return true, nil
}

// parseOwner reads UID:GID, or with file allowed @PATH: the owner of PATH.
// Empty gives -1, -1 (leave the owner as it is).
func parseOwner(flag, v string, file bool) (uid, gid int, err error) {
	if v == "" {
		return -1, -1, nil
	}
	if path, ok := strings.CutPrefix(v, "@"); ok && file {
		fi, err := os.Stat(path)
		if err != nil {
			return -1, -1, fmt.Errorf("provision: %s: %w", flag, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return -1, -1, fmt.Errorf("provision: %s: this system does not tell the owner of %s", flag, path)
		}
		return int(st.Uid), int(st.Gid), nil
	}
	u, g, ok := strings.Cut(v, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return -1, -1, fmt.Errorf("provision: %s %q is not UID:GID", flag, v)
	}
	return uid, gid, nil
}

// writeAuthorityCopies keeps, beside the authority key, the draft and
// the signed directory the authority edits and signs next (rujukan
// directory rotate|revoke --draft authority/draft.json, then sign --out
// authority/network.json, which numbers the next version after it).
func writeAuthorityCopies(dir string, d *crypto.Directory, signed []byte) error {
	if err := writeDraft(filepath.Join(dir, "draft.json"), d); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "network.json"), signed, 0o644)
}

// Names of a gateway's HTTPS certificate and key in its folder.
const (
	gatewayCertFile = "https.pem"
	gatewayKeyFile  = "https-key.pem"
)

// writeGatewayHTTPSCert issues the certificate a gateway serves its API
// with, from the network's private CA: for the service name (as the other
// containers reach it), and for localhost, 127.0.0.1 and ::1 (as the host
// reaches the published port). The key is 0600.
func writeGatewayHTTPSCert(ca *crypto.CA, dir, id string) error {
	cert, key, err := ca.Issue(id, []string{id, "localhost", "127.0.0.1", "::1"}, false, 2*365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, gatewayCertFile), cert, 0o644); err != nil {
		return err
	}
	return crypto.WritePrivateFile(filepath.Join(dir, gatewayKeyFile), key, true)
}

// provisionOwners gives each service's folder to the service user
// (cfg.UID) and what a person reads or keeps to that person (cfg.UserUID):
// OUT (0755, so that the folders below can be mounted and listed),
// OUT/ca.pem, agencies/ (0755), tokens/, authority/ and ca/ (0700, their
// keys and tokens 0600).
func provisionOwners(cfg ProvisionConfig) error {
	chownTree := func(root string, uid, gid int) error {
		if uid < 0 {
			return nil
		}
		return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
	}
	for _, d := range sharedDirs(cfg) {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	if cfg.UserUID >= 0 {
		for _, p := range append(sharedDirs(cfg), sharedFiles(cfg)...) {
			if err := os.Lchown(p, cfg.UserUID, cfg.UserGID); err != nil {
				return fmt.Errorf("provision: --user-owner: %w", err)
			}
		}
	}
	for _, d := range userDirs(cfg) {
		if err := chownTree(filepath.Join(cfg.Out, d), cfg.UserUID, cfg.UserGID); err != nil {
			return fmt.Errorf("provision: --user-owner: %w", err)
		}
	}
	services := brokerDirs(cfg)
	for _, a := range cfg.Agencies {
		services = append(services, filepath.Join(cfg.Out, "agencies", a.ID))
	}
	for _, d := range services {
		if err := chownTree(d, cfg.UID, cfg.GID); err != nil {
			return fmt.Errorf("provision: --owner: %w", err)
		}
	}
	return nil
}

// containerGatewayConfig is gateway.yaml as a gateway container sees its
// own folder mounted at /keys and its data volume at /data.
func containerGatewayConfig(id, brokerURL string) string {
	return fmt.Sprintf(`# Gateway of agency %[1]s in the container network; RUJUKAN_* variables override.
agency: %[1]s
keys: /keys
directory: /keys/network.json
authority: "@/keys/authority.pub"
broker:
  url: %[2]s
  ca: /keys/ca.pem
http:
  listen: 0.0.0.0:8080
  tls_cert: /keys/%[4]s
  tls_key: /keys/%[5]s
issuers:
  - issuer: %[3]s
    jwks: /keys/jwks.json
data: /data
`, id, brokerURL, policy.DevIssuer(id), gatewayCertFile, gatewayKeyFile)
}
