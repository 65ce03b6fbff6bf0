package crypto

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
)

// File names of an agency's key directory, as written by GenerateAgencyKeys.
const (
	AgeKeyFile       = "age.key"        // age hybrid identity, AGE-SECRET-KEY-PQ-1... (private)
	SigningKeyFile   = "signing.pem"    // Ed25519 envelope and receipt signing key, PKCS#8 (private)
	NATSSeedFile     = "nats.nk"        // NATS nkey user seed, SU... (private)
	JWTIssuerKeyFile = "jwt-issuer.pem" // Ed25519 JWT issuer key, PKCS#8 (private)
	JWKSFile         = "jwks.json"      // public JWT issuer key set
	AgencyFile       = "agency.json"    // public directory entry
	// RetiredDir holds the age identities a rotation retired, one file
	// each (retired/age-<key id>.key, private), kept for decryption only.
	RetiredDir = "retired"
)

// MaxKeyFileSize caps what the key loaders read.
const MaxKeyFileSize = 64 << 10

// Key file errors.
var (
	// ErrKeyFilePermissions is returned for a private key file that group or
	// others may read or write, or that is not a regular file.
	ErrKeyFilePermissions = errors.New("private key file is accessible by group or others")
	// ErrKeyFileExists is returned when writing a private key file would
	// overwrite an existing one.
	ErrKeyFileExists = errors.New("private key file already exists")
	// ErrKeyMalformed is returned for a key file that does not hold exactly
	// one key of the expected type.
	ErrKeyMalformed = errors.New("malformed key file")
)

// Signer signs envelopes and receipts with an agency's Ed25519 key. It
// signs only the domain-separated inputs of this package, never bytes chosen
// by a caller, so it cannot be used as a general signing oracle.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
}

// NewSigner returns a Signer for an Ed25519 private key. Its key id is
// KeyID(UseSign, base64(public key)), as listed in the directory.
func NewSigner(key ed25519.PrivateKey) (*Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: Ed25519 private key has %d bytes", ErrKeyMalformed, len(key))
	}
	pub := key.Public().(ed25519.PublicKey)
	return &Signer{key: key, keyID: KeyID(UseSign, base64.StdEncoding.EncodeToString(pub))}, nil
}

// KeyID returns the directory key id of the signer's public key.
func (s *Signer) KeyID() string { return s.keyID }

// PublicKey returns the signer's public key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// PublicKeyString returns the public key as listed in the directory
// (standard base64).
func (s *Signer) PublicKeyString() string { return base64.StdEncoding.EncodeToString(s.PublicKey()) }

// PrivateKey returns the private key, for a component of the same agency
// (such as the gateway's audit log) that signs its own data. Such a caller
// must sign only under a domain-separation prefix of its own, distinct from
// the "rujukan/v1/envelope/..." and "rujukan/v1/receipt" prefixes of this
// package, or it could be made to forge envelopes or receipts.
func (s *Signer) PrivateKey() ed25519.PrivateKey { return s.key }

func (s *Signer) sign(msg []byte) []byte { return ed25519.Sign(s.key, msg) }

// ReadPrivateFile reads a private key file after checking that it is a
// regular file that neither group nor others can access. The error is one
// line that names the file and says how to fix it.
func ReadPrivateFile(path string) ([]byte, error) {
	f, err := openNoFollow(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open private key file (symbolic links are not followed): %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to stat private key file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFilePermissions, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run: chmod 600 %s", ErrKeyFilePermissions, path, perm, path)
	}
	if err := ownedBySelf(st); err != nil {
		return nil, fmt.Errorf("%w: %s %v; run: chown $(id -u) %s", ErrKeyFilePermissions, path, err, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read private key file %s: %w", path, err)
	}
	if len(b) > MaxKeyFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrKeyMalformed, path, MaxKeyFileSize)
	}
	return b, nil
}

// WritePrivateFile writes a private key file with mode 0600, atomically
// (temporary file, fsync, rename). It refuses to replace an existing file
// unless overwrite is set.
func WritePrivateFile(path string, data []byte, overwrite bool) error {
	return writeFileAtomic(path, data, 0o600, overwrite)
}

func writeFileAtomic(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%w: %s (use --force to replace it)", ErrKeyFileExists, path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("failed to check %s: %w", path, err)
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("failed to create %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("failed to set mode of %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	if !overwrite {
		// Link fails if path appeared since the check above.
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %s (use --force to replace it)", ErrKeyFileExists, path)
			}
			return fmt.Errorf("failed to write %s: %w", path, err)
		}
		os.Remove(tmp)
	} else if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Identity is an agency's age post-quantum hybrid identity (ML-KEM-768 +
