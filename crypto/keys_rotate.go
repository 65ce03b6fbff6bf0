package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// RetiredIdentityPath returns where a key directory keeps the retired age
// identity with the given key id.
func RetiredIdentityPath(dir, keyID string) string {
	return filepath.Join(dir, RetiredDir, "age-"+keyID+".key")
}

// LoadRetiredIdentities loads every retired age identity of a key directory
// (dir/retired/*.key), each a private key file checked like age.key. A
// missing folder holds none. A gateway hands them to its Opener beside the
// current identity: they open what was sealed to them, and nothing is ever
// sealed to them again.
func LoadRetiredIdentities(dir string) ([]*Identity, error) {
	rdir := filepath.Join(dir, RetiredDir)
	st, err := os.Lstat(rdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read retired keys: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrKeyFilePermissions, rdir)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, others may add keys to it; run: chmod 700 %s", ErrKeyFilePermissions, rdir, perm, rdir)
	}
	entries, err := os.ReadDir(rdir)
	if err != nil {
		return nil, fmt.Errorf("failed to read retired keys: %w", err)
	}
	var ids []*Identity
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".key") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		id, err := LoadIdentity(filepath.Join(rdir, e.Name()))
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// RotatedKeys says what RotateAgencyKeys changed in a key directory.
type RotatedKeys struct {
	// Entry is the agency's new public entry (also written to agency.json):
	// its active keys, to give to Directory.Rotate.
	Entry *Agency
	// New and Replaced are the key ids of the new keys and of the keys they
	// replace, by use.
	New, Replaced map[KeyUse]string
	// RetiredIdentity is the file that keeps the replaced age identity,
	// for decryption only; empty when the encryption key was not rotated.
	RetiredIdentity string
}

// RotateAgencyKeys makes new keys of the given uses (UseEncrypt, UseSign,
// UseNATS) for the agency whose key directory is dir, and rewrites its
// agency.json with them. The current age identity is first copied to
// dir/retired/age-<key id>.key (0600), where the gateway keeps opening what
// was sealed to it; the replaced signing key and NATS seed are overwritten,
// since nothing needs them again (the directory keeps their public keys).
// The NATS key pair nk comes from the caller (broker.NewNATSKey) and is used
// only when UseNATS is asked for. The JWT issuer key does not change. The
// gateway of the agency must be stopped: it holds the old keys.
func RotateAgencyKeys(dir string, uses []KeyUse, nk NATSKey) (*RotatedKeys, error) {
	if len(uses) == 0 {
		return nil, errors.New("rotate: no key use given")
	}
	for _, u := range uses {
		if u != UseEncrypt && u != UseSign && u != UseNATS {
			return nil, fmt.Errorf("rotate: unknown key use %q (encrypt, sign or nats)", u)
		}
	}
	cur, err := ReadAgencyFile(filepath.Join(dir, AgencyFile))
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	out := &RotatedKeys{New: map[KeyUse]string{}, Replaced: map[KeyUse]string{}}
	entry := *cur
	entry.Keys = nil
	for _, k := range cur.Keys {
		if k.Status == StatusActive && !slices.Contains(uses, k.Use) {
			entry.Keys = append(entry.Keys, k)
		}
	}
	type file struct {
		name string
		data []byte
	}
	var files []file

	if slices.Contains(uses, UseEncrypt) {
		agePath := filepath.Join(dir, AgeKeyFile)
		old, err := LoadIdentity(agePath)
		if err != nil {
			return nil, fmt.Errorf("rotate: %w", err)
		}
		if k, ok := cur.ActiveKey(UseEncrypt); !ok || k.ID != old.KeyID() {
			return nil, fmt.Errorf("rotate: %s does not hold the encryption key that %s lists; refusing to retire it", agePath, filepath.Join(dir, AgencyFile))
		}
		raw, err := ReadPrivateFile(agePath)
		if err != nil {
			return nil, fmt.Errorf("rotate: %w", err)
		}
		out.RetiredIdentity = RetiredIdentityPath(dir, old.KeyID())
		if err := os.MkdirAll(filepath.Dir(out.RetiredIdentity), 0o700); err != nil {
			return nil, fmt.Errorf("rotate: failed to create %s: %w", filepath.Dir(out.RetiredIdentity), err)
		}
		if err := WritePrivateFile(out.RetiredIdentity, raw, false); err != nil {
			// A copy of this very key, left by a rotation that stopped
			// half-way, is fine.
			prev, rerr := ReadPrivateFile(out.RetiredIdentity)
			if rerr != nil || !bytes.Equal(prev, raw) {
				return nil, fmt.Errorf("rotate: %w", err)
			}
		}
		id, err := GenerateIdentity()
		if err != nil {
			return nil, err
		}
		files = append(files, file{AgeKeyFile, []byte(fmt.Sprintf("# rujukan agency %s\n# recipient: %s\n%s\n", cur.ID, id.Recipient(), id.id.String()))})
		entry.Keys = append(entry.Keys, NewPublicKey(UseEncrypt, id.Recipient()))
		out.Replaced[UseEncrypt], out.New[UseEncrypt] = old.KeyID(), id.KeyID()
	}
	if slices.Contains(uses, UseSign) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("failed to generate signing key: %w", err)
		}
		pemBytes, err := MarshalEd25519PrivateKey(key)
		if err != nil {
			return nil, err
		}
		files = append(files, file{SigningKeyFile, pemBytes})
		k := NewPublicKey(UseSign, base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)))
		entry.Keys = append(entry.Keys, k)
		if old, ok := cur.ActiveKey(UseSign); ok {
			out.Replaced[UseSign] = old.ID
		}
		out.New[UseSign] = k.ID
	}
	if slices.Contains(uses, UseNATS) {
		if !validNATSPublicKey(nk.Public) || len(nk.Seed) != natsSeedLen || !bytes.HasPrefix(nk.Seed, []byte("SU")) || !base32Only(nk.Seed[2:]) {
			return nil, errors.New("rotate: NATS key: not a NATS user key pair")
		}
		files = append(files, file{NATSSeedFile, append(append([]byte(nil), nk.Seed...), '\n')})
		k := NewPublicKey(UseNATS, nk.Public)
		entry.Keys = append(entry.Keys, k)
		if old, ok := cur.ActiveKey(UseNATS); ok {
			out.Replaced[UseNATS] = old.ID
		}
		out.New[UseNATS] = k.ID
	}
	if err := (&Directory{Version: 1, Agencies: []Agency{entry}}).Validate(); err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	pub, err := json.MarshalIndent(entry, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode agency entry: %w", err)
	}
	for _, f := range files {
		if err := WritePrivateFile(filepath.Join(dir, f.name), f.data, true); err != nil {
			return nil, fmt.Errorf("rotate: %w", err)
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, AgencyFile), append(pub, '\n'), 0o644, true); err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	out.Entry = &entry
	return out, nil
}
