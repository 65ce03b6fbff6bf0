package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
)

// mustDevAuditData builds the data folder of `rujukan dev` without starting
// anything (authority, agency keys, signed directory) and leaves a gateway
// database for agency with n audit events signed with its key, as a
// stopped gateway leaves it. It returns the data folder.
func mustDevAuditData(t *testing.T, agency string, n int) string {
	t.Helper()
	data := t.TempDir()
	if err := InitDevNetwork(data); err != nil {
		t.Fatal(err)
	}
	gc := DevGatewayConfig(data, agency, "")
	key, err := crypto.LoadEd25519PrivateKey(filepath.Join(gc.Keys, crypto.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(gc.Data, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(gc.Data, gatewayDBFile), mustAuditSigner(t, gc.Agency, key))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range n {
		err := db.Update(func(tx *store.Tx) error {
			return tx.Audit(store.AuditEvent{Actor: "dev-" + agency, Action: "referral.send", Object: fmt.Sprint("r", i), Outcome: "ok"})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return data
}

func TestAuditVerifyDataFolder(t *testing.T) {
	data := mustDevAuditData(t, "iom", 3)

	t.Run("verifies", func(t *testing.T) {
		out, _, err := runCLI(t, "audit", "verify", "--data", data, "--agency", "iom")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "audit log of iom verifies: 3 events") {
			t.Errorf("output %q", out)
		}
	})

	t.Run("same as the explicit flags", func(t *testing.T) {
		c, err := DevAuditConfig(data, "iom")
		if err != nil {
			t.Fatal(err)
		}
		want := AuditVerifyConfig{DB: filepath.Join(data, "gateways", "iom", "gateway.db"), Agency: "iom",
			Directory: filepath.Join(data, "network.json"), Authority: "@" + filepath.Join(data, "authority", "authority.pub"),
			WitnessDBs: c.WitnessDBs, OptionalWitnesses: true}
		for id, db := range c.WitnessDBs {
			if id == "iom" || db != filepath.Join(data, "gateways", id, "gateway.db") {
				t.Errorf("witness %s: %s", id, db)
			}
		}
		if !reflect.DeepEqual(c, want) {
			t.Fatalf("config %+v, want %+v", c, want)
		}
		if _, _, err := runCLI(t, "audit", "verify", "--db", c.DB, "--agency", c.Agency, "--directory", c.Directory, "--authority", c.Authority); err != nil {
			t.Fatal(err)
		}
	})

	// Each refusal is one line and a non-nil error (a non-zero exit).
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown agency", []string{"--data", data, "--agency", "nobody"}, `unknown agency "nobody"`},
		{"agency without a gateway database", []string{"--data", data, "--agency", "police"}, "has no gateway database"},
		{"agency id that is a path", []string{"--data", data, "--agency", "../iom"}, "not an agency id"},
		{"no agency", []string{"--data", data}, "needs --agency"},
		{"not a data folder", []string{"--data", t.TempDir(), "--agency", "iom"}, "not a rujukan dev data folder"},
		{"with --config", []string{"--data", data, "--agency", "iom", "--config", "gateway.yaml"}, "not both"},
		{"with --db", []string{"--data", data, "--agency", "iom", "--db", "x.db"}, "give only --agency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, append([]string{"audit", "verify"}, tc.args...)...)
			if err == nil {
				t.Fatal("succeeded")
			}
			if !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line saying %q", err, tc.msg)
			}
		})
	}

	t.Run("gateway running", func(t *testing.T) {
		// A running gateway holds the database open for writing.
		gc := DevGatewayConfig(data, "iom", "")
		key, err := crypto.LoadEd25519PrivateKey(filepath.Join(gc.Keys, crypto.SigningKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(filepath.Join(gc.Data, gatewayDBFile), mustAuditSigner(t, gc.Agency, key))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		_, _, err = runCLI(t, "audit", "verify", "--data", data, "--agency", "iom")
		if !errors.Is(err, store.ErrLocked) {
			t.Fatalf("error %v, want store.ErrLocked", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "the gateway of iom is running") || !strings.Contains(msg, "stop it first") || strings.Contains(msg, "\n") {
			t.Fatalf("error %q is not one line saying the gateway runs", msg)
		}
	})
}

// mustAuditSigner returns the audit checkpoint signer of agency.
func mustAuditSigner(t testing.TB, agency string, key ed25519.PrivateKey) *crypto.AuditNoteSigner {
	t.Helper()
	s, err := crypto.NewAuditNoteSigner(agency, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
