package cli

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/broker"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestProvisionCluster(t *testing.T) {
	out := filepath.Join(t.TempDir(), "net")
	hosts := []string{"broker1", "broker2", "broker3"}
	stdout := mustRunKey(t, "provision", "--out", out, "--broker-hosts", strings.Join(hosts, ","), "--agencies", "iom:iom,shelter:shelter")
	if !strings.Contains(stdout, "a cluster of 3 brokers") {
		t.Errorf("output: %s", stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "broker")); !os.IsNotExist(err) {
		t.Errorf("a cluster has a single broker's folder: %v", err)
	}
	p := func(parts ...string) string { return filepath.Join(append([]string{out}, parts...)...) }
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, p("ca", "ca.pem")))

	seed, err := os.ReadFile(p("operator", "monitor.nk"))
	if err != nil || mode(t, p("operator", "monitor.nk")) != 0o600 {
		t.Fatalf("operator/monitor.nk: %v", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	monitorPub, _ := kp.PublicKey()

	var secret string
	keys := map[string]bool{}
	for _, h := range hosts {
		d := p("brokers", h)
		cert := readCert(t, filepath.Join(d, "server.pem"))
		for _, name := range append(hosts, "localhost") {
			if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
				t.Errorf("%s's certificate for %s: %v", h, name, err)
			}
		}
		for _, f := range []string{"server-key.pem", "cluster-secret"} {
			if m := mode(t, filepath.Join(d, f)); m != 0o600 {
				t.Errorf("%s/%s has mode %v", h, f, m)
			}
		}
		key, _ := os.ReadFile(filepath.Join(d, "server-key.pem"))
		if keys[string(key)] {
			t.Errorf("%s shares its private key with another node", h)
		}
		keys[string(key)] = true
		s, _ := os.ReadFile(filepath.Join(d, "cluster-secret"))
		if secret == "" {
			secret = string(s)
		} else if string(s) != secret {
			t.Errorf("%s has a cluster secret of its own", h)
		}
		if pub, _ := os.ReadFile(filepath.Join(d, "monitor.pub")); strings.TrimSpace(string(pub)) != monitorPub {
			t.Errorf("%s/monitor.pub %q is not the public key of operator/monitor.nk", h, pub)
		}
		if _, err := os.Stat(filepath.Join(d, "ca-key.pem")); err == nil {
			t.Errorf("%s holds the CA key", h)
		}

		// The node's folder is everything 'rujukan broker' needs to run
		// as that node of the cluster.
		f := BrokerFlags{Network: filepath.Join(d, "network.json"), Authority: "@" + filepath.Join(d, "authority.pub"),
			Data: t.TempDir(), Listen: "0.0.0.0:4222", TLSCert: filepath.Join(d, "server.pem"), TLSKey: filepath.Join(d, "server-key.pem"),
			ServerName: h, ClusterName: "rujukan", ClusterListen: "0.0.0.0:6222",
			Routes:            "nats-route://broker1:6222,nats-route://broker2:6222,nats-route://broker3:6222",
			ClusterSecretFile: filepath.Join(d, "cluster-secret"), ClusterCA: filepath.Join(d, "ca.pem"),
			SystemUser: "@" + filepath.Join(d, "monitor.pub"), Replicas: 3, LogLevel: "info",
			MaxAge: broker.DefaultConfig().MaxAge, DuplicateWindow: broker.DefaultConfig().DuplicateWindow}
		cfg, err := f.Config(nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.SystemUser != monitorPub || len(cfg.ClusterSecret) < 32 || len(cfg.Routes) != 3 {
			t.Errorf("%s: configuration %+v", h, cfg)
		}
		if _, err := broker.New(cfg); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}

	for _, id := range []string{"iom", "shelter"} {
		g, err := gateway.LoadConfig(p("agencies", id, "gateway.yaml"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := "tls://broker1:4222,tls://broker2:4222,tls://broker3:4222"; g.Broker.URL != want {
			t.Errorf("%s's broker.url = %q, want %q", id, g.Broker.URL, want)
		}
	}

	// Provisioned once; another layout in the same folder is refused.
	if again := mustRunKey(t, "provision", "--out", out, "--broker-hosts", "broker1,broker2,broker3"); !strings.Contains(again, "already provisioned") {
		t.Errorf("second run: %s", again)
	}
	if msg, err := runKeyCLI(t, "provision", "--out", out); err == nil || !strings.Contains(err.Error(), "broker cluster") {
		t.Errorf("a single broker over a cluster's folder: %v %s", err, msg)
	}
}

// The default (no --broker-hosts) is the single broker it always was.
func TestProvisionSingleBroker(t *testing.T) {
	out := filepath.Join(t.TempDir(), "net")
	mustRunKey(t, "provision", "--out", out, "--agencies", "iom:iom")
	for _, f := range []string{"broker/network.json", "broker/server.pem", "broker/server-key.pem", "broker/ca.pem", "broker/authority.pub"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	for _, f := range []string{"brokers", "operator", "broker/cluster-secret", "broker/monitor.pub"} {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			t.Errorf("a single broker has %s", f)
		}
	}
	g, err := gateway.LoadConfig(filepath.Join(out, "agencies", "iom", "gateway.yaml"), nil)
	if err != nil || g.Broker.URL != "tls://broker:4222" {
		t.Fatalf("broker.url %q: %v", g.Broker.URL, err)
	}
	cert := readCert(t, filepath.Join(out, "broker", "server.pem"))
	if cert.Subject.CommonName != "broker" || strings.Join(cert.DNSNames, ",") != "broker,localhost" {
		t.Errorf("certificate for %s %v", cert.Subject.CommonName, cert.DNSNames)
	}
	if msg, err := runKeyCLI(t, "provision", "--out", out, "--broker-hosts", "b1,b2,b3"); err == nil || !strings.Contains(err.Error(), "single broker") {
		t.Errorf("a cluster over a single broker's folder: %v %s", err, msg)
	}
}

func TestProvisionClusterHostileHosts(t *testing.T) {
	cases := []struct{ hosts, says string }{
		{"broker1,broker2", "3 to 5 nodes, not 2"},
		{"b1,b2,b3,b4,b5,b6", "3 to 5 nodes, not 6"},
		{"b1,b1,b2", `"b1" is listed twice`},
		{"b1,../etc,b2", `"../etc" is not a host name`},
		{"b1,b2,b3/x", `"b3/x" is not a host name`},
		{"b1,B2,b3", `"B2" is not a host name`},
		{"b1, b2,b3", `" b2" is not a host name`},
		{"b1,,b3", `"" is not a host name`},
		{"b1,b2,user@b3", `"user@b3" is not a host name`},
		{"b1,b2,b3:6222", `"b3:6222" is not a host name`},
		{"b1,b2,-b3", `"-b3" is not a host name`},
		{"b1,b2,localhost", `"localhost" cannot name a node`},
		{"b1,b2," + strings.Repeat("a", 64), "is not a host name"},
	}
	for _, tc := range cases {
		out := filepath.Join(t.TempDir(), "net")
		_, err := runKeyCLI(t, "provision", "--out", out, "--broker-hosts", tc.hosts)
		if err == nil || !strings.Contains(err.Error(), "--broker-hosts") || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want one line saying %q", tc.hosts, err, tc.says)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%q: something was written", tc.hosts)
		}
	}
	out := filepath.Join(t.TempDir(), "net")
	if _, err := runKeyCLI(t, "provision", "--out", out, "--broker-host", "broker", "--broker-hosts", "b1,b2,b3"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("both --broker-host and --broker-hosts: %v", err)
	}
}

// TestProvisionClusterOwners: each node's folder and secrets belong to the
// service user, the operator's folder and the monitoring seed to the
// person, and nothing is left with root's owner.
func TestProvisionClusterOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files to other users needs root, as the provision container has")
	}
	const svc, person = 65534, 1234
	out := filepath.Join(t.TempDir(), "net")
	mustRunKey(t, "provision", "--out", out, "--broker-hosts", "b1,b2,b3", "--agencies", "iom:iom",
		"--owner", "65534:65534", "--user-owner", "1234:1235")
	want := func(rel string, uid int, m os.FileMode) {
		t.Helper()
		gid := uid // 65534:65534
		if uid == person {
			gid = person + 1 // 1234:1235
		}
		u, g := owner(t, filepath.Join(out, rel))
		if u != uid || g != gid || mode(t, filepath.Join(out, rel)) != m {
			t.Errorf("%s: owner %d:%d mode %v, want %d:%d %v", rel, u, g, mode(t, filepath.Join(out, rel)), uid, gid, m)
		}
	}
	want("brokers", person, 0o755)
	want("brokers/network.json", person, 0o644)
	want("operator", person, 0o700)
	want("operator/monitor.nk", person, 0o600)
	want("operator/ca.pem", person, 0o644)
	for _, h := range []string{"b1", "b2", "b3"} {
		want("brokers/"+h, svc, 0o700)
		want("brokers/"+h+"/cluster-secret", svc, 0o600)
		want("brokers/"+h+"/server-key.pem", svc, 0o600)
		want("brokers/"+h+"/monitor.pub", svc, 0o644)
	}
	filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if u, _ := owner(t, path); u == 0 {
			t.Errorf("%s is root's", path)
		}
		return nil
	})
}
