package cli

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
)

// A provisioned cluster (ProvisionConfig.BrokerHosts) differs from a single
// broker in these parts only:
//
//	brokers/<host>/  one folder per node: the signed directory, the
//	                 authority public key, the CA certificate, a server
//	                 certificate valid for every node's name (its own key),
//	                 the cluster secret (0600) and the public key of the
//	                 operator's monitoring user (monitor.pub)
//	brokers/network.json  written last: the folder is provisioned
//	operator/        monitor.nk (0600), the monitoring user's seed for the
//	                 nats CLI, and ca.pem; no service mounts it, it belongs
//	                 to --user-owner
//
// and each gateway.yaml lists every node in broker.url.

// brokerClientPort is the port gateways reach a broker on.
const brokerClientPort = 4222

// provisionMarkers returns the file that marks cfg.Out provisioned for
// cfg's layout, and the one of the other layout.
func provisionMarkers(cfg ProvisionConfig) (marker, other string) {
	single := filepath.Join(cfg.Out, "broker", "network.json")
	cluster := filepath.Join(cfg.Out, "brokers", "network.json")
	if len(cfg.BrokerHosts) > 0 {
		return cluster, single
	}
	return single, cluster
}

// otherLayout names the layout other than cfg's, whose marker was found.
func otherLayout(cfg ProvisionConfig) string {
	if len(cfg.BrokerHosts) > 0 {
		return "a single broker; provision another folder"
	}
	return "a broker cluster (--broker-hosts); provision another folder"
}

var hostLabel = `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`
var hostRE = regexp.MustCompile(`^` + hostLabel + `(\.` + hostLabel + `)*$`)

// checkBrokerHosts refuses anything but 3 to 5 distinct lowercase DNS
// names: each becomes a folder name, a certificate name and part of URLs.
func checkBrokerHosts(hosts []string) error {
	if len(hosts) < 3 || len(hosts) > 5 {
		return fmt.Errorf("a cluster has 3 to 5 nodes, not %d (a majority must survive a node's loss)", len(hosts))
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if len(h) > 253 || !hostRE.MatchString(h) {
			return fmt.Errorf("%q is not a host name (lowercase letters, digits, '-' and '.')", h)
		}
		if h == "localhost" {
			return errors.New(`"localhost" cannot name a node: every node is localhost to itself`)
		}
		if seen[h] {
			return fmt.Errorf("%q is listed twice", h)
		}
		seen[h] = true
	}
	return nil
}

// flagGiven reports whether the flag name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// brokerDirs are the folders of the broker's service, or of each node's.
func brokerDirs(cfg ProvisionConfig) []string {
	if len(cfg.BrokerHosts) == 0 {
		return []string{filepath.Join(cfg.Out, "broker")}
	}
	dirs := make([]string, len(cfg.BrokerHosts))
	for i, h := range cfg.BrokerHosts {
		dirs[i] = filepath.Join(cfg.Out, "brokers", h)
	}
	return dirs
}

// sharedDirs are the folders that hold service folders: a person may list
// them (0755, owned by --user-owner).
func sharedDirs(cfg ProvisionConfig) []string {
	dirs := []string{cfg.Out, filepath.Join(cfg.Out, "agencies")}
	if len(cfg.BrokerHosts) > 0 {
		dirs = append(dirs, filepath.Join(cfg.Out, "brokers"))
	}
	return dirs
}

// sharedFiles are the files beside them that a person reads: the CA
// certificate, and a cluster's marker (the signed directory).
func sharedFiles(cfg ProvisionConfig) []string {
	files := []string{filepath.Join(cfg.Out, "ca.pem")}
	if len(cfg.BrokerHosts) > 0 {
		marker, _ := provisionMarkers(cfg)
		files = append(files, marker)
	}
	return files
}

// userDirs are the folders (under cfg.Out) of what a person reads or keeps
// (owned by --user-owner): a cluster's operator/ too.
func userDirs(cfg ProvisionConfig) []string {
	dirs := []string{"tokens", "authority", "ca"}
	if len(cfg.BrokerHosts) > 0 {
		dirs = append(dirs, "operator")
	}
	return dirs
}

// gatewayBrokerURL is broker.url of a provisioned gateway: the broker, or
// every node of the cluster.
func gatewayBrokerURL(cfg ProvisionConfig) string {
	hosts := cfg.BrokerHosts
	if len(hosts) == 0 {
		hosts = []string{cfg.BrokerHost}
	}
	urls := make([]string, len(hosts))
	for i, h := range hosts {
		urls[i] = fmt.Sprintf("tls://%s:%d", h, brokerClientPort)
	}
	return strings.Join(urls, ",")
}

// writeBrokerFolder writes what a broker node mounts: its server
// certificate (named cn, valid for hosts, localhost and 127.0.0.1) and
// key, the CA certificate, the authority public key, and the extra files
// (private ones, 0600, when their name is in private).
func writeBrokerFolder(dir string, ca *crypto.CA, cn string, hosts []string, pub []byte, extra map[string][]byte, private ...string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cert, key, err := ca.Issue(cn, append(hosts[:len(hosts):len(hosts)], "localhost", "127.0.0.1"), false, 2*365*24*time.Hour)
	if err != nil {
		return err
	}
	files := map[string][]byte{"server.pem": cert, "ca.pem": ca.CertPEM, "authority.pub": pub}
	for name, data := range extra {
		files[name] = data
	}
	secret := map[string]bool{"server-key.pem": true}
	files["server-key.pem"] = key
	for _, name := range private {
		secret[name] = true
	}
	for name, data := range files {
		if secret[name] {
			err = crypto.WritePrivateFile(filepath.Join(dir, name), data, true)
		} else {
			err = os.WriteFile(filepath.Join(dir, name), data, 0o644)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// provisionCluster writes brokers/<host>/ for every node and operator/
// (Provision writes the marker brokers/network.json last).
func provisionCluster(cfg ProvisionConfig, ca *crypto.CA, signed, pub []byte) error {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	secret := []byte(base64.RawURLEncoding.EncodeToString(raw[:]) + "\n")
	monitor, err := broker.NewNATSKey()
	if err != nil {
		return err
	}
	op := filepath.Join(cfg.Out, "operator")
	if err := os.MkdirAll(op, 0o700); err != nil {
		return err
	}
	if err := crypto.WritePrivateFile(filepath.Join(op, "monitor.nk"), append(monitor.Seed, '\n'), true); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(op, "ca.pem"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	for _, h := range cfg.BrokerHosts {
		extra := map[string][]byte{"network.json": signed, "cluster-secret": secret, "monitor.pub": []byte(monitor.Public + "\n")}
		if err := writeBrokerFolder(filepath.Join(cfg.Out, "brokers", h), ca, h, cfg.BrokerHosts, pub, extra, "cluster-secret"); err != nil {
			return err
		}
	}
	return nil
}
