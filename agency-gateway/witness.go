package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
	"golang.org/x/mod/sumdb/tlog"
)

// Cross-witnessing. Every interval, and after a burst of events, a gateway sends its signed audit
// checkpoint to each other active agency whose last copy is older, with a
// consistency proof from the size that agency last cosigned (checkpoint
// kind). The witness checks the checkpoint extends the last one it holds
// of that log and answers with its cosignature (cosignature kind); a
// checkpoint that does not (a fork, or a log rolled back to an older
// copy) raises an alarm there: an audit event, a metric, the API.
//
// Checkpoints travel as envelopes through the outbox like receipts: no
// record, no timeline, and each agency can only publish as itself.

// witnessInterval and witnessBurst are the defaults of
// Options.WitnessInterval and Options.WitnessBurst.
const (
	witnessInterval = 30 * time.Second
	witnessBurst    = 256
)

// witnessPoll is how often the witness loop looks at the log's size to
// catch a burst: a read of the checkpoint, nothing more.
const witnessPoll = time.Second

// witnessState is what the publishing side keeps in memory: the size last
// sent to each witness (so a log that did not grow is not sent again; after
// a restart everything is sent once), and the size a witness asked a
// proof from (it holds a later checkpoint than the one it last cosigned,
// as far as this gateway knows).
type witnessState struct {
	interval time.Duration
	burst    uint64
	mu       sync.Mutex
	sent     map[string]uint64
	needFrom map[string]uint64
	// envelopes are the checkpoint envelopes sent since the start (id ->
	// witness and envelope hash), so a witness's rejected receipt for one
	// is told from a receipt for an unknown envelope.
	envelopes map[string][2]string
}

// maxCheckpointEnvelopes bounds witnessState.envelopes.
const maxCheckpointEnvelopes = 4096

// sentCheckpoint returns the witness and hash of checkpoint envelope id,
// if this gateway sent it since it started.
func (g *Gateway) sentCheckpoint(id string) (to, hash string, ok bool) {
	g.witness.mu.Lock()
	defer g.witness.mu.Unlock()
	v, ok := g.witness.envelopes[id]
	return v[0], v[1], ok
}

// checkpointBody is the body of a checkpoint envelope.
type checkpointBody struct {
	// Checkpoint is the signed checkpoint note.
	Checkpoint string `json:"checkpoint"`
	// From is the size the proof starts at (0: no proof).
	From  uint64   `json:"from"`
	Proof []string `json:"proof"`
}

// cosignatureBody is the body of a cosignature envelope: the checkpoint
// note cosigned and the cosignature (the signature line's base64
// content), or, when the witness cannot check the proof because it holds
// a later checkpoint, the size it needs a proof from.
type cosignatureBody struct {
	Checkpoint string `json:"checkpoint"`
	Signature  string `json:"signature,omitempty"`
	NeedFrom   uint64 `json:"need_from,omitempty"`
}

// maxWitnessBody caps checkpoint and cosignature bodies.
const maxWitnessBody = 16 << 10

