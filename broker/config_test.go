package broker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

func TestMaxDeliverSpansMaxAge(t *testing.T) {
	cases := []struct {
		name    string
		backoff []time.Duration
		maxAge  time.Duration
	}{
		{"default", DefaultConfig().BackOff, 30 * 24 * time.Hour},
		{"short age", []time.Duration{time.Second, time.Minute}, time.Minute},
		{"one step", []time.Duration{time.Minute}, time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := maxDeliver(tc.backoff, tc.maxAge)
			if n <= len(tc.backoff) {
				t.Fatalf("MaxDeliver %d not above %d back-off steps", n, len(tc.backoff))
			}
			// The redeliveries allowed cover the whole undelivered deadline.
			var span time.Duration
			for i := range n - 1 {
				span += tc.backoff[min(i, len(tc.backoff)-1)]
			}
			if span < tc.maxAge {
				t.Fatalf("MaxDeliver %d redelivers for %s, less than MaxAge %s", n, span, tc.maxAge)
			}
		})
	}
	if maxDeliver(nil, time.Hour) != -1 {
		t.Fatal("no back-off should mean unlimited deliveries")
	}
}

func TestReplicas(t *testing.T) {
	cases := []struct {
		name   string
		listen string
		routes []string
		want   int
	}{
		{"single node", "", nil, 1},
		{"two nodes", "127.0.0.1:6222", []string{"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223"}, 1},
		{"three nodes listing self", "127.0.0.1:6222", []string{"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"}, 3},
		{"three nodes without self", "10.0.0.1:6222", []string{"nats-route://10.0.0.2:6222", "nats-route://10.0.0.3:6222"}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			if tc.listen != "" {
				c.ClusterName, c.ClusterListen, c.Routes = "c", tc.listen, tc.routes
			}
			if got := c.replicas(); got != tc.want {
				t.Fatalf("replicas %d, want %d", got, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	n := newTestNet(t, "iom")
	cases := []struct {
		name string
		mod  func(*Config)
		is   error
	}{
		{"ok", func(*Config) {}, nil},
		{"no data dir", func(c *Config) { c.DataDir = "" }, ErrConfig},
		{"no authority", func(c *Config) { c.Authority = nil }, ErrConfig},
		{"no directory", func(c *Config) { c.Directory = nil }, ErrConfig},
		{"zero max age", func(c *Config) { c.MaxAge = 0 }, ErrConfig},
		{"oversize messages", func(c *Config) { c.MaxMsgSize = 2 << 20 }, ErrConfig},
		{"bad listen", func(c *Config) { c.Listen = "nohost" }, ErrConfig},
		{"plaintext wildcard", func(c *Config) { c.Listen = ":4222" }, ErrPlaintext},
		{"plaintext public", func(c *Config) { c.Listen = "203.0.113.5:4222" }, ErrPlaintext},
		{"ipv6 loopback", func(c *Config) { c.Listen = "[::1]:4222" }, nil},
		{"localhost", func(c *Config) { c.Listen = "localhost:4222" }, nil},
		{"monitor wildcard", func(c *Config) { c.Monitor = ":8222" }, ErrConfig},
		{"monitor loopback", func(c *Config) { c.Monitor = "127.0.0.1:8222" }, nil},
		{"ca without cert", func(c *Config) { c.TLSCA = "ca.pem" }, ErrConfig},
		{"cluster without listen", func(c *Config) { c.ClusterName = "c" }, ErrConfig},
		{"cluster name with a dot", func(c *Config) { c.ClusterName, c.ClusterListen = "a.b", "127.0.0.1:6222" }, ErrConfig},
		{"cluster with TLS but no cluster CA", func(c *Config) { tlsCluster(c); c.ClusterCA = "" }, ErrConfig},
		{"cluster with TLS and a cluster CA", tlsCluster, nil},
		{"cluster with TLS and a client CA", func(c *Config) { tlsCluster(c); c.ClusterCA, c.TLSCA = "", "ca.pem" }, nil},
		{"cluster CA without a cluster", func(c *Config) { c.TLSCert, c.TLSKey, c.ClusterCA = "c.pem", "k.pem", "ca.pem" }, ErrConfig},
		{"cluster CA without TLS", func(c *Config) { tlsCluster(c); c.TLSCert, c.TLSKey, c.InsecurePlaintext = "", "", true }, ErrConfig},
		{"short cluster secret", func(c *Config) { tlsCluster(c); c.ClusterSecret = "short" }, ErrConfig},
		{"cluster secret with userinfo", func(c *Config) { tlsCluster(c); c.ClusterSecret = testClusterSecret + "@evil:1" }, ErrConfig},
		{"system user not an nkey", func(c *Config) { c.SystemUser = "operator" }, ErrConfig},
		{"system user a seed", func(c *Config) { c.SystemUser = "SUAM" + strings.Repeat("A", 54) }, ErrConfig},
		{"system user an account key", func(c *Config) { c.SystemUser = mustAccountKey(t) }, ErrConfig},
		{"system user", func(c *Config) { c.SystemUser = mustUserKey(t) }, nil},
		{"negative back-off", func(c *Config) { c.BackOff = []time.Duration{-1} }, ErrConfig},
		{"metrics wildcard", func(c *Config) { c.Metrics = ":9080" }, ErrConfig},
		{"metrics loopback", func(c *Config) { c.Metrics = "127.0.0.1:9080" }, nil},
		{"negative max store", func(c *Config) { c.MaxStore = -1 }, ErrConfig},
		{"tiny max memory", func(c *Config) { c.MaxMemory = 1000 }, ErrConfig},
		{"tiny stream buffer", func(c *Config) { c.StreamBuffer = 1 << 20 }, ErrConfig},
		{"tiny client pending", func(c *Config) { c.ClientPending = 1 << 20 }, ErrConfig},
		{"zero usage interval", func(c *Config) { c.UsageInterval = 0 }, ErrConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := n.config(t)
			tc.mod(&c)
			err := c.validate()
			if tc.is == nil && err != nil || tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("validate: %v, want %v", err, tc.is)
			}
		})
	}
}

func tlsCluster(c *Config) {
	c.Listen, c.ClusterListen, c.ClusterName = "0.0.0.0:4222", "0.0.0.0:6222", "c"
	c.TLSCert, c.TLSKey, c.ClusterCA = "cert.pem", "key.pem", "ca.pem"
	c.Routes = []string{"nats-route://broker2:6222"}
	c.ClusterSecret = testClusterSecret
}

func mustUserKey(t *testing.T) string {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

func mustAccountKey(t *testing.T) string {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}
