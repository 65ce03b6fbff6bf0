package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// wire records the envelopes published on a core's bus: kind and form
// (RJKE hybrid, RJKT thread) by sender and recipient.
type wire struct {
	mu   sync.Mutex
	seen []string
}

func tapWire(c *core) *wire {
	w := &wire{}
	c.net.SetTap(func(to, from string, env []byte) {
		h, _ := crypto.ParseHeader(env)
		w.mu.Lock()
		w.seen = append(w.seen, from+">"+to+" "+h.Kind+" "+string(env[:4]))
		w.mu.Unlock()
	})
	return w
}

// count returns how many envelopes matched "from>to kind form".
func (w *wire) count(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, e := range w.seen {
		if e == s {
			n++
		}
	}
	return n
}

func (w *wire) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.seen, "\n")
}

// TestThreadEnvelopes: a referral and a statement request are sealed to
// the recipient's hybrid key and carry a thread key; every receipt and
// status of theirs travels as a thread envelope, and both sides read it
// all. Staff never see the key.
func TestThreadEnvelopes(t *testing.T) {
	c := mustCore(t)
	w := tapWire(c)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("iom", refRead, acc.ID, "delivered")
	if _, err := c.gws["shelter"].Get(context.Background(), c.staff("shelter"), acc.ID); err != nil {
		t.Fatal(err)
	}
	c.waitStatus("iom", refRead, acc.ID, "read")
	c.mustSend("shelter", "status", refStatus, acc.ID, map[string]string{"status": "accepted", "reason": "bed free"})
	c.waitStatus("iom", refRead, acc.ID, "accepted")

	due := c.clock.Now().Add(72 * time.Hour)
	sr := c.mustSend("police", "statement-request", srSend, "", request("shelter", due))
	c.waitStatus("police", srRead, sr.ID, "delivered")
	if _, err := c.gws["shelter"].GetStatementRequest(context.Background(), c.staff("shelter"), sr.ID); err != nil {
		t.Fatal(err)
	}
	c.mustSend("shelter", "consent", srConsent, sr.ID, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "written", "person": map[string]any{"age": 24}})
	c.waitStatus("police", srRead, sr.ID, "consent-given")
	c.mustSend("shelter", "statement", srResponse, sr.ID, map[string]any{"statement": map[string]any{
		"text": "He took our passports.", "language": "id", "taken_at": c.clock.Now().UTC().Format(time.RFC3339),
		"taken_by": "shelter/officer-2"}})
	c.waitStatus("police", srRead, sr.ID, "answered")
	if _, err := c.gws["police"].GetStatementRequest(context.Background(), c.staff("police"), sr.ID); err != nil {
		t.Fatal(err)
	}
	// The shelter hears of the statement's delivery and reading.
	deadline := time.Now().Add(10 * time.Second)
	for w.count("police>shelter receipt RJKT") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for s, want := range map[string]int{
		"iom>shelter referral RJKE":             1,
		"shelter>iom receipt RJKT":              2, // delivered, read
		"shelter>iom status RJKT":               1,
		"police>shelter statement-request RJKE": 1,
		"shelter>police receipt RJKT":           2,
		"shelter>police status RJKT":            1, // consent given
		"shelter>police statement RJKE":         1,
		"police>shelter receipt RJKT":           2, // the statement delivered and read
	} {
		if got := w.count(s); got != want {
			t.Errorf("%d × %q, want %d; on the wire:\n%s", got, s, want, w.all())
		}
	}
	if n := strings.Count(w.all(), "receipt RJKE") + strings.Count(w.all(), "status RJKE"); n != 0 {
		t.Errorf("%d receipts or statuses sealed to a hybrid key:\n%s", n, w.all())
	}
	// The receipts verify, and staff see no key on either side.
	for _, side := range []string{"iom", "shelter"} {
		rs, err := c.gws[side].Receipts(c.staff(side), acc.ID)
		if err != nil || len(rs) < 2 {
			t.Fatalf("%s: receipts %v %v", side, rs, err)
		}
		for _, r := range rs {
			if !r.Verified {
				t.Errorf("%s: receipt %+v does not verify", side, r)
			}
		}
		it := c.item(side, refRead, acc.ID)
		if b, _ := json.Marshal(it); bytes.Contains(b, []byte("thread")) {
			t.Errorf("%s shows the thread key: %s", side, b)
		}
	}
	for _, side := range []string{"police", "shelter"} {
		it := c.item(side, srRead, sr.ID)
		if b, _ := json.Marshal(it); bytes.Contains(b, []byte("thread")) {
			t.Errorf("%s shows the thread key: %s", side, b)
		}
	}
	// A caller cannot set the thread key.
	body := referral("shelter")
	body["thread_key"] = crypto.NewThreadKey().String()
	var inv *gateway.InvalidError
	if _, err := c.send("iom", "referral", policy.ActionReferralSend, "", body); !errors.As(err, &inv) {
		t.Errorf("a referral with a thread key from the caller: %v", err)
	}
}

