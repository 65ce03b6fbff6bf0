package gateway_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

const (
	refRead    = policy.ActionReferralRead
	refStatus  = policy.ActionReferralStatus
	srRead     = policy.ActionStatementRequestRead
	srSend     = policy.ActionStatementRequestSend
	srConsent  = policy.ActionConsentRecord
	srResponse = policy.ActionStatementRespond
)

func events(it gateway.Item) []string {
	var out []string
	for _, e := range it.Timeline {
		out = append(out, e.Event)
	}
	return out
}

// TestReferralFlow drives a referral through every recipient edge of the
// referral machine and checks both sides agree.
func TestReferralFlow(t *testing.T) {
	c := mustCore(t)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	if acc.Status != "sent" {
		t.Fatalf("status %q, want sent", acc.Status)
	}
	c.waitStatus("iom", refRead, acc.ID, "delivered")
	it, err := c.gws["shelter"].Get(context.Background(), c.staff("shelter"), acc.ID)
	if err != nil || it.Status != "read" {
		t.Fatalf("open at the shelter: %v %q", err, it.Status)
	}
	c.waitStatus("iom", refRead, acc.ID, "read")
	for _, s := range []string{"accepted", "in-progress", "completed"} {
		c.mustSend("shelter", "status", refStatus, acc.ID, map[string]string{"status": s, "reason": "note " + s})
		c.waitStatus("iom", refRead, acc.ID, s)
	}
	got := events(c.item("iom", refRead, acc.ID))
	want := []string{"queued", "sent", "delivered", "read", "accepted", "in-progress", "completed"}
	if !slices.Equal(got, want) {
		t.Fatalf("sender's timeline %v, want %v (in the order of events)", got, want)
	}
	for _, e := range c.item("iom", refRead, acc.ID).Timeline {
		if e.Clock == "" || (!strings.Contains(e.By, "/") && e.By != "iom" && e.By != "shelter") {
			t.Errorf("timeline entry %+v: by is not agency or agency/subject, or no clock", e)
		}
	}
	// Illegal: completed is final.
	if _, err := c.send("shelter", "status", refStatus, acc.ID, map[string]string{"status": "accepted"}); !errors.Is(err, policy.ErrConflict) {
		t.Fatalf("completed -> accepted: %v, want a conflict", err)
	}
}

// TestDeclineUnopened: a recipient may decline a referral it has only
// seen in the list.
func TestDeclineUnopened(t *testing.T) {
	c := mustCore(t)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("shelter", refRead, acc.ID, "delivered")
	c.mustSend("shelter", "status", refStatus, acc.ID, map[string]string{"status": "declined", "reason": "no bed free"})
	it := c.waitStatus("iom", refRead, acc.ID, "declined")
	if n := it.Timeline[len(it.Timeline)-1].Note; n != "no bed free" {
		t.Fatalf("reason at the sender %q", n)
	}
}

// TestConcurrentDeclineWithdraw: a decline and a withdraw sent at the same
// moment end withdrawn on both sides (the documented precedence), and
// nobody is refused.
func TestConcurrentDeclineWithdraw(t *testing.T) {
	c := mustCore(t)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("iom", refRead, acc.ID, "delivered")
	c.net.SetDown(true)
	c.mustSend("shelter", "status", refStatus, acc.ID, map[string]string{"status": "declined"})
	c.mustSend("iom", "status", refStatus, acc.ID, map[string]string{"status": "withdrawn"})
	c.net.SetDown(false)
	c.waitStatus("shelter", refRead, acc.ID, "withdrawn")
	c.waitStatus("iom", refRead, acc.ID, "withdrawn")
	c.waitAudit("iom", func(e store.AuditEvent) bool { return e.Outcome == "superseded" })
	time.Sleep(200 * time.Millisecond)
	for _, id := range []string{"iom", "shelter"} {
		for _, e := range c.audit(id) {
			if e.Outcome == "rejected" {
				t.Errorf("%s refused an envelope: %+v", id, e)
			}
		}
	}
}

