package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
	"golang.org/x/mod/sumdb/tlog"
)

// Audit actions: one constant per action the gateway records. API
// requests refused by policy are recorded under their policy action
// (policy.Action*), as store.Action(a).
const (
	ActReferralSend         store.Action = "referral.send"
	ActReferralReceive      store.Action = "referral.receive"
	ActReferralRead         store.Action = "referral.read"
	ActReferralStatus       store.Action = "referral.status"
	ActStatementRequestSend store.Action = "statement-request.send"
	ActStatementRequestRecv store.Action = "statement-request.receive"
	ActStatementRequestRead store.Action = "statement-request.read"
	ActConsentRecord        store.Action = "statement-request.consent"
	ActStatementSend        store.Action = "statement.send"
	ActStatementReceive     store.Action = "statement.receive"
	ActStatementDecline     store.Action = "statement-request.decline"
	ActStatusReceive        store.Action = "status.receive"
	ActReceiptReceive       store.Action = "receipt.receive"
	ActEnvelopePublish      store.Action = "envelope.publish"
	ActEnvelopeExpire       store.Action = "envelope.expire"
	ActEnvelopeReject       store.Action = "envelope.receive"
	ActDeadline             store.Action = "record.deadline"
	ActDue                  store.Action = "statement-request.expire"
	ActDirectoryReload      store.Action = "directory.reload"
	ActWitnessFork          store.Action = "witness.fork"
	ActWitnessRollback      store.Action = "witness.rollback"
	ActCheckpointRefused    store.Action = "checkpoint.refused"

	// Reads policy allowed (Gateway.allowed).
	ActReferralList             store.Action = "referral.list"
	ActReferralReceipts         store.Action = "referral.receipts"
	ActStatementRequestList     store.Action = "statement-request.list"
	ActStatementRequestReceipts store.Action = "statement-request.receipts"
	ActAuditList                store.Action = "audit.list"
	ActAuditExport              store.Action = "audit.export"
	ActAuditProof               store.Action = "audit.proof"
)

// AuditPage is one page of audit events, oldest first.
type AuditPage struct {
	Events []store.AuditEvent `json:"events"`
	// Next is the seq to pass as after for the next page; 0 on the last.
	Next uint64 `json:"next"`
}

// AuditVerification is the result of checking the whole audit log against
// its signed checkpoint.
type AuditVerification struct {
	OK     bool   `json:"ok"`
	Events uint64 `json:"events"`
	// HeadHash is the tree's root hash (base64), as in the checkpoint.
	HeadHash string `json:"head_hash,omitempty"`
	// Checkpoint is the signed checkpoint note that was verified.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Error names the first bad event and what is wrong with it.
	Error string `json:"error,omitempty"`
}

// AuditCheckpoint is the log's signed checkpoint: a C2SP tlog-checkpoint
// signed note, and the size and root it states (for convenience: verify
// the note).
type AuditCheckpoint struct {
	Checkpoint string `json:"checkpoint"`
	Size       uint64 `json:"size"`
	Root       string `json:"root"`
	// Cosignatures are the latest cosignature of each witness (of this
	// checkpoint or an earlier one: see their size).
	Cosignatures []WitnessCosignature `json:"cosignatures"`
}

// AuditInclusionProof proves that one event is in the tree of Size events
// (tlog.CheckRecord, record index Seq-1).
type AuditInclusionProof struct {
	Seq  uint64 `json:"seq"`
	Size uint64 `json:"size"`
	// Event is the event; Record is its stored bytes (base64), the leaf.
	Event    json.RawMessage `json:"event"`
	Record   string          `json:"record"`
	LeafHash string          `json:"leaf_hash"`
	Proof    []string        `json:"proof"`
	// Root is the root hash of the tree of Size events.
	Root string `json:"root"`
}

// AuditConsistencyProof proves that the tree of From events is a prefix of
// the tree of To events (tlog.CheckTree).
type AuditConsistencyProof struct {
	From     uint64   `json:"from"`
	To       uint64   `json:"to"`
	FromRoot string   `json:"from_root"`
	ToRoot   string   `json:"to_root"`
	Proof    []string `json:"proof"`
}

