package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

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

// AuditVerifiers returns the verifiers of agency a's audit checkpoints, one
// per signing key listed in the directory (an older key may have signed a
// checkpoint before a rotation).
func AuditVerifiers(a *Agency) note.Verifiers {
	var known []note.Verifier
	for _, pub := range agencySigningKeys(a) {
		if v, err := AuditNoteVerifier(a.ID, pub); err == nil {
			known = append(known, v)
		}
	}
	return note.VerifierList(known...)
}

// agencySigningKeys returns every signing key of a listed in the directory.
func agencySigningKeys(a *Agency) []ed25519.PublicKey {
	var out []ed25519.PublicKey
	for _, k := range a.Keys {
		if k.Use != UseSign {
			continue
		}
		if pub, err := ParseSigningPublicKey(k.Public); err == nil {
			out = append(out, pub)
		}
	}
	return out
}

// WitnessOrigin is the key name under which agency witnesses the other
// agencies' audit logs (its cosignatures).
func WitnessOrigin(agency string) string { return "rujukan.id/" + agency + "/witness" }

// Cosignature is a witness's C2SP tlog-cosignature/v1 over a checkpoint:
// an Ed25519 signature by the witness's key (named WitnessOrigin) over
//
//	"cosignature/v1\ntime <unix seconds>\n" + the checkpoint text
//
// Its note signature line is "— <name> base64(key hash || time || sig)".
type Cosignature struct {
	Witness string
	Time    time.Time
	// Signature is the signature line's base64 content: the 4-byte key
	// hash, the 8-byte big-endian time and the 64-byte Ed25519 signature.
	Signature []byte
}

const cosignaturePrefix = "cosignature/v1\ntime "

// cosignatureKeyHash is the C2SP key hash of a cosignature/v1 key:
// SHA-256(name || "\n" || 0x04 || public key)[:4].
func cosignatureKeyHash(name string, pub ed25519.PublicKey) []byte {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{0x04})
	h.Write(pub)
	return h.Sum(nil)[:4]
}

// cosignedMessage is the message a cosignature signs.
func cosignedMessage(t uint64, checkpoint []byte) []byte {
	return append([]byte(cosignaturePrefix+strconv.FormatUint(t, 10)+"\n"), checkpoint...)
}

// checkpointBody checks text is the body of a checkpoint (origin, size,
// root and optional extension lines, ending in a newline).
func checkpointBody(text []byte) error {
	lines := bytes.SplitN(text, []byte("\n"), 4)
	if len(lines) < 4 || len(lines[0]) == 0 || len(text) == 0 || text[len(text)-1] != '\n' {
		return errors.New("cosignature: not the text of a checkpoint")
	}
	if bytes.HasPrefix(text, []byte("cosignature/")) || bytes.HasPrefix(text, []byte("rujukan/")) {
		return errors.New("cosignature: not the text of a checkpoint")
	}
	return nil
}

// CosignCheckpoint cosigns a checkpoint's text (the note text, without its
// signatures) as witness at time t with the witness's Ed25519 signing key.
// The signed message starts with "cosignature/v1\n", which no other input
// signed with the key can start with (envelopes and receipts start with
// "rujukan/v1/", checkpoints with "rujukan.id/").
func CosignCheckpoint(witness string, key ed25519.PrivateKey, checkpoint []byte, t time.Time) (Cosignature, error) {
	if len(key) != ed25519.PrivateKeySize || !ValidSlug(witness) {
		return Cosignature{}, errors.New("cosignature: bad witness or key")
	}
	if err := checkpointBody(checkpoint); err != nil {
		return Cosignature{}, err
	}
	ts := uint64(t.Unix())
	sig := ed25519.Sign(key, cosignedMessage(ts, checkpoint))
	name := WitnessOrigin(witness)
	raw := append(cosignatureKeyHash(name, key.Public().(ed25519.PublicKey)), binary.BigEndian.AppendUint64(nil, ts)...)
	return Cosignature{Witness: witness, Time: time.Unix(int64(ts), 0).UTC(), Signature: append(raw, sig...)}, nil
}

// Line is the cosignature's note signature line, without the final newline.
func (c Cosignature) Line() string {
	return "— " + WitnessOrigin(c.Witness) + " " + base64.StdEncoding.EncodeToString(c.Signature)
}

// VerifyCosignature checks that sig (the signature line's base64 content)
// is agency witness's cosignature of the checkpoint text, by one of its
// signing keys in the directory, and returns it.
func VerifyCosignature(witness *Agency, checkpoint, sig []byte) (Cosignature, error) {
	if len(sig) != 4+8+ed25519.SignatureSize {
		return Cosignature{}, errors.New("cosignature: wrong length")
	}
	if err := checkpointBody(checkpoint); err != nil {
		return Cosignature{}, err
	}
	name := WitnessOrigin(witness.ID)
	ts := binary.BigEndian.Uint64(sig[4:12])
	if ts > math.MaxInt64 {
		return Cosignature{}, errors.New("cosignature: bad time")
	}
	msg := cosignedMessage(ts, checkpoint)
	for _, pub := range agencySigningKeys(witness) {
		if bytes.Equal(sig[:4], cosignatureKeyHash(name, pub)) && ed25519.Verify(pub, msg, sig[12:]) {
			return Cosignature{Witness: witness.ID, Time: time.Unix(int64(ts), 0).UTC(), Signature: bytes.Clone(sig)}, nil
		}
	}
	return Cosignature{}, fmt.Errorf("cosignature: not signed by a key of %s", witness.ID)
}
