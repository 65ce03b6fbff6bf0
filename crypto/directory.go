package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/edwards25519"
)

// MaxDirectorySize caps a signed directory file. A thousand agencies with a
// hybrid age recipient each take about 3 MiB.
const MaxDirectorySize = 32 << 20

// Domain-separation prefixes of the directory signature and key ids.
const (
	directoryDomain = "rujukan/v1/directory\x00"
	keyIDDomain     = "rujukan/v1/key-id\x00"
)

// Directory errors.
var (
	// ErrDirectoryMalformed is returned for a directory that is not valid
	// JSON of the expected shape, or whose fields break the rules below.
	ErrDirectoryMalformed = errors.New("malformed directory")
	// ErrDirectorySignature is returned for a directory that is unsigned, or
	// not signed by the pinned authority key.
	ErrDirectorySignature = errors.New("directory signature is not valid for the pinned authority key")
	// ErrDirectoryStale is returned when a directory would replace one with
	// an equal or higher version.
	ErrDirectoryStale = errors.New("directory version is not newer than the current one")
	// ErrDirectoryTooLarge is returned for a directory over MaxDirectorySize.
	ErrDirectoryTooLarge = errors.New("directory too large")
	// ErrRecipientType is returned for an age recipient that is not a
	// post-quantum hybrid recipient (age1pq1...).
	ErrRecipientType = errors.New("only post-quantum hybrid age recipients (age1pq1...) are accepted")
)

// Status of an agency or of one of its keys. A revoked agency or key stays in
// the directory so that old envelopes and receipts can still be verified,
// but nothing new is sealed to it or accepted from it.
type Status string

// Statuses.
const (
	StatusActive  Status = "active"
	StatusRevoked Status = "revoked"
	// StatusRetired is a key status only: a key replaced by a rotation, not
	// compromised. Nothing new is sealed to a retired encryption key or
	// signed with a retired signing key, but an envelope sealed to or signed
	// with it before the rotation (in flight, or waiting at the broker) is
	// still accepted until the key's NotAfter; after that it is refused as
	// if the key were revoked. Like a revoked key, it verifies forever what
	// was stored before.
	StatusRetired Status = "retired"
)

// KeyUse says what a public key is for. Each job has its own key.
type KeyUse string

// Key uses.
const (
	// UseEncrypt is an age post-quantum hybrid recipient (age1pq1...).
	UseEncrypt KeyUse = "encrypt"
	// UseSign is an Ed25519 public key (standard base64) that signs
	// envelopes and receipts.
	UseSign KeyUse = "sign"
	// UseNATS is a NATS nkey user public key (U...), the broker login.
	UseNATS KeyUse = "nats"
)

// PublicKey is one key of an agency in the directory.
type PublicKey struct {
	// ID is KeyID(Use, Public); it is checked when a directory is parsed.
	ID     string `json:"id"`
	Use    KeyUse `json:"use"`
	Public string `json:"public"`
	Status Status `json:"status"`
	// NotAfter is set on retired keys only (and kept if one is revoked
	// later): the last moment a new envelope sealed to or signed with the
	// key is accepted.
	NotAfter time.Time `json:"not_after,omitzero"`
}

// AcceptableAt reports whether a newly arrived envelope may use the key at
// time now: an active key, or a retired one until its NotAfter. Stored
// envelopes and receipts verify with a key whatever its status.
func (k *PublicKey) AcceptableAt(now time.Time) bool {
	switch k.Status {
	case StatusActive:
		return true
	case StatusRetired:
		return !now.After(k.NotAfter)
	}
	return false
}

// describeStatus says why a key is not acceptable at time now, for error
// messages.
func (k *PublicKey) describeStatus(now time.Time) string {
	if k.Status == StatusRetired {
		return fmt.Sprintf("was retired and accepted only until %s", k.NotAfter.UTC().Format(time.RFC3339))
	}
	return "is " + string(k.Status)
}

// Agency is one member of the network.
type Agency struct {
	// ID is a lowercase slug ([a-z0-9][a-z0-9-]*, at most 63 characters),
	// used in NATS subjects and stream names.
	ID string `json:"id"`
	// Kind is the agency kind (iom, dinsos, police, shelter, ...), a slug.
	Kind   string      `json:"kind"`
	Name   string      `json:"name"`
	Status Status      `json:"status"`
	Keys   []PublicKey `json:"keys"`
	// Limits, when set, replace the network's limits for this agency
	// (field by field; see Limits).
	Limits *Limits `json:"limits,omitempty"`
}

