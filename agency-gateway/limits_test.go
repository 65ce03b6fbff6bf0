package gateway_test

import (
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
)

// limitHits reads rujukan_broker_limit_hits_total{agency,to} summed over
// the reasons.
func limitHits(t *testing.T, m *gateway.Metrics, agency, to string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "rujukan_broker_limit_hits_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["agency"] == agency && labels["to"] == to {
				if labels["reason"] != "sender-share" {
					t.Fatalf("limit hit with reason %q, want sender-share", labels["reason"])
				}
				n += s.GetCounter().GetValue()
			}
		}
	}
	return n
}

func limitEvents(c *core, id string) []store.AuditEvent {
	var out []store.AuditEvent
	for _, e := range c.audit(id) {
		if e.Action == gateway.ActEnvelopeLimit {
			out = append(out, e)
		}
	}
	return out
}

// eventually waits up to a minute for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not the case after a minute: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLimitQueuedThenDelivered: when the broker refuses a referral because
// the sender's share of the recipient's inbox is full, the referral stays
// queued (never failed, never lost), other recipients are not held up, the
// operator gets a metric and at most one audit event per interval, and the
// referral is delivered once the recipient reads its inbox.
func TestLimitQueuedThenDelivered(t *testing.T) {
	m := gateway.NewMetrics(nil)
	c := mustCoreOpts(t, gateway.Options{Metrics: m})
	c.stop("shelter") // the shelter does not read its inbox
	c.net.SetSenderLimit("shelter", 3)

	var sent, queued []string
	for len(queued) < 4 {
		if len(sent) > 10 {
			t.Fatalf("11 referrals published over a share of 3")
		}
		acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
		switch acc.Status {
		case "sent":
			if len(queued) > 0 {
				t.Fatalf("referral %s published after an earlier one was refused", acc.ID)
			}
			sent = append(sent, acc.ID)
		case "queued":
			queued = append(queued, acc.ID)
		default:
			t.Fatalf("referral answered %q", acc.Status)
		}
	}
	if c.net.Len("shelter") != 3 {
		t.Fatalf("the shelter's inbox holds %d messages, want its share of 3", c.net.Len("shelter"))
	}

	// Another recipient is not held up by the full one.
	other := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("dinsos"))
	c.waitStatus("iom", refRead, other.ID, "delivered")

	// The publish loop keeps trying (with back-off): more refusals are
	// counted, but audited once.
	eventually(t, "the loop retried the refused referrals", func() bool { return limitHits(t, m, "iom", "shelter") > float64(len(queued)) })
	for _, id := range queued {
		if it := c.item("iom", refRead, id); it.Status != "queued" {
			t.Fatalf("refused referral %s is %q, want queued", id, it.Status)
		}
	}
	evs := limitEvents(c, "iom")
	if len(evs) != 1 {
		t.Fatalf("%d limit audit events, want 1: %+v", len(evs), evs)
	}
	if e := evs[0]; e.Object != "shelter" || e.Reason != "sender-share" || e.Outcome != "queued" || e.Detail["hits"] != "1" || e.Actor != "iom" {
		t.Fatalf("limit audit event %+v", e)
	}

	// The next interval gets one more event, counting the refusals between.
	c.clock.Advance(6 * time.Minute)
	eventually(t, "a second limit audit event", func() bool { return len(limitEvents(c, "iom")) == 2 })
	if e := limitEvents(c, "iom")[1]; e.Detail["hits"] == "1" || e.Detail["hits"] == "" {
		t.Fatalf("second limit event does not count the refusals since the first: %+v", e)
	}

	// The shelter reads its inbox: room is made and every queued referral
	// is delivered, none failed.
	c.start("shelter")
	for _, id := range append(sent, queued...) {
		eventually(t, "referral "+id+" delivered", func() bool {
			c.clock.Advance(time.Second) // shortens the back-off a little
			it, err := c.gws["iom"].Item(c.staff("iom"), refRead, id)
			if err == nil && it.Status == "failed" {
				t.Fatalf("referral %s failed: %+v", id, it.Timeline)
			}
			return err == nil && it.Status == "delivered"
		})
	}
	if n := len(limitEvents(c, "iom")); n > 3 {
		t.Fatalf("%d limit audit events over two intervals, want at most 3", n)
	}
}

// TestLimitHoldsUpNoOne: more envelopes than one page of the outbox wait for
// a recipient whose inbox is full; an envelope queued after them for
// another recipient is still published.
func TestLimitHoldsUpNoOne(t *testing.T) {
	c := mustCore(t)
	c.stop("shelter")
	c.net.SetSenderLimit("shelter", 1)
	c.net.SetDown(true)
	for range 100 {
		if acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter")); acc.Status != "queued" {
			t.Fatalf("referral answered %q with the broker down", acc.Status)
		}
	}
	other := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("dinsos"))
	c.net.SetDown(false)
	c.waitStatus("iom", refRead, other.ID, "delivered")
}
