package gateway_test

// A member agency floods another with envelopes made with its own keys:
// bad signatures, kinds the network rules never allow, references that do
// not exist, replayed ids, garbage. What the flood costs the receiving
// gateway (audit events, writes, receipts) must not grow with its size,
// and another agency's referral in the middle of it still arrives.

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// forgedFlood makes n envelopes of each sort from agency from to agency to
// with from's own keys. stored is the id of an envelope to already holds.
func (c *core) forgedFlood(from, to, stored string, n int) map[string][][]byte {
	c.t.Helper()
	now := c.clock.Now()
	out := map[string][][]byte{}
	badSig := c.seal(from, to, crypto.KindReferral, referral(to))
	badSig[len(badSig)-1] ^= 1
	wrongRules := c.seal(from, to, crypto.KindStatementRequest, request(to, now.Add(72*time.Hour)))
	for range n {
		out[crypto.ReasonBadOuterSignature] = append(out[crypto.ReasonBadOuterSignature], badSig)
		out[policy.ReasonRuleNotAllowed] = append(out[policy.ReasonRuleNotAllowed], wrongRules)
		out[crypto.ReasonMalformed] = append(out[crypto.ReasonMalformed], []byte("RJKE not an envelope"))
		out["random-ref"] = append(out["random-ref"], c.seal(from, to, crypto.KindStatus,
			forgedStatus(crypto.NewID(), "accepted", from+"/x", now)))
		out[gateway.ReasonReplay] = append(out[gateway.ReasonReplay], c.sealH(from, to, crypto.KindReferral, stored, now, referral(to)))
	}
	return out
}

// counter returns the value of a counter of agency id's metrics with the
// given labels, 0 when it has none.
func (c *core) counter(id, name string, labels map[string]string) float64 {
	c.t.Helper()
	mfs, err := c.gws[id].Metrics().Registry.Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return counterValue(m)
		}
	}
	return 0
}

func counterValue(m *dto.Metric) float64 { return m.GetCounter().GetValue() }

func (c *core) auditLen(id string) int {
	c.t.Helper()
	st, err := c.gws[id].DB().Stats()
	if err != nil {
		c.t.Fatal(err)
	}
	return st.Audit
}

// waitDrained waits until agency id's inbox is empty.
func (c *core) waitDrained(id string) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for c.net.Len(id) > 0 {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: %d envelopes still in the inbox", id, c.net.Len(id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestForgedFloodIsCheap(t *testing.T) {
	c := mustCore(t)
	n := 400
	if testing.Short() {
		n = 100
	}
	// An envelope the police hold, whose id the flood replays.
	held := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("police"))
	c.waitStatus("police", refRead, held.ID, "delivered")
	c.waitStatus("iom", refRead, held.ID, "delivered")
	time.Sleep(1500 * time.Millisecond) // the witness round of the start is over
	flood := c.forgedFlood("iom", "police", held.ID, n)
	auditBefore, publishedBefore := c.auditLen("police"), c.net.Published

	total := 0
	var genuine []string
	for i := range n {
		for _, sort := range []string{crypto.ReasonBadOuterSignature, policy.ReasonRuleNotAllowed, crypto.ReasonMalformed, "random-ref", gateway.ReasonReplay} {
			c.net.Inject("police", "iom", flood[sort][i])
			total++
		}
		if i == n/2 {
			// Garbage on a subject no agency of the directory owns.
			c.net.Inject("police", "mallory", []byte("garbage"))
			genuine = append(genuine, c.mustSend("dinsos", "referral", policy.ActionReferralSend, "", referral("police")).ID)
		}
	}
	genuine = append(genuine, c.mustSend("shelter", "referral", policy.ActionReferralSend, "", referral("police")).ID)
	for _, id := range genuine {
		c.waitStatus("police", refRead, id, "delivered")
	}
	c.waitDrained("police")
	// The first refusal of the flood is in the log within a flush.
	c.waitRefused("police", "iom", crypto.ReasonBadOuterSignature)

	// Every refusal is counted by sender and reason.
	for _, reason := range []string{crypto.ReasonBadOuterSignature, policy.ReasonRuleNotAllowed, crypto.ReasonMalformed, gateway.ReasonReplay} {
		got := c.counter("police", "rujukan_envelopes_refused_total", map[string]string{"sender": "iom", "reason": reason})
		if int(got) != n {
			t.Errorf("rujukan_envelopes_refused_total{sender=iom,reason=%s} = %v, want %d", reason, got, n)
		}
	}
	if got := c.counter("police", "rujukan_envelopes_refused_total", map[string]string{"sender": "unknown"}); got != 1 {
		t.Errorf("garbage from an agency not in the directory counted %v times under sender=\"unknown\", want 1", got)
	}
	if got := c.counter("police", "rujukan_envelopes_refused_total", map[string]string{"sender": "mallory"}); got != 0 {
		t.Errorf("a sender outside the directory has a label of its own")
	}
	// Stopping the gateway writes the counts not yet summarised.
	c.stop("police")
	c.start("police")
	for _, reason := range []string{crypto.ReasonBadOuterSignature, policy.ReasonRuleNotAllowed, crypto.ReasonMalformed, gateway.ReasonReplay} {
		if k := c.refused("police", "iom", reason); k != n {
			t.Errorf("the audit log counts %d envelopes from iom refused for %s, want %d", k, reason, n)
		}
	}

	// The audit log grew by a bounded number of events, not by the flood.
	var fromIOM, summaries int
	evs := c.audit("police")
	for _, e := range evs[auditBefore:] {
		if e.Actor == "peer:iom" {
			fromIOM++
			if e.Action == gateway.ActEnvelopesRefused {
				summaries++
			}
		}
	}
	grown := len(evs) - auditBefore
	t.Logf("%d forged envelopes: the police audit log grew by %d events (%d from iom, %d of them summaries); %d envelopes published meanwhile",
		total, grown, fromIOM, summaries, c.net.Published-publishedBefore)
	if summaries == 0 {
		t.Error("no envelope.refused summary for iom")
	}
	// At most 8 events of their own and one summary per interval of 10 s.
	if fromIOM > 30 {
		t.Errorf("the flood of %d envelopes added %d audit events from iom", total, fromIOM)
	}
	if grown > 60 {
		t.Errorf("the flood of %d envelopes grew the audit log by %d events", total, grown)
	}
	// Rejected receipts (the outbox, a write each) are bounded too.
	if p := c.net.Published - publishedBefore; p > 60 {
		t.Errorf("the police published %d envelopes during a flood of %d", p, total)
	}
	var waiting int
	c.gws["police"].DB().View(func(tx *store.Tx) error {
		waiting = tx.WaitingFrom("iom")
		return nil
	})
	if waiting > 64 {
		t.Errorf("%d envelopes from iom wait at the police", waiting)
	}
}

