package crypto

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestRotateAgencyKeys: a rotation writes new keys and a new entry, keeps
// the replaced age identity under retired/ (0600) where
// LoadRetiredIdentities finds it, and leaves the JWT issuer key alone.
func TestRotateAgencyKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shelter")
	before, err := GenerateAgencyKeys(dir, "shelter", "shelter", "Shelter", seedNATSKey("shelter"))
	if err != nil {
		t.Fatal(err)
	}
	oldID, err := LoadIdentity(filepath.Join(dir, AgeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	jwtBefore, _ := os.ReadFile(filepath.Join(dir, JWTIssuerKeyFile))
	if ids, err := LoadRetiredIdentities(dir); err != nil || len(ids) != 0 {
		t.Fatalf("retired identities before any rotation: %d, %v", len(ids), err)
	}

	r, err := RotateAgencyKeys(dir, []KeyUse{UseEncrypt, UseSign, UseNATS}, seedNATSKey("shelter 2"))
	if err != nil {
		t.Fatal(err)
	}
	if r.RetiredIdentity != RetiredIdentityPath(dir, oldID.KeyID()) {
		t.Errorf("retired identity at %s, want %s", r.RetiredIdentity, RetiredIdentityPath(dir, oldID.KeyID()))
	}
	if st, err := os.Stat(r.RetiredIdentity); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("retired identity file: %v %v", st, err)
	}
	ids, err := LoadRetiredIdentities(dir)
	if err != nil || len(ids) != 1 || ids[0].KeyID() != oldID.KeyID() {
		t.Fatalf("retired identities: %v, %v", ids, err)
	}
	cur, err := LoadIdentity(filepath.Join(dir, AgeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := LoadSigner(filepath.Join(dir, SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	entry, err := ReadAgencyFile(filepath.Join(dir, AgencyFile))
	if err != nil {
		t.Fatal(err)
	}
	for use, want := range map[KeyUse]string{UseEncrypt: cur.KeyID(), UseSign: signer.KeyID(), UseNATS: KeyID(UseNATS, seedNATSKey("shelter 2").Public)} {
		k, ok := entry.ActiveKey(use)
		if !ok || k.ID != want || r.New[use] != want {
			t.Errorf("new %s key: entry %v, reported %s, want %s", use, k, r.New[use], want)
		}
		old, _ := before.ActiveKey(use)
		if r.Replaced[use] != old.ID || old.ID == want {
			t.Errorf("replaced %s key reported %s, was %s", use, r.Replaced[use], old.ID)
		}
	}
	if jwtAfter, _ := os.ReadFile(filepath.Join(dir, JWTIssuerKeyFile)); string(jwtAfter) != string(jwtBefore) {
		t.Error("the JWT issuer key changed")
	}

	// The new entry rotates the directory entry.
	d := NewDirectory("test", nil)
	if err := d.Add(*before); err != nil {
		t.Fatal(err)
	}
	if err := d.Rotate(*r.Entry, testNow); err != nil {
		t.Fatal(err)
	}
	a, _ := d.Agency("shelter")
	if k, _ := a.Key(UseEncrypt, oldID.KeyID()); k.Status != StatusRetired {
		t.Fatalf("old encryption key after Rotate: %+v", k)
	}

	// Only the signing key, a second time: the age identity stays.
	r2, err := RotateAgencyKeys(dir, []KeyUse{UseSign}, NATSKey{})
	if err != nil {
		t.Fatal(err)
	}
	if r2.RetiredIdentity != "" || len(r2.New) != 1 {
		t.Fatalf("signing-only rotation: %+v", r2)
	}
	if again, _ := LoadIdentity(filepath.Join(dir, AgeKeyFile)); again.KeyID() != cur.KeyID() {
		t.Fatal("a signing-only rotation changed the age identity")
	}

	// A retired identity readable by others is refused.
	if err := os.Chmod(r.RetiredIdentity, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRetiredIdentities(dir); !errors.Is(err, ErrKeyFilePermissions) {
		t.Fatalf("retired identity with mode 0644: %v", err)
	}
}

// TestRotateAgencyKeysRefuses: a key directory whose age.key is not the
// key its entry lists is not rotated (that would retire the wrong key).
func TestRotateAgencyKeysRefuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "iom")
	if _, err := GenerateAgencyKeys(dir, "iom", "iom", "", seedNATSKey("iom")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if _, err := GenerateAgencyKeys(other, "other", "iom", "", seedNATSKey("other")); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(other, AgeKeyFile))
	if err := WritePrivateFile(filepath.Join(dir, AgeKeyFile), raw, true); err != nil {
		t.Fatal(err)
	}
	if _, err := RotateAgencyKeys(dir, []KeyUse{UseEncrypt}, NATSKey{}); err == nil {
		t.Fatal("rotated a key directory whose age.key does not match its entry")
	}
	if _, err := os.Stat(filepath.Join(dir, RetiredDir)); err == nil {
		t.Fatal("a refused rotation retired a key")
	}
	if _, err := RotateAgencyKeys(dir, []KeyUse{"jwt"}, NATSKey{}); err == nil {
		t.Fatal("rotated an unknown key use")
	}
}
