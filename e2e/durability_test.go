package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sendMany posts n referrals from iom to agency to with c concurrent
// clients and returns their ids. Every POST must answer 202. after, when
// set, is called once when half have been accepted.
func sendMany(t testing.TB, n *network, to string, total, c int, after func()) []string {
	t.Helper()
	ids := make([]string, total)
	var next atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral(to))
				if r.Status != 202 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%d %s", r.Status, r.Raw))
					mu.Unlock()
					continue
				}
				ids[i] = r.str("id")
				if after != nil && i == total/2 {
					once.Do(after)
				}
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d sends were not accepted; first: %s", len(failures), failures[0])
	}
	return ids
}

// waitDelivered waits until every id has the delivered outcome at iom and
// is in to's inbox exactly once.
func waitDelivered(t testing.TB, n *network, to string, ids []string, timeout time.Duration) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d referrals delivered", len(ids)), timeout, func() (bool, string) {
		out := listAll(t, n.url("iom"), n.tokens["iom"], "outbox")
		done := 0
		for _, id := range ids {
			if s := out[id]; s == "delivered" || s == "read" {
				done++
			}
		}
		return done == len(ids), fmt.Sprintf("%d of %d delivered (%d failed)", done, len(ids), count(out, "failed"))
	})
	in := listAll(t, n.url(to), n.tokens[to], "inbox")
	for _, id := range ids {
		if _, ok := in[id]; !ok {
			t.Errorf("referral %s is delivered at iom but not in %s's inbox", id, to)
		}
	}
	if len(in) != len(ids) {
		t.Errorf("%s holds %d referrals, want exactly %d", to, len(in), len(ids))
	}
}

// TestRecipientKilled kills the receiving gateway (SIGKILL, a real
// process) while 500 referrals are in flight, then restarts it: each is
// delivered exactly once and the sender sees every one delivered.
func TestRecipientKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 500 referrals")
	}
	n := newNetwork(t)
	n.startBroker()
	n.startGateway("iom")
	n.spawnGateway("shelter")
	ids := sendMany(t, n, "shelter", 500, 16, func() { n.kill("shelter") })
	time.Sleep(500 * time.Millisecond)
	n.spawnGateway("shelter")
	waitDelivered(t, n, "shelter", ids, 90*time.Second)
	verifyAudit(t, n, "iom")
	verifyAudit(t, n, "shelter")
}

// TestSenderKilledBeforePublish accepts referrals while the broker is down
// (so they wait in the outbox), SIGKILLs the sending gateway, then brings
// the broker and the sender back: every accepted referral is delivered.
func TestSenderKilledBeforePublish(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	n.startGateway("shelter")
	n.spawnGateway("iom")
	n.stopBroker()
	ids := sendMany(t, n, "shelter", 40, 4, nil)
	n.kill("iom")
	n.startBroker()
	n.spawnGateway("iom")
	waitDelivered(t, n, "shelter", ids, 60*time.Second)
}

// TestBrokerDownDuringSend: a referral sent while the broker is down is
// queued, then delivered once the broker is back.
func TestBrokerDownDuringSend(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	n.startGateway("iom")
	n.startGateway("dinsos")
	n.stopBroker()
	r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral("dinsos"))
	if r.Status != 202 || r.str("status") != "queued" {
		t.Fatalf("send with the broker down: %d %s, want 202 queued", r.Status, r.Raw)
	}
	if s, _ := statusOf(t, n.url("iom"), n.tokens["iom"], r.str("id")); s != "queued" {
		t.Fatalf("status %s, want queued", s)
	}
	n.startBroker()
	waitDelivered(t, n, "dinsos", []string{r.str("id")}, 60*time.Second)
}

// TestRecipientDown: a referral to a gateway that is down waits at the
// broker and is delivered when the gateway comes back.
func TestRecipientDown(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	n.startGateway("iom")
	r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral("police"))
	if r.Status != 202 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	id := r.str("id")
	time.Sleep(time.Second)
	if s, _ := statusOf(t, n.url("iom"), n.tokens["iom"], id); s != "sent" {
		t.Fatalf("status with the recipient down: %s, want sent", s)
	}
	n.startGateway("police")
	waitDelivered(t, n, "police", []string{id}, 30*time.Second)
}

func verifyAudit(t testing.TB, n *network, id string) {
	t.Helper()
	base := n.url(id)
	r := call(t, "GET", base+"/v1/audit/verify", n.tokens[id], nil)
	if r.Status != 200 || r.JSON["ok"] != true {
		t.Errorf("audit of %s does not verify: %d %s", id, r.Status, r.Raw)
	}
}
