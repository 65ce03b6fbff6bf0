package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Accepted is the answer to a send: the id of the record concerned and its
// status ("queued" while the envelope waits in the outbox, "sent" once
// the broker has it, or the new state of a record changed).
type Accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// Send authorizes, prepares, seals, stores and publishes what a member of
// staff sends: a new referral or statement request, or a change to one
// (status, consent decision, statement). Once it returns without error the
// envelope will be delivered or reported failed, whatever happens to this
// process or the broker.
func (g *Gateway) Send(ctx context.Context, p policy.Principal, d Draft) (Accepted, error) {
	k, ok := g.kinds[d.Kind]
	if !ok {
		return Accepted{}, fmt.Errorf("%w: nothing of kind %q can be sent", ErrBadRequest, d.Kind)
	}
	rec, err := g.authorize(p, d.Action, d.Ref)
	if err != nil {
		return Accepted{}, err
	}
	d.Principal, d.Record, d.Now = p, rec, g.now().UTC().Truncate(time.Millisecond)
	out, s, status, err := g.prepareAndCommit(k, d)
	if errors.Is(err, errChanged) {
		// The record moved on between Prepare and the commit (a referral
		// published while it was being withdrawn): prepare it again.
		out, s, status, err = g.prepareAndCommit(k, d)
	}
	if err != nil {
		return Accepted{}, g.refused(p, d.Action, d.Ref, err)
	}
	g.changed()
	id := out.Ref
	if out.New != nil {
		id = out.New.ID
	}
	if s == nil {
		return Accepted{ID: id, Status: status}, nil
	}
	g.metricsEnvelope("out", s.h.Kind, "accepted")
	sent := g.publishNow(ctx, s.item)
	if out.New != nil {
		status = sent
	}
	return Accepted{ID: id, Status: status}, nil
}

// prepareAndCommit runs the kind's checks, seals and commits.
func (g *Gateway) prepareAndCommit(k Kind, d Draft) (*Outgoing, *sealed, string, error) {
	out, err := k.Prepare(g, d)
	if err != nil {
		return nil, nil, "", err
	}
	s, err := g.seal(out, d.Now)
	if err != nil {
		return nil, nil, "", err
	}
	var status string
	err = g.db.Batch(func(tx *store.Tx) (err error) {
		status, err = g.commit(tx, out, s)
		return err
	})
	if out.After != nil {
		out.After()
	}
	return out, s, status, err
}

// errChanged is returned by a kind's Store when the record changed since
// Prepare looked at it; Send prepares once more.
var errChanged = errors.New("the record changed meanwhile")

// sealed is an envelope ready to store and queue.
type sealed struct {
	h    crypto.Header
	env  []byte
	hash string
	// own is this gateway's copy of the body, sealed at rest.
	own []byte
	// signed is the signed receipt inside a receipt envelope.
	signed []byte
	item   store.QueueItem
}

// seal signs and encrypts an outgoing body, or returns nil when nothing is
// sent.
func (g *Gateway) seal(out *Outgoing, now time.Time) (*sealed, error) {
	if out.Kind == "" {
		return nil, nil
	}
	if out.ID == "" {
		out.ID = crypto.NewID()
	}
	if out.New != nil {
		out.New.ID = out.ID
	}
	h := crypto.Header{ID: out.ID, Kind: out.Kind, From: g.self, To: out.To.ID,
		Created: now, Expires: now.Add(g.cfg.DeliveryDeadline)}
	var env []byte
	var err error
	if out.Thread != nil {
		env, err = crypto.SealThread(h, out.Body, g.keys.Signer, out.To, *out.Thread)
	} else {
		env, err = crypto.Seal(h, out.Body, g.keys.Signer, out.To)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to seal %s %s: %w", h.Kind, h.ID, err)
	}
	ref := out.Ref
	if out.New != nil {
		ref = out.New.ID
	}
	s := &sealed{h: h, env: env, hash: hashHex(env),
		item: store.QueueItem{ID: h.ID, Kind: h.Kind, To: h.To, Ref: ref, Deadline: h.Expires}}
	if out.Kind != kindReceipt {
		// A receipt keeps its signed copy instead (receipt).
		s.own = g.keys.AtRest.Seal(h.ID, out.Body)
	}
	return s, nil
}

// commit stores what Send prepared in one transaction: the new record or
// the change, the kind's own writes, the envelope, its queue entry and the
// audit event. It returns the record's status.
func (g *Gateway) commit(tx *store.Tx, out *Outgoing, s *sealed) (string, error) {
	var rec *store.Record
	var c *Change
	switch {
	case out.New != nil:
		r := *out.New
		rec, c = &r, out.Change
		if s != nil {
			rec.EnvelopeHash = s.hash
			rec.Deadline = s.h.Expires
		}
		if err := tx.PutPending(rec); err != nil {
			return "", err
		}
		if err := g.putThread(tx, rec, out.To.ID, out.NewThread); err != nil {
			return "", err
		}
	case out.Ref != "":
		var err error
		if rec, err = tx.Record(out.Ref); err != nil {
			return "", err
		}
		c = out.Change
	}
	if out.Store != nil {
		if err := out.Store(tx, rec); err != nil {
			return "", err
		}
	}
	if s != nil {
		if err := tx.PutEnvelope(s.h.ID, s.env); err != nil {
			return "", err
		}
		if err := tx.PutEnvelope(selfCopy(s.h.ID), s.own); err != nil {
			return "", err
		}
		// A record's own envelope has the record's id: only the others
		// (status, statement) need a link back to it.
		if s.h.ID != s.item.Ref {
			if err := tx.PutLink(s.h.ID, s.item.Ref); err != nil {
				return "", err
			}
		}
		seq, err := tx.Enqueue(s.item)
		if err != nil {
			return "", err
		}
		s.item.Seq = seq
		if len(out.Files) > 0 {
			by := g.self
			if out.Change != nil {
				by = out.Change.By
			}
			if err := g.sendFiles(tx, out, by, s.h.Created); err != nil {
				return "", err
			}
		}
	}
	if rec == nil || c == nil {
		return "", nil
	}
	cc := *c
	if s != nil {
		cc.Detail = withDetail(cc.Detail, "envelope", s.h.ID, "envelope_sha256", s.hash)
	}
	if err := g.transition(tx, rec, cc); err != nil {
		return "", err
	}
	return rec.Status, nil
}

