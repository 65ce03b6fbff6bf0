package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/openapi"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// statusKind is a change of a referral's or statement request's state
// made by one side and told to the other in a signed status envelope:
// accepted, declined, in-progress, completed or withdrawn for referrals;
// consent-given, consent-refused or declined for statement requests. The
// receiver applies it with the counterpart's role; a change that crossed
// one made here resolves by the machine's precedence, and anything else
// illegal is refused with a signed rejected receipt.
type statusKind struct{}

func (statusKind) Name() string { return kindStatus }

// Prepare changes a referral's status (POST /v1/referrals/{id}/status).
func (statusKind) Prepare(g *Gateway, d Draft) (*Outgoing, error) {
	sc, fe := body.ParseStatusChange(d.Body)
	if err := fieldErrors(fe); err != nil {
		return nil, err
	}
	rec := d.Record
	role := policy.RoleRecipient
	if rec.Box == store.Outbox {
		role = policy.RoleSender
	}
	by := actorOf(g.self, d.Principal)
	if rec.Box == store.Inbox {
		var pending bool
		g.db.View(func(tx *store.Tx) error { pending = g.filesPending(tx, rec.ID); return nil })
		if pending {
			// The sender learns of the referral's delivery once its files
			// are here; a decision on it waits for them too.
			return nil, &policy.Error{Reason: policy.ReasonTransitionIllegal, Detail: "the referral's files are still arriving"}
		}
	}
	c := &Change{To: sc.Status, Role: role, By: by, At: d.Now, Note: sc.Reason, Action: ActReferralStatus}
	if err := policy.Transition(policy.ReferralMachine, rec.Status, sc.Status, role); err != nil {
		return nil, err
	}
	// A referral withdrawn before it was published is taken out of the
	// outbox instead: it never leaves, and the recipient hears nothing of
	// it. Claiming its queue entry keeps the publish loop off it meanwhile.
	if rec.Box == store.Outbox && sc.Status == policy.RefWithdrawn {
		var it *store.QueueItem
		g.db.View(func(tx *store.Tx) error { it, _ = tx.QueuedEnvelope(rec.ID); return nil })
		if it != nil {
			if _, busy := g.inflight.LoadOrStore(it.Seq, true); !busy {
				seq := it.Seq
				c.Detail = map[string]string{"unsent": "true"}
				return &Outgoing{Ref: rec.ID, Change: c, After: func() { g.inflight.Delete(seq) },
					Store: func(tx *store.Tx, rec *store.Record) error {
						if _, ok := tx.QueuedEnvelope(rec.ID); !ok {
							return fmt.Errorf("%w: the referral left the outbox", errChanged)
						}
						if err := tx.Dequeue(seq); err != nil {
							return err
						}
						return tx.DeletePending(rec)
					}}, nil
			}
		}
	}
	return statusOut(g, rec, c, "", sc.Reason)
}

// statusOut is the outgoing status envelope that tells the counterpart of
// rec about change c.
func statusOut(g *Gateway, rec *store.Record, c *Change, reason, detail string) (*Outgoing, error) {
	st := g.state()
	peer, ok := st.dir.Agency(counterpart(rec))
	if !ok || peer.Status != crypto.StatusActive {
		return nil, &policy.Error{Reason: policy.ReasonRuleCounterpart, Detail: "the counterpart agency is no longer active"}
	}
	if err := st.rules.Allow(kindStatus, st.self.Kind, peer.Kind,
		policy.Facts{FromAgency: g.self, ToAgency: peer.ID, Counterpart: true}); err != nil {
		return nil, err
	}
	b, err := json.Marshal(body.StatusBody{Ref: rec.ID, Status: c.To, Reason: reason, Detail: detail, By: c.By, At: c.At})
	if err != nil {
		return nil, err
	}
	thread, err := g.peerThread(rec.ID, peer.ID)
	if err != nil {
		return nil, err
	}
	if len(b) > crypto.MaxThreadBodySize {
		thread = nil // a long note, escaped: sealed to the hybrid key
	}
	return &Outgoing{Kind: kindStatus, To: peer, Body: b, Ref: rec.ID, Change: c, Thread: thread}, nil
}

func (statusKind) Check(g *Gateway, in *Incoming) error {
	if err := g.allowFrom(in, kindStatus, policy.Facts{Counterpart: true}); err != nil {
		return err
	}
	sb, fe := body.ParseStatusBody(in.Body)
	if err := fieldErrors(fe); err != nil {
		return refuse(ReasonBodyInvalid, err)
	}
	// The body's author is the sender's word; it must at least be one of
	// the sender's own.
	if !strings.HasPrefix(sb.By, in.Sender.ID+"/") {
		sb.By = in.Sender.ID + "/" + sb.By
	}
	in.Value = sb
	return nil
}

