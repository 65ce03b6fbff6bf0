package web

import (
	"errors"
	"math"
	"net/http"
	"strconv"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/policy"
)

func (s *server) deliveries(c *ctx) {
	q := c.r.URL.Query()
	b := box(c.r, "outbox")
	kind := q.Get("kind")
	if kind != "statement-request" {
		kind = "referral"
	}
	lq := gateway.ListQuery{Box: b, Status: q.Get("status"), Cursor: q.Get("cursor"), Limit: 25}
	list, statuses := s.gw.List, policy.ReferralMachine.States
	if kind == "statement-request" {
		list, statuses = s.gw.ListStatementRequests, policy.StatementRequestMachine.States
	}
	if lq.Status != "" && !contains(statuses, lq.Status) {
		lq.Status = ""
	}
	page, err := list(c.sess.Principal, lq)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "deliveries", "nav.deliveries", listPage{Box: b, Kind: kind, Status: lq.Status,
		Statuses: statuses, Items: page.Items, Next: page.NextCursor})
}

type deliveryView struct {
	It       gateway.Item
	Receipts []gateway.ReceiptView
}

// delivery shows one record's timeline and receipts, without opening it:
// nothing is marked read, and the body is not shown.
func (s *server) delivery(c *ctx) {
	id := c.r.PathValue("id")
	var (
		it  gateway.Item
		rs  []gateway.ReceiptView
		err error
	)
	switch c.r.PathValue("kind") {
	case "referral":
		if it, err = s.gw.Item(c.sess.Principal, policy.ActionReferralRead, id); err == nil {
			rs, err = s.gw.Receipts(c.sess.Principal, id)
		}
	case "statement-request":
		if it, err = s.gw.Item(c.sess.Principal, policy.ActionStatementRequestRead, id); err == nil {
			rs, err = s.gw.StatementRequestReceipts(c.sess.Principal, id)
		}
	default:
		err = gateway.ErrNotFound
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	it.Referral, it.StatementRequest, it.Consent, it.Statement = nil, nil, nil, nil
	for i := range it.Timeline {
		it.Timeline[i].Note = ""
	}
	s.render(c, http.StatusOK, "delivery", "delivery.title", deliveryView{It: it, Receipts: rs})
}

type auditView struct {
	Page   gateway.AuditPage
	Verify gateway.AuditVerification
	After  uint64
	// Checkpoint is nil before the first event.
	Checkpoint   *gateway.AuditCheckpoint
	Cosignatures []cosignatureView
	Witnessed    []gateway.WitnessedLog
	// Alarm is set when this gateway, as a witness, saw a fork or a
	// rollback of another agency's log.
	Alarm bool
}

type cosignatureView struct {
	gateway.WitnessCosignature
	Verified bool
}

func (s *server) audit(c *ctx) {
	var after uint64
	if v := c.r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == math.MaxUint64 {
			s.errorPage(c, http.StatusBadRequest, "error.badrequest", "")
			return
		}
		after = n
	}
	// The page's own audit.list event is written first, so the
	// verification and the checkpoint below include it.
	page, err := s.gw.Audit(c.sess.Principal, gateway.AuditQuery{After: after, Limit: 50})
	if err != nil {
		s.fail(c, err)
		return
	}
	ver, err := s.gw.VerifyAudit(c.sess.Principal)
	if err != nil {
		s.fail(c, err)
		return
	}
	v := auditView{Page: page, Verify: ver, After: after}
	cp, err := s.gw.AuditCheckpoint(c.sess.Principal)
	switch {
	case err == nil:
		v.Checkpoint = &cp
		for _, cs := range cp.Cosignatures {
			v.Cosignatures = append(v.Cosignatures, cosignatureView{cs, s.gw.CheckCosignature(c.sess.Principal, cs) == nil})
		}
	case !errors.Is(err, gateway.ErrNotFound):
		s.fail(c, err)
		return
	}
	if v.Witnessed, err = s.gw.Witnesses(c.sess.Principal); err != nil {
		s.fail(c, err)
		return
	}
	for _, w := range v.Witnessed {
		if w.Alarm != "" {
			v.Alarm = true
		}
	}
	s.render(c, http.StatusOK, "audit", "nav.audit", v)
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
