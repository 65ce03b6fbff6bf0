package crypto

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Receipt events.
const (
	EventDelivered = "delivered"
	EventRead      = "read"
	EventRejected  = "rejected"
)

// MaxReceiptSize caps the encoding of a receipt; a valid one is under 512
// bytes.
const MaxReceiptSize = 1024

const (
	receiptMagic  = "RJKR"
	receiptDomain = "rujukan/v1/receipt\x00"
)

// Receipt errors.
var (
	// ErrReceiptMalformed is returned for bytes that are not a receipt of
	// the expected shape.
	ErrReceiptMalformed = errors.New("malformed receipt")
	// ErrReceiptSignature is returned when a receipt's signature does not
	// verify with the key it names.
	ErrReceiptSignature = errors.New("bad receipt signature")
	// ErrReceiptMismatch is returned when a receipt does not match the
	// envelope that carried it.
	ErrReceiptMismatch = errors.New("receipt does not match its envelope")
)

// Receipt says what happened to an envelope at its recipient. The recipient
// signs it and seals it, as the body of an envelope of kind "receipt", back
// to the original sender.
type Receipt struct {
	// EnvelopeID and EnvelopeHash name the envelope, by id and by the
	// SHA-256 of its bytes as received (EnvelopeHash).
	EnvelopeID   string
	EnvelopeHash [32]byte
	// From is the agency that received the envelope and signs the receipt;
	// To is the envelope's original sender.
	From, To string
	// Event is EventDelivered, EventRead or EventRejected.
	Event string
	// Reason is a reason code (lowercase slug, see ReasonCode) for
	// EventRejected, and empty otherwise.
	Reason string
	// At is when it happened, carried in Unix milliseconds.
	At time.Time
	// SignerKeyID is the directory id of the signing key; SignReceipt sets
	// it.
	SignerKeyID string
}

// HashHex returns the envelope hash in lowercase hex.
func (r *Receipt) HashHex() string { return hex.EncodeToString(r.EnvelopeHash[:]) }

func (r *Receipt) validate() error {
	switch {
	case !validID(r.EnvelopeID):
		return fmt.Errorf("envelope id %q is not 1 to %d characters of [A-Za-z0-9_-]", r.EnvelopeID, maxIDLen)
	case !ValidSlug(r.From):
		return fmt.Errorf("from %q is not an agency id", r.From)
	case !ValidSlug(r.To):
		return fmt.Errorf("to %q is not an agency id", r.To)
	case r.From == r.To:
		return errors.New("from and to are the same agency")
	case r.Event != EventDelivered && r.Event != EventRead && r.Event != EventRejected:
		return fmt.Errorf("unknown event %q", r.Event)
	case r.Event == EventRejected && !ValidSlug(r.Reason):
		return fmt.Errorf("a rejected receipt needs a reason code (lowercase slug), got %q", r.Reason)
	case r.Event != EventRejected && r.Reason != "":
		return fmt.Errorf("a %s receipt has no reason", r.Event)
	case r.At.UnixMilli() <= 0:
		return errors.New("time is not after 1970")
	case !validKeyID(r.SignerKeyID):
		return fmt.Errorf("signer key id %q is not 16 hex digits", r.SignerKeyID)
	}
	return nil
}

func appendReceipt(b []byte, r *Receipt) []byte {
	e := encoder{b}
	e.rawStr(receiptMagic)
	e.u8(Version)
	e.str8(r.EnvelopeID)
	e.raw(r.EnvelopeHash[:])
	e.str8(r.From)
	e.str8(r.To)
	e.str8(r.Event)
	e.str8(r.Reason)
	e.i64(r.At.UnixMilli())
	e.str8(r.SignerKeyID)
	return e.b
}

