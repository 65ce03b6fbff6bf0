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
	// UID and GID, when >= 0, own every file written (containers run as
	// an unprivileged user).
	UID, GID int
	TokenTTL time.Duration
}

func runProvision(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "provision")
	cfg := ProvisionConfig{UID: -1, GID: -1}
	fs.StringVar(&cfg.Out, "out", "", "output folder (required)")
	fs.StringVar(&cfg.BrokerHost, "broker-host", "broker", "host name of the broker as the gateways reach it")
	brokerHosts := fs.String("broker-hosts", "", "comma-separated host `names` of the nodes of a broker cluster (3 to 5), instead of --broker-host")
	owner := fs.String("owner", "", "UID:GID to own the files written (default: the current user)")
	agencies := fs.String("agencies", "iom:iom,dinsos:dinsos,police:police,shelter:shelter", "comma-separated id:kind pairs")
	fs.DurationVar(&cfg.TokenTTL, "token-ttl", 24*time.Hour, "lifetime of the development tokens written to OUT/tokens")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if cfg.Out == "" {
		return errors.New("provision: --out is required")
	}
	if *owner != "" {
		u, g, ok := strings.Cut(*owner, ":")
		var err1, err2 error
		cfg.UID, err1 = strconv.Atoi(u)
		cfg.GID, err2 = strconv.Atoi(g)
		if !ok || err1 != nil || err2 != nil || cfg.UID < 0 || cfg.GID < 0 {
			return fmt.Errorf("provision: --owner %q is not UID:GID", *owner)
		}
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
// private keys, the directory, the CA certificate and gateway.yaml), and
// authority/ and ca/ (kept by whoever runs the network). It does nothing
// when cfg.Out is already provisioned.
func Provision(cfg ProvisionConfig) (bool, error) {
	marker, other := provisionMarkers(cfg)
	if _, err := os.Stat(marker); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if _, err := os.Stat(other); err == nil {
		return false, fmt.Errorf("provision: %s is provisioned for %s", cfg.Out, layoutName(len(cfg.BrokerHosts) == 0))
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
	if cfg.UID >= 0 {
		err := filepath.WalkDir(cfg.Out, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, cfg.UID, cfg.GID)
		})
		if err != nil {
			return false, fmt.Errorf("provision: --owner: %w", err)
		}
	}
	return true, nil
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
issuers:
  - issuer: %[3]s
    jwks: /keys/jwks.json
data: /data
`, id, brokerURL, policy.DevIssuer(id))
}
