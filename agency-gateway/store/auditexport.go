package store

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// An audit export is JSON lines (one JSON object per line): first one
// ExportEvent per exported event, in sequence order, then one ExportTrailer
// with the signed checkpoint and, for every exported event, its inclusion
// proof in the checkpoint's tree. With the file and the agency's signing
// key from the directory, an auditor checks the checkpoint's signature and
// each event with tlog.CheckRecord (VerifyExport does both).

// ExportEvent is one exported event: its sequence number and its stored
// bytes (base64), the leaf of the tree.
type ExportEvent struct {
	Seq    uint64 `json:"seq"`
	Record string `json:"record"`
}

// ExportProof is the inclusion proof of event Seq (record index Seq-1) in
// the tree of the checkpoint's size: base64 hashes, as tlog.ProveRecord
// returns them.
type ExportProof struct {
	Seq   uint64   `json:"seq"`
	Proof []string `json:"proof"`
}

// ExportTrailer is the last line of an export.
type ExportTrailer struct {
	// Checkpoint is the signed note (C2SP tlog-checkpoint) the proofs are
	// against.
	Checkpoint string        `json:"checkpoint"`
	Proofs     []ExportProof `json:"proofs"`
}

// AuditRecords calls fn with the stored bytes of each event with seq in
// from..to, in order; raw is valid only during the call.
func (t *Tx) AuditRecords(from, to uint64, fn func(seq uint64, raw []byte) error) error {
	c := t.b(bucketAudit).Cursor()
	for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
		if len(k) != 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(k)
		if seq > to {
			break
		}
		if err := fn(seq, v); err != nil {
			return err
		}
	}
	return nil
}

// ExportReport is the result of verifying an export.
type ExportReport struct {
	// Events is the number of events verified.
	Events int
	// Size is the checkpoint's tree size, Checkpoint the signed note.
	Size       uint64
	Checkpoint string
}

// maxExportLine bounds one line of an export: an event, or the trailer
// with its proofs (about 1 KiB per event).
const maxExportLine = 1 << 30

// VerifyExport reads an audit export and checks the checkpoint's signature
// against known and every event's inclusion in the checkpoint's tree. It
// fails with ErrAuditBroken naming the first bad sequence number: an event
// whose bytes were changed, one without its proof, one out of order, a
// checkpoint not signed by the agency's key.
func VerifyExport(r io.Reader, known note.Verifiers) (ExportReport, error) {
	broken := func(format string, args ...any) (ExportReport, error) {
		return ExportReport{}, fmt.Errorf("%w: "+format, append([]any{ErrAuditBroken}, args...)...)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	var events []ExportEvent
	var trailer *ExportTrailer
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if trailer != nil {
			return broken("line %d follows the checkpoint, which must be the last line", line)
		}
		var obj struct {
			Seq        *uint64       `json:"seq"`
			Record     string        `json:"record"`
			Checkpoint *string       `json:"checkpoint"`
			Proofs     []ExportProof `json:"proofs"`
		}
		if err := json.Unmarshal(b, &obj); err != nil {
			return broken("line %d is not a JSON object: %v", line, err)
		}
		switch {
		case obj.Seq != nil && obj.Checkpoint == nil:
			if n := len(events); n > 0 && *obj.Seq <= events[n-1].Seq {
				return broken("event %d is out of place (line %d, after event %d)", *obj.Seq, line, events[n-1].Seq)
			}
			events = append(events, ExportEvent{Seq: *obj.Seq, Record: obj.Record})
		case obj.Checkpoint != nil && obj.Seq == nil:
			trailer = &ExportTrailer{Checkpoint: *obj.Checkpoint, Proofs: obj.Proofs}
		default:
			return broken("line %d is neither an event nor the checkpoint", line)
		}
	}
	if err := sc.Err(); err != nil {
		return ExportReport{}, fmt.Errorf("audit export: %w", err)
	}
	if trailer == nil {
		return broken("the export has no checkpoint line (is it cut short?)")
	}
	cp, err := OpenCheckpoint([]byte(trailer.Checkpoint), known)
	if err != nil {
		return broken("the checkpoint is not signed by the agency's key: %v", err)
	}
	proofs := make(map[uint64][]string, len(trailer.Proofs))
	for _, p := range trailer.Proofs {
		proofs[p.Seq] = p.Proof
	}
	var prefix []byte
	for _, e := range events {
		if e.Seq < 1 || e.Seq > cp.Size {
			return broken("event %d is not in the checkpoint's tree of %d events", e.Seq, cp.Size)
		}
		raw, err := base64.StdEncoding.DecodeString(e.Record)
		if err != nil {
			return broken("event %d: its record is not base64", e.Seq)
		}
		prefix = seqPrefix(prefix, e.Seq)
		if !bytes.HasPrefix(raw, prefix) {
			return broken("event %d is out of place or was altered: its stored bytes do not start with its sequence number", e.Seq)
		}
		ps, ok := proofs[e.Seq]
		if !ok {
			return broken("event %d has no inclusion proof", e.Seq)
		}
		proof := make(tlog.RecordProof, len(ps))
		for i, s := range ps {
			h, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(h) != tlog.HashSize {
				return broken("event %d: its proof holds a hash that is not base64 of %d bytes", e.Seq, tlog.HashSize)
			}
			copy(proof[i][:], h)
		}
		if err := tlog.CheckRecord(proof, int64(cp.Size), cp.Root, int64(e.Seq-1), tlog.RecordHash(raw)); err != nil {
			return broken("event %d was altered or its proof does not hold: it is not in the signed tree of %d events", e.Seq, cp.Size)
		}
	}
	return ExportReport{Events: len(events), Size: cp.Size, Checkpoint: trailer.Checkpoint}, nil
}
