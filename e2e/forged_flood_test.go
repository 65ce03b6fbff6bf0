package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// outcomeClock records when each of a gateway's sent referrals got its
// delivery outcome.
type outcomeClock struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (o *outcomeClock) record(id, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if outcome == "delivered" {
		o.seen[id] = time.Now()
	}
}

func (o *outcomeClock) at(id string) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.seen[id]
	return t, ok
}

// sendPaced sends count referrals from dinsos to the police, one every
// gap, and returns their ids and when each was accepted.
func sendPaced(t *testing.T, n *network, count int, gap time.Duration) ([]string, []time.Time) {
	t.Helper()
	dinsos := n.api("dinsos")
	ids := make([]string, 0, count)
	sent := make([]time.Time, 0, count)
	for i := range count {
		if i > 0 {
			time.Sleep(gap)
		}
		at := time.Now()
		r := dinsos.do(t, "POST", "/v1/referrals", sampleReferral("police"))
		if r.Status != 202 {
			t.Fatalf("send: %d %s", r.Status, r.Raw)
		}
		ids, sent = append(ids, r.str("id")), append(sent, at)
	}
	return ids, sent
}

// latencies waits until every referral is delivered and returns the time
// from its acceptance at the sender to its delivery outcome there.
func latencies(t *testing.T, o *outcomeClock, ids []string, sent []time.Time, within time.Duration) []time.Duration {
	t.Helper()
	out := make([]time.Duration, len(ids))
	eventually(t, fmt.Sprintf("%d referrals from dinsos being delivered to the police", len(ids)), within, func() (bool, string) {
		missing := 0
		for i, id := range ids {
			at, ok := o.at(id)
			if !ok {
				missing++
				continue
			}
			out[i] = at.Sub(sent[i])
		}
		return missing == 0, fmt.Sprintf("%d not delivered", missing)
	})
	return out
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(len(s)-1, i))]
}

// TestForgedFloodAtPolice: the shelter, with its own keys and broker
// credentials, publishes forged envelopes (bad signatures, a kind the
// rules never allow from a shelter, status envelopes about records that do
// not exist, garbage) at about 1,000 a second at the police, a gateway
// process of its own, while dinsos sends referrals. Every referral is
// delivered, and the police audit log grows by a bounded number of events.
// The referrals' latency with and without the flood is reported.
func TestForgedFloodAtPolice(t *testing.T) {
	attack, paced := 30*time.Second, 40
	if testing.Short() {
		attack, paced = 5*time.Second, 10
	}
	const rate = 1000 // envelopes a second
	n := newNetwork(t)
	n.startBroker()
	n.spawnGateway("police")
	outcomes := &outcomeClock{seen: map[string]time.Time{}}
	n.startGatewayWith("dinsos", n.config("dinsos"), gateway.Options{OnOutcome: outcomes.record})

	// Warm up, then the latency without the flood.
	ids, sent := sendPaced(t, n, 3, 0)
	latencies(t, outcomes, ids, sent, 20*time.Second)
	ids, sent = sendPaced(t, n, paced, 100*time.Millisecond)
	quiet := latencies(t, outcomes, ids, sent, 30*time.Second)

	// The forgeries, sealed with the shelter's own keys.
	seal := sealer(t, n, "shelter")
	badSig := seal("police", crypto.KindReferral, crypto.NewID(), mustJSON(t, sampleReferral("police")))
	badSig[len(badSig)-1] ^= 1
	wrongKind := seal("police", crypto.KindStatementRequest, crypto.NewID(), mustJSON(t, requestBody("police", "V-2026-0077",
		time.Now().Add(72*time.Hour))))
	at := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	var randomRefs [][]byte
	for range 200 {
		randomRefs = append(randomRefs, seal("police", crypto.KindStatus, crypto.NewID(),
			mustJSON(t, map[string]any{"ref": crypto.NewID(), "status": "accepted", "by": "shelter/x", "at": at})))
	}
	sorts := []string{"bad-outer-signature", "rule-not-allowed", "random-ref", "malformed"}
	forged := func(i int) []byte {
		switch i % 4 {
		case 0:
			return badSig
		case 1:
			return wrongKind
		case 2:
			return randomRefs[(i/4)%len(randomRefs)]
		}
		return []byte("RJKE garbage")
	}
	police := n.api("police")
	auditBefore := len(auditAll(t, police))

	seed, err := client.LoadNKeySeed(filepath.Join(n.data, "agencies", "shelter", crypto.NATSSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := client.Connect(context.Background(), n.brokerURL(), "shelter", seed, client.NoRetryOnFailedConnect())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, stop := context.WithTimeout(context.Background(), attack)
	defer stop()
	var published, failed int
	bySort := map[string]int{}
	var wg sync.WaitGroup
	const publishers = 4
	var mu sync.Mutex
	start := time.Now()
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; ctx.Err() == nil; i += publishers {
				// Paced: envelope i is due i/rate seconds after the start.
				if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				err := conn.Publish(context.Background(), "police", fmt.Sprintf("forged-%d", i), forged(i))
				mu.Lock()
				if err != nil {
					failed++
				} else {
					published++
					bySort[sorts[i%4]]++
				}
				mu.Unlock()
			}
		}()
	}
	// The referrals during the flood, starting once it is under way.
	time.Sleep(time.Second)
	ids, sent = sendPaced(t, n, paced, max(100*time.Millisecond, (attack-2*time.Second)/time.Duration(paced)))
	wg.Wait()
	elapsed := time.Since(start)
	// Every forged envelope is refused and counted, but for the status
	// envelopes about unknown records: up to 64 wait aside, and copies of
	// those are acked quietly.
	eventually(t, "the flood being counted at the police", 60*time.Second, func() (bool, string) {
		by := refusedMetrics(t, n, "police", "shelter")
		for _, reason := range []string{"bad-outer-signature", "rule-not-allowed", "malformed"} {
			if by[reason] < bySort[reason] {
				return false, fmt.Sprintf("%s: %d of %d counted", reason, by[reason], bySort[reason])
			}
		}
		return true, ""
	})
	t.Logf("the police had counted every forgery %s after the flood ended", time.Since(start.Add(elapsed)).Round(time.Millisecond))
	flooded := latencies(t, outcomes, ids, sent, 60*time.Second)
	t.Logf("the shelter published %d forged envelopes in %s (%.0f a second; %d publishes failed)",
		published, elapsed.Round(time.Millisecond), float64(published)/elapsed.Seconds(), failed)
	t.Logf("dinsos -> police, accepted to delivered: without the flood p50 %s p99 %s; during it p50 %s p99 %s (%d referrals each)",
		percentile(quiet, .5).Round(time.Millisecond), percentile(quiet, .99).Round(time.Millisecond),
		percentile(flooded, .5).Round(time.Millisecond), percentile(flooded, .99).Round(time.Millisecond), paced)

	t.Logf("dinsos -> police during the flood, p50/p99 of each leg: accepted to sent (the broker's acknowledgement) %s, sent to stored at the police %s, stored to delivered at dinsos %s",
		legs(t, n, ids, sent, outcomes, 0), legs(t, n, ids, sent, outcomes, 1), legs(t, n, ids, sent, outcomes, 2))

	// The last summary is written within an interval (10 s) of the last
	// refusal.
	var evs []map[string]any
	eventually(t, "the audit log counting every forgery", 30*time.Second, func() (bool, string) {
		evs = auditAll(t, police)[auditBefore:]
		for _, reason := range []string{"bad-outer-signature", "rule-not-allowed", "malformed"} {
			if k := refusedCount(evs, "shelter", reason); k < bySort[reason] {
				return false, fmt.Sprintf("%s: %d of %d", reason, k, bySort[reason])
			}
		}
		return true, ""
	})
	fromShelter, summaries := 0, 0
	for _, e := range evs {
		if e["actor"] == "peer:shelter" {
			fromShelter++
			if e["action"] == "envelope.refused" {
				summaries++
			}
		}
	}
	counted := 0
	for _, reason := range []string{"bad-outer-signature", "rule-not-allowed", "malformed"} {
		if k := refusedCount(evs, "shelter", reason); k != bySort[reason] {
			t.Errorf("the audit log counts %d envelopes refused for %s, %d were published", k, reason, bySort[reason])
		}
		counted += refusedCount(evs, "shelter", reason)
	}
	counted += refusedCount(evs, "shelter", "too-many-waiting")
	t.Logf("police audit log: %d events during and after the flood, %d from the shelter (%d summaries) covering %d refusals",
		len(evs), fromShelter, summaries, counted)
	// Per interval of 10 s: at most 8 events of their own and 1 summary.
	intervals := int(elapsed/(10*time.Second)) + 3
	if fromShelter > 9*intervals {
		t.Errorf("the flood of %d envelopes added %d audit events from the shelter, want at most %d", published, fromShelter, 9*intervals)
	}
	if len(evs) > 9*intervals+10*(paced+3) {
		t.Errorf("the police audit log grew by %d events", len(evs))
	}
}

