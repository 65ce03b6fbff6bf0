package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
)

// exportChunk is how many events (or proofs) one read transaction of an
// export covers: the file is written between transactions, so a slow
// reader never holds one open for long.
const exportChunk = 1000

// AuditExport writes the audit events whose time is in [since, until)
// (a zero time leaves that side open) as JSON lines (see
// store.ExportEvent): each event's stored bytes, then the signed
// checkpoint with every exported event's inclusion proof in its tree, so
// that an auditor with the file and the directory verifies every event
// (store.VerifyExport, rujukan audit verify --export).
//
// Errors before the first write are the caller's to answer (ErrNotFound
// before the first event, ErrBadRequest for an empty range); an error
// after it leaves the file without its last line, which no verifier
// accepts.
func (g *Gateway) AuditExport(p policy.Principal, since, until time.Time, w io.Writer) error {
	if err := policy.Decide(p, policy.ActionAuditList, policy.Resource{}); err != nil {
		return g.denied(p, policy.ActionAuditList, "", err)
	}
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		return fmt.Errorf("%w: since must be before until", ErrBadRequest)
	}
	detail := map[string]string{}
	if !since.IsZero() {
		detail["since"] = since.UTC().Format(time.RFC3339)
	}
	if !until.IsZero() {
		detail["until"] = until.UTC().Format(time.RFC3339)
	}
	if err := g.allowed(p, ActAuditExport, "", detail); err != nil {
		return err
	}
	var cp store.Checkpoint
	err := g.db.View(func(tx *store.Tx) (err error) {
		cp, err = tx.AuditCheckpoint()
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: the audit log has no checkpoint yet", ErrNotFound)
	}
	if err != nil {
		return err
	}
	var seqs []uint64
	var buf bytes.Buffer
	for from := uint64(1); from <= cp.Size; from += exportChunk {
		buf.Reset()
		err := g.db.View(func(tx *store.Tx) error {
			return tx.AuditRecords(from, min(from+exportChunk-1, cp.Size), func(seq uint64, raw []byte) error {
				if !inRange(raw, since, until) {
					return nil
				}
				seqs = append(seqs, seq)
				line, err := json.Marshal(store.ExportEvent{Seq: seq, Record: base64.StdEncoding.EncodeToString(raw)})
				buf.Write(line)
				buf.WriteByte('\n')
				return err
			})
		})
		if err != nil {
			return err
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	buf.Reset()
	note, _ := json.Marshal(string(cp.Note))
	buf.WriteString(`{"checkpoint":`)
	buf.Write(note)
	buf.WriteString(`,"proofs":[`)
	for i := 0; i < len(seqs); i += exportChunk {
		err := g.db.View(func(tx *store.Tx) error {
			for j, seq := range seqs[i:min(i+exportChunk, len(seqs))] {
				proof, err := tx.AuditInclusion(seq, cp.Size)
				if err != nil {
					return fmt.Errorf("audit export: proof of event %d: %w", seq, err)
				}
				b, err := json.Marshal(store.ExportProof{Seq: seq, Proof: b64s(proof)})
				if err != nil {
					return err
				}
				if i+j > 0 {
					buf.WriteByte(',')
				}
				buf.Write(b)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		buf.Reset()
	}
	buf.WriteString("]}\n")
	_, err = w.Write(buf.Bytes())
	return err
}

// inRange says whether an event's time is in [since, until). An event
// whose time cannot be read is exported, so that a verifier sees it.
func inRange(raw []byte, since, until time.Time) bool {
	if since.IsZero() && until.IsZero() {
		return true
	}
	var e struct {
		At time.Time `json:"at"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return true
	}
	return (since.IsZero() || !e.At.Before(since)) && (until.IsZero() || e.At.Before(until))
}
