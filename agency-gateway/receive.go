package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/rujukan/rujukan/agency-gateway/referral"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Receive loop tuning.
const (
	fetchBatch         = 64
	receiveConcurrency = 16
	transientRetry     = 2 * time.Second
)

// receiveLoop pulls from this agency's consumer and handles each envelope.
func (g *Gateway) receiveLoop(ctx context.Context) {
	sem := make(chan struct{}, receiveConcurrency)
	for ctx.Err() == nil {
		msgs, err := g.bus.Fetch(ctx, fetchBatch)
		if err != nil {
			if ctx.Err() == nil {
				wait(ctx, nil, retryMin)
			}
			continue
		}
		for _, m := range msgs {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				g.receive(ctx, m)
			}()
		}
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
}

// receive handles one incoming envelope: verify and open it, check the
// network rules, store it once (with its receipt queued) in one
// transaction, then ack. A permanent failure is audited, answered with a
// signed rejected receipt when the sender is verified, and terminated; a
// transient one is retried by the broker.
func (g *Gateway) receive(ctx context.Context, m *client.Msg) {
	start := time.Now()
	env := m.Data()
	hash := hashHex(env)
	h, body, verified, err := g.open(env, g.now())
	if err == nil && h.From != m.From() {
		err = reject("sender-mismatch", fmt.Errorf("envelope from %q arrived on the subject of %q", h.From, m.From()))
	}
	if err == nil {
		// A redelivery or a replay is told before any further work; the
		// store transaction checks again.
		err = g.db.View(func(tx *store.Tx) error { return checkSeen(tx, h.ID, hash) })
	}
	if err == nil {
		switch h.Kind {
		case crypto.KindReferral:
			err = g.receiveReferral(h, env, hash, body)
		case crypto.KindReceipt:
			err = g.receiveReceipt(h, hash, body)
		case crypto.KindStatus:
			err = g.receiveStatus(h, hash, body)
		default:
			err = reject("kind-unsupported", fmt.Errorf("envelope kind %q is not handled here", h.Kind))
		}
	} else if !isPermanent(err) {
		err = reject(crypto.ReasonCode(err), err)
	}
	var perm *permanent
	switch {
	case err == nil || errors.Is(err, errDuplicate):
		if aerr := m.AckSync(ctx); aerr != nil {
			g.log.Warn("ack failed; the broker will redeliver", "envelope", h.ID, "err", aerr)
		}
		result := "duplicate"
		if err == nil {
			result = "stored"
			g.poke()
		}
		g.metricsEnvelope("in", h.Kind, result)
		g.metrics.handling.WithLabelValues(g.self, kindLabel(h.Kind), result).Observe(time.Since(start).Seconds())
	case errors.As(err, &perm):
		if rerr := g.rejectEnvelope(h, hash, verified, perm); rerr != nil {
			// Not recorded: the broker delivers it again.
			g.log.Error("failed to record a rejected envelope; will retry", "err", rerr)
			m.Nak(transientRetry)
			return
		}
		m.Term()
		g.metricsEnvelope("in", h.Kind, "rejected")
		g.metrics.handling.WithLabelValues(g.self, kindLabel(h.Kind), "rejected").Observe(time.Since(start).Seconds())
	case errors.Is(err, errNotYet):
		g.log.Debug("envelope waits for another one; will retry", "envelope", h.ID, "err", err)
		m.Nak(transientRetry)
	default:
		g.log.Warn("failed to handle an envelope; will retry", "envelope", h.ID, "err", err)
		m.Nak(transientRetry)
	}
}

func isPermanent(err error) bool {
	var p *permanent
	return errors.As(err, &p)
}

