package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	bolt "go.etcd.io/bbolt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrAuditBroken is returned by VerifyAudit when the log or its signed
// checkpoint does not check out: an event was edited, removed, inserted or
// moved, or the checkpoint is not signed by the agency's key.
var ErrAuditBroken = errors.New("audit log does not verify")

// Signer signs the audit log's checkpoints as signed notes. The store never
// holds the private key: the crypto package does (crypto.AuditNoteSigner).
// The signer's name is the log's origin, the first line of every checkpoint.
type Signer interface {
	note.Signer
	// Verifier returns the verifier of the signer's notes.
	Verifier() note.Verifier
}

// Action names what an audit event records. The gateway defines one
// constant per action; the log is read by people and tools that branch on
// it, so an action's name never changes.
type Action string

// AuditEvent is one entry of the append-only audit log. It names who did
// what to which object, never personal data.
//
// The event's JSON, exactly as stored, is a leaf of the log's Merkle tree
// (RFC 6962, golang.org/x/mod/sumdb/tlog): event seq is the record with
// index seq-1.
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
}

// Checkpoint is the log's signed head, in the C2SP tlog-checkpoint format:
// origin line, tree size, base64 root hash, then the note signature.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   tlog.Hash
	// Note is the signed note, as stored and served.
	Note []byte
}

// checkpointText formats the body of a checkpoint.
func checkpointText(origin string, size uint64, root tlog.Hash) string {
	return origin + "\n" + strconv.FormatUint(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// parseCheckpointText reads the first three lines of a checkpoint body;
// extension lines after them are allowed and ignored.
func parseCheckpointText(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return Checkpoint{}, errors.New("not a checkpoint")
	}
	size, err := strconv.ParseUint(lines[1], 10, 63)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, errors.New("checkpoint: bad tree size")
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return Checkpoint{}, errors.New("checkpoint: bad root hash")
	}
	cp := Checkpoint{Origin: lines[0], Size: size}
	copy(cp.Root[:], root)
	return cp, nil
}

// OpenCheckpoint verifies a signed checkpoint note with the known verifiers
// and parses it. The origin line must be the name of the key that signed it.
func OpenCheckpoint(msg []byte, known note.Verifiers) (Checkpoint, error) {
	n, err := note.Open(msg, known)
	if err != nil {
		return Checkpoint{}, err
	}
	cp, err := parseCheckpointText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if cp.Origin != n.Sigs[0].Name {
		return Checkpoint{}, fmt.Errorf("checkpoint of %q signed by the key of %q", cp.Origin, n.Sigs[0].Name)
	}
	cp.Note = msg
	return cp, nil
}

// hashKey is the key of stored hash index i in the audit-hashes bucket.
func hashKey(i int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

// hashReader reads the tree's stored hashes from the audit-hashes bucket.
func (t *Tx) hashReader() tlog.HashReader {
	b := t.b(bucketAuditHashes)
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		if b == nil {
			return nil, fmt.Errorf("%w: the log has no tree hashes", ErrAuditBroken)
		}
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			v := b.Get(hashKey(x))
			if len(v) != tlog.HashSize {
				return nil, fmt.Errorf("%w: stored tree hash %d is missing", ErrAuditBroken, x)
			}
			copy(out[i][:], v)
		}
		return out, nil
	})
}

// storedCheckpoint returns the stored checkpoint, unverified.
func (t *Tx) storedCheckpoint() (Checkpoint, error) {
	raw := t.b(bucketMeta).Get(keyAuditCheckpoint)
	if raw == nil {
		return Checkpoint{}, ErrNotFound
	}
	text, _, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		return Checkpoint{}, fmt.Errorf("%w: the stored checkpoint is not a signed note", ErrAuditBroken)
	}
	cp, err := parseCheckpointText(string(text) + "\n")
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrAuditBroken, err)
	}
	cp.Note = bytes.Clone(raw)
	return cp, nil
}

