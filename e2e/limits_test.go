package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/crypto"
)

// setLimits gives agency id its own limits in the network's directory,
// signed by the authority at a higher version.
func setLimits(t *testing.T, n *network, id string, l crypto.Limits) {
	t.Helper()
	path := filepath.Join(n.data, "network.json")
	dir, err := crypto.LoadDirectory(path, mustAuthority(t, n))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := dir.Agency(id)
	if !ok {
		t.Fatalf("no agency %s", id)
	}
	a.Limits = &l
	dir.Version++
	key, err := crypto.LoadEd25519PrivateKey(filepath.Join(n.data, "authority", "authority.pem"))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := crypto.SignDirectory(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, signed, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLimitHitQueuedThenDelivered: the broker (real NATS) refuses iom's
// referrals once iom's share of the police inbox is full, while the police
// gateway is down. The sending gateway (a real process) keeps them queued,
// counts the refusals in its metrics and audits them once; when the police
// gateway starts and reads its inbox, every referral is delivered.
func TestLimitHitQueuedThenDelivered(t *testing.T) {
	n := newNetwork(t)
	setLimits(t, n, "police", crypto.Limits{SenderMaxMessages: 4})
	n.startBroker()
	n.spawnGateway("iom")
	base, tok := n.url("iom"), n.tokens["iom"]

	var ids, queued []string
	for len(queued) < 3 {
		if len(ids) > 12 {
			t.Fatalf("%d referrals accepted by the broker over a share of 4 messages", len(ids)-len(queued))
		}
		r := call(t, "POST", base+"/v1/referrals", tok, sampleReferral("police"))
		if r.Status != 202 {
			t.Fatalf("send: %d %s", r.Status, r.Raw)
		}
		ids = append(ids, r.str("id"))
		if r.str("status") == "queued" {
			queued = append(queued, r.str("id"))
		}
	}

	// The publish loop tries again and is refused again: the referrals stay
	// queued, the refusals are counted, and audited once.
	eventually(t, "refusals counted in the metrics", 30*time.Second, func() (bool, string) {
		m := metrics(t, n.metricsURL("iom"))
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "rujukan_broker_limit_hits_total{") && strings.Contains(line, `to="police"`) &&
				strings.Contains(line, `reason="sender-share"`) {
				var v float64
				fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
				return v > float64(len(queued)), line
			}
		}
		return false, "no rujukan_broker_limit_hits_total for police"
	})
	for _, id := range queued {
		if s, _ := statusOf(t, base, tok, id); s != "queued" {
			t.Fatalf("referral %s refused by the broker is %q, want queued", id, s)
		}
	}
	a := call(t, "GET", base+"/v1/audit?action=envelope.limit&limit=50", tok, nil)
	evs, _ := a.JSON["events"].([]any)
	if a.Status != 200 || len(evs) != 1 {
		t.Fatalf("limit audit events: %d %s, want exactly one", a.Status, a.Raw)
	}
	ev := evs[0].(map[string]any)
	if ev["object"] != "police" || ev["reason"] != "sender-share" || ev["outcome"] != "queued" {
		t.Fatalf("limit audit event %v", ev)
	}
	if strings.Contains(string(a.Raw), "V-2026-0042") {
		t.Fatal("the limit audit event holds a pseudonym")
	}

	// Room is made: the police gateway starts and reads its inbox.
	n.startGateway("police")
	eventually(t, fmt.Sprintf("%d referrals delivered", len(ids)), 90*time.Second, func() (bool, string) {
		out := listAll(t, base, tok, "outbox")
		done := 0
		for _, id := range ids {
			switch out[id] {
			case "delivered", "read":
				done++
			case "failed":
				t.Fatalf("referral %s failed", id)
			}
		}
		return done == len(ids), fmt.Sprintf("%d of %d delivered", done, len(ids))
	})
	in := listAll(t, n.url("police"), n.tokens["police"], "inbox")
	for _, id := range ids {
		if _, ok := in[id]; !ok {
			t.Errorf("referral %s is delivered at iom but not in the police inbox", id)
		}
	}
}