// X25519): the private key that opens the envelopes sealed to it. Callers
// outside this package hold it only to pass it to NewOpener; the secret
// never leaves this package except in the key file WriteAgencyKeys writes.
type Identity struct {
	id *age.HybridIdentity
}

// GenerateIdentity returns a new random identity.
func GenerateIdentity() (*Identity, error) {
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		return nil, fmt.Errorf("failed to generate age identity: %w", err)
	}
	return &Identity{id: id}, nil
}

// Recipient returns the identity's public recipient (age1pq1...), as
// listed in the directory as the agency's encryption key.
func (i *Identity) Recipient() string { return i.id.Recipient().String() }

// KeyID returns the directory key id of the identity's recipient.
func (i *Identity) KeyID() string { return KeyID(UseEncrypt, i.Recipient()) }

// LoadIdentity loads an age post-quantum hybrid identity
// (AGE-SECRET-KEY-PQ-1...) from a private key file. Lines that are empty or
// start with "#" are ignored; exactly one identity must remain. Other
// identity types are refused.
func LoadIdentity(path string) (*Identity, error) {
	b, err := ReadPrivateFile(path)
	if err != nil {
		return nil, err
	}
	var id *age.HybridIdentity
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if id != nil {
			return nil, fmt.Errorf("%w: %s holds more than one identity", ErrKeyMalformed, path)
		}
		if !strings.HasPrefix(line, "AGE-SECRET-KEY-PQ-1") {
			return nil, fmt.Errorf("%w: %s does not hold a post-quantum hybrid age identity (AGE-SECRET-KEY-PQ-1...)", ErrKeyMalformed, path)
		}
		id, err = age.ParseHybridIdentity(line)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: invalid age identity", ErrKeyMalformed, path)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyMalformed, path, err)
	}
	if id == nil {
		return nil, fmt.Errorf("%w: %s holds no age identity", ErrKeyMalformed, path)
	}
	return &Identity{id: id}, nil
}

// LoadEd25519PrivateKey loads a PKCS#8 PEM ("PRIVATE KEY") Ed25519 private
// key from a private key file.
func LoadEd25519PrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := ReadPrivateFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseEd25519PrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseEd25519PrivateKey parses a PKCS#8 PEM Ed25519 private key.
func ParseEd25519PrivateKey(b []byte) (ed25519.PrivateKey, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: no PEM PRIVATE KEY block", ErrKeyMalformed)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the PEM block", ErrKeyMalformed)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyMalformed, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an Ed25519 key", ErrKeyMalformed)
	}
	return ek, nil
}