// Audit appends an event to the log, in the same transaction as the change
// it describes: the event's JSON and the tree hashes it adds. The checkpoint
// is signed once when the transaction ends.
func (t *Tx) Audit(e AuditEvent) error {
	if !t.sizeLoaded {
		cp, err := t.storedCheckpoint()
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		t.size, t.sizeLoaded = int64(cp.Size), true
	}
	e.Seq = uint64(t.size) + 1
	if e.At.IsZero() {
		e.At = t.db.now()
	}
	e.At = e.At.UTC().Truncate(time.Microsecond)
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	// Never write over an event: a log whose events run past its
	// checkpoint (or that lost its checkpoint) does not verify, and its
	// events are the evidence of that.
	if t.b(bucketAudit).Get(seqKey(e.Seq)) != nil {
		return fmt.Errorf("%w: event %d is stored but not covered by the signed checkpoint; refusing to write over it", ErrAuditBroken, e.Seq)
	}
	if err := t.b(bucketAudit).Put(seqKey(e.Seq), raw); err != nil {
		return err
	}
	hs, err := tlog.StoredHashes(t.size, raw, t.hashReader())
	if err != nil {
		return err
	}
	b := t.b(bucketAuditHashes)
	base := tlog.StoredHashIndex(0, t.size)
	for i, h := range hs {
		if err := b.Put(hashKey(base+int64(i)), bytes.Clone(h[:])); err != nil {
			return err
		}
	}
	t.size++
	t.dirty = true
	return nil
}

// signCheckpoint signs and stores the checkpoint if this transaction added
// events.
func (t *Tx) signCheckpoint() error {
	if !t.dirty {
		return nil
	}
	if t.db.signer == nil {
		return errors.New("audit: database opened read-only")
	}
	root, err := tlog.TreeHash(t.size, t.hashReader())
	if err != nil {
		return err
	}
	msg, err := note.Sign(&note.Note{Text: checkpointText(t.db.signer.Name(), uint64(t.size), root)}, t.db.signer)
	if err != nil {
		return fmt.Errorf("audit: failed to sign the checkpoint: %w", err)
	}
	t.dirty = false
	return t.b(bucketMeta).Put(keyAuditCheckpoint, msg)
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

// AuditFind returns up to limit events with Seq > after that match,
// oldest first, examining at most budget events. next is the seq to
// continue after (the last event examined) when events remain past the
// page or the budget ran out, 0 when the log was read to its end.
func (t *Tx) AuditFind(after uint64, limit, budget int, match func(AuditEvent) bool) (out []AuditEvent, next uint64, err error) {
	c := t.b(bucketAudit).Cursor()
	var last uint64
	examined := 0
	for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Next() {
		if len(out) == limit || examined == budget {
			return out, last, nil
		}
		examined++
		var e AuditEvent
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, 0, fmt.Errorf("%w: event %x is not valid JSON", ErrAuditBroken, k)
		}
		last = e.Seq
		if match == nil || match(e) {
			out = append(out, e)
		}
	}
	return out, 0, nil
}

// AuditCheckpoint returns the stored checkpoint as the gateway signed it
// (ErrNotFound before the first event).
func (t *Tx) AuditCheckpoint() (Checkpoint, error) { return t.storedCheckpoint() }

