package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rujukan/rujukan/crypto"
)

func TestKeygen(t *testing.T) {
	out := filepath.Join(t.TempDir(), "iom")
	stdout := mustRunKey(t, "keygen", "--agency", "iom", "--kind", "iom", "--out", out)
	a, err := crypto.ReadAgencyFile(filepath.Join(out, crypto.AgencyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range a.Keys {
		if !strings.Contains(stdout, k.ID) {
			t.Errorf("output does not list key %s: %s", k.ID, stdout)
		}
	}
	for _, f := range []string{crypto.AgeKeyFile, crypto.SigningKeyFile, crypto.NATSSeedFile, crypto.JWTIssuerKeyFile} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, st, err)
		}
	}

	// Existing keys are kept unless --force.
	if _, err := runKeyCLI(t, "keygen", "--agency", "iom", "--kind", "iom", "--out", out); !errors.Is(err, crypto.ErrKeyFileExists) {
		t.Fatalf("second keygen: %v", err)
	}
	mustRunKey(t, "keygen", "--agency", "iom", "--kind", "iom", "--out", out, "--force")
	b, err := crypto.ReadAgencyFile(filepath.Join(out, crypto.AgencyFile))
	if err != nil {
		t.Fatal(err)
	}
	if a.Keys[0].ID == b.Keys[0].ID {
		t.Error("--force kept the old keys")
	}
}

func TestKeygenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"missing agency", []string{"keygen", "--kind", "iom", "--out", dir}},
		{"missing out", []string{"keygen", "--agency", "iom", "--kind", "iom"}},
		{"bad id", []string{"keygen", "--agency", "IOM Indonesia", "--kind", "iom", "--out", dir}},
		{"stray argument", []string{"keygen", "--agency", "iom", "--kind", "iom", "--out", dir, "extra"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := runKeyCLI(t, tc.args...); err == nil {
				t.Fatalf("succeeded: %s", out)
			}
		})
	}
}
