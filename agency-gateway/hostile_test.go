package gateway_test

// A member agency with its own valid keys, used against the others:
// forged states, backdated envelopes, reused ids, repeated refusals,
// waiting envelopes that try to wait forever, free text in paths.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// sealH seals like c.seal but with a chosen envelope id and created time,
// as a hostile member holding its own keys can.
func (c *core) sealH(from, to, kind, id string, created time.Time, body any) []byte {
	c.t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		c.t.Fatal(err)
	}
	authority, _ := crypto.ParseAuthorityKey("@" + filepath.Join(c.data, "authority", "authority.pub"))
	dir, err := crypto.LoadDirectory(filepath.Join(c.data, "network.json"), authority)
	if err != nil {
		c.t.Fatal(err)
	}
	rcpt, _ := dir.Agency(to)
	if id == "" {
		id = crypto.NewID()
	}
	created = created.UTC()
	env, err := crypto.Seal(crypto.Header{ID: id, Kind: kind, From: from, To: to, Created: created,
		Expires: c.clock.Now().UTC().Add(time.Hour)}, raw, c.keys[from].Signer, rcpt)
	if err != nil {
		c.t.Fatal(err)
	}
	return env
}

func forgedStatus(ref, status, by string, at time.Time) map[string]any {
	return map[string]any{"ref": ref, "status": status, "by": by, "at": at.UTC().Format(time.RFC3339Nano)}
}

// The sender of a referral cannot announce a recipient's state
// (completed) on the recipient's copy: status envelopes carry only the
// states of the sender's role, and precedence applies only to changes
// that crossed.
func TestSenderCannotCompleteForRecipient(t *testing.T) {
	c := mustCore(t)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("shelter", refRead, acc.ID, "delivered")
	if _, err := c.gws["shelter"].Get(context.Background(), c.staff("shelter"), acc.ID); err != nil {
		t.Fatal(err)
	}
	c.mustSend("shelter", "status", refStatus, acc.ID, map[string]string{"status": "accepted"})
	c.waitStatus("iom", refRead, acc.ID, "accepted")
	// IOM (hostile) says "completed": only the recipient may complete.
	c.net.Inject("shelter", "iom", c.seal("iom", "shelter", crypto.KindStatus,
		forgedStatus(acc.ID, "completed", "iom/x", c.clock.Now())))
	time.Sleep(400 * time.Millisecond)
	if it := c.item("shelter", refRead, acc.ID); it.Status != "accepted" {
		t.Fatalf("sender forced the recipient's copy to %q (timeline %v)", it.Status, events(it))
	}
}

// Nor decline it on the recipient's behalf.
func TestSenderCannotDeclineForRecipient(t *testing.T) {
	c := mustCore(t)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("shelter", refRead, acc.ID, "delivered")
	c.net.Inject("shelter", "iom", c.seal("iom", "shelter", crypto.KindStatus,
		forgedStatus(acc.ID, "declined", "iom/x", c.clock.Now())))
	time.Sleep(400 * time.Millisecond)
	if it := c.item("shelter", refRead, acc.ID); it.Status != "delivered" {
		t.Fatalf("sender declined on the recipient's behalf: %q (timeline %v)", it.Status, events(it))
	}
}

// A referral withdrawn long ago is not turned "completed" by a later
// status from the recipient: precedence is for changes that crossed.
func TestLateCompletionDoesNotReopenWithdrawn(t *testing.T) {
	c := mustCore(t)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("shelter", refRead, acc.ID, "delivered")
	c.mustSend("iom", "status", refStatus, acc.ID, map[string]string{"status": "withdrawn"})
	c.waitStatus("shelter", refRead, acc.ID, "withdrawn")
	c.clock.Advance(24 * time.Hour)
	c.net.Inject("iom", "shelter", c.seal("shelter", "iom", crypto.KindStatus,
		forgedStatus(acc.ID, "completed", "shelter/x", c.clock.Now())))
	time.Sleep(400 * time.Millisecond)
	if it := c.item("iom", refRead, acc.ID); it.Status != "withdrawn" {
		t.Fatalf("withdrawn referral became %q a day later (timeline %v)", it.Status, events(it))
	}
}