// AuditRecord returns the stored bytes of event seq (ErrNotFound if there
// is none).
func (t *Tx) AuditRecord(seq uint64) ([]byte, error) {
	v := t.b(bucketAudit).Get(seqKey(seq))
	if v == nil {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

// AuditTreeHash returns the root hash of the log's first size events.
func (t *Tx) AuditTreeHash(size uint64) (tlog.Hash, error) {
	return tlog.TreeHash(int64(size), t.hashReader())
}

// AuditInclusion returns the proof that event seq is in the tree of size
// events (tlog.CheckRecord verifies it, for record index seq-1).
func (t *Tx) AuditInclusion(seq, size uint64) (tlog.RecordProof, error) {
	if seq < 1 || seq > size {
		return nil, fmt.Errorf("event %d is not in a tree of %d events", seq, size)
	}
	return tlog.ProveRecord(int64(size), int64(seq-1), t.hashReader())
}

// AuditConsistency returns the proof that the tree of from events is a
// prefix of the tree of to events (tlog.CheckTree verifies it).
func (t *Tx) AuditConsistency(from, to uint64) (tlog.TreeProof, error) {
	if from < 1 || from > to {
		return nil, fmt.Errorf("no consistency proof from %d to %d events", from, to)
	}
	return tlog.ProveTree(int64(to), int64(from), t.hashReader())
}

// AuditReport is the result of a log verification.
type AuditReport struct {
	// Events is the number of events verified (on failure: before the
	// first bad one).
	Events uint64 `json:"events"`
	// Root is the tree's root hash, base64, as in the checkpoint.
	Root string `json:"root"`
	// Checkpoint is the signed checkpoint note that was checked.
	Checkpoint string `json:"checkpoint"`
}

// VerifyAudit checks the whole log: the checkpoint's signature against
// known, each event's stored bytes against the tree's stored hashes,
// consecutive sequence numbers, and the recomputed tree against the
// checkpoint. Any edit, deletion, insertion or move fails with
// ErrAuditBroken naming the first bad sequence number.
func (t *Tx) VerifyAudit(known note.Verifiers) (AuditReport, error) {
	return t.VerifyAuditFrom(known, AuditReport{})
}

// seqPrefix is how the stored JSON of event seq starts.
func seqPrefix(buf []byte, seq uint64) []byte {
	buf = append(buf[:0], `{"seq":`...)
	buf = strconv.AppendUint(buf, seq, 10)
	return append(buf, ',')
}

// VerifyAuditFrom is VerifyAudit for a log whose first from.Events events
// were verified before: it checks the signed checkpoint and the events
// after them only. A running gateway, which holds the file lock, uses it to
// keep checking what it appends; a whole walk is needed for a file that was
// out of its hands.
func (t *Tx) VerifyAuditFrom(known note.Verifiers, from AuditReport) (AuditReport, error) {
	broken := func(n int64, format string, args ...any) (AuditReport, error) {
		return AuditReport{Events: uint64(n)}, fmt.Errorf("%w: "+format, append([]any{ErrAuditBroken}, args...)...)
	}
	events := t.b(bucketAudit)
	raw := t.b(bucketMeta).Get(keyAuditCheckpoint)
	if raw == nil {
		if k, _ := events.Cursor().First(); k != nil {
			return broken(0, "events without a signed checkpoint")
		}
		if from.Events > 0 {
			return broken(0, "the log and its checkpoint are gone (%d events were verified before)", from.Events)
		}
		return AuditReport{}, nil
	}
	cp, err := OpenCheckpoint(raw, known)
	if err != nil {
		return broken(0, "the checkpoint is not signed by the agency's key: %v", err)
	}
	n := int64(from.Events)
	if uint64(n) > cp.Size {
		return broken(0, "the checkpoint has %d events, but %d were verified before", cp.Size, n)
	}
	if t.b(bucketAuditHashes) == nil {
		return broken(0, "the log has no tree hashes (written by an older version)")
	}
	reader := t.hashReader()
	if n > 0 && from.Root != "" {
		if root, err := tlog.TreeHash(n, reader); err != nil || base64.StdEncoding.EncodeToString(root[:]) != from.Root {
			return broken(0, "the first %d events no longer make the tree verified before", n)
		}
	}
	c, hc := events.Cursor(), t.b(bucketAuditHashes).Cursor()
	var k, v []byte
	if n == 0 {
		k, v = c.First()
	} else {
		k, v = c.Seek(seqKey(uint64(n) + 1))
	}
	hi := tlog.StoredHashIndex(0, n)
	hk, hv := hc.Seek(hashKey(hi))
	var prefix []byte
	for ; k != nil; k, v = c.Next() {
		seq := uint64(n) + 1
		if len(k) != 8 {
			return broken(n, "event %d is out of place (a key of %d bytes follows it)", seq-1, len(k))
		}
		switch got := binary.BigEndian.Uint64(k); {
		case got > seq:
			return broken(n, "event %d is missing", seq)
		case got < seq:
			return broken(n, "event %d is out of place", got)
		}
		prefix = seqPrefix(prefix, seq)
		if !bytes.HasPrefix(v, prefix) {
			return broken(n, "event %d is out of place or was altered: its stored bytes do not start with its sequence number", seq)
		}
		hs, err := tlog.StoredHashes(n, v, reader)
		if err != nil {
			return broken(n, "event %d: %v", seq, err)
		}
		for i, h := range hs {
			if hk == nil || binary.BigEndian.Uint64(hk) != uint64(hi) || !bytes.Equal(hv, h[:]) {
				if i == 0 {
					return broken(n, "event %d was altered: its stored bytes are not the leaf in the tree", seq)
				}
				return broken(n, "the tree's stored hashes at event %d were altered", seq)
			}
			hk, hv = hc.Next()
			hi++
		}
		n++
	}
	switch {
	case uint64(n) < cp.Size:
		return broken(n, "the log ends at event %d, but the signed checkpoint has %d events: event %d is missing", n, cp.Size, n+1)
	case uint64(n) > cp.Size:
		return broken(int64(cp.Size), "event %d is not covered by the signed checkpoint, which has %d events", cp.Size+1, cp.Size)
	}
	root, err := tlog.TreeHash(n, reader)
	if err != nil {
		return broken(n, "%v", err)
	}
	if root != cp.Root {
		return broken(0, "the tree of %d events does not match the signed checkpoint", n)
	}
	return AuditReport{Events: uint64(n), Root: base64.StdEncoding.EncodeToString(root[:]), Checkpoint: string(cp.Note)}, nil
}

// VerifyAudit verifies the audit log in a read transaction with the key of
// the database's own signer.
func (d *DB) VerifyAudit() (AuditReport, error) {
	if d.signer == nil {
		return AuditReport{}, errors.New("audit: no verifier for a database opened read-only; use VerifyAuditWith")
	}
	return d.VerifyAuditWith(note.VerifierList(d.signer.Verifier()))
}

// VerifyAuditWith verifies the audit log with the given checkpoint keys.
func (d *DB) VerifyAuditWith(known note.Verifiers) (r AuditReport, err error) {
	err = d.View(func(t *Tx) error {
		r, err = t.VerifyAudit(known)
		return err
	})
	return r, err
}

// keyAuditHead is where a log of the earlier format (a hash chain with a
// signed head) kept its head.
var keyAuditHead = []byte("audit-head")

// ActAuditUpgrade records that a log of the earlier format became a
// Merkle tree.
const ActAuditUpgrade Action = "audit.upgrade"

// upgradeAudit turns a log of the earlier format into a Merkle tree over
// the events as they are stored, signs its first checkpoint and records
// the upgrade as an event naming the old head, so an auditor can still
// compare it with a copy of the old log. It does nothing to a log that has
// a checkpoint.
func (d *DB) upgradeAudit() error {
	return d.db.Update(func(btx *bolt.Tx) error {
		t := &Tx{tx: btx, db: d}
		meta := t.b(bucketMeta)
		head := meta.Get(keyAuditHead)
		if head == nil {
			return nil
		}
		var old struct {
			Seq  uint64 `json:"seq"`
			Hash string `json:"hash"`
		}
		json.Unmarshal(head, &old)
		if meta.Get(keyAuditCheckpoint) == nil {
			hb := t.b(bucketAuditHashes)
			var n int64
			c := t.b(bucketAudit).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				hs, err := tlog.StoredHashes(n, v, t.hashReader())
				if err != nil {
					return err
				}
				base := tlog.StoredHashIndex(0, n)
				for i, h := range hs {
					if err := hb.Put(hashKey(base+int64(i)), bytes.Clone(h[:])); err != nil {
						return err
					}
				}
				n++
			}
			t.size, t.sizeLoaded = n, true
			err := t.Audit(AuditEvent{Actor: "store", Action: ActAuditUpgrade, Outcome: "merkle-tree",
				Detail: map[string]string{"previous_events": fmt.Sprint(old.Seq), "previous_head": old.Hash}})
			if err != nil {
				return err
			}
			if err := t.signCheckpoint(); err != nil {
				return err
			}
		}
		return meta.Delete(keyAuditHead)
	})
}