func decodeStrict(raw []byte, v any) error {
	if len(raw) > maxWitnessBody {
		return errors.New("body too large")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// noteText is the text of a signed note (what its signatures sign).
func noteText(msg []byte) []byte {
	i := bytes.Index(msg, []byte("\n\n"))
	if i < 0 {
		return nil
	}
	return msg[:i+1]
}

// witnessLoop sends the checkpoint to the witnesses at start, then every
// interval, and as soon as the log grew by a burst of events since the
// last round.
func (g *Gateway) witnessLoop(ctx context.Context) {
	t := time.NewTicker(min(witnessPoll, g.witness.interval))
	defer t.Stop()
	var last time.Time
	var lastSize uint64
	for {
		size := g.auditSize()
		if now := time.Now(); now.Sub(last) >= g.witness.interval || size >= lastSize+g.witness.burst {
			if err := g.sendCheckpoints(); err != nil && ctx.Err() == nil {
				g.log.Warn("failed to send the audit checkpoint to the witnesses", "err", err)
			}
			last, lastSize = now, size
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// auditSize is the size of the log's signed checkpoint (0 before the
// first event or on a read error).
func (g *Gateway) auditSize() uint64 {
	var size uint64
	g.db.View(func(tx *store.Tx) error {
		if cp, err := tx.AuditCheckpoint(); err == nil {
			size = cp.Size
		}
		return nil
	})
	return size
}

// sendCheckpoints queues the current checkpoint to every other active
// agency that was not sent this size yet.
//
// witness.mu is held only around the maps, never across a store
// transaction: receiving a receipt looks up sentCheckpoint inside one.
func (g *Gateway) sendCheckpoints() error {
	st := g.state()
	now := g.now().UTC().Truncate(time.Millisecond)
	g.witness.mu.Lock()
	sentTo, needFrom := maps.Clone(g.witness.sent), maps.Clone(g.witness.needFrom)
	g.witness.mu.Unlock()
	var out []*sealed
	var size uint64
	err := g.db.View(func(tx *store.Tx) error {
		cp, err := tx.AuditCheckpoint()
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		size = cp.Size
		for i := range st.dir.Agencies {
			a := &st.dir.Agencies[i]
			if a.ID == g.self || a.Status != crypto.StatusActive {
				continue
			}
			if sent, ok := sentTo[a.ID]; ok && sent == cp.Size {
				continue
			}
			body := checkpointBody{Checkpoint: string(cp.Note), Proof: []string{}}
			from := needFrom[a.ID]
			if from == 0 {
				if c, err := tx.Cosignature(a.ID); err == nil {
					from = c.Size
				}
			}
			if from > 0 && from < cp.Size {
				proof, err := tx.AuditConsistency(from, cp.Size)
				if err != nil {
					return err
				}
				body.From, body.Proof = from, b64s(proof)
			}
			raw, err := json.Marshal(body)
			if err != nil {
				return err
			}
			s, err := g.seal(&Outgoing{Kind: kindCheckpoint, To: a, Body: raw}, now)
			if err != nil {
				return err
			}
			s.own, s.item.Ref = nil, ""
			out = append(out, s)
		}
		return nil
	})
	if err != nil || len(out) == 0 {
		return err
	}
	err = g.db.Update(func(tx *store.Tx) error {
		for _, s := range out {
			if err := queueReceipt(tx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	g.witness.mu.Lock()
	defer g.witness.mu.Unlock()
	if g.witness.sent == nil {
		g.witness.sent, g.witness.needFrom = map[string]uint64{}, map[string]uint64{}
	}
	if g.witness.envelopes == nil || len(g.witness.envelopes) > maxCheckpointEnvelopes {
		g.witness.envelopes = map[string][2]string{}
	}
	for _, s := range out {
		// A witness that asked for a proof from another size meanwhile
		// gets it in the next round.
		if n, ok := g.witness.needFrom[s.h.To]; !ok || n == needFrom[s.h.To] {
			g.witness.sent[s.h.To] = size
			delete(g.witness.needFrom, s.h.To)
		}
		g.witness.envelopes[s.h.ID] = [2]string{s.h.To, s.hash}
		g.metricsEnvelope("out", kindCheckpoint, "accepted")
	}
	g.poke()
	return nil
}

// needProofFrom notes that witness holds a checkpoint of size n of this
// log and needs a proof from it: the next round sends it one.
func (g *Gateway) needProofFrom(witness string, n uint64) {
	g.witness.mu.Lock()
	defer g.witness.mu.Unlock()
	if g.witness.sent == nil {
		g.witness.sent, g.witness.needFrom = map[string]uint64{}, map[string]uint64{}
	}
	g.witness.needFrom[witness] = n
	delete(g.witness.sent, witness)
}

// judge decides whether cp (with a consistency proof from size from)
// extends prev, the last checkpoint held of its log: "" if it does (or
// there is none), ReasonFork or ReasonRollback if it does not, or
// "unverifiable" if the proof does not start at prev's size.
func judge(prev *store.WitnessedLog, cp store.Checkpoint, from uint64, proof tlog.TreeProof) (string, error) {
	if prev == nil || prev.Size == 0 {
		return "", nil
	}
	var root tlog.Hash
	if raw, err := base64.StdEncoding.DecodeString(prev.Root); err != nil || len(raw) != tlog.HashSize {
		return "", fmt.Errorf("stored checkpoint of %s has a bad root", prev.Log)
	} else {
		copy(root[:], raw)
	}
	switch {
	case cp.Size < prev.Size:
		return ReasonRollback, fmt.Errorf("checkpoint of %d events after one of %d", cp.Size, prev.Size)
	case cp.Size == prev.Size:
		if cp.Root != root {
			return ReasonFork, fmt.Errorf("two checkpoints of %d events with different roots", cp.Size)
		}
		return "", nil
	case from != prev.Size:
		return "unverifiable", nil
	}
	if err := tlog.CheckTree(proof, int64(cp.Size), cp.Root, int64(prev.Size), root); err != nil {
		return ReasonFork, fmt.Errorf("checkpoint of %d events does not extend the one of %d: %v", cp.Size, prev.Size, err)
	}
	return "", nil
}

// witnessAlarm records that log's new checkpoint does not extend the one
// held here: an audit event of this gateway's own, the alarm kept with
// the log's view, a metric and a warning.
func (g *Gateway) witnessAlarm(log string, prev store.WitnessedLog, cp store.Checkpoint, alarm string, cause error) error {
	act := ActWitnessFork
	if alarm == ReasonRollback {
		act = ActWitnessRollback
	}
	now := g.now().UTC()
	err := g.db.Update(func(tx *store.Tx) error {
		w, err := tx.Witnessed(log)
		if err != nil {
			w = prev
		}
		w.Alarm, w.AlarmAt, w.AlarmCheckpoint = alarm, now, string(cp.Note)
		if err := tx.PutWitnessed(w); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{At: now, Actor: g.self, Action: act, Object: log, Outcome: "alarm", Reason: alarm,
			Detail: map[string]string{"log": crypto.AuditOrigin(log), "seen_size": fmt.Sprint(w.Size), "seen_root": w.Root,
				"new_size": fmt.Sprint(cp.Size), "new_root": b64(cp.Root)}})
	})
	if err != nil {
		return err
	}
	g.metrics.witnessAlarms.WithLabelValues(g.self, log).Inc()
	g.log.Warn("an agency's audit log does not extend the checkpoint this gateway witnessed", "log", log, "alarm", alarm,
		"seen_size", prev.Size, "new_size", cp.Size, "err", cause)
	g.changed()
	return nil
}

// WitnessCosignature is a witness's latest cosignature of this gateway's
// log (C2SP tlog-cosignature/v1).
type WitnessCosignature struct {
	Witness string    `json:"witness"`
	Time    time.Time `json:"time"`
	// Signature is the base64 content of the signature line
	// "— rujukan.id/<witness>/witness <signature>": key hash, time, Ed25519
	// signature.
	Signature string `json:"signature"`
	// Size is the tree size of the checkpoint cosigned.
	Size uint64 `json:"size"`
}

func cosignatures(tx *store.Tx) ([]WitnessCosignature, error) {
	cs, err := tx.Cosignatures()
	out := make([]WitnessCosignature, 0, len(cs))
	for _, c := range cs {
		out = append(out, WitnessCosignature{Witness: c.Witness, Time: c.Time, Signature: base64.StdEncoding.EncodeToString(c.Signature), Size: c.Size})
	}
	return out, err
}

// WitnessedLog is this gateway's view of another agency's audit log.
type WitnessedLog struct {
	Log  string `json:"log"`
	Size uint64 `json:"size"`
	Root string `json:"root"`
	// Checkpoint is the latest consistent checkpoint received.
	Checkpoint string    `json:"checkpoint"`
	SeenAt     time.Time `json:"seen_at"`
	// Alarm is "", "fork" or "rollback".
	Alarm string `json:"alarm"`
}

// Witnesses returns this gateway's view of the other agencies' audit logs
// (audit:read).
func (g *Gateway) Witnesses(p policy.Principal) ([]WitnessedLog, error) {
	if err := policy.Decide(p, policy.ActionAuditVerify, policy.Resource{}); err != nil {
		return nil, g.denied(p, policy.ActionAuditVerify, "", err)
	}
	out := []WitnessedLog{}
	err := g.db.View(func(tx *store.Tx) error {
		ws, err := tx.WitnessedLogs()
		for _, w := range ws {
			out = append(out, WitnessedLog{Log: w.Log, Size: w.Size, Root: w.Root, Checkpoint: w.Checkpoint, SeenAt: w.SeenAt, Alarm: w.Alarm})
		}
		return err
	})
	return out, err
}

// CheckCosignature checks one of this log's cosignatures (as
// AuditCheckpoint serves them) against the text of this log's checkpoint
// of its size and the witness's signing keys in the directory (audit:read).
func (g *Gateway) CheckCosignature(p policy.Principal, cs WitnessCosignature) error {
	if err := policy.Decide(p, policy.ActionAuditVerify, policy.Resource{}); err != nil {
		return g.denied(p, policy.ActionAuditVerify, "", err)
	}
	w, ok := g.state().dir.Agency(cs.Witness)
	if !ok {
		return fmt.Errorf("cosignature: %s is not in the directory", cs.Witness)
	}
	sig, err := base64.StdEncoding.DecodeString(cs.Signature)
	if err != nil {
		return fmt.Errorf("cosignature: %w", err)
	}
	var root tlog.Hash
	err = g.db.View(func(tx *store.Tx) (err error) {
		root, err = tx.AuditTreeHash(cs.Size)
		return err
	})
	if err != nil {
		return err
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", crypto.AuditOrigin(g.self), cs.Size, b64(root))
	_, err = crypto.VerifyCosignature(w, []byte(text), sig)
	return err
}
