package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

type brokerTestNet struct {
	priv  ed25519.PrivateKey
	pub   string
	dir   crypto.Directory
	seeds map[string][]byte
	path  string
}

func newBrokerTestNet(t *testing.T, ids ...string) *brokerTestNet {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	n := &brokerTestNet{priv: priv, pub: base64.StdEncoding.EncodeToString(pub), seeds: map[string][]byte{},
		path: filepath.Join(t.TempDir(), "network.json")}
	n.dir = crypto.Directory{Version: 1, Network: "test", IssuedAt: time.Now().UTC().Truncate(time.Second)}
	for _, id := range ids {
		n.add(t, id)
	}
	n.write(t)
	return n
}

func (n *brokerTestNet) add(t *testing.T, id string) {
	idn, err := crypto.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	spub, _, _ := ed25519.GenerateKey(nil)
	nk, err := broker.NewNATSKey()
	if err != nil {
		t.Fatal(err)
	}
	n.seeds[id] = nk.Seed
	n.dir.Agencies = append(n.dir.Agencies, crypto.Agency{ID: id, Kind: "shelter", Name: id, Status: crypto.StatusActive,
		Keys: []crypto.PublicKey{
			crypto.NewPublicKey(crypto.UseEncrypt, idn.Recipient()),
			crypto.NewPublicKey(crypto.UseSign, base64.StdEncoding.EncodeToString(spub)),
			crypto.NewPublicKey(crypto.UseNATS, nk.Public),
		}})
}

func (n *brokerTestNet) write(t *testing.T) {
	b, err := crypto.SignDirectory(&n.dir, n.priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBrokerCommandRefuses(t *testing.T) {
	n := newBrokerTestNet(t, "iom")
	base := []string{"--network", n.path, "--authority", n.pub, "--data", t.TempDir()}
	cases := []struct {
		name string
		args []string
		is   error
		msg  string
	}{
		{"missing flags", []string{"--listen", "127.0.0.1:0"}, nil, "missing --network, --authority, --data"},
		{"plaintext on all interfaces", append(base, "--listen", "0.0.0.0:4222"), broker.ErrPlaintext, "without TLS"},
		{"plaintext on a LAN address", append(base, "--listen", "192.168.1.10:4222"), broker.ErrPlaintext, "--insecure-plaintext"},
		{"plaintext cluster routes", append(base, "--cluster-name", "c", "--cluster-listen", "0.0.0.0:6222"), broker.ErrPlaintext, "cluster listen"},
		{"monitor off loopback", append(base, "--monitor", "0.0.0.0:8222"), broker.ErrConfig, "loopback"},
		{"tls cert without key", append(base, "--tls-cert", "c.pem"), broker.ErrConfig, "go together"},
		{"bad authority", []string{"--network", n.path, "--authority", "bm90IGEga2V5", "--data", t.TempDir()}, nil, "authority"},
		{"other authority", []string{"--network", n.path, "--authority", base64.StdEncoding.EncodeToString(make([]byte, 32)), "--data", t.TempDir()}, crypto.ErrDirectorySignature, "pinned authority"},
		{"missing directory", []string{"--network", n.path + ".missing", "--authority", n.pub, "--data", t.TempDir()}, os.ErrNotExist, "no such file"},
		{"bad log level", append(base, "--log-level", "loud"), nil, "log-level"},
		{"bad route", append(base, "--cluster-name", "c", "--cluster-listen", "127.0.0.1:6222", "--routes", "http://x"), broker.ErrConfig, "nats-route"},
		{"cluster without a secret", append(base, "--cluster-name", "c", "--cluster-listen", "127.0.0.1:6222"), broker.ErrConfig, "--cluster-secret-file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := Main(context.Background(), Env{Stdout: &stderr, Stderr: &stderr, Getenv: func(string) string { return "" }},
				append([]string{"broker"}, tc.args...))
			if err == nil {
				t.Fatal("broker started")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %q does not wrap %q", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line saying %q", err, tc.msg)
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBrokerCommandRunsAndReloads(t *testing.T) {
	n := newBrokerTestNet(t, "iom", "shelter")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	pidFile := filepath.Join(t.TempDir(), "broker.pid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	env := Env{Stdout: &logs, Stderr: &logs, Getenv: func(string) string { return "" }}
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, env, []string{"broker", "--network", n.path, "--authority", n.pub, "--data", t.TempDir(),
			"--listen", addr, "--pid-file", pidFile})
	}()
	url := "nats://" + addr
	connect := func(id string) (*client.Client, error) {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return client.Connect(cctx, url, id, n.seeds[id], client.NoRetryOnFailedConnect())
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			select {
			case err := <-done:
				t.Fatalf("broker exited: %v\n%s", err, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("pid file", func() bool { _, err := os.Stat(pidFile); return err == nil })
	c, err := connect("iom")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Publish(ctx, "shelter", "m1", []byte("hello")); err != nil {
		t.Fatal(err)
	}

	// v2 adds an agency; 'broker reload' makes the running broker read it.
	n.dir.Version = 2
	n.add(t, "police")
	n.write(t)
	if err := Main(ctx, env, []string{"broker", "reload", "--pid-file", pidFile}); err != nil {
		t.Fatal(err)
	}
	waitFor("the new agency to log in", func() bool {
		p, err := connect("police")
		if err == nil {
			p.Close()
		}
		return err == nil
	})
	// An older file is refused and logged; the broker keeps running.
	n.dir.Version = 1
	n.write(t)
	if err := Main(ctx, env, []string{"broker", "reload", "--pid", fmt.Sprint(os.Getpid())}); err != nil {
		t.Fatal(err)
	}
	waitFor("the refusal in the log", func() bool { return strings.Contains(logs.String(), "directory reload refused") })
	if p, err := connect("police"); err != nil {
		t.Fatalf("refused reload changed the running configuration: %v", err)
	} else {
		p.Close()
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("broker did not shut down")
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Fatal("pid file left behind")
	}
	if !strings.Contains(logs.String(), "broker stopped") {
		t.Fatalf("no clean shutdown in the log:\n%s", logs.String())
	}
}

func TestBrokerReloadNeedsATarget(t *testing.T) {
	env := Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" }}
	if err := Main(context.Background(), env, []string{"broker", "reload"}); err == nil {
		t.Fatal("reload without a target")
	}
	pf := filepath.Join(t.TempDir(), "pid")
	os.WriteFile(pf, []byte("garbage"), 0o600)
	if err := Main(context.Background(), env, []string{"broker", "reload", "--pid-file", pf}); err == nil || !strings.Contains(err.Error(), "process id") {
		t.Fatalf("garbage pid file: %v", err)
	}
}
