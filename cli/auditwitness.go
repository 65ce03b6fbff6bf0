package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A log rolled back to an older copy of itself verifies on its own: its
// events, tree and signed checkpoint are all the agency's. Only someone
// who saw a later checkpoint can tell, and every other gateway keeps the
// latest checkpoint it witnessed of each log. audit verify asks them: the
// other gateways' stopped databases (--witness-db, and by default every
// other gateway of a dev data folder) or a running witness
// (--witness-url), and checks that the log extends each checkpoint they
// hold.

// AuditResult is what audit verify found: the log's report and, for each
// witness consulted, a line saying what it holds (and for each witness
// that could not be consulted, why).
type AuditResult struct {
	store.AuditReport
	Witnessed []string
}

// heldCheckpoint is a checkpoint of the log being verified that a witness
// holds, signed by the log's own key.
type heldCheckpoint struct {
	by    string
	cp    store.Checkpoint
	alarm string
}

// witnessDBs returns the other gateways' databases in a dev data folder,
// by agency id.
func witnessDBs(data, agency string) map[string]string {
	out := map[string]string{}
	dirs, _ := os.ReadDir(filepath.Join(data, "gateways"))
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == agency {
			continue
		}
		db := filepath.Join(data, "gateways", d.Name(), gatewayDBFile)
		if _, err := os.Stat(db); err == nil {
			out[d.Name()] = db
		}
	}
	return out
}

// held reads what the witnesses of c hold of c.Agency's log. A witness
// that cannot be read (its gateway running, its file missing) is skipped
// with a note when c.OptionalWitnesses, and an error otherwise; a
// checkpoint a witness holds that is not signed by the log's key is an
// error either way: someone tampered with the witness, or the log's key.
func held(ctx context.Context, c AuditVerifyConfig, known note.Verifiers) ([]heldCheckpoint, []string, error) {
	var out []heldCheckpoint
	var notes []string
	names := make([]string, 0, len(c.WitnessDBs))
	for name := range c.WitnessDBs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := c.WitnessDBs[name]
		db, err := store.OpenReadOnly(path)
		if err != nil {
			if c.OptionalWitnesses {
				why := err.Error()
				if errors.Is(err, store.ErrLocked) {
					why = "its gateway is running"
				}
				notes = append(notes, fmt.Sprintf("witness %s not consulted: %s", name, why))
				continue
			}
			return nil, nil, fmt.Errorf("audit verify: witness %s: %w", name, err)
		}
		var w store.WitnessedLog
		err = db.View(func(tx *store.Tx) (err error) {
			w, err = tx.Witnessed(c.Agency)
			return err
		})
		db.Close()
		if errors.Is(err, store.ErrNotFound) {
			notes = append(notes, fmt.Sprintf("witness %s holds no checkpoint of %s", name, c.Agency))
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("audit verify: witness %s: %w", name, err)
		}
		h, err := heldOf(name, c.Agency, w.Checkpoint, w.Alarm, known)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, h)
	}
	if c.WitnessURL != "" {
		if c.WitnessToken == "" {
			return nil, nil, errors.New("audit verify: --witness-url needs --witness-token (a token of that gateway with audit:read)")
		}
		base := strings.TrimSuffix(c.WitnessURL, "/")
		var ws []gateway.WitnessedLog
		if err := getAuditJSON(ctx, base+"/v1/audit/witnesses", c.WitnessToken, &ws); err != nil {
			return nil, nil, err
		}
		found := false
		for _, w := range ws {
			if w.Log != c.Agency {
				continue
			}
			h, err := heldOf(base, c.Agency, w.Checkpoint, w.Alarm, known)
			if err != nil {
				return nil, nil, err
			}
			out, found = append(out, h), true
		}
		if !found {
			notes = append(notes, fmt.Sprintf("witness %s holds no checkpoint of %s", base, c.Agency))
		}
	}
	return out, notes, nil
}

func heldOf(by, agency, checkpoint, alarm string, known note.Verifiers) (heldCheckpoint, error) {
	cp, err := store.OpenCheckpoint([]byte(checkpoint), known)
	if err != nil {
		return heldCheckpoint{}, fmt.Errorf("audit verify: witness %s holds a checkpoint of %s that is not signed by its key: %v", by, agency, err)
	}
	return heldCheckpoint{by: by, cp: cp, alarm: alarm}, nil
}

// line says what a witness holds, once the log was found to extend it.
func (h heldCheckpoint) line() string {
	s := fmt.Sprintf("witness %s holds the checkpoint of %d events: the log extends it", h.by, h.cp.Size)
	if h.alarm != "" {
		s += fmt.Sprintf(" (it raised a %s alarm about a later checkpoint)", h.alarm)
	}
	return s
}

// checkHeldDB checks a stopped gateway's log against what the witnesses
// hold.
func checkHeldDB(db *store.DB, hs []heldCheckpoint) error {
	return db.View(func(tx *store.Tx) error {
		for _, h := range hs {
			if err := tx.AuditExtends(h.cp, h.by); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkHeldURL checks a running gateway's log, whose latest checkpoint
// is latest, against what the witnesses hold, with consistency proofs
// from the gateway verified here.
func checkHeldURL(ctx context.Context, base, token string, latest store.Checkpoint, hs []heldCheckpoint) error {
	for _, h := range hs {
		switch {
		case latest.Size < h.cp.Size:
			return fmt.Errorf("audit verify: %s: %w: at seq %d: the log ends at %d events, but %s holds its signed checkpoint of %d events: rolled back to an older copy or truncated",
				base, store.ErrAuditBroken, latest.Size+1, latest.Size, h.by, h.cp.Size)
		case latest.Size == h.cp.Size:
			if latest.Root != h.cp.Root {
				return fmt.Errorf("audit verify: %s: %w: two signed checkpoints of %d events with different roots (this gateway's and the one %s holds): a fork",
					base, store.ErrAuditBroken, latest.Size, h.by)
			}
			continue
		}
		var p gateway.AuditConsistencyProof
		if err := getAuditJSON(ctx, fmt.Sprintf("%s/v1/audit/consistency?from=%d&to=%d", base, h.cp.Size, latest.Size), token, &p); err != nil {
			return err
		}
		var proof tlog.TreeProof
		for _, s := range p.Proof {
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(raw) != tlog.HashSize {
				return fmt.Errorf("audit verify: %s: the consistency proof is not base64 hashes", base)
			}
			proof = append(proof, tlog.Hash(raw))
		}
		if err := tlog.CheckTree(proof, int64(latest.Size), latest.Root, int64(h.cp.Size), h.cp.Root); err != nil {
			return fmt.Errorf("audit verify: %s: %w: at seq %d or before: the log of %d events does not extend the signed checkpoint of %d events %s holds: rewritten (a fork)",
				base, store.ErrAuditBroken, h.cp.Size, latest.Size, h.cp.Size, h.by)
		}
	}
	return nil
}