func b64(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

func b64s(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = b64(h)
	}
	return out
}

// AuditQuery selects audit events: those with seq > After, up to Limit
// (default 100, at most 1000), whose action, actor and object are the
// given ones (empty: any) and whose time is in [Since, Until) (zero: no
// bound).
type AuditQuery struct {
	After                 uint64
	Limit                 int
	Action, Actor, Object string
	Since, Until          time.Time
}

func (q AuditQuery) match(e store.AuditEvent) bool {
	return (q.Action == "" || string(e.Action) == q.Action) && (q.Actor == "" || e.Actor == q.Actor) &&
		(q.Object == "" || e.Object == q.Object) &&
		(q.Since.IsZero() || !e.At.Before(q.Since)) && (q.Until.IsZero() || e.At.Before(q.Until))
}

// Audit returns the audit events q selects. One page examines at most
// 20*limit+1000 events, so a filter that matches little returns a short
// (even empty) page with Next set to go on from where it stopped.
func (g *Gateway) Audit(p policy.Principal, q AuditQuery) (AuditPage, error) {
	if err := policy.Decide(p, policy.ActionAuditList, policy.Resource{}); err != nil {
		return AuditPage{}, g.denied(p, policy.ActionAuditList, "", err)
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 1 || q.Limit > 1000 {
		return AuditPage{}, fmt.Errorf("%w: limit must be 1..1000", ErrBadRequest)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return AuditPage{}, fmt.Errorf("%w: since must be before until", ErrBadRequest)
	}
	detail := map[string]string{"action": q.Action, "actor": q.Actor, "object": q.Object}
	if !q.Since.IsZero() {
		detail["since"] = q.Since.UTC().Format(time.RFC3339)
	}
	if !q.Until.IsZero() {
		detail["until"] = q.Until.UTC().Format(time.RFC3339)
	}
	if err := g.allowed(p, ActAuditList, "", detail); err != nil {
		return AuditPage{}, err
	}
	match := q.match
	if q.Action == "" && q.Actor == "" && q.Object == "" && q.Since.IsZero() && q.Until.IsZero() {
		match = nil
	}
	page := AuditPage{Events: []store.AuditEvent{}}
	err := g.db.View(func(tx *store.Tx) error {
		evs, next, err := tx.AuditFind(q.After, q.Limit, 20*q.Limit+1000, match)
		if err != nil {
			return err
		}
		page.Events, page.Next = append(page.Events, evs...), next
		return nil
	})
	return page, err
}

// VerifyAudit checks the whole audit log against its signed checkpoint.
func (g *Gateway) VerifyAudit(p policy.Principal) (AuditVerification, error) {
	if err := policy.Decide(p, policy.ActionAuditVerify, policy.Resource{}); err != nil {
		return AuditVerification{}, g.denied(p, policy.ActionAuditVerify, "", err)
	}
	known, err := g.auditVerifier()
	if err != nil {
		return AuditVerification{}, err
	}
	// The whole log is walked once; then only what was appended since,
	// as nothing else can write the file while this gateway holds it.
	g.auditMu.Lock()
	defer g.auditMu.Unlock()
	var r store.AuditReport
	err = g.db.View(func(tx *store.Tx) (err error) {
		r, err = tx.VerifyAuditFrom(known, g.auditChecked)
		return err
	})
	if errors.Is(err, store.ErrAuditBroken) {
		g.setAuditBroken(err.Error())
		return AuditVerification{OK: false, Events: r.Events, Error: err.Error()}, nil
	}
	if err != nil {
		return AuditVerification{}, err
	}
	g.auditChecked = r
	g.setAuditBroken("")
	return AuditVerification{OK: true, Events: r.Events, HeadHash: r.Root, Checkpoint: r.Checkpoint}, nil
}

// AuditCheckpoint returns the log's signed checkpoint (ErrNotFound before
// the first event).
func (g *Gateway) AuditCheckpoint(p policy.Principal) (AuditCheckpoint, error) {
	if err := policy.Decide(p, policy.ActionAuditVerify, policy.Resource{}); err != nil {
		return AuditCheckpoint{}, g.denied(p, policy.ActionAuditVerify, "", err)
	}
	var out AuditCheckpoint
	err := g.db.View(func(tx *store.Tx) error {
		cp, err := tx.AuditCheckpoint()
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: the audit log has no checkpoint yet", ErrNotFound)
		}
		if err != nil {
			return err
		}
		out = AuditCheckpoint{Checkpoint: string(cp.Note), Size: cp.Size, Root: b64(cp.Root)}
		out.Cosignatures, err = cosignatures(tx)
		return err
	})
	return out, err
}