// Directory is the network directory: who is in the network, their public
// keys, and the network rules (kept raw here; the policy package owns them).
type Directory struct {
	Version  uint64          `json:"version"`
	Network  string          `json:"network"`
	IssuedAt time.Time       `json:"issued_at"`
	Agencies []Agency        `json:"agencies"`
	Rules    json.RawMessage `json:"rules,omitempty"`
	// Limits are the network's limits at the broker; unset fields take
	// DefaultLimits.
	Limits *Limits `json:"limits,omitempty"`
}

// signedDirectory is the file form: the directory bytes exactly as signed,
// and the authority's signature over them.
type signedDirectory struct {
	Directory json.RawMessage    `json:"directory"`
	Signature directorySignature `json:"signature"`
}

type directorySignature struct {
	Alg   string `json:"alg"`
	KeyID string `json:"key_id"`
	Value string `json:"value"`
}

var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidSlug reports whether s is a valid agency id or kind.
func ValidSlug(s string) bool { return slugRE.MatchString(s) }

// KeyID returns the key id of a public key: the first 16 hex digits of
// SHA-256("rujukan/v1/key-id\x00" || use || "\x00" || public).
func KeyID(use KeyUse, public string) string {
	h := sha256.New()
	io.WriteString(h, keyIDDomain)
	io.WriteString(h, string(use))
	h.Write([]byte{0})
	io.WriteString(h, public)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// AuthorityKeyID returns the key id of a network authority public key.
func AuthorityKeyID(pub ed25519.PublicKey) string {
	return KeyID("authority", base64.StdEncoding.EncodeToString(pub))
}

// NewPublicKey returns an active directory key with its id filled in.
func NewPublicKey(use KeyUse, public string) PublicKey {
	return PublicKey{ID: KeyID(use, public), Use: use, Public: public, Status: StatusActive}
}

// SignDirectory validates d and signs it with the authority key, returning
// the file form.
func SignDirectory(d *Directory, authority ed25519.PrivateKey) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	body, err := json.MarshalIndent(d, "  ", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode directory: %w", err)
	}
	sig := ed25519.Sign(authority, append([]byte(directoryDomain), body...))
	out, err := json.MarshalIndent(signedDirectory{
		Directory: body,
		Signature: directorySignature{
			Alg:   "Ed25519",
			KeyID: AuthorityKeyID(authority.Public().(ed25519.PublicKey)),
			Value: base64.StdEncoding.EncodeToString(sig),
		},
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode directory: %w", err)
	}
	return append(out, '\n'), nil
}

// ParseDirectory verifies a signed directory against the pinned authority
// public key and returns its contents. Nothing inside the directory is
// parsed before the signature has been checked.
func ParseDirectory(signed []byte, authority ed25519.PublicKey) (*Directory, error) {
	if len(signed) > MaxDirectorySize {
		return nil, ErrDirectoryTooLarge
	}
	if len(authority) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: authority public key has %d bytes", ErrDirectorySignature, len(authority))
	}
	var sd signedDirectory
	if err := decodeStrict(signed, &sd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDirectoryMalformed, err)
	}
	if len(sd.Directory) == 0 || sd.Signature.Value == "" {
		return nil, fmt.Errorf("%w: directory is unsigned", ErrDirectorySignature)
	}
	if sd.Signature.Alg != "Ed25519" {
		return nil, fmt.Errorf("%w: unsupported algorithm %q", ErrDirectorySignature, sd.Signature.Alg)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(sd.Signature.Value)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature is not 64 bytes of base64", ErrDirectorySignature)
	}
	if !ed25519.Verify(authority, append([]byte(directoryDomain), sd.Directory...), sig) {
		return nil, ErrDirectorySignature
	}
	var d Directory
	if err := decodeStrict(sd.Directory, &d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDirectoryMalformed, err)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// LoadDirectory reads and verifies a signed directory file.
