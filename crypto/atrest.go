package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"filippo.io/age"
)

const atRestDomain = "rujukan/v1/at-rest\x00"

// ErrAtRest is returned by AtRest.Open for a ciphertext that does not
// decrypt with the key, or that was sealed for another id.
var ErrAtRest = errors.New("at-rest copy does not open")

// AtRest encrypts what a gateway keeps about the envelopes it sent: the
// envelope itself is encrypted to the recipient, so the sender cannot open
// it, and keeps a copy of the body sealed to itself. The copy never leaves
// the gateway, so a symmetric key is enough: AES-256-GCM under a key
// derived with HKDF-SHA256 from the agency's age identity (the same secret
// that opens its inbox), with the record id as associated data so that one
// stored copy cannot stand in for another.
type AtRest struct {
	aead cipher.AEAD
}

// NewAtRest derives the at-rest key of an agency from its age identity.
func NewAtRest(identity *age.HybridIdentity) (*AtRest, error) {
	key, err := hkdf.Key(sha256.New, []byte(identity.String()), nil, "rujukan/v1/at-rest key", 32)
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
