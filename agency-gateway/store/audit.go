package store

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Audit domain-separation prefixes.
const (
	auditEventDomain = "rujukan/v1/audit-event\x00"
	auditHeadDomain  = "rujukan/v1/audit-head\x00"
)

// ErrAuditBroken is returned by VerifyAudit when the chain or its signed
// head does not check out: an event was edited, removed or inserted.
var ErrAuditBroken = errors.New("audit log does not verify")

// Action names what an audit event records. The gateway defines one
// constant per action; the log is read by people and tools that branch on
// it, so an action's name never changes.
type Action string

// AuditEvent is one entry of the append-only audit log. It names who did
// what to which object, never personal data.
type AuditEvent struct {
	Seq     uint64    `json:"seq"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  Action    `json:"action"`
	Object  string    `json:"object,omitempty"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
	// Detail holds ids and hashes that help an auditor (peer agency,
	// envelope hash), never personal data.
	Detail map[string]string `json:"detail,omitempty"`
	// Prev is the hash of the previous event (hex), empty for the first.
	Prev string `json:"prev"`
	// Hash is SHA-256(domain || Prev || event without Hash), hex.
	Hash string `json:"hash"`
}

// AuditHead is the signed head of the chain.
type AuditHead struct {
	Seq       uint64 `json:"seq"`
	Hash      string `json:"hash"`
	Signature string `json:"signature"`
}

func eventHash(e AuditEvent) (string, error) {
	e.Hash = ""
	raw, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(auditEventDomain))
	h.Write(raw)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func headMessage(seq uint64, hash string) []byte {
	m := make([]byte, 0, len(auditHeadDomain)+8+len(hash))
	m = append(m, auditHeadDomain...)
	m = binary.BigEndian.AppendUint64(m, seq)
	return append(m, hash...)
}

// Audit appends an event to the chain, in the same transaction as the
// change it describes. The head is signed once when the transaction ends.
func (t *Tx) Audit(e AuditEvent) error {
	if t.head == nil {
		var head AuditHead
		if err := getJSON(t.b(bucketMeta), keyAuditHead, &head); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		t.head = &head
	}
	e.Seq = t.head.Seq + 1
	e.Prev = t.head.Hash
	if e.At.IsZero() {
		e.At = t.db.now()
	}
	e.At = e.At.UTC().Truncate(time.Microsecond)
	h, err := eventHash(e)
	if err != nil {
		return err
	}
	e.Hash = h
	if err := putJSON(t.b(bucketAudit), seqKey(e.Seq), e); err != nil {
		return err
	}
	t.head.Seq, t.head.Hash, t.dirty = e.Seq, h, true
	return nil
}

// signHead signs and stores the audit head if this transaction added
// events.
func (t *Tx) signHead() error {
	if !t.dirty {
		return nil
	}
	if t.db.signer == nil {
		return errors.New("audit: database opened read-only")
	}
	t.head.Signature = hex.EncodeToString(ed25519.Sign(t.db.signer, headMessage(t.head.Seq, t.head.Hash)))
	t.dirty = false
	return putJSON(t.b(bucketMeta), keyAuditHead, t.head)
}

// AuditEvents returns up to limit events with Seq > after, oldest first.
func (t *Tx) AuditEvents(after uint64, limit int) ([]AuditEvent, error) {
	var out []AuditEvent
	c := t.b(bucketAudit).Cursor()
	for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
		var e AuditEvent
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("%w: event %x is not valid JSON", ErrAuditBroken, k)
		}
		out = append(out, e)
	}
	return out, nil
}

// AuditReport is the result of a chain verification.
type AuditReport struct {
	Events   uint64 `json:"events"`
	HeadHash string `json:"head_hash"`
}

// VerifyAudit walks the whole chain: every event's hash, its link to the
// previous one, consecutive sequence numbers, and the head signature against
// pub. Any edit, deletion or insertion fails with ErrAuditBroken.
func (t *Tx) VerifyAudit(pub ed25519.PublicKey) (AuditReport, error) {
	return t.VerifyAuditFrom(pub, AuditReport{})
}

// VerifyAuditFrom is VerifyAudit for a log whose first from.Events events
// were verified before, ending at hash from.HeadHash: it checks the signed
// head and the events after them only. A running gateway, which holds the
// file lock, uses it to keep checking what it appends; a whole walk is
// needed for a file that was out of its hands.
func (t *Tx) VerifyAuditFrom(pub ed25519.PublicKey, from AuditReport) (AuditReport, error) {
	var head AuditHead
	if err := getJSON(t.b(bucketMeta), keyAuditHead, &head); err != nil {
		if errors.Is(err, ErrNotFound) {
			if t.b(bucketAudit).Stats().KeyN != 0 {
				return AuditReport{}, fmt.Errorf("%w: events without a signed head", ErrAuditBroken)
			}
			return AuditReport{}, nil
		}
		return AuditReport{}, fmt.Errorf("%w: %v", ErrAuditBroken, err)
	}
	sig, err := hex.DecodeString(head.Signature)
	if err != nil || !ed25519.Verify(pub, headMessage(head.Seq, head.Hash), sig) {
		return AuditReport{}, fmt.Errorf("%w: head signature is not valid", ErrAuditBroken)
	}
	prev, seq := from.HeadHash, from.Events
	c := t.b(bucketAudit).Cursor()
	k, v := c.First()
	if seq > 0 {
		k, v = c.Seek(seqKey(seq))
		if k == nil || binary.BigEndian.Uint64(k) != seq {
			return AuditReport{}, fmt.Errorf("%w: event %d is missing", ErrAuditBroken, seq)
		}
		var e AuditEvent
		if err := json.Unmarshal(v, &e); err != nil || e.Hash != prev {
			return AuditReport{}, fmt.Errorf("%w: event %d was altered", ErrAuditBroken, seq)
		}
		k, v = c.Next()
	}
	for ; k != nil; k, v = c.Next() {
		seq++
		var e AuditEvent
		if err := json.Unmarshal(v, &e); err != nil {
			return AuditReport{Events: seq - 1}, fmt.Errorf("%w: event %d is not valid JSON", ErrAuditBroken, seq)
		}
		if len(k) != 8 || binary.BigEndian.Uint64(k) != seq || e.Seq != seq {
			return AuditReport{Events: seq - 1}, fmt.Errorf("%w: event %d is missing or out of place", ErrAuditBroken, seq)
		}
		if e.Prev != prev {
			return AuditReport{Events: seq - 1}, fmt.Errorf("%w: event %d does not link to event %d", ErrAuditBroken, seq, seq-1)
		}
		h, err := eventHash(e)
		if err != nil || h != e.Hash {
			return AuditReport{Events: seq - 1}, fmt.Errorf("%w: event %d was altered", ErrAuditBroken, seq)
		}
		prev = h
	}
	if seq != head.Seq || prev != head.Hash {
		return AuditReport{Events: seq}, fmt.Errorf("%w: chain ends at event %d but the signed head is event %d", ErrAuditBroken, seq, head.Seq)
	}
	return AuditReport{Events: seq, HeadHash: prev}, nil
}

// VerifyAudit verifies the audit chain in a read transaction.
func (d *DB) VerifyAudit() (r AuditReport, err error) {
	return d.VerifyAuditWith(d.verify)
}

// VerifyAuditWith verifies the audit chain with the given head key.
func (d *DB) VerifyAuditWith(pub ed25519.PublicKey) (r AuditReport, err error) {
	err = d.View(func(t *Tx) error {
		r, err = t.VerifyAudit(pub)
		return err
	})
	return r, err
}
