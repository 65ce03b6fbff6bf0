package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// TestDeadlineFails: a referral that is not delivered by its deadline is
// reported failed, once, and a late receipt does not change that.
func TestDeadlineFails(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	var skew atomic.Int64
	cfg := n.config("iom")
	cfg.DeliveryDeadline = time.Minute
	n.startGatewayWith("iom", cfg, gateway.Options{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral("shelter"))
	if r.Status != 202 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	id := r.str("id")
	skew.Store(int64(2 * time.Minute)) // the shelter is still down
	one := waitStatus(t, n.url("iom"), n.tokens["iom"], id, "failed")
	if one.str("outcome") != "failed" {
		t.Fatalf("outcome %q, want failed", one.str("outcome"))
	}
	// The shelter comes back after the deadline too (3.5 minutes on: past
	// the 1-minute expiry plus the 2-minute skew allowance, yet close enough
	// to iom's clock that iom accepts the shelter's receipt), refuses the
	// expired envelope and says so with a signed rejected receipt; the
	// sender keeps its one outcome.
	n.startGatewayWith("shelter", n.config("shelter"), gateway.Options{Now: func() time.Time { return time.Now().Add(210 * time.Second) }})
	eventually(t, "the rejected receipt reaching iom", 20*time.Second, func() (bool, string) {
		rc := call(t, "GET", n.url("iom")+"/v1/referrals/"+id+"/receipts", n.tokens["iom"], nil)
		return strings.Contains(string(rc.Raw), `"event":"rejected"`), string(rc.Raw)
	})
	if s, final := statusOf(t, n.url("iom"), n.tokens["iom"], id); s != "failed" || final.str("outcome") != "failed" {
		t.Fatalf("after the shelter came back: %s %s", s, final.Raw)
	}
	if in := listAll(t, n.url("shelter"), n.tokens["shelter"], "inbox"); len(in) != 0 {
		t.Errorf("the shelter stored an expired referral: %v", in)
	}
}

// publishAs publishes raw bytes to agency to with agency from's own broker
// credentials, as a misbehaving or compromised gateway could.
func publishAs(t *testing.T, n *network, from, to, msgID string, data []byte) {
	t.Helper()
	seed, err := client.LoadNKeySeed(filepath.Join(n.data, "agencies", from, crypto.NATSSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(context.Background(), n.brokerURL(), from, seed, client.NoRetryOnFailedConnect())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Publish(context.Background(), to, msgID, data); err != nil {
		t.Fatal(err)
	}
}

func auditOutcomes(t *testing.T, n *network, id string) string {
	t.Helper()
	r := call(t, "GET", n.url(id)+"/v1/audit?limit=1000", n.tokens[id], nil)
	return string(r.Raw)
}

// TestHostileEnvelopes: garbage, a replayed envelope id with other bytes,
// and a redelivery of the same bytes, published with a real agency's broker
// credentials. Each is refused and counted; nothing is stored twice.
func TestHostileEnvelopes(t *testing.T) {
	n, id := deliveredOne(t)

	// Refused before decryption: counted, and summarised in the audit log
	// (one envelope.refused event per sender and interval).
	publishAs(t, n, "iom", "shelter", "garbage-1", []byte("not an envelope"))
	waitRefusedCount(t, n, "shelter", "iom", "malformed", 1)

	// The same id with other bytes (a replay): refused.
	other := sealAs(t, n, "iom", "shelter", crypto.KindReferral, id, []byte(`{"to":"shelter"}`))
	publishAs(t, n, "iom", "shelter", "replay-1", other)
	waitRefusedCount(t, n, "shelter", "iom", "replay", 1)
	// The very same bytes again (a redelivery): acked quietly, stored once.
	var same []byte
	n.inproc["shelter"].Gateway.DB().View(func(tx *store.Tx) (err error) { same, err = tx.Envelope(id); return err })
	before, _ := n.inproc["shelter"].Gateway.DB().Stats()
	publishAs(t, n, "iom", "shelter", "again-1", same)
	time.Sleep(time.Second)
	after, _ := n.inproc["shelter"].Gateway.DB().Stats()
	if after.Audit != before.Audit || after.Records != before.Records {
		t.Errorf("a redelivery changed the store: %+v -> %+v", before, after)
	}
	if in := listAll(t, n.url("shelter"), n.tokens["shelter"], "inbox"); len(in) != 1 {
		t.Errorf("shelter inbox holds %d referrals, want 1", len(in))
	}
	// iom got a signed rejected receipt for an envelope it never sent and
	// refused it; its own referral keeps its outcome.
	if s, one := statusOf(t, n.url("iom"), n.tokens["iom"], id); s != "delivered" || one.str("outcome") != "delivered" {
		t.Errorf("iom's referral after the replay: %s", one.Raw)
	}
}

func mustAuthority(t *testing.T, n *network) []byte {
	t.Helper()
	k, err := crypto.ParseAuthorityKey("@" + filepath.Join(n.data, "authority", "authority.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
