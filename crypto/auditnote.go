package crypto

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
)

// AuditOrigin is the origin line of an agency's audit log checkpoints (the
// C2SP tlog-checkpoint format) and the name of the note key that signs
// them.
func AuditOrigin(agency string) string { return "rujukan.id/" + agency + "/audit" }

// AuditNoteSigner signs an agency's audit checkpoints as signed notes
// (golang.org/x/mod/sumdb/note) with the agency's Ed25519 signing key, so
// that an auditor verifies them with the key published in the directory.
//
// The note's text is the signed message, and every checkpoint text starts
// with the origin line "rujukan.id/<agency>/audit\n"; the signer refuses
// any other text. That line is the domain separation: no other input this
// package signs can start with it (they start with "rujukan/v1/").
type AuditNoteSigner struct {
	name   string
	hash   uint32
	key    ed25519.PrivateKey
	verify note.Verifier
}

// NewAuditNoteSigner returns the checkpoint signer of agency.
func NewAuditNoteSigner(agency string, key ed25519.PrivateKey) (*AuditNoteSigner, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("audit note signer: not an Ed25519 private key")
	}
	v, err := AuditNoteVerifier(agency, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &AuditNoteSigner{name: v.Name(), hash: v.KeyHash(), key: key, verify: v}, nil
}

// Name is the key name, the checkpoint origin.
func (s *AuditNoteSigner) Name() string { return s.name }

// KeyHash is the note key hash of the signing key.
func (s *AuditNoteSigner) KeyHash() uint32 { return s.hash }

// Sign signs a checkpoint text; it refuses a text that does not start with
// the origin line.
func (s *AuditNoteSigner) Sign(msg []byte) ([]byte, error) {
	if !bytes.HasPrefix(msg, []byte(s.name+"\n")) {
		return nil, errors.New("audit note signer: the text is not a checkpoint of this log")
	}
	return ed25519.Sign(s.key, msg), nil
}

// Verifier returns the verifier of this signer's notes.
func (s *AuditNoteSigner) Verifier() note.Verifier { return s.verify }

// AuditNoteVerifier returns the verifier of agency's audit checkpoints
// signed with the key whose public half is pub (from the directory).
func AuditNoteVerifier(agency string, pub ed25519.PublicKey) (note.Verifier, error) {
	if !ValidSlug(agency) {
		return nil, fmt.Errorf("audit note verifier: %q is not an agency id", agency)
	}
	vkey, err := note.NewEd25519VerifierKey(AuditOrigin(agency), pub)
	if err != nil {
		return nil, fmt.Errorf("audit note verifier: %w", err)
	}
	return note.NewVerifier(vkey)
}