// AuditInclusion proves that event seq is in the tree of size events; size
// 0 means the checkpoint's.
func (g *Gateway) AuditInclusion(p policy.Principal, seq, size uint64) (AuditInclusionProof, error) {
	if err := policy.Decide(p, policy.ActionAuditVerify, policy.Resource{}); err != nil {
		return AuditInclusionProof{}, g.denied(p, policy.ActionAuditVerify, "", err)
	}
	var out AuditInclusionProof
	var proven uint64
	err := g.db.View(func(tx *store.Tx) error {
		cp, err := tx.AuditCheckpoint()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if seq < 1 || seq > cp.Size {
			return fmt.Errorf("%w: audit event %d", ErrNotFound, seq)
		}
		if size == 0 {
			size = cp.Size
		}
		if size < seq || size > cp.Size {
			return fmt.Errorf("%w: size must be %d..%d", ErrBadRequest, seq, cp.Size)
		}
		proven = size
		raw, err := tx.AuditRecord(seq)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: audit event %d", ErrNotFound, seq)
		}
		if err != nil {
			return err
		}
		proof, err := tx.AuditInclusion(seq, size)
		if err != nil {
			return err
		}
		root, err := tx.AuditTreeHash(size)
		if err != nil {
			return err
		}
		event := json.RawMessage(raw)
		if !json.Valid(raw) {
			event = nil
		}
		out = AuditInclusionProof{Seq: seq, Size: size, Event: event, Record: base64.StdEncoding.EncodeToString(raw),
			LeafHash: b64(tlog.RecordHash(raw)), Proof: b64s(proof), Root: b64(root)}
		return nil
	})
	if err != nil {
		return AuditInclusionProof{}, err
	}
	// Recorded once the proof is made: the event is part of the answer.
	if err := g.allowed(p, ActAuditProof, fmt.Sprint(seq), map[string]string{"size": fmt.Sprint(proven)}); err != nil {
		return AuditInclusionProof{}, err
	}
	return out, nil
}

// AuditConsistency proves that the tree of from events is a prefix of the
// tree of to events; to 0 means the checkpoint's size.
func (g *Gateway) AuditConsistency(p policy.Principal, from, to uint64) (AuditConsistencyProof, error) {
	if err := policy.Decide(p, policy.ActionAuditVerify, policy.Resource{}); err != nil {
		return AuditConsistencyProof{}, g.denied(p, policy.ActionAuditVerify, "", err)
	}
	var out AuditConsistencyProof
	err := g.db.View(func(tx *store.Tx) error {
		cp, err := tx.AuditCheckpoint()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if to == 0 {
			to = cp.Size
		}
		if from < 1 || from > to || to > cp.Size {
			return fmt.Errorf("%w: need 1 <= from <= to <= %d (the checkpoint's size)", ErrBadRequest, cp.Size)
		}
		proof, err := tx.AuditConsistency(from, to)
		if err != nil {
			return err
		}
		fr, err := tx.AuditTreeHash(from)
		if err != nil {
			return err
		}
		tr, err := tx.AuditTreeHash(to)
		if err != nil {
			return err
		}
		out = AuditConsistencyProof{From: from, To: to, FromRoot: b64(fr), ToRoot: b64(tr), Proof: b64s(proof)}
		return nil
	})
	return out, err
}
