package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/referral"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Accepted is the answer to a send: the referral id and whether it has
// reached the broker yet ("sent") or waits in the outbox ("queued").
type Accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// Referral states the gateway sets itself; the rest come from the policy
// state machine.
const (
	StatusQueued    = "queued"
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"
	StatusFailed    = "failed"
)

// selfCopy is the store key of the sender's own copy of a referral body,
// encrypted at rest (crypto.AtRest): the envelope itself is encrypted to the
// recipient. Incoming ids never contain a dot, so the keys cannot meet.
func selfCopy(id string) string { return id + ".self" }

// Send authorizes, validates, seals, stores and publishes one referral.
// Once it returns without error the referral will be delivered or reported
// failed, whatever happens to this process or the broker.
func (g *Gateway) Send(ctx context.Context, p policy.Principal, body []byte) (Accepted, error) {
	st := g.state()
	if err := policy.Decide(p, policy.ActionReferralSend, policy.Resource{}); err != nil {
		return Accepted{}, g.denied(p, policy.ActionReferralSend, "", err)
	}
	ref, ferrs := referral.Parse(body)
	if len(ferrs) > 0 {
		return Accepted{}, &InvalidError{Fields: ferrs}
	}
	to, err := g.recipient(st, ref.To)
	if err != nil {
		return Accepted{}, err
	}
	facts := policy.Facts{FromAgency: g.self, ToAgency: to.ID}
	if err := st.rules.Allow(crypto.KindReferral, st.self.Kind, to.Kind, facts); err != nil {
		return Accepted{}, g.denied(p, policy.ActionReferralSend, "", err)
	}
	override, err := checkConsent(p, ref, to.Kind, g.now())
	if err != nil {
		return Accepted{}, g.denied(p, policy.ActionReferralSend, "", err)
	}
	if ref.Consent != nil {
		ref.Consent.RecordedBy = p.Subject
	}
	plain, err := json.Marshal(ref)
	if err != nil {
		return Accepted{}, fmt.Errorf("failed to encode referral: %w", err)
	}
	now := g.now().UTC()
	h := crypto.Header{ID: crypto.NewID(), Kind: crypto.KindReferral, From: g.self, To: to.ID,
		Created: now, Expires: now.Add(g.cfg.DeliveryDeadline)}
	env, own, err := g.sealWithCopy(h, plain, st, to)
	if err != nil {
		return Accepted{}, err
	}
	rec := &store.Record{ID: h.ID, Kind: h.Kind, Box: store.Outbox, From: g.self, To: to.ID,
		Status: StatusQueued, Priority: ref.Priority, CreatedAt: now, UpdatedAt: now, ReceivedAt: now,
		Deadline: h.Expires, EnvelopeHash: hashHex(env),
		Timeline: []store.Event{{Event: StatusQueued, At: now, By: p.Subject}}}
	item := store.QueueItem{ID: h.ID, Kind: h.Kind, To: to.ID, Ref: h.ID, Deadline: h.Expires}
	audit := store.AuditEvent{At: now, Actor: p.Subject, Action: string(policy.ActionReferralSend), Object: h.ID,
		Outcome: "accepted", Detail: map[string]string{"to": to.ID, "envelope_sha256": rec.EnvelopeHash}}
	if override {
		audit.Outcome = "accepted-consent-override"
	}
	err = g.db.Batch(func(tx *store.Tx) error {
		if err := tx.PutRecord(rec); err != nil {
			return err
		}
		if err := tx.PutEnvelope(h.ID, env); err != nil {
			return err
		}
		if err := tx.PutEnvelope(selfCopy(h.ID), own); err != nil {
			return err
		}
		if err := tx.PutPending(rec); err != nil {
			return err
		}
		if item.Seq, err = tx.Enqueue(item); err != nil {
			return err
		}
		return tx.Audit(audit)
	})
	if err != nil {
		return Accepted{}, fmt.Errorf("failed to store referral: %w", err)
	}
	g.metricsEnvelope("out", h.Kind, "accepted")
	return Accepted{ID: h.ID, Status: g.publishNow(ctx, item)}, nil
}

// recipient resolves the "to" of a body to an active agency.
func (g *Gateway) recipient(st *netState, id string) (*crypto.Agency, error) {
	to, ok := st.dir.Agency(id)
	switch {
	case !ok:
		return nil, invalid("/to", "unknown-agency", fmt.Sprintf("no agency %q in the network directory", id))
	case to.Status != crypto.StatusActive:
		return nil, invalid("/to", "agency-revoked", fmt.Sprintf("agency %q is revoked", id))
	case to.ID == g.self:
		return nil, invalid("/to", "self-addressed", "an agency cannot refer to itself")
	}
	return to, nil
}

// denied audits a refusal and returns it.
func (g *Gateway) denied(p policy.Principal, a policy.Action, object string, err error) error {
	actor := p.Subject
	if actor == "" {
		actor = "anonymous"
	}
	aerr := g.db.Update(func(tx *store.Tx) error {
		return tx.Audit(store.AuditEvent{Actor: actor, Action: string(a), Object: object,
			Outcome: "denied", Reason: policy.ReasonOf(err)})
	})
	if aerr != nil {
		g.log.Error("failed to audit a denial", "err", aerr)
	}
	return err
}

// publishNow tries to publish a freshly queued envelope at once, so the
// common case answers "sent". On any failure the publish loop takes over.
func (g *Gateway) publishNow(ctx context.Context, item store.QueueItem) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := g.publish(ctx, item); err != nil {
		g.poke()
		return StatusQueued
	}
	return StatusSent
}
