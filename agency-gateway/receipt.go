package gateway

import (
	"errors"
	"fmt"
	"slices"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// receiptKind is a signed receipt from the recipient of an envelope this
// gateway sent: delivered, read, or rejected with a reason code. A
// receipt for a referral or statement request decides its one delivery
// outcome (the first one) and moves it along; a receipt for a status or
// statement envelope is noted in the timeline of the record it concerns.
// Receipts are never answered with receipts.
type receiptKind struct{}

func (receiptKind) Name() string { return kindReceipt }

func (receiptKind) Prepare(*Gateway, Draft) (*Outgoing, error) {
	return nil, fmt.Errorf("%w: receipts are sent by the gateway itself", ErrBadRequest)
}

func (receiptKind) Check(g *Gateway, in *Incoming) error {
	r, err := crypto.VerifyReceiptEnvelope(in.Header, in.Body, g.state().dir)
	if err != nil {
		return refuse(ReasonReceiptInvalid, err)
	}
	// The reason is the peer's word: only a known code is recorded.
	if r.Reason != "" && !knownReason(r.Reason) {
		r.Reason = "unrecognised"
	}
	if err := g.allowFrom(in, kindReceipt, policy.Facts{Counterpart: true}); err != nil {
		return err
	}
	in.Value = r
	return nil
}

func (receiptKind) Apply(g *Gateway, tx *store.Tx, in *Incoming) error {
	r := in.Value.(crypto.Receipt)
	rec, err := tx.Record(r.EnvelopeID)
	if err == nil && rec.Box == store.Outbox && rec.To == in.Sender.ID {
		if r.HashHex() != rec.EnvelopeHash {
			return refuse(ReasonReceiptMismatch, fmt.Errorf("receipt hash does not match envelope %s", rec.ID))
		}
		return applyReceipt(g, tx, rec, in, r)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	// A witness refusing a checkpoint this gateway sent it (witness.go):
	// its reason (fork, rollback) is recorded.
	if to, hash, ok := g.sentCheckpoint(r.EnvelopeID); ok && to == in.Sender.ID && hash == r.HashHex() {
		if r.Event != crypto.EventRejected {
			return nil
		}
		return tx.Audit(store.AuditEvent{At: in.Now, Actor: peerActor(in.Sender.ID), Action: ActCheckpointRefused,
			Object: r.EnvelopeID, Outcome: "refused", Reason: r.Reason, Detail: map[string]string{"receipt_envelope": in.Header.ID}})
	}
	// A receipt for a status or statement envelope this gateway sent.
	ref := tx.Link(r.EnvelopeID)
	if ref == "" {
		return refuse(policy.ReasonRuleCounterpart, fmt.Errorf("receipt for unknown envelope %s", r.EnvelopeID))
	}
	if rec, err = tx.Record(ref); err != nil {
		return err
	}
	if counterpart(rec) != in.Sender.ID {
		return refuse(policy.ReasonRuleCounterpart, fmt.Errorf("receipt for an envelope sent to another agency"))
	}
	env, err := tx.Envelope(r.EnvelopeID)
	if err != nil || hashHex(env) != r.HashHex() {
		return refuse(ReasonReceiptMismatch, fmt.Errorf("receipt does not match envelope %s", r.EnvelopeID))
	}
	added, err := tx.AddReceipt(r.EnvelopeID, r.Event, in.Body)
	if err != nil || !added {
		return err
	}
	kind := "status"
	if rec.Related[relStatement] == r.EnvelopeID {
		kind = "statement"
	}
	return g.note(tx, rec, Change{To: kind + "-" + r.Event, By: in.Sender.ID, At: r.At, Clock: in.Sender.ID,
		Reason: r.Reason, Action: ActReceiptReceive, Actor: peerActor(in.Sender.ID),
		Detail: map[string]string{"envelope": r.EnvelopeID, "receipt_envelope": in.Header.ID}})
}

// applyReceipt moves a sent record forward by a receipt for its own
// envelope. The first receipt decides the one delivery outcome; a record
// keeps one receipt per event.
func applyReceipt(g *Gateway, tx *store.Tx, rec *store.Record, in *Incoming, r crypto.Receipt) error {
	added, err := tx.AddReceipt(rec.ID, r.Event, in.Body)
	if err != nil || !added {
		return err // one receipt per event: a copy in a new envelope changes nothing
	}
	outcome := policy.RefDelivered
	if r.Event == crypto.EventRejected {
		outcome = policy.RefFailed
	}
	if first, err := delivered(tx, rec, outcome); err != nil {
		return err
	} else if first {
		in.outcome, in.outcomeRef = outcome, rec.ID
	}
	step := func(state string, role policy.Role, by string) error {
		c := Change{To: state, Role: role, By: by, At: r.At, Clock: in.Sender.ID, Reason: r.Reason,
			Action: ActReceiptReceive, Actor: peerActor(in.Sender.ID), Peer: role != policy.RoleSystem,
			Detail: map[string]string{"receipt_envelope": in.Header.ID}}
		if err := g.transition(tx, rec, c); err != nil && !errors.Is(err, errSuperseded) {
			return err
		}
		return nil
	}
	if rec.Status == policy.RefQueued {
		// The receipt overtook the commit of the publish acknowledgement.
		if err := step(policy.RefSent, policy.RoleSystem, g.self); err != nil {
			return err
		}
	}
	switch r.Event {
	case crypto.EventDelivered, crypto.EventRead:
		if rec.Status == policy.RefSent {
			if err := step(policy.RefDelivered, policy.RoleSystem, in.Sender.ID); err != nil {
				return err
			}
		}
		if r.Event == crypto.EventRead && rec.Status == policy.RefDelivered {
			return step(policy.RefRead, policy.RoleRecipient, in.Sender.ID)
		}
		return tx.PutRecord(rec)
	case crypto.EventRejected:
		if outcome == policy.RefFailed && rec.Outcome == policy.RefFailed && rec.Status == policy.RefSent {
			return step(policy.RefFailed, policy.RoleSystem, in.Sender.ID)
		}
		return g.note(tx, rec, Change{To: crypto.EventRejected, By: in.Sender.ID, At: r.At, Clock: in.Sender.ID,
			Reason: r.Reason, Action: ActReceiptReceive, Actor: peerActor(in.Sender.ID)})
	}
	return tx.PutRecord(rec)
}

// gatewayReasons are the reason codes of refusals this package makes
// itself.
var gatewayReasons = []string{ReasonBodyInvalid, ReasonBodyMismatch, ReasonIDCollision, ReasonKindUnsupported,
	ReasonReceiptInvalid, ReasonReceiptMismatch, ReasonReplay, ReasonSenderMismatch, ReasonUndelivered,
	ReasonWaitedTooLong, ReasonTooManyWaiting, ReasonCheckpointInvalid, ReasonCosignatureInvalid, ReasonFork, ReasonRollback,
	ReasonAttachmentInvalid, ReasonAttachmentReused, ReasonChunkInvalid, ReasonAttachmentUnknown,
	ReasonAttachmentIncomplete, ReasonAttachmentQuota}

// knownReason reports whether a reason code is one any gateway may send.
func knownReason(code string) bool {
	return policy.KnownReason(code) || crypto.KnownReason(code) || slices.Contains(gatewayReasons, code)
}
