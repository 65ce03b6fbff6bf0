package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/cli"
	"github.com/rujukan/rujukan/crypto"
)

// sealAs seals body as agency from to agency to, with the given id.
func sealAs(t *testing.T, n *network, from, to, kind, id string, body []byte) []byte {
	t.Helper()
	signer, err := crypto.LoadSigner(filepath.Join(n.data, "agencies", from, crypto.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := crypto.LoadDirectory(filepath.Join(n.data, "network.json"), mustAuthority(t, n))
	if err != nil {
		t.Fatal(err)
	}
	rcpt, _ := dir.Agency(to)
	now := time.Now()
	env, err := crypto.Seal(crypto.Header{ID: id, Kind: kind, From: from, To: to, Created: now, Expires: now.Add(time.Hour)}, body, signer, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestIDCollisionRefused: a peer that reuses the id of a referral it
// received from us, for a referral of its own, is refused; our record of
// what we sent stays ours.
func TestIDCollisionRefused(t *testing.T) {
	n, id := deliveredOne(t)

	body := sampleReferral("iom")
	body["consent"].(map[string]any)["recorded_by"] = "mallory"
	raw, _ := json.Marshal(body)
	publishAs(t, n, "shelter", "iom", "collide-1", sealAs(t, n, "shelter", "iom", crypto.KindReferral, id, raw))
	eventually(t, "the collision being refused", 10*time.Second, func() (bool, string) {
		k := refusedCount(auditAll(t, n.api("iom")), "shelter", "id-collision")
		return k == 1, fmt.Sprintf("%d refused for id-collision", k)
	})
	one := call(t, "GET", n.url("iom")+"/v1/referrals/"+id, n.tokens["iom"], nil)
	if one.str("box") != "outbox" || one.str("from") != "iom" {
		t.Fatalf("iom's own referral was overwritten: %s", one.Raw)
	}
	if in := listAll(t, n.url("iom"), n.tokens["iom"], "inbox"); len(in) != 0 {
		t.Errorf("iom's inbox: %v", in)
	}
}

// TestWithdrawBeforePublish: a referral withdrawn while it still waits in
// the outbox is never published; the recipient never sees it.
func TestWithdrawBeforePublish(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	n.startGateway("iom")
	n.startGateway("shelter")
	n.stopBroker()
	r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral("shelter"))
	if r.str("status") != "queued" {
		t.Fatalf("send with the broker down: %s", r.Raw)
	}
	id := r.str("id")
	w := call(t, "POST", n.url("iom")+"/v1/referrals/"+id+"/status", n.tokens["iom"], map[string]string{"status": "withdrawn", "reason": "wrong office"})
	if w.Status != 200 || w.str("status") != "withdrawn" {
		t.Fatalf("withdraw: %d %s", w.Status, w.Raw)
	}
	// The reason is shown to the sender, and kept encrypted in the store.
	if !strings.Contains(string(w.Raw), "wrong office") {
		t.Errorf("the withdrawal reason is not in the timeline: %s", w.Raw)
	}
	n.startBroker()
	time.Sleep(3 * time.Second)
	if in := listAll(t, n.url("shelter"), n.tokens["shelter"], "inbox"); len(in) != 0 {
		t.Fatalf("the shelter received a referral withdrawn before it left: %v", in)
	}
	if s, _ := statusOf(t, n.url("iom"), n.tokens["iom"], id); s != "withdrawn" {
		t.Errorf("iom status %s, want withdrawn", s)
	}
}

// TestStatusBeforeReferral: a withdrawal that reaches the recipient before
// the referral itself waits for it instead of being lost.
func TestStatusBeforeReferral(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	n.startGateway("iom")
	r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral("shelter"))
	id := r.str("id")
	waitStatus(t, n.url("iom"), n.tokens["iom"], id, "sent")
	if w := call(t, "POST", n.url("iom")+"/v1/referrals/"+id+"/status", n.tokens["iom"], map[string]string{"status": "withdrawn"}); w.Status != 200 {
		t.Fatalf("withdraw: %d %s", w.Status, w.Raw)
	}
	n.startGateway("shelter") // both envelopes wait for it, and race
	eventually(t, "the shelter seeing the withdrawal", 20*time.Second, func() (bool, string) {
		s, one := statusOf(t, n.url("shelter"), n.tokens["shelter"], id)
		return s == "withdrawn", string(one.Raw)
	})
}

// TestRepeatedReceipts: a peer re-sending its signed receipt in new
// envelopes adds nothing.
func TestRepeatedReceipts(t *testing.T) {
	n, id := deliveredOne(t)
	rc := call(t, "GET", n.url("iom")+"/v1/referrals/"+id+"/receipts", n.tokens["iom"], nil)
	receipts := rc.JSON["receipts"].([]any)
	var sum [32]byte
	copy(sum[:], mustHexField(t, receipts[0].(map[string]any)["envelope_sha256"].(string)))
	signer, _ := crypto.LoadSigner(filepath.Join(n.data, "agencies", "shelter", crypto.SigningKeyFile))
	signed, err := crypto.SignReceipt(crypto.Receipt{EnvelopeID: id, EnvelopeHash: sum, From: "shelter", To: "iom",
		Event: crypto.EventDelivered, At: time.Now()}, signer)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		rid := crypto.NewID()
		publishAs(t, n, "shelter", "iom", rid, sealAs(t, n, "shelter", "iom", crypto.KindReceipt, rid, signed))
	}
	time.Sleep(2 * time.Second)
	rc = call(t, "GET", n.url("iom")+"/v1/referrals/"+id+"/receipts", n.tokens["iom"], nil)
	if got := len(rc.JSON["receipts"].([]any)); got != 1 {
		t.Errorf("%d receipts stored, want 1", got)
	}
	one := call(t, "GET", n.url("iom")+"/v1/referrals/"+id, n.tokens["iom"], nil)
	if got := len(one.JSON["timeline"].([]any)); got > 4 {
		t.Errorf("timeline grew to %d entries", got)
	}
}

// TestUnauthenticatedNotAudited: requests without a valid token are
// counted, not written to the audit log.
func TestUnauthenticatedNotAudited(t *testing.T) {
	st, data := MustDev(t)
	base := st.Gateways["iom"].URL
	before, _ := st.Gateways["iom"].Gateway.DB().Stats()
	for range 50 {
		resp, err := http.Get(base + "/v1/referrals")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	after, _ := st.Gateways["iom"].Gateway.DB().Stats()
	if after.Audit != before.Audit {
		t.Errorf("unauthenticated requests added %d audit events", after.Audit-before.Audit)
	}
	m := metrics(t, st.Gateways["iom"].MetricsURL)
	if !strings.Contains(m, `rujukan_auth_failures_total{agency="iom",reason="token-missing"} 50`) {
		t.Errorf("auth failures not counted")
	}
	// A caller with a valid token who is refused is still audited.
	viewer, err := cli.MintDevToken(cli.TokenConfig{Data: data, Agency: "iom", Subject: "viewer", Scopes: []string{"referral:read"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, "POST", base+"/v1/referrals", viewer, sampleReferral("shelter")); r.Status != 403 {
		t.Fatalf("send without the scope: %d", r.Status)
	}
	last, _ := st.Gateways["iom"].Gateway.DB().Stats()
	if last.Audit != after.Audit+1 {
		t.Errorf("the refused send added %d audit events, want 1", last.Audit-after.Audit)
	}
}

func mustHexField(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("envelope hash %q", s)
	}
	return b
}