func LoadDirectory(path string, authority ed25519.PublicKey) (*Directory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxDirectorySize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read directory %s: %w", path, err)
	}
	d, err := ParseDirectory(b, authority)
	if err != nil {
		return nil, fmt.Errorf("directory %s: %w", path, err)
	}
	return d, nil
}

// ParseDraft parses an unsigned directory (the working copy an authority
// edits before signing) and validates it.
func ParseDraft(b []byte) (*Directory, error) {
	if len(b) > MaxDirectorySize {
		return nil, ErrDirectoryTooLarge
	}
	var d Directory
	if err := decodeStrict(b, &d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDirectoryMalformed, err)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// CheckReplace returns ErrDirectoryStale unless next may replace cur: a lower
// or equal version never replaces a higher one. cur may be nil.
func CheckReplace(cur, next *Directory) error {
	if cur != nil && next.Version <= cur.Version {
		return fmt.Errorf("%w: version %d does not replace version %d", ErrDirectoryStale, next.Version, cur.Version)
	}
	return nil
}

// Validate checks every field of the directory. The error wraps
// ErrDirectoryMalformed or ErrRecipientType and names the offending field.
func (d *Directory) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrDirectoryMalformed, fmt.Sprintf(format, args...))
	}
	if d.Version == 0 {
		return bad("version must be at least 1")
	}
	seen := make(map[string]bool, len(d.Agencies))
	owner := map[string]string{} // public key -> agency id
	for i := range d.Agencies {
		a := &d.Agencies[i]
		if !ValidSlug(a.ID) {
			return bad("agencies[%d].id %q is not a lowercase slug", i, a.ID)
		}
		if seen[a.ID] {
			return bad("agency id %q appears twice", a.ID)
		}
		seen[a.ID] = true
		if !ValidSlug(a.Kind) {
			return bad("agency %s: kind %q is not a lowercase slug", a.ID, a.Kind)
		}
		if len(a.Name) > 200 {
			return bad("agency %s: name longer than 200 bytes", a.ID)
		}
		if a.Status != StatusActive && a.Status != StatusRevoked {
			return bad("agency %s: status %q is neither active nor revoked", a.ID, a.Status)
		}
		active := map[KeyUse]int{}
		kids := map[string]bool{}
		for j, k := range a.Keys {
			if err := k.validate(); err != nil {
				return fmt.Errorf("agency %s: keys[%d]: %w", a.ID, j, err)
			}
			if kids[k.ID] {
				return bad("agency %s: key id %s appears twice", a.ID, k.ID)
			}
			kids[k.ID] = true
			// A key belongs to one agency: the broker finds a NATS user by
			// its key, and a signature names its agency by it.
			if other, dup := owner[k.Public]; dup && other != a.ID {
				return bad("agency %s: key %s is also agency %s's", a.ID, k.ID, other)
			}
			owner[k.Public] = a.ID
			if k.Status == StatusActive {
				active[k.Use]++
			}
		}
		// At most one active key per use, so that a sender never has to
		// choose. Zero is allowed: the authority may revoke a compromised
		// key before the agency has a replacement; nothing is then sealed to
		// or accepted from that agency for that use.
		for _, use := range []KeyUse{UseEncrypt, UseSign, UseNATS} {
			if active[use] > 1 {
				return bad("agency %s: has %d active %s keys, at most one is allowed", a.ID, active[use], use)
			}
		}
	}
	if len(d.Rules) > 0 && !json.Valid(d.Rules) {
		return bad("rules are not valid JSON")
	}
	return d.validateLimits()
}

func (k PublicKey) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrDirectoryMalformed, fmt.Sprintf(format, args...))
	}
	switch k.Status {
	case StatusActive:
		if !k.NotAfter.IsZero() {
			return bad("an active key has no not_after (only retired keys do)")
		}
	case StatusRetired:
		if k.NotAfter.IsZero() {
			return bad("a retired key needs not_after, the end of its acceptance")
		}
	case StatusRevoked:
	default:
		return bad("status %q is not active, retired or revoked", k.Status)
	}
	switch k.Use {
	case UseEncrypt:
		if _, err := ParseRecipient(k.Public); err != nil {
			return err
		}
	case UseSign:
		if _, err := ParseSigningPublicKey(k.Public); err != nil {
			return fmt.Errorf("%w: %v", ErrDirectoryMalformed, err)
		}
	case UseNATS:
		if !validNATSPublicKey(k.Public) {
			return bad("%q is not a NATS user public nkey", k.Public)
		}
	default:
		return bad("unknown key use %q", k.Use)
	}
	if k.ID != KeyID(k.Use, k.Public) {
		return bad("key id %q does not match its %s key (want %s)", k.ID, k.Use, KeyID(k.Use, k.Public))
	}
	return nil
}

