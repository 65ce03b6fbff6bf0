package gateway_test

import (
	"errors"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
)

// TestAuditQuery: GET /v1/audit's filters (action, actor, object exact;
// since inclusive, until exclusive), bad input, and the bounded scan of a
// filter that matches little.
func TestAuditQuery(t *testing.T) {
	c := mustCore(t, agency{"iom", "iom"})
	gw := c.gws["iom"]
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	// 1300 fillers, one a minute, then a needle.
	err := gw.DB().Update(func(tx *store.Tx) error {
		for i := 0; i < 1300; i++ {
			actor, object := "iom/a", "rec-even"
			if i%2 == 1 {
				actor, object = "iom/b", "rec-odd"
			}
			if err := tx.Audit(store.AuditEvent{At: base.Add(time.Duration(i) * time.Minute), Actor: actor,
				Action: "test.filler", Object: object, Outcome: "ok"}); err != nil {
				return err
			}
		}
		return tx.Audit(store.AuditEvent{At: base.Add(2000 * time.Minute), Actor: "iom/c", Action: "test.needle", Object: "rec-n", Outcome: "ok"})
	})
	if err != nil {
		t.Fatal(err)
	}
	p := c.staff("iom")
	q := func(aq gateway.AuditQuery) gateway.AuditPage {
		t.Helper()
		page, err := gw.Audit(p, aq)
		if err != nil {
			t.Fatalf("%+v: %v", aq, err)
		}
		return page
	}

	for _, tc := range []struct {
		name string
		aq   gateway.AuditQuery
		ok   func(store.AuditEvent) bool
		n    int
	}{
		{"action", gateway.AuditQuery{Action: "test.filler", Limit: 1000}, func(e store.AuditEvent) bool { return e.Action == "test.filler" }, 1000},
		{"actor", gateway.AuditQuery{Actor: "iom/b", Limit: 20}, func(e store.AuditEvent) bool { return e.Actor == "iom/b" }, 20},
		{"object", gateway.AuditQuery{Object: "rec-even", Limit: 5}, func(e store.AuditEvent) bool { return e.Object == "rec-even" }, 5},
		{"since-until", gateway.AuditQuery{Since: base.Add(10 * time.Minute), Until: base.Add(13 * time.Minute)},
			func(e store.AuditEvent) bool {
				return !e.At.Before(base.Add(10*time.Minute)) && e.At.Before(base.Add(13*time.Minute))
			}, 3},
		{"combined", gateway.AuditQuery{Actor: "iom/a", Since: base.Add(10 * time.Minute), Until: base.Add(14 * time.Minute)},
			func(e store.AuditEvent) bool { return e.Actor == "iom/a" }, 2},
	} {
		page := q(tc.aq)
		if len(page.Events) != tc.n {
			t.Errorf("%s: %d events, want %d", tc.name, len(page.Events), tc.n)
		}
		for _, e := range page.Events {
			if !tc.ok(e) {
				t.Errorf("%s: %+v", tc.name, e)
			}
		}
	}
	// since is inclusive, until exclusive.
	page := q(gateway.AuditQuery{Since: base.Add(10 * time.Minute), Until: base.Add(13 * time.Minute)})
	if page.Events[0].At != base.Add(10*time.Minute) || page.Events[2].At != base.Add(12*time.Minute) || page.Next != 0 {
		t.Errorf("since/until: %+v", page)
	}
	// A filter matching little: the first page stops after 20*limit+1000
	// events with next set, the following one finds the needle.
	page = q(gateway.AuditQuery{Action: "test.needle", Limit: 10})
	if len(page.Events) != 0 || page.Next != 1200 {
		t.Fatalf("first page of a rare filter: %d events, next %d", len(page.Events), page.Next)
	}
	page = q(gateway.AuditQuery{Action: "test.needle", Limit: 10, After: page.Next})
	if len(page.Events) != 1 || page.Events[0].Actor != "iom/c" || page.Next != 0 {
		t.Fatalf("second page of a rare filter: %+v", page)
	}
	// Paging a filter by next gives every match once.
	var got int
	for after := uint64(0); ; {
		page := q(gateway.AuditQuery{Actor: "iom/a", Limit: 100, After: after})
		got += len(page.Events)
		if page.Next == 0 {
			break
		}
		after = page.Next
	}
	if got != 650 {
		t.Errorf("paging iom/a: %d events, want 650", got)
	}
	for _, aq := range []gateway.AuditQuery{
		{Since: base, Until: base},
		{Since: base.Add(time.Minute), Until: base},
		{Limit: 1001},
		{Limit: -1},
	} {
		if _, err := gw.Audit(p, aq); !errors.Is(err, gateway.ErrBadRequest) {
			t.Errorf("%+v: %v, want a bad request", aq, err)
		}
	}
}