// MarshalEd25519PrivateKey encodes an Ed25519 private key as PKCS#8 PEM.
func MarshalEd25519PrivateKey(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("failed to encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// LoadSigner loads the envelope and receipt signing key (PKCS#8 PEM
// Ed25519) from a private key file.
func LoadSigner(path string) (*Signer, error) {
	k, err := LoadEd25519PrivateKey(path)
	if err != nil {
		return nil, err
	}
	return NewSigner(k)
}

// JWTKeyID returns the key id ("kid") of a JWT issuer public key:
// KeyID("jwt", base64(public key)).
func JWTKeyID(pub ed25519.PublicKey) string {
	return KeyID("jwt", base64.StdEncoding.EncodeToString(pub))
}

// JWK is one public key of a JSON Web Key Set (RFC 7517, RFC 8037 OKP).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// NewJWKS returns the key set of one Ed25519 JWT issuer public key.
func NewJWKS(pub ed25519.PublicKey) JWKS {
	return JWKS{Keys: []JWK{{
		Kty: "OKP", Crv: "Ed25519",
		X:   base64.RawURLEncoding.EncodeToString(pub),
		Kid: JWTKeyID(pub), Alg: "EdDSA", Use: "sig",
	}}}
}

// NATSKey is an agency's NATS nkey user key pair. This package neither
// generates nor parses nkeys (the NATS libraries live behind package
// broker, whose NewNATSKey makes one): WriteAgencyKeys checks only its
// shape and stores it as given.
type NATSKey struct {
	// Seed is the private user seed (SU...), written to nats.nk.
	Seed []byte
	// Public is the user public key (U...), listed in the directory.
	Public string
}

// GenerateAgencyKeys creates the key files of one agency in dir (created
// 0700 if missing) and returns its public directory entry, which is also
// written to dir/agency.json. It generates the age identity, the signing
// key and the JWT issuer key; the NATS key pair nk comes from the caller
// (broker.NewNATSKey). It refuses to overwrite existing private key files.
func GenerateAgencyKeys(dir, id, kind, name string, nk NATSKey) (*Agency, error) {
	return WriteAgencyKeys(dir, id, kind, name, nk, false)
}

// WriteAgencyKeys is GenerateAgencyKeys with the choice to replace existing
// key files.
func WriteAgencyKeys(dir, id, kind, name string, nk NATSKey, overwrite bool) (*Agency, error) {
	if !ValidSlug(id) {
		return nil, fmt.Errorf("agency id %q is not a lowercase slug ([a-z0-9][a-z0-9-]*, at most 63 characters)", id)
	}
	if !ValidSlug(kind) {
		return nil, fmt.Errorf("agency kind %q is not a lowercase slug", kind)
	}
	if !validNATSPublicKey(nk.Public) {
		return nil, errors.New("NATS key: the public key is not a NATS user public nkey (U..., 56 characters)")
	}
	if len(nk.Seed) != natsSeedLen || !bytes.HasPrefix(nk.Seed, []byte("SU")) || !base32Only(nk.Seed[2:]) {
		return nil, errors.New("NATS key: the seed is not a NATS user nkey seed (SU..., 58 characters)")
	}
	if name == "" {
		name = id
	}
	if len(name) > 200 {
		return nil, errors.New("agency name longer than 200 bytes")
	}
	if !overwrite {
		for _, f := range []string{AgeKeyFile, SigningKeyFile, NATSSeedFile, JWTIssuerKeyFile} {
			p := filepath.Join(dir, f)
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%w: %s (use --force to replace it)", ErrKeyFileExists, p)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create key directory: %w", err)
	}

	ageID, err := GenerateIdentity()
	if err != nil {
		return nil, err
	}
	recipient := ageID.Recipient()
	ageFile := fmt.Sprintf("# rujukan agency %s\n# recipient: %s\n%s\n", id, recipient, ageID.id.String())

	_, signKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate signing key: %w", err)
	}
	signPEM, err := MarshalEd25519PrivateKey(signKey)
	if err != nil {
		return nil, err
	}
	signPub := base64.StdEncoding.EncodeToString(signKey.Public().(ed25519.PublicKey))

	jwtPub, jwtKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate JWT issuer key: %w", err)
	}
	jwtPEM, err := MarshalEd25519PrivateKey(jwtKey)
	if err != nil {
		return nil, err
	}
	jwks, err := json.MarshalIndent(NewJWKS(jwtPub), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode JWKS: %w", err)
	}

	a := &Agency{
		ID: id, Kind: kind, Name: name, Status: StatusActive,
		Keys: []PublicKey{
			NewPublicKey(UseEncrypt, recipient),
			NewPublicKey(UseSign, signPub),
			NewPublicKey(UseNATS, nk.Public),
		},
	}
	entry, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode agency entry: %w", err)
	}

	for _, f := range []struct {
		name    string
		data    []byte
		private bool
	}{
		{AgeKeyFile, []byte(ageFile), true},
		{SigningKeyFile, signPEM, true},
		{NATSSeedFile, append(append([]byte(nil), nk.Seed...), '\n'), true},
		{JWTIssuerKeyFile, jwtPEM, true},
		{JWKSFile, append(jwks, '\n'), false},
		{AgencyFile, append(entry, '\n'), false},
	} {
		perm := fs.FileMode(0o644)
		if f.private {
			perm = 0o600
		}
		// Public files are always replaced: they follow the private keys.
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, perm, overwrite || !f.private); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// ReadAgencyFile reads and validates a public agency entry (agency.json).
func ReadAgencyFile(path string) (*Agency, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	a, err := ParseAgency(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// GenerateAuthorityKey creates a network authority key pair: the private key
// at keyPath (PKCS#8 PEM, 0600) and the public key at pubPath (standard
// base64 and a newline, 0644). It refuses to overwrite the private key.
func GenerateAuthorityKey(keyPath, pubPath string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate authority key: %w", err)
	}
	p, err := MarshalEd25519PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := WritePrivateFile(keyPath, p, false); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(pubPath, []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644, true); err != nil {
		return nil, err
	}
	return pub, nil
}
