package gateway

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// referralKind is a referral: one agency asks another to take a person on
// for shelter, care or other services. Sending creates an outbox record in
// state queued; receiving creates an inbox record in state delivered and
// answers with a signed delivered receipt. Both sides check the network
// rules, the pseudonym rule and the consent rules (an override only from
// an agency kind that may override, audited as one).
type referralKind struct{}

func (referralKind) Name() string { return kindReferral }

func (referralKind) Prepare(g *Gateway, d Draft) (*Outgoing, error) {
	r, fe := body.ParseReferral(d.Body)
	if err := fieldErrors(fe); err != nil {
		return nil, err
	}
	st := g.state()
	if err := st.rules.CheckPseudonym(r.Person.Pseudonym); err != nil {
		return nil, invalid("/person/pseudonym", "pseudonym", "is not a case code of the form this network uses (for example V-2026-0042)")
	}
	to, err := g.recipient(st, r.To)
	if err != nil {
		return nil, err
	}
	if err := st.rules.Allow(kindReferral, st.self.Kind, to.Kind, policy.Facts{FromAgency: g.self, ToAgency: to.ID}); err != nil {
		return nil, err
	}
	dec, err := policy.CheckReferralConsent(d.Principal, referralFacts(r, to.Kind), d.Now)
	if err != nil {
		return nil, err
	}
	by := actorOf(g.self, d.Principal)
	if r.Consent != nil {
		r.Consent.RecordedBy = by
	}
	if r.Attachments, err = g.attachFiles(d, kindReferral, r.Attachments); err != nil {
		return nil, err
	}
	thread := newThread()
	r.ThreadKey = thread.String()
	plain, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("failed to encode referral: %w", err)
	}
	c := &Change{Create: true, To: policy.RefQueued, Role: policy.RoleSender, By: by, At: d.Now,
		Action: ActReferralSend, Detail: map[string]string{"to": to.ID}}
	if dec.Override {
		c.Reason = "consent-override"
		c.Detail["waived"] = dec.Waived
	}
	return &Outgoing{Kind: kindReferral, To: to, Body: plain, Change: c, Files: r.Attachments, NewThread: thread,
		New: &store.Record{Kind: kindReferral, Box: store.Outbox, From: g.self, To: to.ID, Priority: r.Priority,
			CreatedAt: d.Now, ReceivedAt: d.Now}}, nil
}

func (referralKind) Check(g *Gateway, in *Incoming) error {
	if err := g.allowFrom(in, kindReferral, policy.Facts{}); err != nil {
		return err
	}
	r, fe := body.ParseReferralReceived(in.Body)
	if err := fieldErrors(fe); err != nil {
		return refuse(ReasonBodyInvalid, err)
	}
	st := g.state()
	if r.To != g.self {
		return refuse(ReasonBodyMismatch, fmt.Errorf("body addressed to %q", r.To))
	}
	if err := st.rules.CheckPseudonym(r.Person.Pseudonym); err != nil {
		return refusePolicy(err)
	}
	if r.Consent != nil && !strings.HasPrefix(r.Consent.RecordedBy, in.Sender.ID+"/") {
		return refuse(policy.ReasonConsentInvalid, fmt.Errorf("consent recorded by someone else than the sender's staff"))
	}
	// The receiver cannot see the sender's token: it allows what staff of
	// the sender's kind may ever be allowed. Consent must hold now, when
	// the referral is acted on (the sender's creation time is its word).
	peer := policy.Principal{Agency: in.Sender.ID, Subject: "peer", Scopes: policy.ScopesForKind(in.Sender.Kind)}
	dec, err := policy.CheckReferralConsent(peer, referralFacts(r, st.self.Kind), in.Now)
	if err != nil {
		return refusePolicy(err)
	}
	in.Value = receivedReferral{ref: r, consent: dec}
	if in.thread, err = bodyThread(r.ThreadKey); err != nil {
		return err
	}
	in.Receipt, err = g.receipt(in.Sender, in.thread, in.Header.ID, in.Hash, crypto.EventDelivered, "", in.Now)
	receivedFiles(in, r.Attachments)
	return err
}

func (referralKind) Apply(g *Gateway, tx *store.Tx, in *Incoming) error {
	h := in.Header
	c := Change{Create: true, To: policy.RefDelivered, Role: policy.RoleSystem, By: g.self, At: in.Now,
		Action: ActReferralReceive, Actor: peerActor(h.From), Detail: map[string]string{"envelope_sha256": in.Hash}}
	rr := in.Value.(receivedReferral)
	if rr.consent.Override {
		c.Reason = "consent-override"
		c.Detail["waived"] = rr.consent.Waived
	}
	return g.store(tx, in, newInboxRecord(in, rr.ref.Priority), c)
}

// receivedReferral is what Check found in a referral envelope.
type receivedReferral struct {
	ref     *body.Referral
	consent policy.ConsentDecision
}

// newInboxRecord is the record of a referral or request received, with
// the sender's step in its timeline.
func newInboxRecord(in *Incoming, priority string) *store.Record {
	h := in.Header
	return &store.Record{ID: h.ID, Kind: h.Kind, Box: store.Inbox, From: h.From, To: h.To,
		Priority: priority, CreatedAt: h.Created.UTC(), ReceivedAt: in.Now, Deadline: h.Expires,
		EnvelopeHash: in.Hash,
		Timeline:     []store.Event{{Event: policy.RefSent, At: h.Created.UTC(), By: h.From, Clock: h.From}}}
}

// store keeps a received referral or request: the record, the envelope as
// received, its delivered receipt, and the creating change.
func (g *Gateway) store(tx *store.Tx, in *Incoming, rec *store.Record, c Change) error {
	if tx.Exists(rec.ID) {
		// Ids are random; a peer reusing one this gateway already holds
		// (say, of a referral it received from us) is forging.
		return refuse(ReasonIDCollision, fmt.Errorf("envelope id %s is already in use here", rec.ID))
	}
	if err := tx.PutEnvelope(rec.ID, in.Env); err != nil {
		return err
	}
	if err := g.putThread(tx, rec, in.Sender.ID, in.thread); err != nil {
		return err
	}
	if err := addDelivered(tx, rec.ID, in); err != nil {
		return err
	}
	return g.transition(tx, rec, c)
}

// recipient resolves the "to" of a body to an active agency.
func (g *Gateway) recipient(st *netState, id string) (*crypto.Agency, error) {
	to, ok := st.dir.Agency(id)
	switch {
	case !ok:
		return nil, invalid("/to", "unknown-agency", "no such agency in the network directory")
	case to.Status != crypto.StatusActive:
		return nil, invalid("/to", "agency-revoked", "the agency is revoked")
	case to.ID == g.self:
		return nil, invalid("/to", "self-addressed", "an agency cannot send to itself")
	}
	return to, nil
}

func referralFacts(r *body.Referral, toKind string) policy.ReferralFacts {
	f := policy.ReferralFacts{ToKind: toKind, Priority: r.Priority, Age: r.Age()}
	if r.Consent != nil {
		c := *r.Consent
		if c.RecordedBy == "" {
			c.RecordedBy = "pending"
		}
		f.Consent = &c
	}
	if r.ConsentOverride != nil {
		f.OverrideJustification = r.ConsentOverride.Justification
	}
	return f
}
