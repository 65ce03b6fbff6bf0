package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
)

const atRestDomain = "rujukan/v1/at-rest\x00"

// ErrAtRest is returned by OpenAtRest for a ciphertext that does not
// decrypt with the identity, or that was sealed for another id.
var ErrAtRest = errors.New("at-rest copy does not open")

// SealAtRest encrypts body to an agency's own age recipient, bound to id,
// for data a gateway keeps about what it sent: the envelope itself is
// encrypted to the recipient and the sender cannot open it. The copy never
// leaves the gateway, so it is not signed; binding it to id stops one
// stored copy from standing in for another.
func SealAtRest(id string, body []byte, self *age.HybridRecipient) ([]byte, error) {
	var out bytes.Buffer
	w, err := age.Encrypt(&out, self)
	if err != nil {
		return nil, fmt.Errorf("failed to encrypt at-rest copy: %w", err)
	}
	io.WriteString(w, atRestDomain)
	io.WriteString(w, id)
	w.Write([]byte{0})
	w.Write(body)
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("failed to encrypt at-rest copy: %w", err)
	}
	return out.Bytes(), nil
}

// OpenAtRest decrypts a copy made by SealAtRest for id.
func OpenAtRest(id string, ct []byte, identity *age.HybridIdentity) ([]byte, error) {
	if len(ct) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: too large", ErrAtRest)
	}
	r, err := age.Decrypt(bytes.NewReader(ct), identity)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAtRest, err)
	}
	pt, err := io.ReadAll(io.LimitReader(r, MaxEnvelopeSize))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAtRest, err)
	}
	prefix := atRestDomain + id + "\x00"
	if !bytes.HasPrefix(pt, []byte(prefix)) {
		return nil, fmt.Errorf("%w: sealed for another id", ErrAtRest)
	}
	return pt[len(prefix):], nil
}
