package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
	"golang.org/x/mod/sumdb/tlog"
)

// checkpointKind is another agency's signed audit checkpoint, sent for
// this gateway to witness (witness.go). A checkpoint that extends the last
// one held of that log (by its consistency proof) is kept and answered
// with a cosignature; one that does not raises an alarm and is refused
// with reason fork or rollback. Consistent checkpoints are not audited:
// witnessing must not grow the logs it witnesses.
type checkpointKind struct{}

func (checkpointKind) Name() string { return kindCheckpoint }

func (checkpointKind) Prepare(*Gateway, Draft) (*Outgoing, error) {
	return nil, fmt.Errorf("%w: checkpoints are sent by the gateway itself", ErrBadRequest)
}

// witnessed is what Check makes of a checkpoint envelope.
type witnessed struct {
	cp    store.Checkpoint
	from  uint64
	proof tlog.TreeProof
	// stale: an older checkpoint of the log that arrived late.
	stale bool
}

func (checkpointKind) Check(g *Gateway, in *Incoming) error {
	if err := g.allowFrom(in, kindCheckpoint, policy.Facts{}); err != nil {
		return err
	}
	var b checkpointBody
	if err := decodeStrict(in.Body, &b); err != nil {
		return refuse(ReasonBodyInvalid, err)
	}
	cp, err := store.OpenCheckpoint([]byte(b.Checkpoint), crypto.AuditVerifiers(in.Sender))
	if err != nil {
		return refuse(ReasonCheckpointInvalid, err)
	}
	if cp.Origin != crypto.AuditOrigin(in.Sender.ID) {
		return refuse(ReasonCheckpointInvalid, fmt.Errorf("checkpoint of %q from %s", cp.Origin, in.Sender.ID))
	}
	w := &witnessed{cp: cp, from: b.From}
	if len(b.Proof) > 64 {
		return refuse(ReasonBodyInvalid, errors.New("proof too long"))
	}
	for _, s := range b.Proof {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != tlog.HashSize {
			return refuse(ReasonBodyInvalid, errors.New("proof hash is not 32 bytes of base64"))
		}
		var h tlog.Hash
		copy(h[:], raw)
		w.proof = append(w.proof, h)
	}
	var prev *store.WitnessedLog
	err = g.db.View(func(tx *store.Tx) error {
		p, err := tx.Witnessed(in.Sender.ID)
		if err == nil {
			prev = &p
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	verdict, cause := judge(prev, cp, w.from, w.proof)
	if cause != nil && verdict == "" {
		return cause
	}
	if verdict == ReasonRollback && staleCheckpoint(prev, in.Header.Created) {
		// A checkpoint the log sent before the one held here, delivered
		// again late (say after this gateway was killed holding it): no
		// alarm and no cosignature. A log rolled back sends checkpoints
		// dated after the one held, and is caught; one it backdates gets
		// no cosignature, and a fork alarm once the log reaches the held
		// size again with another history.
		w.stale = true
		in.Value = w
		return nil
	}
	reply := cosignatureBody{Checkpoint: b.Checkpoint}
	switch verdict {
	case ReasonFork, ReasonRollback:
		if err := g.witnessAlarm(in.Sender.ID, *prev, cp, verdict, cause); err != nil {
			return err
		}
		return refuse(verdict, cause)
	case "unverifiable":
		reply.NeedFrom = prev.Size
	default:
		cs, err := crypto.CosignCheckpoint(g.self, g.keys.SigningKey, noteText(cp.Note), in.Now)
		if err != nil {
			return err
		}
		reply.Signature = base64.StdEncoding.EncodeToString(cs.Signature)
	}
	raw, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	s, err := g.seal(&Outgoing{Kind: kindCosignature, To: in.Sender, Body: raw}, in.Now)
	if err != nil {
		return err
	}
	s.own, s.item.Ref = nil, ""
	in.Receipt, in.Value = s, w
	return nil
}

func (checkpointKind) Apply(g *Gateway, tx *store.Tx, in *Incoming) error {
	w := in.Value.(*witnessed)
	if w.stale {
		return nil
	}
	var prev *store.WitnessedLog
	p, err := tx.Witnessed(in.Sender.ID)
	switch {
	case err == nil:
		prev = &p
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	verdict, cause := judge(prev, w.cp, w.from, w.proof)
	switch verdict {
	case ReasonFork, ReasonRollback:
		// Another checkpoint of the log was stored meanwhile: try again,
		// and Check raises the alarm.
		return fmt.Errorf("checkpoint of %s changed meanwhile: %v", in.Sender.ID, cause)
	case "":
		if prev == nil || w.cp.Size > prev.Size || prev.Checkpoint == "" {
			next := store.WitnessedLog{Log: in.Sender.ID, Size: w.cp.Size, Root: b64(w.cp.Root), Checkpoint: string(w.cp.Note),
				SeenAt: in.Now, Sent: in.Header.Created.UTC()}
			if prev != nil {
				next.Alarm, next.AlarmAt, next.AlarmCheckpoint = prev.Alarm, prev.AlarmAt, prev.AlarmCheckpoint
			}
			if err := tx.PutWitnessed(next); err != nil {
				return err
			}
		} else {
			prev.SeenAt = in.Now
			if err := tx.PutWitnessed(*prev); err != nil {
				return err
			}
		}
	}
	return queueReceipt(tx, in.Receipt)
}

// staleCheckpoint reports whether a checkpoint in an envelope created at
// created was sent before the one held in prev.
func staleCheckpoint(prev *store.WitnessedLog, created time.Time) bool {
	return prev != nil && !prev.Sent.IsZero() && created.Before(prev.Sent)
}