// refusedMetrics reads agency id's rujukan_envelopes_refused_total for one
// sender, by reason.
func refusedMetrics(t *testing.T, n *network, id, sender string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, line := range strings.Split(metrics(t, n.metricsURL(id)), "\n") {
		if !strings.HasPrefix(line, "rujukan_envelopes_refused_total{") || !strings.Contains(line, `sender="`+sender+`"`) {
			continue
		}
		i := strings.Index(line, `reason="`)
		if i < 0 {
			continue
		}
		reason := line[i+len(`reason="`):]
		reason = reason[:strings.Index(reason, `"`)]
		var v float64
		fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
		out[reason] += int(v)
	}
	return out
}

// legs returns the p50 and p99 of one leg of the referrals' way: 0 from
// acceptance to the broker's acknowledgement (sent), 1 from there to being
// stored at the police, 2 from there to the delivery outcome at dinsos.
func legs(t *testing.T, n *network, ids []string, sent []time.Time, o *outcomeClock, leg int) string {
	t.Helper()
	var ds []time.Duration
	for i, id := range ids {
		var sentAt, storedAt time.Time
		for _, e := range timeline(n.api("dinsos").do(t, "GET", "/v1/referrals/"+id, nil)) {
			if e["event"] == "sent" {
				sentAt, _ = time.Parse(time.RFC3339Nano, e["at"].(string))
			}
		}
		for _, e := range timeline(n.api("police").do(t, "GET", "/v1/referrals/"+id, nil)) {
			if e["event"] == "delivered" {
				storedAt, _ = time.Parse(time.RFC3339Nano, e["at"].(string))
			}
		}
		done, _ := o.at(id)
		switch leg {
		case 0:
			ds = append(ds, sentAt.Sub(sent[i]))
		case 1:
			ds = append(ds, storedAt.Sub(sentAt))
		default:
			ds = append(ds, done.Sub(storedAt))
		}
	}
	return percentile(ds, .5).Round(time.Millisecond).String() + "/" + percentile(ds, .99).Round(time.Millisecond).String()
}
