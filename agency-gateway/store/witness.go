package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Witnessing: each gateway keeps the latest checkpoint it holds of every
// other agency's audit log (and any alarm it raised about that log), and
// the latest cosignature each other agency made of its own log.
var (
	// bucketWitnessed holds, per agency id, the WitnessedLog of that
	// agency's audit log.
	bucketWitnessed = []byte("witnessed-logs")
	// bucketCosignatures holds, per witness agency id, the latest
	// Cosigned of this gateway's log.
	bucketCosignatures = []byte("cosignatures")
)

func init() { allBuckets = append(allBuckets, bucketWitnessed, bucketCosignatures) }

// WitnessedLog is this gateway's view of another agency's audit log: the
// latest consistent checkpoint it holds, and the alarm it raised if a
// later checkpoint did not extend it.
type WitnessedLog struct {
	// Log is the agency whose log this is.
	Log  string `json:"log"`
	Size uint64 `json:"size"`
	// Root is the base64 root hash of Checkpoint.
	Root string `json:"root"`
	// Checkpoint is the signed checkpoint note, as received.
	Checkpoint string    `json:"checkpoint"`
	SeenAt     time.Time `json:"seen_at"`
	// Sent is when the log's gateway sealed the envelope of Checkpoint.
	Sent time.Time `json:"sent,omitzero"`
	// Alarm is "", "fork" or "rollback": the last inconsistency found.
	// It stays set once raised.
	Alarm   string    `json:"alarm,omitempty"`
	AlarmAt time.Time `json:"alarm_at,omitzero"`
	// AlarmCheckpoint is the checkpoint that raised the alarm.
	AlarmCheckpoint string `json:"alarm_checkpoint,omitempty"`
}

// Witnessed returns this gateway's view of agency's log (ErrNotFound if
// it holds no checkpoint of it).
func (t *Tx) Witnessed(agency string) (WitnessedLog, error) {
	var w WitnessedLog
	b := t.b(bucketWitnessed)
	if b == nil {
		return w, ErrNotFound
	}
	err := getJSON(b, []byte(agency), &w)
	return w, err
}

// PutWitnessed stores this gateway's view of w.Log's log.
func (t *Tx) PutWitnessed(w WitnessedLog) error {
	if w.Log == "" {
		return fmt.Errorf("witnessed log without an agency")
	}
	raw, err := json.Marshal(w)
	if err != nil {
		return err
	}
	return t.b(bucketWitnessed).Put([]byte(w.Log), raw)
}

// WitnessedLogs returns this gateway's view of every log it witnesses, by
// agency id.
func (t *Tx) WitnessedLogs() ([]WitnessedLog, error) {
	out := []WitnessedLog{}
	b := t.b(bucketWitnessed)
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(_, v []byte) error {
		var w WitnessedLog
		if err := json.Unmarshal(v, &w); err != nil {
			return err
		}
		out = append(out, w)
		return nil
	})
	return out, err
}

// Cosigned is a witness's latest cosignature of this gateway's log
// (C2SP tlog-cosignature/v1).
type Cosigned struct {
	Witness string `json:"witness"`
	// Size is the tree size of the checkpoint cosigned.
	Size uint64    `json:"size"`
	Time time.Time `json:"time"`
	// Signature is the signature line's content: key hash, time and
	// Ed25519 signature.
	Signature []byte `json:"signature"`
	// Checkpoint is the checkpoint note cosigned.
	Checkpoint string `json:"checkpoint"`
}

// Cosignature returns witness's latest cosignature of this log
// (ErrNotFound if there is none).
func (t *Tx) Cosignature(witness string) (Cosigned, error) {
	var c Cosigned
	b := t.b(bucketCosignatures)
	if b == nil {
		return c, ErrNotFound
	}
	err := getJSON(b, []byte(witness), &c)
	return c, err
}

// PutCosignature stores c as its witness's latest cosignature.
func (t *Tx) PutCosignature(c Cosigned) error {
	if c.Witness == "" {
		return fmt.Errorf("cosignature without a witness")
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return t.b(bucketCosignatures).Put([]byte(c.Witness), raw)
}

// Cosignatures returns the latest cosignature of each witness, by witness
// id.
func (t *Tx) Cosignatures() ([]Cosigned, error) {
	out := []Cosigned{}
	b := t.b(bucketCosignatures)
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(_, v []byte) error {
		var c Cosigned
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// AuditExtends checks that this log holds the tree of cp, a checkpoint of
// this log that a witness keeps (opened by the caller with the log's
// keys): a log of fewer events was rolled back to an older copy or
// truncated; one whose first cp.Size events hash to another root was
// rewritten. Either is ErrAuditBroken, naming the first sequence number
// that is not what the witness saw.
func (t *Tx) AuditExtends(cp Checkpoint, witness string) error {
	own, err := t.storedCheckpoint()
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if own.Size < cp.Size {
		return fmt.Errorf("%w: at seq %d: the log ends at %d events, but %s holds its signed checkpoint of %d events: rolled back to an older copy or truncated",
			ErrAuditBroken, own.Size+1, own.Size, witness, cp.Size)
	}
	root, err := t.AuditTreeHash(cp.Size)
	if err != nil {
		return err
	}
	if root != cp.Root {
		return fmt.Errorf("%w: at seq %d or before: the first %d events do not hash to the root of the signed checkpoint %s holds: rewritten (a fork)",
			ErrAuditBroken, cp.Size, cp.Size, witness)
	}
	return nil
}
