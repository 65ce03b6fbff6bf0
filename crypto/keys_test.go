package crypto

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateAgencyKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys", "iom")
	nk := seedNATSKey("iom")
	a, err := GenerateAgencyKeys(dir, "iom", "iom", "IOM Indonesia", nk)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		AgeKeyFile: 0o600, SigningKeyFile: 0o600, NATSSeedFile: 0o600, JWTIssuerKeyFile: 0o600,
		JWKSFile: 0o644, AgencyFile: 0o644,
	} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", name, st.Mode().Perm(), want)
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("key directory has mode %04o", st.Mode().Perm())
	}

	// Every private key loads and matches the public entry.
	entry, err := ReadAgencyFile(filepath.Join(dir, AgencyFile))
	if err != nil {
		t.Fatal(err)
	}
	if entry.ID != "iom" || entry.Name != "IOM Indonesia" || len(entry.Keys) != 3 || a.Keys[0] != entry.Keys[0] {
		t.Errorf("agency.json = %+v", entry)
	}
	id, err := LoadIdentity(filepath.Join(dir, AgeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := entry.ActiveKey(UseEncrypt); k.Public != id.Recipient() || !strings.HasPrefix(k.Public, "age1pq1") {
		t.Errorf("encrypt key %s does not match the identity", k.Public)
	}
	s, err := LoadSigner(filepath.Join(dir, SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := entry.ActiveKey(UseSign); k.ID != s.KeyID() || k.Public != s.PublicKeyString() {
		t.Errorf("sign key %+v does not match the signer %s", k, s.KeyID())
	}
	seed, err := ReadPrivateFile(filepath.Join(dir, NATSSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(seed) != string(nk.Seed)+"\n" {
		t.Errorf("nats.nk = %q, want the given seed", seed)
	}
	if k, _ := entry.ActiveKey(UseNATS); k.Public != nk.Public {
		t.Errorf("nats key %s is not the given one (%s)", k.Public, nk.Public)
	}
	jwtKey, err := LoadEd25519PrivateKey(filepath.Join(dir, JWTIssuerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	var set JWKS
	b, _ := os.ReadFile(filepath.Join(dir, JWKSFile))
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	jwtPub := jwtKey.Public().(ed25519.PublicKey)
	want := JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(jwtPub),
		Kid: KeyID("jwt", base64.StdEncoding.EncodeToString(jwtPub)), Alg: "EdDSA", Use: "sig"}
	if len(set.Keys) != 1 || set.Keys[0] != want {
		t.Errorf("jwks.json = %s", b)
	}

	// A second run refuses to overwrite, --force replaces.
	if _, err := GenerateAgencyKeys(dir, "iom", "iom", "", nk); !errors.Is(err, ErrKeyFileExists) {
		t.Errorf("second GenerateAgencyKeys: %v", err)
	}
	b2, err := WriteAgencyKeys(dir, "iom", "iom", "", seedNATSKey("iom-2"), true)
	if err != nil {
		t.Fatal(err)
	}
	if b2.Keys[0] == a.Keys[0] {
		t.Error("overwrite kept the old age key")
	}
}

func TestGenerateAgencyKeysRefuses(t *testing.T) {
	good := seedNATSKey("x")
	account := good
	account.Public = "A" + good.Public[1:]
	lower := good
	lower.Public = strings.ToLower(good.Public)
	swapped := NATSKey{Seed: []byte(good.Public), Public: string(good.Seed)}
	accountSeed := NATSKey{Seed: append([]byte("SA"), good.Seed[2:]...), Public: good.Public}
	for _, tc := range []struct {
		name, id, kind string
		nk             NATSKey
	}{
		{"upper-case id", "IOM", "iom", good},
		{"id with dot", "../x", "iom", good},
		{"empty kind", "iom", "", good},
		{"no NATS key", "iom", "iom", NATSKey{}},
		{"NATS account key", "iom", "iom", account},
		{"NATS key not base32", "iom", "iom", lower},
		{"NATS seed and key swapped", "iom", "iom", swapped},
		{"NATS account seed", "iom", "iom", accountSeed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "k")
			if _, err := GenerateAgencyKeys(dir, tc.id, tc.kind, "", tc.nk); err == nil {
				t.Fatal("succeeded")
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("created the key directory anyway")
			}
		})
	}
}

func TestLoadersRefuseOpenPermissions(t *testing.T) {
	dir := t.TempDir()
	if _, err := GenerateAgencyKeys(dir, "iom", "iom", "", seedNATSKey("iom")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file string
		load func(string) error
	}{
		{"LoadIdentity", AgeKeyFile, func(p string) error { _, err := LoadIdentity(p); return err }},
		{"LoadSigner", SigningKeyFile, func(p string) error { _, err := LoadSigner(p); return err }},
		{"ReadPrivateFile", NATSSeedFile, func(p string) error { _, err := ReadPrivateFile(p); return err }},
		{"LoadEd25519PrivateKey", JWTIssuerKeyFile, func(p string) error { _, err := LoadEd25519PrivateKey(p); return err }},
	} {
		for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o602} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				p := filepath.Join(dir, tc.file)
				if err := os.Chmod(p, mode); err != nil {
					t.Fatal(err)
				}
				defer os.Chmod(p, 0o600)
				err := tc.load(p)
				if !errors.Is(err, ErrKeyFilePermissions) {
					t.Fatalf("error %v", err)
				}
				msg := err.Error()
				if !strings.Contains(msg, p) || !strings.Contains(msg, "chmod 600") || strings.Contains(msg, "\n") {
					t.Errorf("error is not one line naming the file and the fix: %q", msg)
				}
			})
		}
	}
}

func TestLoadersRefuseWrongKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := WritePrivateFile(p, []byte(content), true); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsaLike := "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"identity: X25519", func() error {
			_, err := LoadIdentity(write("x.key", "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX\n"))
			return err
		}()},
		{"identity: empty", func() error { _, err := LoadIdentity(write("e.key", "# nothing\n\n")); return err }()},
		{"identity: two", func() error {
			a := "AGE-SECRET-KEY-PQ-1" + strings.Repeat("Q", 58)
			_, err := LoadIdentity(write("2.key", a+"\n"+a+"\n"))
			return err
		}()},
		{"signer: not PEM", func() error { _, err := LoadSigner(write("s.pem", "hello")); return err }()},
		{"signer: wrong block", func() error { _, err := LoadSigner(write("r.pem", rsaLike)); return err }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, ErrKeyMalformed) {
				t.Fatalf("error %v, want ErrKeyMalformed", tc.err)
			}
		})
	}
	if _, err := LoadSigner(filepath.Join(dir, "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateFile(filepath.Join(dir, "d")); !errors.Is(err, ErrKeyFilePermissions) {
		t.Errorf("directory: %v", err)
	}
}

func TestWritePrivateFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := WritePrivateFile(p, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	if err := WritePrivateFile(p, []byte("two"), false); !errors.Is(err, ErrKeyFileExists) {
		t.Fatalf("second write: %v", err)
	}
	if b, _ := ReadPrivateFile(p); !bytes.Equal(b, []byte("one")) {
		t.Fatalf("file holds %q", b)
	}
	if err := WritePrivateFile(p, []byte("two"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := ReadPrivateFile(p); !bytes.Equal(b, []byte("two")) {
		t.Fatalf("file holds %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestSignerKeyID(t *testing.T) {
	k := seedKey("x")
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != KeyID(UseSign, base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))) {
		t.Error("key id")
	}
	if _, err := NewSigner(k[:10]); !errors.Is(err, ErrKeyMalformed) {
		t.Errorf("short key: %v", err)
	}
}

// A key file reached through a symbolic link, or owned by another user, is
// refused: whoever controls the link or owns the file can plant a key.
func TestPrivateFileLinksAndOwners(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.pem")
	if err := os.WriteFile(real, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateFile(real); err != nil {
		t.Fatalf("plain file: %v", err)
	}
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateFile(link); err == nil {
		t.Error("a symbolic link was followed")
	}
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	if err := os.Chown(real, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateFile(real); !errors.Is(err, ErrKeyFilePermissions) {
		t.Errorf("a file owned by another user: %v", err)
	}
}
