package gateway

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
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
)

// AuditPage is one page of audit events, oldest first.
type AuditPage struct {
	Events []store.AuditEvent `json:"events"`
	// Next is the seq to pass as after for the next page; 0 on the last.
	Next uint64 `json:"next"`
}

// AuditVerification is the result of checking the whole audit chain.
type AuditVerification struct {
	OK       bool   `json:"ok"`
	Events   uint64 `json:"events"`
	HeadHash string `json:"head_hash,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Audit returns audit events with seq > after.
func (g *Gateway) Audit(p policy.Principal, after uint64, limit int) (AuditPage, error) {
	if err := policy.Decide(p, policy.ActionAuditList, policy.Resource{}); err != nil {
		return AuditPage{}, g.denied(p, policy.ActionAuditList, "", err)
	}
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > 1000 {
		return AuditPage{}, fmt.Errorf("%w: limit must be 1..1000", ErrBadRequest)
	}
	page := AuditPage{Events: []store.AuditEvent{}}
	err := g.db.View(func(tx *store.Tx) error {
		evs, err := tx.AuditEvents(after, limit+1)
		if err != nil {
			return err
		}
		if len(evs) > limit {
			evs = evs[:limit]
			page.Next = evs[limit-1].Seq
		}
		page.Events = append(page.Events, evs...)
		return nil
	})
	return page, err
}

// VerifyAudit checks the whole audit chain and its signed head.
func (g *Gateway) VerifyAudit(p policy.Principal) (AuditVerification, error) {
	if err := policy.Decide(p, policy.ActionAuditVerify, policy.Resource{}); err != nil {
		return AuditVerification{}, g.denied(p, policy.ActionAuditVerify, "", err)
	}
	// The whole chain is walked once; then only what was appended since,
	// as nothing else can write the file while this gateway holds it.
	g.auditMu.Lock()
	defer g.auditMu.Unlock()
	var r store.AuditReport
	err := g.db.View(func(tx *store.Tx) (err error) {
		r, err = tx.VerifyAuditFrom(g.keys.SigningKey.Public().(ed25519.PublicKey), g.auditChecked)
		return err
	})
	if errors.Is(err, store.ErrAuditBroken) {
		return AuditVerification{OK: false, Events: r.Events, Error: err.Error()}, nil
	}
	if err != nil {
		return AuditVerification{}, err
	}
	g.auditChecked = r
	return AuditVerification{OK: true, Events: r.Events, HeadHash: r.HeadHash}, nil
}
