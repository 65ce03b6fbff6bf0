package gateway_test

import (
	"context"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
)

// TestConsentStatusOvertakenByStatement: the shelter's consent-given
// status and its statement travel as two envelopes, and the police may
// apply the statement first (the broker redelivers one after a crash, or
// two screeners finish out of order). The statement implies consent-given;
// the status arriving after it says what the timeline already holds and
// is taken, not refused with a rejected receipt.
func TestConsentStatusOvertakenByStatement(t *testing.T) {
	c := mustCore(t)
	acc := c.mustSend("police", "statement-request", srSend, "", request("shelter", c.clock.Now().Add(72*time.Hour)))
	c.waitStatus("shelter", srRead, acc.ID, "delivered")
	if _, err := c.gws["shelter"].GetStatementRequest(context.Background(), c.staff("shelter"), acc.ID); err != nil {
		t.Fatal(err)
	}
	c.waitStatus("police", srRead, acc.ID, "read")
	now := c.clock.Now().UTC()
	age := 24
	c.net.Inject("police", "shelter", c.seal("shelter", "police", crypto.KindStatement, map[string]any{
		"ref":       acc.ID,
		"statement": map[string]any{"text": "He took our passports at the harbour.", "language": "id", "taken_at": now, "taken_by": "shelter/officer-2"},
		"consent": map[string]any{"given": true, "purposes": []string{"statement"}, "method": "written",
			"recorded_by": "shelter/staff-shelter", "recorded_at": now},
		"person": map[string]any{"age": age}}))
	c.waitStatus("police", srRead, acc.ID, "answered")
	late := c.seal("shelter", "police", crypto.KindStatus, map[string]any{"ref": acc.ID, "status": "consent-given",
		"by": "shelter/staff-shelter", "at": now})
	c.net.Inject("police", "shelter", late)
	lateID, _ := crypto.ParseHeader(late)
	e := c.waitAudit("police", func(e store.AuditEvent) bool {
		return e.Action == gateway.ActEnvelopeReject && e.Object == lateID.ID ||
			e.Action == gateway.ActStatusReceive && e.Object == acc.ID && e.Reason == "late"
	})
	if e.Action == gateway.ActEnvelopeReject {
		t.Fatalf("the late consent status was refused: %+v", e)
	}
	if it := c.item("police", srRead, acc.ID); it.Status != "answered" || count(events(it), "consent-given") != 1 {
		t.Fatalf("police: %s %v", it.Status, events(it))
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