// TestConcurrentCompleteWithdraw: completion wins over a withdrawal.
func TestConcurrentCompleteWithdraw(t *testing.T) {
	c := mustCore(t)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("shelter", refRead, acc.ID, "delivered")
	c.gws["shelter"].Get(context.Background(), c.staff("shelter"), acc.ID)
	c.mustSend("shelter", "status", refStatus, acc.ID, map[string]string{"status": "accepted"})
	c.mustSend("shelter", "status", refStatus, acc.ID, map[string]string{"status": "in-progress"})
	c.waitStatus("iom", refRead, acc.ID, "in-progress")
	c.net.SetDown(true)
	c.mustSend("shelter", "status", refStatus, acc.ID, map[string]string{"status": "completed"})
	c.mustSend("iom", "status", refStatus, acc.ID, map[string]string{"status": "withdrawn"})
	c.net.SetDown(false)
	c.waitStatus("iom", refRead, acc.ID, "completed")
	c.waitStatus("shelter", refRead, acc.ID, "completed")
}

// TestStatementFlow: request, read, consent given, statement, read at the
// police, receipts on both sides, and the audit holds the statement's hash
// but not its text.
func TestStatementFlow(t *testing.T) {
	c := mustCore(t)
	due := c.clock.Now().Add(72 * time.Hour)
	acc := c.mustSend("police", "statement-request", srSend, "", request("shelter", due))
	c.waitStatus("police", srRead, acc.ID, "delivered")
	if _, err := c.gws["shelter"].GetStatementRequest(context.Background(), c.staff("shelter"), acc.ID); err != nil {
		t.Fatal(err)
	}
	c.waitStatus("police", srRead, acc.ID, "read")
	c.mustSend("shelter", "consent", srConsent, acc.ID, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "written", "notes": "asked twice, calm", "person": map[string]any{"age": 24}})
	it := c.waitStatus("police", srRead, acc.ID, "consent-given")
	for _, e := range it.Timeline {
		if strings.Contains(e.Note, "calm") {
			t.Fatal("consent notes reached the police")
		}
	}
	c.mustSend("shelter", "statement", srResponse, acc.ID, map[string]any{"statement": map[string]any{
		"text": "He took our passports at the harbour.", "language": "id", "taken_at": c.clock.Now().UTC().Format(time.RFC3339),
		"taken_by": "shelter/officer-2"}})
	c.waitStatus("police", srRead, acc.ID, "answered")
	got, err := c.gws["police"].GetStatementRequest(context.Background(), c.staff("police"), acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Statement == nil || got.Statement.Text != "He took our passports at the harbour." {
		t.Fatalf("statement at the police: %+v", got.Statement)
	}
	if got.Consent == nil || got.Consent.Method != "written" || !strings.HasPrefix(got.Consent.RecordedBy, "shelter/") || got.Consent.RecordedAt.IsZero() {
		t.Fatalf("consent record at the police: %+v", got.Consent)
	}
	c.waitAudit("shelter", func(e store.AuditEvent) bool { return e.Outcome == "statement-read" })
	rs, err := c.gws["shelter"].StatementRequestReceipts(c.staff("shelter"), acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	var evs []string
	for _, r := range rs {
		if !r.Verified {
			t.Errorf("receipt %+v does not verify", r)
		}
		evs = append(evs, r.Event)
	}
	slices.Sort(evs)
	if !slices.Equal(evs, []string{"delivered", "delivered", "read", "read"}) {
		t.Fatalf("receipts at the shelter: %v", evs)
	}
	var hashed bool
	for _, id := range []string{"police", "shelter"} {
		for _, e := range c.audit(id) {
			if e.Detail["statement_sha256"] != "" {
				hashed = true
			}
			for _, v := range append([]string{e.Actor, e.Object, e.Reason, e.Outcome}, valuesOf(e.Detail)...) {
				if strings.Contains(v, "passports") || strings.Contains(v, "V-2026") || strings.Contains(v, "calm") {
					t.Fatalf("audit event carries personal data: %+v", e)
				}
			}
		}
	}
	if !hashed {
		t.Fatal("no audit event names the statement's hash")
	}
}

func valuesOf(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// openedRequest is a request from the police to the shelter, opened there.
func openedRequest(t *testing.T, c *core, due time.Duration) string {
	t.Helper()
	acc := c.mustSend("police", "statement-request", srSend, "", request("shelter", c.clock.Now().Add(due)))
	c.waitStatus("shelter", srRead, acc.ID, "delivered")
	if _, err := c.gws["shelter"].GetStatementRequest(context.Background(), c.staff("shelter"), acc.ID); err != nil {
		t.Fatal(err)
	}
	return acc.ID
}

var statement = map[string]any{"statement": map[string]any{"text": "x", "language": "id",
	"taken_at": "2026-11-30T10:00:00Z", "taken_by": "shelter/officer-2"}}

// TestStatementRules: refusals at the holding agency.
func TestStatementRules(t *testing.T) {
	c := mustCore(t)
	id := openedRequest(t, c, 72*time.Hour)
	// Consent refused, then a statement: 403.
	c.mustSend("shelter", "consent", srConsent, id, map[string]any{"given": false, "method": "verbal", "person": map[string]any{"age": 30}})
	c.waitStatus("police", srRead, id, "consent-refused")
	if _, err := c.send("shelter", "statement", srResponse, id, statement); !errors.Is(err, policy.ErrDenied) {
		t.Fatalf("statement after consent refused: %v", err)
	}
	// A minor with verbal consent and no witness: 403.
	if _, err := c.send("shelter", "consent", srConsent, id, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "verbal", "person": map[string]any{"age": 16}}); policy.ReasonOf(err) != policy.ReasonConsentMinor {
		t.Fatalf("minor, verbal, no witness: %v", err)
	}
	// The age is required when the request names no referral held here.
	if _, err := c.send("shelter", "consent", srConsent, id, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "written"}); err == nil {
		t.Fatal("consent without the person's age accepted")
	}
	// Declining is always allowed.
	c.mustSend("shelter", "statement", srResponse, id, map[string]any{"decline": map[string]any{"reason": "risk-to-victim", "detail": "trial fear"}})
	it := c.waitStatus("police", srRead, id, "declined")
	if last := it.Timeline[len(it.Timeline)-1]; last.Reason != "risk-to-victim" {
		t.Fatalf("decline reason at the police: %+v", last)
	}
	// A statement for a request the shelter does not hold: 403.
	if _, err := c.send("shelter", "statement", srResponse, "no-such-request", statement); !errors.Is(err, policy.ErrDenied) {
		t.Fatalf("statement without a request: %v", err)
	}
}