// The sender whose flood fills the inbox is served one envelope at a
// time, in turn with the others: another sender's referral queued behind
// it is not kept waiting for the whole backlog.
func TestReceiveServesSendersInTurn(t *testing.T) {
	c := mustCore(t)
	c.stop("police")
	const backlog = 200
	for range backlog {
		c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("police"))
	}
	other := c.mustSend("dinsos", "referral", policy.ActionReferralSend, "", referral("police"))
	if c.net.Len("police") < backlog+1 {
		t.Fatalf("%d envelopes in the police inbox, want %d", c.net.Len("police"), backlog+1)
	}
	c.start("police")
	c.waitDrained("police")
	pos, n := -1, 0
	for _, e := range c.audit("police") {
		if e.Action != gateway.ActReferralReceive {
			continue
		}
		if e.Object == other.ID {
			pos = n
		}
		n++
	}
	if n != backlog+1 || pos < 0 {
		t.Fatalf("%d referrals stored, want %d (the other sender's at %d)", n, backlog+1, pos)
	}
	t.Logf("the other sender's referral, queued behind %d, was stored at position %d", backlog, pos+1)
	// In arrival order it would be last; how far ahead it gets depends on
	// the fetch batches and the machine's speed (fewer under -race).
	if pos >= backlog*3/4 {
		t.Fatalf("the other sender's referral, queued behind %d of one sender, was stored at position %d", backlog, pos+1)
	}
}

// TestReceiveServesUrgentFirst: an urgent referral sent behind 200 normal
// ones of the same sender is stored as soon as it is fetched (in arrival
// order it would be the 201st), and one sender marking everything urgent does not starve another
// sender's normal referral.
func TestReceiveServesUrgentFirst(t *testing.T) {
	c := mustCore(t)
	c.stop("police")
	const backlog = 200
	for range backlog {
		c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("police"))
	}
	u := referral("police")
	u["priority"] = "urgent"
	urgentRef := c.mustSend("iom", "referral", policy.ActionReferralSend, "", u)
	for range 50 {
		c.mustSend("shelter", "referral", policy.ActionReferralSend, "", u)
	}
	normal := c.mustSend("dinsos", "referral", policy.ActionReferralSend, "", referral("police"))
	c.start("police")
	c.waitDrained("police")
	pos := map[string]int{}
	n := 0
	for _, e := range c.audit("police") {
		if e.Action == gateway.ActReferralReceive {
			pos[e.Object] = n
			n++
		}
	}
	if n != backlog+52 {
		t.Fatalf("%d referrals stored, want %d", n, backlog+52)
	}
	t.Logf("stored at: iom's urgent %d (behind %d normal), dinsos's normal %d (with 50 urgent of the shelter)", pos[urgentRef.ID]+1, backlog, pos[normal.ID]+1)
	if pos[urgentRef.ID] >= backlog*3/4 {
		t.Errorf("the urgent referral behind %d normal ones was stored at position %d", backlog, pos[urgentRef.ID]+1)
	}
	if pos[normal.ID] >= backlog*3/4 {
		t.Errorf("dinsos's normal referral was stored at position %d: starved by urgent ones", pos[normal.ID]+1)
	}
}
