package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"
)

// Limits of a JWKS document.
const (
	// MaxJWKSSize caps a JWKS document.
	MaxJWKSSize = 256 << 10
	// MaxJWKSKeys caps the number of keys in one JWKS.
	MaxJWKSKeys = 64
	// MinRSABits and MaxRSABits bound RSA key sizes: smaller keys are weak,
	// larger ones make verification a denial-of-service lever.
	MinRSABits = 2048
	MaxRSABits = 8192
)

// Signing algorithms a key may be bound to.
const (
	AlgEdDSA = "EdDSA"
	AlgES256 = "ES256"
	AlgRS256 = "RS256"
)

// Key is one verification key of a trusted issuer, bound to exactly one
// algorithm.
type Key struct {
	ID        string
	Algorithm string
	// Public is an ed25519.PublicKey, *ecdsa.PublicKey (P-256) or
	// *rsa.PublicKey.
	Public crypto.PublicKey
}

// KeySet is a parsed JWKS: verification keys by kid.
type KeySet struct {
	keys map[string]Key
}

// Key returns the key with the given kid.
func (s *KeySet) Key(kid string) (Key, bool) {
	if s == nil {
		return Key{}, false
	}
	k, ok := s.keys[kid]
	return k, ok
}

// IDs returns the kids of the set, sorted.
func (s *KeySet) IDs() []string {
	if s == nil {
		return nil
	}
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// jwk holds the members of RFC 7517/7518/8037 keys we read. Private members
// are listed so that a set that carries them is refused.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	// Private members (RFC 7518 6.2.2, 6.3.2; RFC 8037 2).
	D  *json.RawMessage `json:"d"`
	P  *json.RawMessage `json:"p"`
	Q  *json.RawMessage `json:"q"`
	DP *json.RawMessage `json:"dp"`
	DQ *json.RawMessage `json:"dq"`
	QI *json.RawMessage `json:"qi"`
	K  *json.RawMessage `json:"k"`
}

// ParseJWKS parses a JSON Web Key Set (RFC 7517) of public keys: OKP Ed25519
// (RFC 8037) for EdDSA, EC P-256 for ES256 and RSA (2048 to 8192 bits) for
// RS256. Every key needs a unique kid. A key's alg, when given, must match its
// type; when absent it is inferred, so each key is bound to exactly one
// algorithm. Keys with "use" other than "sig", private key members, symmetric
// keys and unknown key types make the whole set invalid: a set is trusted as
// a whole or not at all. Unknown members are ignored, as RFC 7517 requires.
func ParseJWKS(b []byte) (*KeySet, error) {
	if len(b) > MaxJWKSSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrJWKSMalformed, MaxJWKSSize)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrJWKSMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after JSON value", ErrJWKSMalformed)
	}
	if len(doc.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrJWKSMalformed)
	}
	if len(doc.Keys) > MaxJWKSKeys {
		return nil, fmt.Errorf("%w: more than %d keys", ErrJWKSMalformed, MaxJWKSKeys)
	}
	set := &KeySet{keys: make(map[string]Key, len(doc.Keys))}
	for i, raw := range doc.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %v", ErrJWKSMalformed, i, err)
		}
		k, err := j.key()
		if err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %v", ErrJWKSMalformed, i, err)
		}
		if _, dup := set.keys[k.ID]; dup {
			return nil, fmt.Errorf("%w: kid %q appears twice", ErrJWKSMalformed, k.ID)
		}
		set.keys[k.ID] = k
	}
	return set, nil
}

func (j *jwk) key() (Key, error) {
	if j.Kid == "" {
		return Key{}, errors.New("kid is missing")
	}
	if len(j.Kid) > 128 {
		return Key{}, errors.New("kid longer than 128 bytes")
	}
	if j.D != nil || j.P != nil || j.Q != nil || j.DP != nil || j.DQ != nil || j.QI != nil || j.K != nil {
		return Key{}, fmt.Errorf("key %q carries private or symmetric key material", j.Kid)
	}
	if j.Use != "" && j.Use != "sig" {
		return Key{}, fmt.Errorf("key %q has use %q, want sig", j.Kid, j.Use)
	}
	for _, op := range j.KeyOps {
		if op != "verify" {
			return Key{}, fmt.Errorf("key %q has key_ops %q, want only verify", j.Kid, op)
		}
	}
	var (
		alg string
		pub crypto.PublicKey
		err error
	)
	switch j.Kty {
	case "OKP":
		alg = AlgEdDSA
		pub, err = j.ed25519()
	case "EC":
		alg = AlgES256
		pub, err = j.p256()
	case "RSA":
		alg = AlgRS256
		pub, err = j.rsa()
	default:
		return Key{}, fmt.Errorf("key %q has unsupported kty %q", j.Kid, j.Kty)
	}
	if err != nil {
		return Key{}, fmt.Errorf("key %q: %v", j.Kid, err)
	}
	if j.Alg != "" && j.Alg != alg {
		return Key{}, fmt.Errorf("key %q of type %s cannot be used with alg %q", j.Kid, j.Kty, j.Alg)
	}
	return Key{ID: j.Kid, Algorithm: alg, Public: pub}, nil
}

func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

func (j *jwk) ed25519() (crypto.PublicKey, error) {
	if j.Crv != "Ed25519" {
		return nil, fmt.Errorf("OKP curve %q is not Ed25519", j.Crv)
	}
	x, err := b64url(j.X)
	if err != nil || len(x) != ed25519.PublicKeySize {
		return nil, errors.New("x is not 32 bytes of base64url")
	}
	return ed25519.PublicKey(x), nil
}

func (j *jwk) p256() (crypto.PublicKey, error) {
	if j.Crv != "P-256" {
		return nil, fmt.Errorf("EC curve %q is not P-256", j.Crv)
	}
	x, errX := b64url(j.X)
	y, errY := b64url(j.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New("x and y must be 32 bytes of base64url each")
	}
	point := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("invalid P-256 point: %v", err)
	}
	return pub, nil
}

func (j *jwk) rsa() (crypto.PublicKey, error) {
	n, err := b64url(j.N)
	if err != nil || len(n) == 0 || n[0] == 0 {
		return nil, errors.New("n is not a minimal base64url integer")
	}
	if bits := new(big.Int).SetBytes(n).BitLen(); bits < MinRSABits || bits > MaxRSABits {
		return nil, fmt.Errorf("RSA modulus has %d bits, want %d to %d", bits, MinRSABits, MaxRSABits)
	}
	e, err := b64url(j.E)
	if err != nil || len(e) == 0 || len(e) > 4 || e[0] == 0 {
		return nil, errors.New("e is not a minimal base64url integer of at most 32 bits")
	}
	var ev int64
	for _, c := range e {
		ev = ev<<8 | int64(c)
	}
	if ev < 3 || ev%2 == 0 || ev > 1<<31-1 {
		return nil, fmt.Errorf("RSA exponent %d is not an odd number from 3 to 2^31-1", ev)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev)}, nil
}