// Lengths of the base32 text of a NATS nkey: a user public key is one
// prefix byte, 32 key bytes and a 2-byte checksum; a seed two prefix bytes,
// 32 seed bytes and the checksum.
const (
	natsPublicKeyLen = 56
	natsSeedLen      = 58
)

// validNATSPublicKey reports whether s has the shape of a NATS user public
// nkey: 56 characters of unpadded base32 starting with "U". It does not
// check the checksum: this package does not depend on the NATS libraries.
// The broker parses every NATS key of a directory before it provisions
// one (broker.CheckDirectory), and refuses a directory that fails.
func validNATSPublicKey(s string) bool {
	return len(s) == natsPublicKeyLen && s[0] == 'U' && base32Only([]byte(s))
}

// base32Only reports whether b holds only characters of the standard base32
// alphabet (A-Z, 2-7), without padding.
func base32Only(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// ParseRecipient parses an age recipient and accepts only post-quantum
// hybrid recipients. X25519, scrypt, ssh and plugin recipients are refused
// with ErrRecipientType: encrypting to one of them alongside would defeat the
// post-quantum protection.
func ParseRecipient(s string) (*age.HybridRecipient, error) {
	if !strings.HasPrefix(s, "age1pq1") {
		kind := "a recipient of an unknown type"
		// The bech32 data part never contains "1", so an X25519 recipient
		// (age1...) has one and a plugin recipient (age1NAME1...) two.
		switch {
		case strings.HasPrefix(s, "age1") && strings.Count(s, "1") == 1:
			kind = "an X25519 recipient"
		case strings.HasPrefix(s, "age1"):
			kind = "a plugin recipient"
		case strings.HasPrefix(s, "ssh-"), strings.HasPrefix(s, "ecdsa-sha2-"):
			kind = "an ssh recipient"
		case strings.HasPrefix(strings.ToLower(s), "scrypt"), strings.HasPrefix(strings.ToLower(s), "passphrase"):
			kind = "a passphrase (scrypt) recipient"
		case strings.HasPrefix(strings.ToUpper(s), "AGE-SECRET-KEY"):
			kind = "a secret key, not a recipient"
		}
		return nil, fmt.Errorf("%w: got %s", ErrRecipientType, kind)
	}
	r, err := age.ParseHybridRecipient(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDirectoryMalformed, err)
	}
	return r, nil
}

// ParseSigningPublicKey decodes an Ed25519 public key in standard base64.
// It refuses a key that is not the canonical encoding of a curve point, and
// a key of small order, for which signatures can be made without any
// private key.
func ParseSigningPublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("signing key is not 32 bytes of standard base64")
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil || !bytes.Equal(p.Bytes(), b) {
		return nil, errors.New("signing key is not a canonical Ed25519 point")
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return nil, errors.New("signing key is a small-order point")
	}
	return ed25519.PublicKey(b), nil
}

// Agency returns the agency with the given id.
func (d *Directory) Agency(id string) (*Agency, bool) {
	for i := range d.Agencies {
		if d.Agencies[i].ID == id {
			return &d.Agencies[i], true
		}
	}
	return nil, false
}

// Key returns the agency's key with the given use and id, whatever its
// status.
func (a *Agency) Key(use KeyUse, id string) (*PublicKey, bool) {
	for i := range a.Keys {
		if a.Keys[i].Use == use && a.Keys[i].ID == id {
			return &a.Keys[i], true
		}
	}
	return nil, false
}

// ActiveKey returns the agency's one active key for use.
func (a *Agency) ActiveKey(use KeyUse) (*PublicKey, bool) {
	for i := range a.Keys {
		if a.Keys[i].Use == use && a.Keys[i].Status == StatusActive {
			return &a.Keys[i], true
		}
	}
	return nil, false
}

// decodeStrict decodes exactly one JSON value with no unknown fields and no
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON value")
	}
	return nil
}