// SignReceipt signs a receipt and returns its encoding. It sets
// r.SignerKeyID to the signer's key id; r.From must be the signer's agency.
func SignReceipt(r Receipt, signer *Signer) ([]byte, error) {
	if signer == nil {
		return nil, errors.New("receipt: a signer is required")
	}
	r.SignerKeyID = signer.KeyID()
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("receipt: %v", err)
	}
	b := appendReceipt(make([]byte, 0, 256), &r)
	m := make([]byte, 0, len(receiptDomain)+len(b))
	m = append(append(m, receiptDomain...), b...)
	return append(b, signer.sign(m)...), nil
}

// ParseReceipt decodes a receipt WITHOUT verifying its signature.
func ParseReceipt(b []byte) (Receipt, error) {
	r, _, err := parseReceipt(b)
	return r, err
}

func parseReceipt(b []byte) (Receipt, []byte, error) {
	var r Receipt
	if len(b) > MaxReceiptSize {
		return r, nil, fmt.Errorf("%w: %d bytes", ErrReceiptMalformed, len(b))
	}
	d := decoder{b: b}
	if m := d.take(len(receiptMagic)); d.err != nil || string(m) != receiptMagic {
		return r, nil, fmt.Errorf("%w: not a rujukan receipt", ErrReceiptMalformed)
	}
	if v := d.u8(); d.err == nil && v != Version {
		return r, nil, fmt.Errorf("%w: version %d", ErrReceiptMalformed, v)
	}
	r.EnvelopeID = d.str8()
	copy(r.EnvelopeHash[:], d.take(32))
	r.From = d.str8()
	r.To = d.str8()
	r.Event = d.str8()
	r.Reason = d.str8()
	r.At = time.UnixMilli(d.i64()).UTC()
	r.SignerKeyID = d.str8()
	signed := b[:len(b)-len(d.b)]
	sig := d.take(ed25519.SignatureSize)
	if d.err != nil {
		return Receipt{}, nil, fmt.Errorf("%w: truncated", ErrReceiptMalformed)
	}
	if len(d.b) != 0 {
		return Receipt{}, nil, fmt.Errorf("%w: trailing bytes", ErrReceiptMalformed)
	}
	if err := r.validate(); err != nil {
		return Receipt{}, nil, fmt.Errorf("%w: %v", ErrReceiptMalformed, err)
	}
	m := make([]byte, 0, len(receiptDomain)+len(signed)+len(sig))
	m = append(append(m, receiptDomain...), signed...)
	return r, append(m, sig...), nil
}

// VerifyReceipt parses a receipt and verifies its signature with the key of
// r.From named by r.SignerKeyID in the directory. A revoked key still
// verifies, so old receipts stay checkable: a new receipt arrives in an
// envelope, and Open refuses envelopes from revoked senders. Use
// VerifyReceiptEnvelope for a receipt just received.
func VerifyReceipt(b []byte, dir *Directory) (Receipt, error) {
	r, m, err := parseReceipt(b)
	if err != nil {
		return Receipt{}, err
	}
	_, pub, _, err := senderKey(dir, r.From, r.SignerKeyID)
	if err != nil {
		return r, err
	}
	sig := m[len(m)-ed25519.SignatureSize:]
	if !ed25519.Verify(pub, m[:len(m)-ed25519.SignatureSize], sig) {
		return r, ErrReceiptSignature
	}
	return r, nil
}

// VerifyReceiptEnvelope verifies a receipt that arrived as the body of an
// envelope that Open accepted with header h: the envelope must be of kind
// receipt, and the receipt signed by the envelope's sender, with the same
// key, to the envelope's recipient.
func VerifyReceiptEnvelope(h Header, body []byte, dir *Directory) (Receipt, error) {
	if h.Kind != KindReceipt {
		return Receipt{}, fmt.Errorf("%w: envelope kind is %q", ErrReceiptMismatch, h.Kind)
	}
	r, err := VerifyReceipt(body, dir)
	if err != nil {
		return r, err
	}
	if r.From != h.From || r.To != h.To || r.SignerKeyID != h.SenderKeyID {
		return r, fmt.Errorf("%w: receipt %s -> %s, envelope %s -> %s", ErrReceiptMismatch, r.From, r.To, h.From, h.To)
	}
	return r, nil
}