// The police (the requester) cannot mark the holding agency's copy
// "answered".
func TestPoliceCannotAnswerForShelter(t *testing.T) {
	c := mustCore(t)
	id := openedRequest(t, c, 72*time.Hour)
	c.mustSend("shelter", "consent", srConsent, id, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "written", "person": map[string]any{"age": 30}})
	c.waitStatus("police", srRead, id, "consent-given")
	c.net.Inject("shelter", "police", c.seal("police", "shelter", crypto.KindStatus,
		forgedStatus(id, "answered", "police/x", c.clock.Now())))
	time.Sleep(400 * time.Millisecond)
	if it := c.item("shelter", srRead, id); it.Status != "consent-given" {
		t.Fatalf("police forced the shelter's request to %q (timeline %v)", it.Status, events(it))
	}
}

func stmtBody(ref string, recordedAt time.Time) map[string]any {
	return map[string]any{"ref": ref,
		"statement": map[string]any{"text": "late", "language": "id", "taken_at": recordedAt.UTC().Format(time.RFC3339), "taken_by": "shelter/x"},
		"consent": map[string]any{"given": true, "purposes": []string{"statement"}, "method": "written",
			"recorded_by": "shelter/x", "recorded_at": recordedAt.UTC().Format(time.RFC3339)},
		"person": map[string]any{"age": 30}}
}

// A statement sealed a day after the due date and backdated (the header's
// Created is the sender's word) is refused for an expired request.
func TestBackdatedStatementAfterDue(t *testing.T) {
	c := mustCore(t)
	id := openedRequest(t, c, time.Hour)
	c.clock.Advance(25 * time.Hour)
	c.waitStatus("police", srRead, id, "expired")
	backdated := c.clock.Now().Add(-25 * time.Hour) // before the due date
	c.net.Inject("police", "shelter", c.sealH("shelter", "police", crypto.KindStatement, "", backdated,
		stmtBody(id, backdated.Add(-time.Minute))))
	time.Sleep(400 * time.Millisecond)
	if it := c.item("police", srRead, id); it.Status != "expired" {
		t.Fatalf("a statement sealed a day after the due date was accepted: %q", it.Status)
	}
}

// A statement envelope reusing the request's own id cannot overwrite the
// police's stored request envelope.
func TestStatementReusingAnID(t *testing.T) {
	c := mustCore(t)
	id := openedRequest(t, c, 72*time.Hour)
	c.mustSend("shelter", "consent", srConsent, id, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "written", "person": map[string]any{"age": 30}})
	c.waitStatus("police", srRead, id, "consent-given")
	now := c.clock.Now()
	c.net.Inject("police", "shelter", c.sealH("shelter", "police", crypto.KindStatement, id, now, stmtBody(id, now.Add(-time.Minute))))
	time.Sleep(400 * time.Millisecond)
	var recHash, envHash string
	c.gws["police"].DB().View(func(tx *store.Tx) error {
		rec, err := tx.Record(id)
		if err != nil {
			return err
		}
		env, _ := tx.Envelope(id)
		h := crypto.EnvelopeHash(env)
		recHash, envHash = rec.EnvelopeHash, hex.EncodeToString(h[:])
		return nil
	})
	if recHash != envHash {
		t.Fatalf("the police's stored request envelope %s was overwritten by the statement (record status %q)",
			id, c.item("police", srRead, id).Status)
	}
}

// A referral backdated to before its consent expired is refused: consent
// is checked when the referral arrives.
func TestBackdatedReferralWithExpiredConsent(t *testing.T) {
	c := mustCore(t)
	now := c.clock.Now()
	r := referral("shelter")
	r["consent"] = map[string]any{"given": true, "purposes": []string{"services"}, "method": "written",
		"recorded_by": "iom/x", "recorded_at": now.Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		"expires_at": now.Add(-24 * time.Hour).UTC().Format(time.RFC3339)}
	id := crypto.NewID()
	c.net.Inject("shelter", "iom", c.sealH("iom", "shelter", crypto.KindReferral, id, now.Add(-48*time.Hour), r))
	time.Sleep(400 * time.Millisecond)
	if it, err := c.gws["shelter"].Item(c.staff("shelter"), refRead, id); err == nil {
		t.Fatalf("referral with consent expired a day ago accepted (status %q)", it.Status)
	}
}

