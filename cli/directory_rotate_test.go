package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/crypto"
)

// TestDirectoryRotateKeys: `directory rotate --keys` makes the agency's new
// keys in its key folder, keeps the old age identity there for decryption,
// retires the replaced encryption and signing keys in the draft for
// --retire-for, revokes the old NATS key, and says all of it.
func TestDirectoryRotateKeys(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	mustRunKey(t, "keygen", "--agency", "iom", "--kind", "iom", "--out", p("iom"))
	mustRunKey(t, "keygen", "--agency", "shelter", "--kind", "shelter", "--out", p("shelter"))
	mustRunKey(t, "directory", "init", "--out", p("draft.json"), "--authority-key", p("authority.pem"))
	mustRunKey(t, "directory", "add", "--draft", p("draft.json"), p("iom/agency.json"), p("shelter/agency.json"))
	before, err := crypto.ReadAgencyFile(p("shelter/agency.json"))
	if err != nil {
		t.Fatal(err)
	}
	oldEnc, _ := before.ActiveKey(crypto.UseEncrypt)
	oldSign, _ := before.ActiveKey(crypto.UseSign)
	oldNATS, _ := before.ActiveKey(crypto.UseNATS)

	start := time.Now()
	out := mustRunKey(t, "directory", "rotate", "--draft", p("draft.json"), "--retire-for", "48h", "--keys", p("shelter"))
	after, err := crypto.ReadAgencyFile(p("shelter/agency.json"))
	if err != nil {
		t.Fatal(err)
	}
	newEnc, _ := after.ActiveKey(crypto.UseEncrypt)
	newSign, _ := after.ActiveKey(crypto.UseSign)
	retired := crypto.RetiredIdentityPath(p("shelter"), oldEnc.ID)
	for _, want := range []string{
		"shelter: active: encrypt " + newEnc.ID + " (new), sign " + newSign.ID + " (new)",
		"shelter: retired for decryption: encrypt " + oldEnc.ID + " (was active)",
		"its private key stays in " + retired,
		"shelter: retired: sign " + oldSign.ID + " (was active)",
		"shelter: revoked: nats " + oldNATS.ID + " (was active)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rotate output lacks %q:\n%s", want, out)
		}
	}
	if st, err := os.Stat(retired); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("retired identity: %v %v", st, err)
	}
	ids, err := crypto.LoadRetiredIdentities(p("shelter"))
	if err != nil || len(ids) != 1 || ids[0].KeyID() != oldEnc.ID {
		t.Fatalf("retired identities: %v %v", ids, err)
	}

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
	for _, tc := range []struct {
		use  crypto.KeyUse
		id   string
		want crypto.Status
	}{{crypto.UseEncrypt, oldEnc.ID, crypto.StatusRetired}, {crypto.UseSign, oldSign.ID, crypto.StatusRetired},
		{crypto.UseNATS, oldNATS.ID, crypto.StatusRevoked}, {crypto.UseEncrypt, newEnc.ID, crypto.StatusActive}} {
		k, ok := a.Key(tc.use, tc.id)
		if !ok || k.Status != tc.want {
			t.Fatalf("%s key %s in the signed directory: %+v, want %s", tc.use, tc.id, k, tc.want)
		}
		if tc.want == crypto.StatusRetired {
			if lo, hi := start.Add(48*time.Hour-time.Second), time.Now().Add(48*time.Hour); k.NotAfter.Before(lo) || k.NotAfter.After(hi) {
				t.Errorf("%s key not_after %s, want 48h from the rotation", tc.use, k.NotAfter)
			}
		}
	}
	out = mustRunKey(t, "directory", "verify", "--authority", "@"+p("authority.pub"), p("network.json"))
	if !strings.Contains(out, oldEnc.ID+" retired until ") {
		t.Errorf("verify does not show the retired key:\n%s", out)
	}

	// A second rotation with --retire-for 0 revokes the keys it replaces;
	// the earlier retired identity is still listed with its file.
	out = mustRunKey(t, "directory", "rotate", "--draft", p("draft.json"), "--retire-for", "0", "--use", "encrypt", "--keys", p("shelter"))
	if !strings.Contains(out, "shelter: revoked: encrypt "+newEnc.ID+" (was active)") || !strings.Contains(out, "retired for decryption: encrypt "+oldEnc.ID) {
		t.Errorf("second rotation output:\n%s", out)
	}
	if ids, err := crypto.LoadRetiredIdentities(p("shelter")); err != nil || len(ids) != 2 {
		t.Fatalf("retired identities after two rotations: %d %v", len(ids), err)
	}
}

// TestDirectoryRotateRefuses: a key folder out of step with the draft, an
// unknown agency or a bad flag changes nothing.
func TestDirectoryRotateRefuses(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	mustRunKey(t, "keygen", "--agency", "iom", "--kind", "iom", "--out", p("iom"))
	mustRunKey(t, "keygen", "--agency", "dinsos", "--kind", "dinsos", "--out", p("dinsos"))
	mustRunKey(t, "directory", "init", "--out", p("draft.json"), "--authority-key", p("authority.pem"))
	mustRunKey(t, "directory", "add", "--draft", p("draft.json"), p("iom/agency.json"))
	draft, _ := os.ReadFile(p("draft.json"))
	ageKey, _ := os.ReadFile(p("iom/age.key"))

	// The agency rotated on its own (keygen --rotate): the folder no longer
	// holds the draft's keys, so --keys refuses; its agency.json applies.
	out := mustRunKey(t, "keygen", "--rotate", "--use", "encrypt", "--out", p("iom"))
	if !strings.Contains(out, "retired age identity") {
		t.Errorf("keygen --rotate output:\n%s", out)
	}
	rotated, _ := os.ReadFile(p("iom/age.key"))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"out of step", []string{"directory", "rotate", "--draft", p("draft.json"), "--keys", p("iom")}, "out of step"},
		{"not in the draft", []string{"directory", "rotate", "--draft", p("draft.json"), "--keys", p("dinsos")}, "not in the directory"},
		{"bad use", []string{"directory", "rotate", "--draft", p("draft.json"), "--use", "jwt", "--keys", p("iom")}, "key use"},
		{"negative period", []string{"directory", "rotate", "--draft", p("draft.json"), "--retire-for", "-1h", p("iom/agency.json")}, "negative"},
		{"nothing to rotate", []string{"directory", "rotate", "--draft", p("draft.json")}, "required"},
		{"rotate with force", []string{"keygen", "--rotate", "--force", "--out", p("iom")}, "do not go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runKeyCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v does not mention %q\n%s", err, tc.want, out)
			}
		})
	}
	if now, _ := os.ReadFile(p("draft.json")); string(now) != string(draft) {
		t.Error("a refused rotation changed the draft")
	}
	if now, _ := os.ReadFile(p("iom/age.key")); string(now) != string(rotated) || string(now) == string(ageKey) {
		t.Error("a refused rotation changed the key folder")
	}
	out = mustRunKey(t, "directory", "rotate", "--draft", p("draft.json"), p("iom/agency.json"))
	if !strings.Contains(out, "retired for decryption") || !strings.Contains(out, filepath.Join(p("iom"), "retired")) {
		t.Errorf("rotate with the agency's entry:\n%s", out)
	}
}