// rejectEnvelope audits a refused envelope and, when its sender is
// verified and it is not itself a receipt or status, queues a signed
// rejected receipt to the sender.
func (g *Gateway) rejectEnvelope(h crypto.Header, hash string, verified bool, p *permanent) error {
	st := g.state()
	now := g.now().UTC()
	var rh crypto.Header
	var renv []byte
	if verified && h.Kind != crypto.KindReceipt && h.Kind != crypto.KindStatus {
		if sender, ok := st.dir.Agency(h.From); ok && sender.Status == crypto.StatusActive {
			var err error
			rh, renv, _, err = g.receipt(st, sender, h.ID, hash, crypto.EventRejected, p.reason, now)
			if err != nil {
				return fmt.Errorf("failed to seal a rejected receipt: %w", err)
			}
		}
	}
	// Fields of an envelope whose signature did not verify are the
	// sender's word only; they are not written to the audit log.
	from, object := h.From, h.ID
	if !verified || from == "" {
		from, object = "unverified", ""
	}
	err := g.db.Update(func(tx *store.Tx) error {
		if renv != nil {
			if err := queueEnvelope(tx, rh, renv, ""); err != nil {
				return err
			}
		}
		return tx.Audit(store.AuditEvent{At: now, Actor: "peer:" + from, Action: "envelope.receive",
			Object: object, Outcome: "rejected", Reason: p.reason,
			Detail: map[string]string{"kind": kindLabel(h.Kind), "envelope_sha256": hash}})
	})
	if err != nil {
		return fmt.Errorf("failed to audit a rejected envelope: %w", err)
	}
	g.log.Warn("rejected an envelope", "envelope", object, "from", from, "reason", p.reason, "err", p.err)
	if renv != nil {
		g.poke()
	}
	return nil
}

// checkSeen tells a redelivery of a stored envelope (same bytes) from a
// replay (same id, other bytes).
func checkSeen(tx *store.Tx, id, hash string) error {
	switch seen := tx.Seen(id); {
	case seen == "":
		return nil
	case seen == hash:
		return errDuplicate
	default:
		return reject("replay", fmt.Errorf("envelope id %s was already used", id))
	}
}

// receiveReferral stores an incoming referral with its delivered receipt.
func (g *Gateway) receiveReferral(h crypto.Header, env []byte, hash string, body []byte) error {
	st := g.state()
	from, _ := st.dir.Agency(h.From)
	facts := policy.Facts{FromAgency: h.From, ToAgency: g.self}
	if err := st.rules.Allow(crypto.KindReferral, from.Kind, st.self.Kind, facts); err != nil {
		return reject(policy.ReasonOf(err), err)
	}
	ref, ferrs := referral.ParseReceived(body)
	if len(ferrs) > 0 {
		return reject("body-invalid", &InvalidError{Fields: ferrs})
	}
	if ref.To != g.self {
		return reject("body-mismatch", fmt.Errorf("body addressed to %q", ref.To))
	}
	if err := checkConsentReceived(ref, st.self.Kind, h.Created); err != nil {
		return reject(policy.ReasonOf(err), err)
	}
	now := g.now().UTC()
	rh, renv, signed, err := g.receipt(st, from, h.ID, hash, crypto.EventDelivered, "", now)
	if err != nil {
		return err
	}
	rec := &store.Record{ID: h.ID, Kind: h.Kind, Box: store.Inbox, From: h.From, To: g.self,
		Status: StatusDelivered, Priority: ref.Priority, CreatedAt: h.Created.UTC(), UpdatedAt: now,
		ReceivedAt: now, Deadline: h.Expires, EnvelopeHash: hash,
		Timeline: []store.Event{
			{Event: StatusSent, At: h.Created.UTC(), By: h.From},
			{Event: StatusDelivered, At: now, By: g.self},
		}}
	return g.db.Batch(func(tx *store.Tx) error {
		if err := checkSeen(tx, h.ID, hash); err != nil {
			return err
		}
		if tx.Exists(h.ID) {
			// Ids are random; a peer reusing one this gateway already
			// holds (say, of a referral it received from us) is forging.
			return reject("id-collision", fmt.Errorf("envelope id %s is already in use here", h.ID))
		}
		if err := tx.PutRecord(rec); err != nil {
			return err
		}
		if err := tx.PutEnvelope(h.ID, env); err != nil {
			return err
		}
		if err := tx.MarkSeen(h.ID, hash); err != nil {
			return err
		}
		if err := queueEnvelope(tx, rh, renv, ""); err != nil {
			return err
		}
		if _, err := tx.AddReceipt(h.ID, crypto.EventDelivered, signed); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{At: now, Actor: "peer:" + h.From, Action: "referral.receive",
			Object: h.ID, Outcome: StatusDelivered, Detail: map[string]string{"from": h.From, "envelope_sha256": hash}})
	})
}