// Re-publishing a waiting envelope does not restart its clock: it is
// refused in the end.
func TestWaitingCopyKeepsItsClock(t *testing.T) {
	c := mustCore(t) // WaitRetry 50ms: the limit is 12*50ms = 600ms
	env := c.seal("shelter", "iom", crypto.KindStatus, forgedStatus(crypto.NewID(), "accepted", "shelter/x", c.clock.Now()))
	stop := time.Now().Add(3 * time.Second)
	for time.Now().Before(stop) {
		c.net.Inject("iom", "shelter", env)
		time.Sleep(300 * time.Millisecond)
	}
	for _, e := range c.audit("iom") {
		if e.Reason == "reference-unknown" {
			return
		}
	}
	t.Fatal("an envelope waited 3s (5x the limit) and was never refused: its clock is reset by each copy")
}

// Copies of a refused envelope are refused quietly: one audit event and
// one signed receipt, however often it is published.
func TestRefusedCopiesAreQuiet(t *testing.T) {
	c := mustCore(t)
	env := c.seal("shelter", "police", crypto.KindStatement, stmtBody("made-up", c.clock.Now().Add(-time.Minute)))
	for range 30 {
		c.net.Inject("police", "shelter", env)
	}
	time.Sleep(800 * time.Millisecond)
	n := 0
	for _, e := range c.audit("police") {
		if e.Outcome == "rejected" {
			n++
		}
	}
	if n > 1 {
		t.Fatalf("one envelope refused and audited %d times (one signed receipt stored each time)", n)
	}
}

// Controls: the same envelopes, honestly dated, are refused.
func TestHonestDatesRefused(t *testing.T) {
	c := mustCore(t)
	now := c.clock.Now()
	r := referral("shelter")
	r["consent"] = map[string]any{"given": true, "purposes": []string{"services"}, "method": "written",
		"recorded_by": "iom/x", "recorded_at": now.Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		"expires_at": now.Add(-24 * time.Hour).UTC().Format(time.RFC3339)}
	id := crypto.NewID()
	c.net.Inject("shelter", "iom", c.sealH("iom", "shelter", crypto.KindReferral, id, now, r))
	e := c.waitAudit("shelter", func(e store.AuditEvent) bool { return e.Outcome == "rejected" && e.Object == id })
	t.Logf("honest referral refused: %s", e.Reason)

	sr := openedRequest(t, c, time.Hour)
	c.clock.Advance(25 * time.Hour)
	c.waitStatus("police", srRead, sr, "expired")
	sid := crypto.NewID()
	n := c.clock.Now()
	c.net.Inject("police", "shelter", c.sealH("shelter", "police", crypto.KindStatement, sid, n, stmtBody(sr, n.Add(-time.Minute))))
	e = c.waitAudit("police", func(e store.AuditEvent) bool { return e.Outcome == "rejected" && e.Object == sid })
	t.Logf("honest late statement refused: %s", e.Reason)
}

// The holding agency cannot mark the police's request "answered" with a
// status envelope: only a statement answers.
func TestStatusCannotAnswer(t *testing.T) {
	c := mustCore(t)
	id := openedRequest(t, c, 72*time.Hour)
	c.mustSend("shelter", "consent", srConsent, id, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "written", "person": map[string]any{"age": 30}})
	c.waitStatus("police", srRead, id, "consent-given")
	c.net.Inject("police", "shelter", c.seal("shelter", "police", crypto.KindStatus,
		forgedStatus(id, "answered", "shelter/x", c.clock.Now())))
	time.Sleep(400 * time.Millisecond)
	if it := c.item("police", srRead, id); it.Status == "answered" {
		t.Fatalf("request answered by a status envelope, statement %v", it.Statement)
	}
}

// Free text in the place of an id (from a URL path) never reaches the
// audit log, even when the request is refused for its scope.
func TestPathTextNotAudited(t *testing.T) {
	c := mustCore(t)
	p := c.staff("shelter")
	p.Scopes = []string{policy.ScopeAuditRead}
	name := "Siti Aminah, born 2009, Desa Sukamaju"
	c.gws["shelter"].Item(p, refRead, name)
	for _, e := range c.audit("shelter") {
		if e.Object == name {
			t.Fatalf("free text from the URL in the audit log: %+v", e)
		}
	}
}
