package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
)

const atRestDomain = "rujukan/v1/at-rest\x00"

// ErrAtRest is returned by AtRest.Open for a ciphertext that does not
// decrypt with the key, or that was sealed for another id.
var ErrAtRest = errors.New("at-rest copy does not open")

// AtRest encrypts what a gateway keeps about the envelopes it sent: the
// envelope itself is encrypted to the recipient, so the sender cannot open
// it, and keeps a copy of the body sealed to itself. The copy never leaves
// the gateway, so a symmetric key is enough: AES-256-GCM under a key of its
// own (not the age identity, so that rotating the identity keeps old copies
// readable), expanded with HKDF-SHA256, with the record id as associated
// data so that one stored copy cannot stand in for another.
type AtRest struct {
	aead cipher.AEAD
}

// AtRestKeySize is the size of an at-rest key file's secret.
const AtRestKeySize = 32

// NewAtRestKey returns a new random at-rest secret.
func NewAtRestKey() []byte {
	k := make([]byte, AtRestKeySize)
	rand.Read(k)
	return k
}

// LoadAtRest reads the at-rest secret from a private key file, creating the
// file (0600) with a new secret when it does not exist yet.
func LoadAtRest(path string) (*AtRest, error) {
	secret, err := ReadPrivateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret = NewAtRestKey()
		if err := WritePrivateFile(path, secret, false); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return NewAtRest(secret)
}

// NewAtRest returns the cipher of an at-rest secret.
func NewAtRest(secret []byte) (*AtRest, error) {
	if len(secret) != AtRestKeySize {
		return nil, fmt.Errorf("%w: at-rest key has %d bytes, want %d", ErrKeyMalformed, len(secret), AtRestKeySize)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, "rujukan/v1/at-rest key", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &AtRest{aead: aead}, nil
}

func atRestAD(id string) []byte { return append([]byte(atRestDomain), id...) }

// Seal encrypts body bound to id: a random 96-bit nonce, then the GCM
// ciphertext and tag.
func (a *AtRest) Seal(id string, body []byte) []byte {
	out := make([]byte, a.aead.NonceSize(), a.aead.NonceSize()+len(body)+a.aead.Overhead())
	rand.Read(out)
	return a.aead.Seal(out, out, body, atRestAD(id))
}

// Open decrypts a copy made by Seal for id.
func (a *AtRest) Open(id string, ct []byte) ([]byte, error) {
	n := a.aead.NonceSize()
	if len(ct) < n+a.aead.Overhead() || len(ct) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrAtRest, len(ct))
	}
	pt, err := a.aead.Open(nil, ct[:n], ct[n:], atRestAD(id))
	if err != nil {
		return nil, ErrAtRest
	}
	return pt, nil
}
