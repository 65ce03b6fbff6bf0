package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rujukan/rujukan/crypto"
)

// runKeyCLI runs the program with args and returns its standard output.
func runKeyCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	err := Main(context.Background(), env, args)
	return out.String() + errOut.String(), err
}

func mustRunKey(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runKeyCLI(t, args...)
	if err != nil {
		t.Fatalf("rujukan %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestDirectoryCommands(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	mustRunKey(t, "keygen", "--agency", "iom", "--kind", "iom", "--name", "IOM Indonesia", "--out", p("iom"))
	mustRunKey(t, "keygen", "--agency", "shelter", "--kind", "shelter", "--out", p("shelter"))

	out := mustRunKey(t, "directory", "init", "--out", p("draft.json"), "--authority-key", p("authority.pem"))
	if !strings.Contains(out, "authority key created") {
		t.Errorf("init output: %s", out)
	}
	if st, err := os.Stat(p("authority.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("authority.pem: %v %v", st, err)
	}
	if _, err := runKeyCLI(t, "directory", "init", "--out", p("draft.json"), "--authority-key", p("authority.pem")); err == nil {
		t.Error("init overwrote an existing draft")
	}
	mustRunKey(t, "directory", "add", "--draft", p("draft.json"), p("iom/agency.json"), p("shelter/agency.json"))
	out = mustRunKey(t, "directory", "sign", "--draft", p("draft.json"), "--authority-key", p("authority.pem"), "--out", p("network.json"))
	if !strings.Contains(out, "version 2") {
		t.Errorf("first sign: %s", out)
	}
	out = mustRunKey(t, "directory", "verify", "--authority", "@"+p("authority.pub"), p("network.json"))
	if !strings.Contains(out, "version 2") || !strings.Contains(out, "iom") || !strings.Contains(out, "shelter") {
		t.Errorf("verify: %s", out)
	}

	// Revoke shelter's signing key, then the agency; each signature bumps
	// the version.
	entry, err := crypto.ReadAgencyFile(p("shelter/agency.json"))
	if err != nil {
		t.Fatal(err)
	}
	sign, _ := entry.ActiveKey(crypto.UseSign)
	mustRunKey(t, "directory", "revoke", "--draft", p("draft.json"), "--agency", "shelter", "--key", sign.ID)
	mustRunKey(t, "directory", "revoke", "--draft", p("draft.json"), "--agency", "shelter")
	mustRunKey(t, "directory", "sign", "--draft", p("draft.json"), "--authority-key", p("authority.pem"), "--out", p("network.json"))
	pub, err := crypto.ParseAuthorityKey("@" + p("authority.pub"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := crypto.LoadDirectory(p("network.json"), pub)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := d.Agency("shelter")
	k, _ := a.Key(crypto.UseSign, sign.ID)
	if d.Version != 3 || a.Status != crypto.StatusRevoked || k.Status != crypto.StatusRevoked {
		t.Fatalf("after revocation: version %d, %+v", d.Version, a)
	}

	// A stale draft never takes the signed file backwards.
	stale := p("stale.json")
	mustRunKey(t, "directory", "init", "--out", stale, "--authority-key", p("authority.pem"))
	mustRunKey(t, "directory", "sign", "--draft", stale, "--authority-key", p("authority.pem"), "--out", p("network.json"))
	if d2, err := crypto.LoadDirectory(p("network.json"), pub); err != nil || d2.Version != 4 {
		t.Fatalf("signing a stale draft: %v, %v", d2, err)
	}

	// A directory signed by another authority is not replaced, and does not
	// verify.
	other := p("other.pem")
	mustRunKey(t, "directory", "init", "--out", p("other-draft.json"), "--authority-key", other)
	if _, err := runKeyCLI(t, "directory", "sign", "--draft", p("other-draft.json"), "--authority-key", other, "--out", p("network.json")); err == nil {
		t.Error("signed over a directory of another authority")
	}
	if _, err := runKeyCLI(t, "directory", "verify", "--authority", "@"+p("other.pub"), p("network.json")); !errors.Is(err, crypto.ErrDirectorySignature) {
		t.Errorf("verify with another authority: %v", err)
	}

	// Tampering is detected.
	b, _ := os.ReadFile(p("network.json"))
	tampered := bytes.Replace(b, []byte(`"rujukan"`), []byte(`"rujukam"`), 1)
	if bytes.Equal(tampered, b) {
		t.Fatal("test setup: the edit did not apply")
	}
	os.WriteFile(p("tampered.json"), tampered, 0o644)
	if _, err := runKeyCLI(t, "directory", "verify", "--authority", "@"+p("authority.pub"), p("tampered.json")); !errors.Is(err, crypto.ErrDirectorySignature) {
		t.Errorf("verify of a tampered directory: %v", err)
	}

	// A revoked agency cannot be added back.
	if _, err := runKeyCLI(t, "directory", "add", "--draft", p("draft.json"), p("shelter/agency.json")); !errors.Is(err, crypto.ErrAgencyRevoked) {
		t.Errorf("re-adding a revoked agency: %v", err)
	}
}

func TestDirectoryCommandErrors(t *testing.T) {
	dir := t.TempDir()
	mustRunKey(t, "directory", "init", "--out", filepath.Join(dir, "d.json"), "--authority-key", filepath.Join(dir, "a.pem"))
	os.Chmod(filepath.Join(dir, "a.pem"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"directory"}, ""},
		{"unknown subcommand", []string{"directory", "frobnicate"}, "unknown subcommand"},
		{"init without flags", []string{"directory", "init"}, "required"},
		{"open authority key", []string{"directory", "sign", "--draft", filepath.Join(dir, "d.json"),
			"--authority-key", filepath.Join(dir, "a.pem"), "--out", filepath.Join(dir, "n.json")}, "chmod 600"},
		{"revoke unknown agency", []string{"directory", "revoke", "--draft", filepath.Join(dir, "d.json"), "--agency", "nobody"}, "not in the directory"},
		{"verify bad key", []string{"directory", "verify", "--authority", "xyz", filepath.Join(dir, "d.json")}, "authority key"},
		{"verify unsigned draft", []string{"directory", "verify", "--authority", "@" + filepath.Join(dir, "a.pub"), filepath.Join(dir, "d.json")}, "directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runKeyCLI(t, tc.args...)
			if err == nil {
				t.Fatalf("succeeded: %s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}