func (statusKind) Apply(g *Gateway, tx *store.Tx, in *Incoming) error {
	sb := in.Value.(*body.StatusBody)
	rec, err := tx.Record(sb.Ref)
	if errors.Is(err, store.ErrNotFound) {
		// The record and its status travel separately and may arrive in
		// either order: wait for the record, for a while.
		return fmt.Errorf("%w: status for %s", errNotYet, sb.Ref)
	}
	if err != nil {
		return err
	}
	if counterpart(rec) != in.Sender.ID {
		return refuse(policy.ReasonRuleCounterpart, fmt.Errorf("status for a record of another agency"))
	}
	if crypto.IsThreadEnvelope(in.Env) && in.Header.RecipientKeyID != rec.Thread {
		// A thread speaks of its own record only.
		return refuse(policy.ReasonRuleCounterpart, fmt.Errorf("status in thread %s for a record of another thread", in.Header.RecipientKeyID))
	}
	role := policy.RoleSender
	if rec.Box == store.Outbox {
		role = policy.RoleRecipient
	}
	if !slices.Contains(peerStates[rec.Kind][role], sb.Status) {
		return refuse(policy.ReasonTransitionRole, fmt.Errorf("a %s may not announce %q on a %s", role, sb.Status, rec.Kind))
	}
	if sb.Reason != "" && !slices.Contains(declineReasons, sb.Reason) {
		return refuse(ReasonBodyInvalid, fmt.Errorf("status reason is not a known code"))
	}
	if rec.Box == store.Outbox && implied(rec, sb.Status) {
		// A later change of the counterpart's (a statement implies
		// consent-given) arrived first: the timeline already says this.
		return g.auditChange(tx, rec, Change{By: sb.By, Action: ActStatusReceive, Actor: peerActor(in.Sender.ID), Reason: reasonLate,
			Detail: map[string]string{"status_envelope": in.Header.ID}}, sb.Status)
	}
	if rec.Box == store.Outbox {
		if err := g.catchUp(tx, rec, in, sb.Status); err != nil {
			return err
		}
	}
	err = g.transition(tx, rec, Change{To: sb.Status, Role: role, Peer: true, By: sb.By, At: sb.At, Clock: in.Sender.ID,
		Reason: sb.Reason, Note: sb.Detail, Action: ActStatusReceive, Actor: peerActor(in.Sender.ID),
		Detail: map[string]string{"status_envelope": in.Header.ID}})
	switch {
	case errors.Is(err, errSuperseded):
		return nil
	case errors.Is(err, policy.ErrConflict), errors.Is(err, policy.ErrInvalidInput):
		return refusePolicy(err)
	}
	return err
}

// reasonImplied marks a step a later change of the counterpart's proves
// (catchUp); reasonLate a status that arrived after such a change.
const (
	reasonImplied = "implied"
	reasonLate    = "late"
)

// implied reports whether rec's timeline holds state as a step implied by
// a later change of the counterpart's (catchUp, or a statement's consent).
func implied(rec *store.Record, state string) bool {
	return slices.ContainsFunc(rec.Timeline, func(e store.Event) bool { return e.Event == state && e.Reason == reasonImplied })
}

// peerStates are the states the counterpart may announce in a status
// envelope, by the kind of record and the counterpart's role. Anything
// else (answered, which only a statement makes; the system's states) is
// refused.
var peerStates = map[string]map[policy.Role][]string{
	kindReferral: {
		policy.RoleRecipient: {policy.RefAccepted, policy.RefDeclined, policy.RefInProgress, policy.RefCompleted},
		policy.RoleSender:    {policy.RefWithdrawn},
	},
	kindStatementRequest: {
		policy.RoleRecipient: {policy.SRConsentGiven, policy.SRConsentRefused, policy.SRDeclined},
	},
}

// declineReasons are the reason codes a status may carry: why a statement
// request was declined.
var declineReasons = openapi.Enum("DeclineReason")

// catchUp brings a sent record up to date when a change by its recipient
// arrives before the receipts that would have moved it along (they travel
// separately): a change by the recipient proves the record was sent,
// delivered and, unless it is a decline of an unopened record, read. Each
// implied step is a transition of its own, marked implied.
func (g *Gateway) catchUp(tx *store.Tx, rec *store.Record, in *Incoming, to string) error {
	step := func(state string, role policy.Role) error {
		return g.transition(tx, rec, Change{To: state, Role: role, By: in.Sender.ID, At: in.Now, Reason: reasonImplied,
			Action: ActStatusReceive, Actor: peerActor(in.Sender.ID), Detail: map[string]string{"status_envelope": in.Header.ID}})
	}
	if rec.Status == policy.RefQueued {
		if err := step(policy.RefSent, policy.RoleSystem); err != nil {
			return err
		}
	}
	if rec.Status == policy.RefSent {
		if first, err := delivered(tx, rec, policy.RefDelivered); err != nil {
			return err
		} else if first {
			in.outcome, in.outcomeRef = policy.RefDelivered, rec.ID
		}
		if err := step(policy.RefDelivered, policy.RoleSystem); err != nil {
			return err
		}
	}
	if rec.Status == policy.RefDelivered && to != policy.RefDelivered && to != policy.RefDeclined {
		return step(policy.RefRead, policy.RoleRecipient)
	}
	return nil
}

// timeFormat is how times are shown: RFC 3339 with microseconds, UTC.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"