// authorize checks the principal's scope for action and, for an action on
// a record, loads the record and checks the principal's agency is the
// party the action needs. Refusals are audited.
func (g *Gateway) authorize(p policy.Principal, a policy.Action, id string) (*store.Record, error) {
	if id == "" {
		if err := policy.Decide(p, a, policy.Resource{}); err != nil {
			return nil, g.denied(p, a, "", err)
		}
		return nil, nil
	}
	if !validID(id) {
		// Not an id this gateway makes: never write it to the audit log,
		// it may be anything a caller typed.
		if err := policy.Decide(p, a, policy.Resource{}); err != nil && !errors.Is(err, policy.ErrDenied) {
			return nil, g.denied(p, a, "", err)
		}
		return nil, ErrNotFound
	}
	var rec *store.Record
	err := g.db.View(func(tx *store.Tx) (err error) {
		rec, err = tx.Record(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && rec.Kind != kindOfAction(a)) {
		if derr := policy.Decide(p, a, policy.Resource{}); derr != nil && !errors.Is(derr, policy.ErrDenied) {
			return nil, g.denied(p, a, id, derr)
		}
		if a == policy.ActionStatementRespond {
			// A statement leaves only in answer to a request held here.
			return nil, g.denied(p, a, "", &policy.Error{Reason: policy.ReasonRuleOpenRequest,
				Detail: "a statement answers an open request this agency received"})
		}
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := policy.Decide(p, a, policy.Resource{From: rec.From, To: rec.To}); err != nil {
		return nil, g.denied(p, a, id, err)
	}
	return rec, nil
}

// validID reports whether id has the form of a record id: 1 to 64
// characters of [A-Za-z0-9_-], as crypto.NewID makes them.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// kindOfAction is the kind of record an action on a record works on.
func kindOfAction(a policy.Action) string {
	switch a {
	case policy.ActionStatementRequestRead, policy.ActionConsentRecord, policy.ActionStatementRespond:
		return kindStatementRequest
	}
	return kindReferral
}

// refused audits a policy refusal of a send (a conflict found in the
// transaction included) and returns err.
func (g *Gateway) refused(p policy.Principal, a policy.Action, object string, err error) error {
	if errors.Is(err, policy.ErrDenied) || errors.Is(err, policy.ErrConflict) || errors.Is(err, policy.ErrInsufficientScope) {
		return g.denied(p, a, object, err)
	}
	return err
}

// denied audits a refusal and returns it.
func (g *Gateway) denied(p policy.Principal, a policy.Action, object string, err error) error {
	aerr := g.db.Update(func(tx *store.Tx) error {
		return tx.Audit(store.AuditEvent{Actor: actorOf(g.self, p), Action: store.Action(a), Object: object,
			Outcome: "denied", Reason: policy.ReasonOf(err)})
	})
	if aerr != nil {
		g.log.Error("failed to audit a denial", "err", aerr)
	}
	return err
}

// allowed records a request policy allowed that reads records or audit
// events: lists, receipts, the audit log's events, its export and
// inclusion proofs (the record views and every change have events of
// their own). Requests that read only the log's integrity data
// (checkpoint, verification, consistency proofs, the witness views) are
// not recorded, so that checking the log does not change it. Concurrent
// calls share one commit. The request fails if its event cannot be
// written: nothing is read unrecorded.
func (g *Gateway) allowed(p policy.Principal, act store.Action, object string, detail map[string]string) error {
	for k, v := range detail {
		if v == "" {
			delete(detail, k)
		}
	}
	if len(detail) == 0 {
		detail = nil
	}
	e := store.AuditEvent{At: g.now().UTC(), Actor: actorOf(g.self, p), Action: act, Object: object, Outcome: "allowed", Detail: detail}
	return g.db.Batch(func(tx *store.Tx) error { return tx.Audit(e) })
}

// actorOf is how a member of staff is named in timelines and the audit
// log: agency/subject.
func actorOf(agency string, p policy.Principal) string {
	if p.Subject == "" {
		return agency + "/anonymous"
	}
	return agency + "/" + p.Subject
}

// publishNow tries to publish a freshly queued envelope at once (joined
// with others to the same recipient, joiner.go), so the common case
// answers "sent". On any failure the publish loop takes over.
func (g *Gateway) publishNow(ctx context.Context, item store.QueueItem) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := g.publishJoined(ctx, item); err != nil {
		// The publish loop takes over; for a recipient waited out after a
		// limit refusal, it comes back when the wait ends, unpoked.
		if !errors.Is(err, ErrLimit) {
			g.poke()
		}
		return policy.RefQueued
	}
	return policy.RefSent
}

// selfCopy is the store key of this gateway's own copy of an envelope body
// it sent, sealed at rest: the envelope itself is encrypted to the
// recipient. Incoming ids never contain a dot, so the keys cannot meet.
func selfCopy(id string) string { return id + ".self" }

func hashHex(env []byte) string {
	h := crypto.EnvelopeHash(env)
	return hex.EncodeToString(h[:])
}

func withDetail(m map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}