// TestHostileThreads: a member agency, with its own valid keys, cannot
// reuse a thread key, use another pair's thread, or park envelopes of
// threads that do not exist beyond its waiting share.
func TestHostileThreads(t *testing.T) {
	c := mustCore(t)
	var referralEnv []byte
	c.net.SetTap(func(to, from string, env []byte) {
		if h, _ := crypto.ParseHeader(env); h.Kind == crypto.KindReferral {
			referralEnv = bytes.Clone(env)
		}
	})
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("iom", refRead, acc.ID, "delivered")
	c.net.SetTap(nil)

	// The shelter sends iom a referral whose thread key is the one of
	// iom's referral to it, which it knows: refused, and the thread stays
	// iom's.
	key := threadKeyOf(t, c, "shelter", referralEnv)
	body := referral("iom")
	body["thread_key"] = key.String()
	body["consent"].(map[string]any)["recorded_by"] = "shelter/caseworker-1"
	c.net.Inject("iom", "shelter", c.seal("shelter", "iom", "referral", body))
	e := c.waitAudit("iom", func(e store.AuditEvent) bool { return e.Action == gateway.ActEnvelopeReject })
	if e.Reason != gateway.ReasonThreadReused {
		t.Fatalf("a reused thread key: %+v", e)
	}

	// A malformed thread key is an invalid body.
	body["thread_key"] = "not-a-key"
	c.net.Inject("iom", "shelter", c.seal("shelter", "iom", "referral", body))
	c.waitAudit("iom", func(e store.AuditEvent) bool {
		return e.Action == gateway.ActEnvelopeReject && e.Reason == gateway.ReasonBodyInvalid
	})

	// The police are not in the thread: even with its key (leaked), a
	// status of theirs in it is not for iom, which shares it with the
	// shelter only.
	iom, _ := c.directory().Agency("iom")
	now := c.clock.Now().UTC()
	header := func(from string) crypto.Header {
		return crypto.Header{ID: crypto.NewID(), Kind: crypto.KindStatus, From: from, To: "iom", Created: now, Expires: now.Add(time.Hour)}
	}
	status, _ := json.Marshal(map[string]any{"ref": acc.ID, "status": "accepted", "by": "x/y", "at": now})
	forged, err := crypto.SealThread(header("police"), status, c.keys["police"].Signer, iom, key)
	if err != nil {
		t.Fatal(err)
	}
	c.net.Inject("iom", "police", forged)
	c.waitAudit("iom", func(e store.AuditEvent) bool {
		return e.Action == gateway.ActEnvelopesRefused && e.Actor == "peer:police" && e.Detail["refused."+crypto.ReasonNotForUs] == "1"
	})
	if it := c.item("iom", refRead, acc.ID); it.Status != "delivered" {
		t.Fatalf("a forged status moved the referral to %s", it.Status)
	}

	// Statuses in threads iom does not know wait, and the shelter's share
	// of waiting envelopes bounds them.
	for range 70 {
		env, err := crypto.SealThread(header("shelter"), []byte(`{}`), c.keys["shelter"].Signer, iom, crypto.NewThreadKey())
		if err != nil {
			t.Fatal(err)
		}
		c.net.Inject("iom", "shelter", env)
	}
	c.waitAudit("iom", func(e store.AuditEvent) bool {
		return e.Reason == gateway.ReasonTooManyWaiting || e.Detail["refused."+gateway.ReasonTooManyWaiting] != ""
	})
	// The referral's own thread still works.
	if _, err := c.gws["shelter"].Get(context.Background(), c.staff("shelter"), acc.ID); err != nil {
		t.Fatal(err)
	}
	c.mustSend("shelter", "status", refStatus, acc.ID, map[string]string{"status": "accepted"})
	c.waitStatus("iom", refRead, acc.ID, "accepted")
}

// threadKeyOf reads the thread key from a referral envelope sealed to
// agency to, as that agency (a party to the thread) can.
func threadKeyOf(t *testing.T, c *core, to string, env []byte) crypto.ThreadKey {
	t.Helper()
	o, err := crypto.NewOpener(to, c.directory(), c.keys[to].Identity)
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := o.OpenStored(env)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		ThreadKey string `json:"thread_key"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	k, err := crypto.ParseThreadKey(r.ThreadKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