// TestStatementRequestSenders: only police staff with statement:request.
func TestStatementRequestSenders(t *testing.T) {
	c := mustCore(t)
	body := request("shelter", c.clock.Now().Add(time.Hour))
	if _, err := c.send("dinsos", "statement-request", srSend, "", body); !errors.Is(err, policy.ErrInsufficientScope) {
		t.Fatalf("dinsos staff: %v", err)
	}
	p := c.staff("dinsos")
	p.Scopes = append(p.Scopes, policy.ScopeStatementRequest)
	raw := []byte(`{"to":"shelter","pseudonym":"V-2026-0077","legal_basis":"LP/1","purpose":"investigation","questions":["q"],"due":"` +
		c.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`)
	if _, err := c.gws["dinsos"].Send(context.Background(), p, gateway.Draft{Kind: "statement-request", Action: srSend, Body: raw}); !errors.Is(err, policy.ErrDenied) {
		t.Fatalf("dinsos with the scope: %v, want denied by the network rules", err)
	}
	officer := c.staff("police")
	officer.Scopes = []string{policy.ScopeStatementRead}
	if _, err := c.gws["police"].Send(context.Background(), officer, gateway.Draft{Kind: "statement-request", Action: srSend, Body: raw}); !errors.Is(err, policy.ErrInsufficientScope) {
		t.Fatalf("officer without statement:request: %v", err)
	}
}

// TestStatementPastDue: past due the request is expired on both sides and
// no consent or response is accepted.
func TestStatementPastDue(t *testing.T) {
	c := mustCore(t)
	id := openedRequest(t, c, time.Hour)
	c.clock.Advance(2 * time.Hour)
	c.waitStatus("shelter", srRead, id, "expired")
	c.waitStatus("police", srRead, id, "expired")
	if _, err := c.send("shelter", "consent", srConsent, id, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "written", "person": map[string]any{"age": 30}}); !errors.Is(err, policy.ErrDenied) {
		t.Fatalf("consent after due: %v", err)
	}
	if _, err := c.send("shelter", "statement", srResponse, id, statement); !errors.Is(err, policy.ErrDenied) {
		t.Fatalf("response after due: %v", err)
	}
}

// TestForgedStatement: a statement sealed with the shelter's own keys,
// bypassing its gateway, for no open request: the police refuse it with a
// signed rejected receipt and audit it under the shelter.
func TestForgedStatement(t *testing.T) {
	c := mustCore(t)
	env := c.seal("shelter", "police", crypto.KindStatement, map[string]any{"ref": "made-up-request",
		"statement": map[string]any{"text": "forged", "language": "id", "taken_at": "2026-11-30T10:00:00Z", "taken_by": "shelter/x"},
		"consent": map[string]any{"given": true, "purposes": []string{"statement"}, "method": "written",
			"recorded_by": "shelter/x", "recorded_at": "2026-11-30T10:00:00Z"},
		"person": map[string]any{"age": 30}})
	before := c.net.Published
	c.net.Inject("police", "shelter", env)
	e := c.waitAudit("police", func(e store.AuditEvent) bool { return e.Outcome == "rejected" })
	if e.Actor != "peer:shelter" || e.Reason == "" {
		t.Fatalf("audit of the forged statement: %+v", e)
	}
	c.waitAudit("shelter", func(e store.AuditEvent) bool { return e.Action == gateway.ActEnvelopeReject })
	if c.net.Published == before {
		t.Fatal("no rejected receipt was published")
	}
}

// TestStatementToAnotherPolice: an answer to police A's request delivered
// to police B is refused.
func TestStatementToAnotherPolice(t *testing.T) {
	c := mustCore(t, agency{"police", "police"}, agency{"police-b", "police"}, agency{"shelter", "shelter"})
	id := openedRequest(t, c, 72*time.Hour)
	env := c.seal("shelter", "police-b", crypto.KindStatement, map[string]any{"ref": id,
		"statement": map[string]any{"text": "t", "language": "id", "taken_at": "2026-11-30T10:00:00Z", "taken_by": "shelter/x"},
		"consent": map[string]any{"given": true, "purposes": []string{"statement"}, "method": "written",
			"recorded_by": "shelter/x", "recorded_at": "2026-11-30T10:00:00Z"},
		"person": map[string]any{"age": 30}})
	c.net.Inject("police-b", "shelter", env)
	c.waitAudit("police-b", func(e store.AuditEvent) bool { return e.Outcome == "rejected" && e.Actor == "peer:shelter" })
}

// TestWaitingEnvelopesDoNotBlock: a member floods another with status
// envelopes about records that do not exist; they wait aside, a bounded
// number, are refused in the end, and other senders' referrals still
// arrive at once.
func TestWaitingEnvelopesDoNotBlock(t *testing.T) {
	c := mustCore(t)
	for range 300 {
		c.net.Inject("iom", "shelter", c.seal("shelter", "iom", crypto.KindStatus,
			map[string]any{"ref": crypto.NewID(), "status": "accepted", "by": "shelter/x", "at": "2026-11-30T10:00:00Z"}))
	}
	acc := c.mustSend("dinsos", "referral", policy.ActionReferralSend, "", referral("iom"))
	c.waitStatus("iom", refRead, acc.ID, "delivered")
	// Refused one by one while the sender's budget lasts, then counted in
	// its envelope.refused summary.
	c.waitRefused("iom", "shelter", gateway.ReasonTooManyWaiting)
	c.waitRefused("iom", "shelter", gateway.ReasonWaitedTooLong)
	if n := c.net.Len("iom"); n > 0 {
		t.Logf("%d envelopes still at the broker", n)
	}
}

// TestStatusBeforeReferral: a status that overtakes its referral waits and
// is applied when the referral arrives.
func TestStatusBeforeReferral(t *testing.T) {
	c := mustCore(t)
	c.net.SetDown(true)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.mustSend("iom", "status", refStatus, acc.ID, map[string]string{"status": "withdrawn"})
	c.net.SetDown(false)
	// Withdrawn before it was published: it never leaves.
	time.Sleep(300 * time.Millisecond)
	if _, err := c.gws["shelter"].Item(c.staff("shelter"), refRead, acc.ID); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("an unsent withdrawn referral reached the shelter: %v", err)
	}
}

// TestPoliceOverrideRefused: a referral sealed with the police's own keys
// that asks for a consent override is refused at the receiver: police
// staff may never override consent.
func TestPoliceOverrideRefused(t *testing.T) {
	c := mustCore(t)
	r := referral("shelter")
	r["priority"] = "urgent"
	delete(r, "consent")
	r["consent_override"] = map[string]any{"justification": "urgent removal from the boat"}
	c.net.Inject("shelter", "police", c.seal("police", "shelter", crypto.KindReferral, r))
	e := c.waitAudit("shelter", func(e store.AuditEvent) bool { return e.Outcome == "rejected" })
	if e.Reason != policy.ReasonOverrideScope {
		t.Fatalf("refusal reason %q, want %q", e.Reason, policy.ReasonOverrideScope)
	}
	// The same from IOM is an override, audited as one.
	r2 := referral("shelter")
	r2["priority"] = "urgent"
	delete(r2, "consent")
	r2["consent_override"] = map[string]any{"justification": "urgent removal from the boat"}
	c.net.Inject("shelter", "iom", c.seal("iom", "shelter", crypto.KindReferral, r2))
	c.waitAudit("shelter", func(e store.AuditEvent) bool { return e.Reason == "consent-override" && e.Actor == "peer:iom" })
}

// TestForwardedEnvelopeAttribution: an envelope of the shelter's forwarded
// by dinsos is refused and counted under dinsos, the sender the broker
// authenticated.
func TestForwardedEnvelopeAttribution(t *testing.T) {
	c := mustCore(t)
	c.net.Inject("iom", "dinsos", c.seal("shelter", "iom", crypto.KindReferral, referral("iom")))
	// Refused before it is opened: counted in the summary of the sender
	// the broker authenticated.
	e := c.waitAudit("iom", func(e store.AuditEvent) bool { return e.Outcome == "rejected" })
	if e.Actor != "peer:dinsos" || e.Action != gateway.ActEnvelopesRefused || e.Detail["refused.sender-mismatch"] != "1" {
		t.Fatalf("audit of a forwarded envelope: %+v", e)
	}
	// Garbage: not verified, still named by the authenticated sender.
	c.net.Inject("iom", "police", []byte("not an envelope"))
	e = c.waitAudit("iom", func(e store.AuditEvent) bool { return e.Outcome == "rejected" && e.Actor == "peer:police" })
	if e.Detail["unverified"] != "1" || e.Detail["refused.malformed"] != "1" || e.Object != "" {
		t.Fatalf("audit of garbage: %+v", e)
	}
}

// TestPseudonymNames: names with a digit added are not case codes.
func TestPseudonymNames(t *testing.T) {
	c := mustCore(t)
	for _, name := range []string{"Siti-Aminah-1990", "Siti.Aminah1", "aminah.siti.1", "Budi2"} {
		r := referral("shelter")
		r["person"].(map[string]any)["pseudonym"] = name
		_, err := c.send("iom", "referral", policy.ActionReferralSend, "", r)
		var inv *gateway.InvalidError
		if !errors.As(err, &inv) || inv.Fields[0].Field != "/person/pseudonym" || strings.Contains(inv.Error(), name) {
			t.Errorf("pseudonym %q: %v", name, err)
		}
		req := request("shelter", c.clock.Now().Add(time.Hour))
		req["pseudonym"] = name
		if _, err := c.send("police", "statement-request", srSend, "", req); !errors.As(err, &inv) {
			t.Errorf("request for pseudonym %q: %v", name, err)
		}
	}
}

// TestReferralEdges walks the edges of the referral machine that staff
// take, on both sides, and refuses illegal ones with a conflict.
func TestReferralEdges(t *testing.T) {
	cases := []struct {
		name  string
		steps [][2]string // agency, status
		bad   [2]string   // an illegal change afterwards
	}{
		{"decline after reading", [][2]string{{"shelter", "declined"}}, [2]string{"shelter", "accepted"}},
		{"withdraw accepted", [][2]string{{"shelter", "accepted"}, {"iom", "withdrawn"}}, [2]string{"shelter", "in-progress"}},
		{"withdraw in progress", [][2]string{{"shelter", "accepted"}, {"shelter", "in-progress"}, {"iom", "withdrawn"}}, [2]string{"iom", "completed"}},
		{"recipient cannot withdraw", [][2]string{{"shelter", "accepted"}}, [2]string{"shelter", "withdrawn"}},
		{"no skipping", nil, [2]string{"shelter", "completed"}},
	}
	c := mustCore(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
			c.waitStatus("shelter", refRead, acc.ID, "delivered")
			if _, err := c.gws["shelter"].Get(context.Background(), c.staff("shelter"), acc.ID); err != nil {
				t.Fatal(err)
			}
			c.waitStatus("iom", refRead, acc.ID, "read")
			for _, s := range tc.steps {
				c.mustSend(s[0], "status", refStatus, acc.ID, map[string]string{"status": s[1]})
				c.waitStatus("iom", refRead, acc.ID, s[1])
				c.waitStatus("shelter", refRead, acc.ID, s[1])
			}
			if _, err := c.send(tc.bad[0], "status", refStatus, acc.ID, map[string]string{"status": tc.bad[1]}); !errors.Is(err, policy.ErrConflict) {
				t.Fatalf("%s -> %s: %v, want a conflict", tc.bad[0], tc.bad[1], err)
			}
		})
	}
}

// TestUndeliveredFails: a referral and a statement request that never
// reach the broker fail at their delivery deadline, once.
func TestUndeliveredFails(t *testing.T) {
	c := mustCore(t)
	c.net.SetDown(true)
	ref := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	sr := c.mustSend("police", "statement-request", srSend, "", request("shelter", c.clock.Now().Add(2000*time.Hour)))
	if ref.Status != "queued" || sr.Status != "queued" {
		t.Fatalf("sent with the bus down: %q %q", ref.Status, sr.Status)
	}
	c.clock.Advance(721 * time.Hour)
	it := c.waitStatus("iom", refRead, ref.ID, "failed")
	if it.Outcome != "failed" {
		t.Fatalf("outcome %q", it.Outcome)
	}
	c.waitStatus("police", srRead, sr.ID, "failed")
}

// TestStatementRequestEdges: the holding agency's other edges.
func TestStatementRequestEdges(t *testing.T) {
	c := mustCore(t)
	// delivered -> declined, unopened.
	acc := c.mustSend("police", "statement-request", srSend, "", request("shelter", c.clock.Now().Add(time.Hour)))
	c.waitStatus("shelter", srRead, acc.ID, "delivered")
	c.mustSend("shelter", "statement", srResponse, acc.ID, map[string]any{"decline": map[string]any{"reason": "not-known"}})
	c.waitStatus("police", srRead, acc.ID, "declined")
	// consent-refused -> consent-given (the person changed their mind) ->
	// declined; then nothing more.
	id := openedRequest(t, c, time.Hour)
	c.mustSend("shelter", "consent", srConsent, id, map[string]any{"given": false, "method": "verbal", "person": map[string]any{"age": 30}})
	c.waitStatus("police", srRead, id, "consent-refused")
	c.mustSend("shelter", "consent", srConsent, id, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "written", "person": map[string]any{"age": 30}})
	c.waitStatus("police", srRead, id, "consent-given")
	c.mustSend("shelter", "statement", srResponse, id, map[string]any{"decline": map[string]any{"reason": "risk-to-victim"}})
	c.waitStatus("police", srRead, id, "declined")
	if _, err := c.send("shelter", "statement", srResponse, id, statement); err == nil {
		t.Fatal("a statement after a decline was accepted")
	}
	// The police cannot record consent or answer their own request.
	if _, err := c.send("police", "consent", srConsent, id, map[string]any{"given": true, "method": "written"}); err == nil {
		t.Fatal("the police recorded consent")
	}
}

// TestWitnessStaysWithHolder: a minor's statement with a social worker as
// witness reaches the police with the witness's role, not the name.
func TestWitnessStaysWithHolder(t *testing.T) {
	c := mustCore(t)
	id := openedRequest(t, c, 72*time.Hour)
	c.mustSend("shelter", "consent", srConsent, id, map[string]any{"given": true, "purposes": []string{"statement"},
		"method": "verbal", "witness_role": "social-worker", "witness": "Ibu Wulandari", "person": map[string]any{"age": 16}})
	c.mustSend("shelter", "statement", srResponse, id, statement)
	c.waitStatus("police", srRead, id, "answered")
	it := c.item("police", srRead, id)
	if it.Consent == nil || it.Consent.WitnessRole != "social-worker" || strings.Contains(it.Consent.Witness, "Wulandari") {
		t.Fatalf("consent at the police: %+v", it.Consent)
	}
	if own := c.item("shelter", srRead, id); own.Consent == nil || own.Consent.Witness != "Ibu Wulandari" {
		t.Fatalf("consent at the shelter: %+v", own.Consent)
	}
}

// TestWatch: a watcher hears of a referral that arrives.
func TestWatch(t *testing.T) {
	c := mustCore(t)
	ch, stop := c.gws["shelter"].Watch()
	defer stop()
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no signal for an arriving referral")
	}
}

// TestForgedReceipts: a receipt from an agency that is not the recipient,
// and one whose hash does not match, are refused and change nothing.
func TestForgedReceipts(t *testing.T) {
	c := mustCore(t)
	acc := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.waitStatus("iom", refRead, acc.ID, "delivered")
	forge := func(from string, sum [32]byte) []byte {
		signed, err := crypto.SignReceipt(crypto.Receipt{EnvelopeID: acc.ID, EnvelopeHash: sum, From: from, To: "iom",
			Event: crypto.EventRejected, Reason: "replay", At: c.clock.Now()}, c.keys[from].Signer)
		if err != nil {
			t.Fatal(err)
		}
		return c.sealRaw(from, "iom", crypto.KindReceipt, signed)
	}
	c.net.Inject("iom", "dinsos", forge("dinsos", [32]byte{1}))
	c.waitAudit("iom", func(e store.AuditEvent) bool {
		return e.Actor == "peer:dinsos" && e.Reason == policy.ReasonRuleCounterpart
	})
	c.net.Inject("iom", "shelter", forge("shelter", [32]byte{2}))
	c.waitAudit("iom", func(e store.AuditEvent) bool {
		return e.Actor == "peer:shelter" && e.Reason == gateway.ReasonReceiptMismatch
	})
	if it := c.item("iom", refRead, acc.ID); it.Outcome != "delivered" || it.Status != "delivered" {
		t.Fatalf("forged receipts changed the referral: %s %s", it.Status, it.Outcome)
	}
}