// receiveReceipt applies a signed receipt from the recipient of one of our
// envelopes.
func (g *Gateway) receiveReceipt(h crypto.Header, hash string, body []byte) error {
	st := g.state()
	r, err := crypto.VerifyReceiptEnvelope(h, body, st.dir)
	if err != nil {
		return reject("receipt-invalid", err)
	}
	if err := g.allowFromCounterpart(st, crypto.KindReceipt, h.From); err != nil {
		return err
	}
	now := g.now().UTC()
	var decided string // the outcome this receipt decided, if any
	err = g.db.Batch(func(tx *store.Tx) error {
		decided = ""
		if err := checkSeen(tx, h.ID, hash); err != nil {
			return err
		}
		rec, err := tx.Record(r.EnvelopeID)
		if err != nil || rec.Box != store.Outbox || rec.To != h.From {
			// Receipts for status envelopes are not sent; anything else
			// is not about an exchange with this peer.
			return reject(policy.ReasonRuleCounterpart, fmt.Errorf("receipt for unknown envelope %s", r.EnvelopeID))
		}
		if r.HashHex() != rec.EnvelopeHash {
			return reject("receipt-hash-mismatch", fmt.Errorf("receipt hash does not match envelope %s", rec.ID))
		}
		added, err := tx.AddReceipt(rec.ID, r.Event, body)
		if err != nil {
			return err
		}
		if !added {
			// One receipt per event: a copy in a new envelope changes
			// nothing.
			return tx.MarkSeen(h.ID, hash)
		}
		if applyReceipt(rec, r, now) {
			decided = rec.Outcome
			if err := tx.DeletePending(rec); err != nil {
				return err
			}
		}
		return applied(tx, rec, h, hash, store.AuditEvent{At: now, Actor: "peer:" + h.From, Action: "receipt.receive",
			Object: rec.ID, Outcome: r.Event, Reason: r.Reason, Detail: map[string]string{"receipt_envelope": h.ID}})
	})
	if err == nil {
		g.metrics.receipts.WithLabelValues(g.self, r.Event).Inc()
		g.decided(r.EnvelopeID, decided)
	}
	return err
}

// decided reports a referral's delivery outcome, once it is committed.
func (g *Gateway) decided(id, outcome string) {
	if outcome == "" {
		return
	}
	g.metrics.outcomes.WithLabelValues(g.self, outcome).Inc()
	if g.onOutcome != nil {
		g.onOutcome(id, outcome)
	}
}

func outcomeOf(event string) string {
	switch event {
	case crypto.EventDelivered, crypto.EventRead:
		return StatusDelivered
	case crypto.EventRejected:
		return StatusFailed
	}
	return ""
}

// applyReceipt moves an outbox record forward. The first receipt decides
// the one delivery outcome, and applyReceipt reports whether this one did;
// later ones only add to the timeline.
func applyReceipt(rec *store.Record, r crypto.Receipt, now time.Time) bool {
	rec.Timeline = append(rec.Timeline, store.Event{Event: r.Event, At: r.At.UTC(), By: r.From, Reason: r.Reason})
	rec.UpdatedAt = now
	first := rec.Outcome == ""
	if first {
		rec.Outcome = outcomeOf(r.Event)
	}
	switch r.Event {
	case crypto.EventDelivered:
		if rec.Status == StatusQueued || rec.Status == StatusSent {
			rec.Status = StatusDelivered
		}
	case crypto.EventRead:
		if rec.Status == StatusQueued || rec.Status == StatusSent || rec.Status == StatusDelivered {
			rec.Status = StatusRead
		}
	case crypto.EventRejected:
		if first {
			rec.Status = StatusFailed
		}
	}
	return first && rec.Outcome != ""
}

