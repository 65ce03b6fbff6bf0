package gateway_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
)

// TestAllowedReadsAudited: every request that reads records or audit
// events (lists, receipts, the audit list, its export, inclusion proofs)
// leaves an "allowed" event naming the member of staff, the request and
// its filters; the requests that read only the log's integrity data
// (checkpoint, verification, consistency, witness views) leave none, so
// checking the log does not change it. A status filter that is no status
// is refused before anything is recorded.
func TestAllowedReadsAudited(t *testing.T) {
	c := mustCore(t)
	gw := c.gws["iom"]
	p := c.staff("iom")
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("iom", policy.ActionReferralRead, acc.ID, policy.RefDelivered)

	size := func() uint64 {
		t.Helper()
		cp, err := gw.AuditCheckpoint(p)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Size
	}
	last := func() store.AuditEvent {
		t.Helper()
		evs := c.audit("iom")
		return evs[len(evs)-1]
	}
	reads := []struct {
		name   string
		do     func() error
		action store.Action
		object string
		detail map[string]string
	}{
		{"referral list", func() error {
			_, err := gw.List(p, gateway.ListQuery{Box: "outbox", Status: policy.RefDelivered})
			return err
		}, gateway.ActReferralList, "", map[string]string{"box": "outbox", "status": policy.RefDelivered}},
		{"statement request list", func() error {
			_, err := gw.ListStatementRequests(p, gateway.ListQuery{Box: "inbox"})
			return err
		}, gateway.ActStatementRequestList, "", map[string]string{"box": "inbox"}},
		{"receipts", func() error { _, err := gw.Receipts(p, acc.ID); return err }, gateway.ActReferralReceipts, acc.ID, nil},
		{"audit list", func() error {
			_, err := gw.Audit(p, gateway.AuditQuery{Action: "referral.send", Object: acc.ID})
			return err
		}, gateway.ActAuditList, "", map[string]string{"action": "referral.send", "object": acc.ID}},
		{"audit export", func() error {
			return gw.AuditExport(p, time.Time{}, time.Time{}, &bytes.Buffer{})
		}, gateway.ActAuditExport, "", nil},
		{"inclusion proof", func() error { _, err := gw.AuditInclusion(p, 1, 0); return err }, gateway.ActAuditProof, "1", nil},
	}
	for _, r := range reads {
		before := size()
		if err := r.do(); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		e := last()
		if size() != before+1 || e.Action != r.action || e.Outcome != "allowed" || e.Actor != "iom/staff-iom" || e.Object != r.object {
			t.Errorf("%s: log %d -> %d, last event %+v", r.name, before, size(), e)
		}
		for k, v := range r.detail {
			if e.Detail[k] != v {
				t.Errorf("%s: detail %q = %q, want %q", r.name, k, e.Detail[k], v)
			}
		}
	}

	before := size()
	for name, do := range map[string]func() error{
		"checkpoint":  func() error { _, err := gw.AuditCheckpoint(p); return err },
		"verify":      func() error { _, err := gw.VerifyAudit(p); return err },
		"consistency": func() error { _, err := gw.AuditConsistency(p, 1, 0); return err },
		"witnesses":   func() error { _, err := gw.Witnesses(p); return err },
	} {
		if err := do(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if after := size(); after != before {
		t.Errorf("integrity reads grew the log from %d to %d events", before, after)
	}

	// A status that is none of the machine's is refused, unrecorded.
	_, err := gw.List(p, gateway.ListQuery{Box: "inbox", Status: "V-2026-0042"})
	if !errors.Is(err, gateway.ErrBadRequest) || !strings.Contains(err.Error(), "delivered") {
		t.Errorf("list with a status that is none: %v", err)
	}
	if after := size(); after != before {
		t.Errorf("a refused list grew the log from %d to %d events", before, after)
	}
}
