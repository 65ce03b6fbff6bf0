package gateway_test

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// frame is a bundle of envs as any member can write one (bundle.go's
// wire: "RJKB", version 1, count, then length-prefixed envelopes).
func frame(envs ...[]byte) []byte {
	b := []byte{'R', 'J', 'K', 'B', 1, byte(len(envs))}
	for _, e := range envs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// Envelopes waiting for one recipient go in one broker message, and each
// arrives once: ten referrals queued while the broker is down are
// published as one bundle, delivered, and their receipts come back.
func TestQueuedEnvelopesTravelBundled(t *testing.T) {
	c := mustCore(t)
	var mu sync.Mutex
	var messages, bundled int
	c.net.SetTap(func(to, from string, env []byte) {
		mu.Lock()
		defer mu.Unlock()
		if to == "shelter" && from == "iom" {
			messages++
			if bytes.HasPrefix(env, []byte("RJKB")) {
				bundled++
			}
		}
	})
	c.net.SetDown(true)
	var ids []string
	for range 10 {
		acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
		if acc.Status != "queued" {
			t.Fatalf("sent with the broker down: %q", acc.Status)
		}
		ids = append(ids, acc.ID)
	}
	c.net.SetDown(false)
	c.gws["iom"].Poke()
	for _, id := range ids {
		c.waitStatus("iom", refRead, id, "delivered")
		c.waitStatus("shelter", refRead, id, "delivered")
	}
	mu.Lock()
	defer mu.Unlock()
	if messages != 1 || bundled != 1 {
		t.Fatalf("10 queued referrals went in %d broker messages (%d bundles), want one bundle", messages, bundled)
	}
	// The operators' metric says so.
	mfs, err := c.gws["iom"].Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "rujukan_envelopes_per_message" {
			// Other envelopes (a witness checkpoint, say) may go alone;
			// one message carried more than 8.
			h := mf.GetMetric()[0].GetHistogram()
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == 8 {
					found = b.GetCumulativeCount() == h.GetSampleCount()-1
				}
			}
		}
	}
	if !found {
		t.Fatal("rujukan_envelopes_per_message does not show the message of 10 envelopes")
	}
	page, err := c.gws["shelter"].List(c.staff("shelter"), gateway.ListQuery{Box: "inbox", Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 10 {
		t.Fatalf("shelter holds %d referrals, want 10", len(page.Items))
	}
}

// A member's bundle is no way around the checks: each envelope in it is
// screened on its own (its own referral is stored; one signed by another
// agency but sent on this member's subject, garbage, and a bundle inside
// the bundle are refused), and a bundle of more envelopes than allowed is
// refused whole. Nothing stays in the inbox.
func TestHostileBundle(t *testing.T) {
	c := mustCore(t)
	// The member's own referrals, as its gateway sealed them, held back by
	// the broker: the member frames them itself.
	var mu sync.Mutex
	var sealed [][]byte
	c.net.SetTap(func(to, from string, env []byte) {
		mu.Lock()
		defer mu.Unlock()
		if to == "shelter" && from == "iom" {
			sealed = append(sealed, env)
		}
	})
	c.net.SetHold(func(to, from string, env []byte) bool { return to == "shelter" })
	var ids []string
	for range maxParts + 3 { // one for the good bundle, one to nest, maxParts+1 too many
		ids = append(ids, c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter")).ID)
	}
	mu.Lock()
	envs := sealed
	mu.Unlock()
	if len(envs) != len(ids) {
		t.Fatalf("%d envelopes published for %d referrals", len(envs), len(ids))
	}
	good, nested, many := envs[0], envs[1], envs[2:]
	policeSigned := c.seal("police", "shelter", crypto.KindStatus, forgedStatus(ids[0], "accepted", "police/x", c.clock.Now()))
	c.net.Inject("shelter", "iom", frame(good, policeSigned, []byte("RJKE not an envelope"), frame(nested, []byte("x"))))
	c.net.Inject("shelter", "iom", frame(many...))
	c.waitStatus("shelter", refRead, ids[0], "delivered")
	deadline := time.Now().Add(10 * time.Second)
	for c.net.Len("shelter") > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := c.net.Len("shelter"); n != 0 {
		t.Fatalf("%d messages left in the shelter's inbox", n)
	}
	for i, id := range ids[1:] {
		if _, err := c.gws["shelter"].Item(c.staff("shelter"), refRead, id); err == nil {
			t.Fatalf("referral %d (%s) of a hostile bundle was stored", i+1, id)
		}
	}
	if it := c.item("shelter", refRead, ids[0]); it.Status != "delivered" {
		t.Fatalf("a status signed by the police changed the shelter's copy to %q", it.Status)
	}
}

// maxParts is the most envelopes a bundle may carry (bundle.go).
const maxParts = 16

// Requests that publish at once join: while a publish to a recipient is on
// its way (slowed here), referrals to it wait and go together in the next
// broker message. Each arrives once, and each sender's record says so.
func TestConcurrentSendsJoin(t *testing.T) {
	c := mustCore(t)
	var mu sync.Mutex
	var messages, bundled int
	c.net.SetTap(func(to, from string, env []byte) {
		if to != "shelter" || from != "iom" {
			return
		}
		mu.Lock()
		messages++
		if bytes.HasPrefix(env, []byte("RJKB")) {
			bundled++
		}
		mu.Unlock()
		time.Sleep(50 * time.Millisecond) // a slow broker
	})
	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ids[i] = c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter")).ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		c.waitStatus("iom", refRead, id, "delivered")
		c.waitStatus("shelter", refRead, id, "delivered")
	}
	page, err := c.gws["shelter"].List(c.staff("shelter"), gateway.ListQuery{Box: "inbox", Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != n {
		t.Fatalf("shelter holds %d referrals, want %d", len(page.Items), n)
	}
	mu.Lock()
	defer mu.Unlock()
	if bundled == 0 || messages >= n {
		t.Fatalf("%d referrals sent at once went in %d broker messages, %d of them bundles", n, messages, bundled)
	}
	t.Logf("%d referrals in %d broker messages (%d bundles)", n, messages, bundled)
}
