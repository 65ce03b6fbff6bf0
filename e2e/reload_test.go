package e2e

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/membus"
	"github.com/rujukan/rujukan/crypto"
)

// resign revokes agency id in the network's directory, signs it with key
// at a higher version and writes it over network.json.
func resign(t *testing.T, n *network, revoke string, key ed25519.PrivateKey) {
	t.Helper()
	path := filepath.Join(n.data, "network.json")
	dir, err := crypto.LoadDirectory(path, mustAuthority(t, n))
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.Revoke(revoke, ""); err != nil {
		t.Fatal(err)
	}
	dir.Version++
	signed, err := crypto.SignDirectory(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, signed, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDirectoryReload: a gateway puts a newer signed directory in force
// without a restart, and refuses a stale or forged one while keeping the
// one in force.
func TestDirectoryReload(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	n.startGateway("iom")
	iom := n.inproc["iom"].Gateway

	path := filepath.Join(n.data, "network.json")
	genuine, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Forged: signed by another key.
	_, forger, _ := ed25519.GenerateKey(nil)
	resign(t, n, "shelter", forger)
	if err := iom.Reload(); !errors.Is(err, crypto.ErrDirectorySignature) {
		t.Fatalf("forged directory: %v", err)
	}
	if r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral("shelter")); r.Status != 202 {
		t.Fatalf("after a refused reload the shelter should still be reachable: %d %s", r.Status, r.Raw)
	}

	// Genuine: the shelter is revoked from now on.
	authority, err := crypto.LoadEd25519PrivateKey(filepath.Join(n.data, "authority", "authority.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, genuine, 0o644); err != nil {
		t.Fatal(err)
	}
	resign(t, n, "shelter", authority)
	if err := iom.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral("shelter"))
	if r.Status != 422 || !containsField(r, "/to") {
		t.Fatalf("referral to a revoked agency: %d %s, want 422 on /to", r.Status, r.Raw)
	}
	// The same file again is not newer.
	if err := iom.Reload(); !errors.Is(err, crypto.ErrDirectoryStale) {
		t.Fatalf("same version: %v", err)
	}
}

func containsField(r response, field string) bool {
	errs, _ := r.JSON["errors"].([]any)
	for _, e := range errs {
		if m, ok := e.(map[string]any); ok && m["field"] == field {
			return true
		}
	}
	return false
}

// TestDirectoryRollbackRefused: after a newer directory was accepted, a
// gateway does not start on an older one (which could bring revoked keys
// back).
func TestDirectoryRollbackRefused(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	path := filepath.Join(n.data, "network.json")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	authority, err := crypto.LoadEd25519PrivateKey(filepath.Join(n.data, "authority", "authority.pem"))
	if err != nil {
		t.Fatal(err)
	}
	n.startGateway("iom")
	resign(t, n, "shelter", authority)
	if err := n.inproc["iom"].Gateway.Reload(); err != nil {
		t.Fatal(err)
	}
	n.stopGateway("iom")
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := gateway.LoadKeys(n.config("iom"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = gateway.New(n.config("iom"), keys, membus.New().Bus("iom"), gateway.Options{Logger: quietLogger(t)})
	if !errors.Is(err, crypto.ErrDirectoryStale) {
		t.Fatalf("start on an older directory: %v, want ErrDirectoryStale", err)
	}
}