// statusBody is the body of a status envelope.
type statusBody struct {
	Ref    string    `json:"ref"`
	Status string    `json:"status"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// receiveStatus applies a status change made by the counterpart.
func (g *Gateway) receiveStatus(h crypto.Header, hash string, body []byte) error {
	var sb statusBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sb); err != nil || sb.Ref == "" || len(sb.Ref) > 64 || len(sb.Reason) > 8000 ||
		sb.By == "" || len(sb.By) > 256 || !utf8.ValidString(sb.By+sb.Reason) {
		return reject("body-invalid", fmt.Errorf("malformed status body"))
	}
	st := g.state()
	if err := g.allowFromCounterpart(st, crypto.KindStatus, h.From); err != nil {
		return err
	}
	now := g.now().UTC()
	var decided string
	err := g.db.Batch(func(tx *store.Tx) error {
		decided = ""
		if err := checkSeen(tx, h.ID, hash); err != nil {
			return err
		}
		rec, err := tx.Record(sb.Ref)
		if errors.Is(err, store.ErrNotFound) {
			// The referral and its status travel separately and may
			// arrive in either order: wait for the referral.
			return fmt.Errorf("%w: status for referral %s", errNotYet, sb.Ref)
		}
		if err != nil {
			return err
		}
		if counterpart(rec) != h.From {
			return reject(policy.ReasonRuleCounterpart, fmt.Errorf("status for a referral of another agency"))
		}
		if err := peerTransition(rec, sb.Status); err != nil {
			return reject(policy.ReasonOf(err), err)
		}
		rec.Status = sb.Status
		rec.UpdatedAt = now
		rec.Timeline = append(rec.Timeline, store.Event{Event: sb.Status, At: sb.At.UTC(), By: h.From + "/" + sb.By,
			Note: g.sealNote(rec.ID, sb.Reason)})
		if rec.Box == store.Outbox && rec.Outcome == "" {
			// A status from the recipient proves delivery.
			rec.Outcome = StatusDelivered
			decided = StatusDelivered
			if err := tx.DeletePending(rec); err != nil {
				return err
			}
		}
		return applied(tx, rec, h, hash, store.AuditEvent{At: now, Actor: "peer:" + h.From, Action: "referral.status.receive",
			Object: rec.ID, Outcome: sb.Status, Detail: map[string]string{"status_envelope": h.ID}})
	})
	if err == nil {
		g.decided(sb.Ref, decided)
	}
	return err
}

// applied stores a record changed by an incoming receipt or status, marks
// the envelope seen and audits it, in the caller's transaction.
func applied(tx *store.Tx, rec *store.Record, h crypto.Header, hash string, e store.AuditEvent) error {
	if err := tx.PutRecord(rec); err != nil {
		return err
	}
	if err := tx.MarkSeen(h.ID, hash); err != nil {
		return err
	}
	return tx.Audit(e)
}

// allowFromCounterpart applies the network rules to a status or receipt
// from agency from; the store transaction then checks that it is the
// counterpart of the referral concerned.
func (g *Gateway) allowFromCounterpart(st *netState, kind, from string) error {
	a, ok := st.dir.Agency(from)
	if !ok {
		return reject(crypto.ReasonCode(crypto.ErrUnknownSender), fmt.Errorf("agency %s is not in the directory", from))
	}
	facts := policy.Facts{FromAgency: from, ToAgency: g.self, Counterpart: true}
	if err := st.rules.Allow(kind, a.Kind, st.self.Kind, facts); err != nil {
		return reject(policy.ReasonOf(err), err)
	}
	return nil
}

// counterpart returns the other agency of a record.
func counterpart(rec *store.Record) string {
	if rec.Box == store.Outbox {
		return rec.To
	}
	return rec.From
}
