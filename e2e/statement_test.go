package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/cli"
)

// api is one gateway's base URL with a token of one of its staff.
type api struct{ url, tok string }

func devAPI(st *cli.DevStack, id string) api { return api{st.Gateways[id].URL, st.Tokens[id]} }

func (n *network) api(id string) api { return api{n.url(id), n.tokens[id]} }

func (a api) do(t testing.TB, method, path string, body any) response {
	t.Helper()
	return call(t, method, a.url+path, a.tok, body)
}

// startNet starts the broker and the named gateways in this process.
func startNet(t *testing.T, ids ...string) *network {
	t.Helper()
	n := newNetwork(t)
	n.startBroker()
	for _, id := range ids {
		n.startGateway(id)
	}
	return n
}

// requestBody is a valid statement request to agency to, due at due.
func requestBody(to, pseudonym string, due time.Time) map[string]any {
	return map[string]any{"to": to, "pseudonym": pseudonym, "legal_basis": "LP/B/123/XI/2026/NTB",
		"purpose": "investigation", "questions": []string{"Who arranged the journey?"},
		"due": due.UTC().Format(time.RFC3339)}
}

// sendRequest sends a statement request from the police and returns its id.
func sendRequest(t testing.TB, police api, body map[string]any) string {
	t.Helper()
	r := police.do(t, "POST", "/v1/statement-requests", body)
	if r.Status != 202 || r.str("id") == "" {
		t.Fatalf("statement request: %d %s", r.Status, r.Raw)
	}
	if s := r.str("status"); s != "sent" && s != "queued" {
		t.Fatalf("statement request status %q", s)
	}
	return r.str("id")
}

// listedStatus is a statement request's status as a list shows it (a
// list opens nothing).
func listedStatus(t testing.TB, a api, box, id string) string {
	t.Helper()
	cursor := ""
	for {
		r := a.do(t, "GET", fmt.Sprintf("/v1/statement-requests?box=%s&limit=200&cursor=%s", box, cursor), nil)
		if r.Status != 200 {
			t.Fatalf("list statement requests: %d %s", r.Status, r.Raw)
		}
		items, _ := r.JSON["items"].([]any)
		for _, x := range items {
			if m := x.(map[string]any); m["id"] == id {
				return m["status"].(string)
			}
		}
		if cursor = r.str("next_cursor"); cursor == "" {
			return ""
		}
	}
}

func waitListed(t testing.TB, a api, box, id, want string) {
	t.Helper()
	eventually(t, fmt.Sprintf("statement request %s reaching %s in the %s", id, want, box), 20*time.Second, func() (bool, string) {
		s := listedStatus(t, a, box, id)
		return s == want, s
	})
}

// openedRequest is a request from the police to the shelter, delivered and
// opened there, with the police seeing it read.
func openedRequest(t testing.TB, police, shelter api, due time.Time) string {
	t.Helper()
	id := sendRequest(t, police, requestBody("shelter", "V-2026-0042", due))
	waitListed(t, shelter, "inbox", id, "delivered")
	if r := shelter.do(t, "GET", "/v1/statement-requests/"+id, nil); r.Status != 200 || r.str("status") != "read" {
		t.Fatalf("opening at the shelter: %d %s", r.Status, r.Raw)
	}
	waitListed(t, police, "outbox", id, "read")
	return id
}

func consentGiven(age int, notes string) map[string]any {
	c := map[string]any{"given": true, "purposes": []string{"statement"}, "method": "written",
		"witness_role": "social-worker", "witness": "S. Rahma", "person": map[string]any{"age": age}}
	if notes != "" {
		c["notes"] = notes
	}
	return c
}

func statementBody(text string) map[string]any {
	return map[string]any{"statement": map[string]any{"text": text, "language": "id",
		"taken_at": time.Now().UTC().Truncate(time.Second).Format(time.RFC3339), "taken_by": "shelter/officer-2"}}
}

func timeline(r response) []map[string]any {
	var out []map[string]any
	tl, _ := r.JSON["timeline"].([]any)
	for _, e := range tl {
		out = append(out, e.(map[string]any))
	}
	return out
}

func eventNames(r response) []string {
	var out []string
	for _, e := range timeline(r) {
		out = append(out, e["event"].(string))
	}
	return out
}

func receiptsOf(t testing.TB, a api, path string) []map[string]any {
	t.Helper()
	r := a.do(t, "GET", path, nil)
	if r.Status != 200 {
		t.Fatalf("receipts %s: %d %s", path, r.Status, r.Raw)
	}
	var out []map[string]any
	rs, _ := r.JSON["receipts"].([]any)
	for _, x := range rs {
		out = append(out, x.(map[string]any))
	}
	return out
}

// auditAll returns every audit event of a gateway, oldest first.
func auditAll(t testing.TB, a api) []map[string]any {
	t.Helper()
	var out []map[string]any
	after := uint64(0)
	for {
		r := a.do(t, "GET", fmt.Sprintf("/v1/audit?limit=1000&after=%d", after), nil)
		if r.Status != 200 {
			t.Fatalf("audit: %d %s", r.Status, r.Raw)
		}
		evs, _ := r.JSON["events"].([]any)
		for _, e := range evs {
			out = append(out, e.(map[string]any))
		}
		next, _ := r.JSON["next"].(float64)
		if next == 0 {
			return out
		}
		after = uint64(next)
	}
}

// findAudit returns the first audit event for which match holds.
func findAudit(evs []map[string]any, match func(e map[string]any) bool) map[string]any {
	for _, e := range evs {
		if match(e) {
			return e
		}
	}
	return nil
}

func detail(e map[string]any, key string) string {
	d, _ := e["detail"].(map[string]any)
	s, _ := d[key].(string)
	return s
}

// waitAudit waits for an audit event of gateway a for which match holds.
func waitAudit(t testing.TB, a api, what string, match func(e map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	eventually(t, what, 20*time.Second, func() (bool, string) {
		evs := auditAll(t, a)
		found = findAudit(evs, match)
		return found != nil, fmt.Sprintf("%d events", len(evs))
	})
	return found
}

// TestStatementFlow: the police ask the shelter for a statement; the
// shelter opens the request, records consent and answers; the police open
// the statement and see the consent record it carries, never its notes.
// Both sides hold the other's signed receipts.
func TestStatementFlow(t *testing.T) {
	st, _ := MustDev(t)
	police, shelter := devAPI(st, "police"), devAPI(st, "shelter")
	due := time.Now().Add(72 * time.Hour)
	id := sendRequest(t, police, requestBody("shelter", "V-2026-0042", due))
	waitListed(t, police, "outbox", id, "delivered")

	// The shelter lists it (nothing opened yet), then opens it.
	waitListed(t, shelter, "inbox", id, "delivered")
	one := shelter.do(t, "GET", "/v1/statement-requests/"+id, nil)
	if one.Status != 200 || one.str("status") != "read" || one.str("from") != "police" || one.str("box") != "inbox" {
		t.Fatalf("opening at the shelter: %d %s", one.Status, one.Raw)
	}
	if body, _ := one.JSON["statement_request"].(map[string]any); body["pseudonym"] != "V-2026-0042" || body["purpose"] != "investigation" {
		t.Fatalf("request body at the shelter: %s", one.Raw)
	}
	waitListed(t, police, "outbox", id, "read")

	const notes = "asked twice, calm, prefers a female officer"
	c := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/consent", consentGiven(30, notes))
	if c.Status != 200 || c.str("status") != "consent-given" {
		t.Fatalf("consent: %d %s", c.Status, c.Raw)
	}
	if cons, _ := c.JSON["consent"].(map[string]any); cons["notes"] != notes || cons["method"] != "written" {
		t.Errorf("the shelter's own consent record: %s", c.Raw)
	}
	waitListed(t, police, "outbox", id, "consent-given")

	const text = "He took our passports at the harbour in Lembar."
	a := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/response", statementBody(text))
	if a.Status != 200 || a.str("status") != "answered" {
		t.Fatalf("response: %d %s", a.Status, a.Raw)
	}
	waitListed(t, police, "outbox", id, "answered")

	got := police.do(t, "GET", "/v1/statement-requests/"+id, nil)
	if got.Status != 200 || got.str("status") != "answered" {
		t.Fatalf("opening at the police: %d %s", got.Status, got.Raw)
	}
	stmt, _ := got.JSON["statement"].(map[string]any)
	if stmt["text"] != text || stmt["language"] != "id" || stmt["taken_by"] != "shelter/officer-2" {
		t.Errorf("statement at the police: %s", got.Raw)
	}
	cons, _ := got.JSON["consent"].(map[string]any)
	if cons == nil || cons["given"] != true || cons["method"] != "written" || cons["witness_role"] != "social-worker" ||
		cons["recorded_at"] == nil || cons["recorded_at"] == "" || !strings.HasPrefix(fmt.Sprint(cons["recorded_by"]), "shelter/") {
		t.Errorf("consent record at the police: %v", cons)
	}
	if _, ok := cons["notes"]; ok || strings.Contains(string(got.Raw), "calm") {
		t.Errorf("the consent notes reached the police: %s", got.Raw)
	}
	for _, e := range timeline(got) {
		if e["event"] == "consent-given" && !strings.HasPrefix(fmt.Sprint(e["by"]), "shelter") {
			t.Errorf("consent-given entry at the police: %v", e)
		}
	}

	// The police hold the shelter's delivered and read receipts of the
	// request, and their own of the statement.
	byEvent := func(rs []map[string]any, envelope, by string) []string {
		var evs []string
		for _, r := range rs {
			if r["verified"] != true {
				t.Errorf("receipt does not verify: %v", r)
			}
			if (envelope == "" || r["envelope_id"] == envelope) && r["by"] == by {
				evs = append(evs, r["event"].(string))
			}
		}
		slices.Sort(evs)
		return evs
	}
	prs := receiptsOf(t, police, "/v1/statement-requests/"+id+"/receipts")
	if evs := byEvent(prs, id, "shelter"); !slices.Equal(evs, []string{"delivered", "read"}) {
		t.Errorf("the shelter's receipts of the request at the police: %v (%v)", evs, prs)
	}
	// The shelter gets the police's delivered and read receipts of its
	// statement, and notes them in its timeline.
	eventually(t, "the statement's read receipt reaching the shelter", 20*time.Second, func() (bool, string) {
		srs := receiptsOf(t, shelter, "/v1/statement-requests/"+id+"/receipts")
		evs := byEvent(srs, "", "police")
		return slices.Equal(evs, []string{"delivered", "read"}), fmt.Sprint(srs)
	})
	sh := shelter.do(t, "GET", "/v1/statement-requests/"+id, nil)
	names := eventNames(sh)
	for _, want := range []string{"statement-delivered", "statement-read"} {
		if !slices.Contains(names, want) {
			t.Errorf("the shelter's timeline %v lacks %s", names, want)
		}
	}
	if sh.str("status") != "answered" {
		t.Errorf("status at the shelter %q, want answered", sh.str("status"))
	}
}

// TestConsentRefusedThenStatement: after consent is refused no statement
// leaves.
func TestConsentRefusedThenStatement(t *testing.T) {
	st, _ := MustDev(t)
	police, shelter := devAPI(st, "police"), devAPI(st, "shelter")
	id := openedRequest(t, police, shelter, time.Now().Add(72*time.Hour))
	c := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/consent",
		map[string]any{"given": false, "method": "verbal", "person": map[string]any{"age": 30}})
	if c.Status != 200 || c.str("status") != "consent-refused" {
		t.Fatalf("consent refused: %d %s", c.Status, c.Raw)
	}
	waitListed(t, police, "outbox", id, "consent-refused")
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/response", statementBody("x")); r.Status != 403 {
		t.Fatalf("statement after consent refused: %d %s, want 403", r.Status, r.Raw)
	}
	time.Sleep(500 * time.Millisecond)
	if s := listedStatus(t, police, "outbox", id); s != "consent-refused" {
		t.Errorf("status at the police %q, want consent-refused", s)
	}
}

// TestStatementDecline: a decline's reason reaches the police.
func TestStatementDecline(t *testing.T) {
	st, _ := MustDev(t)
	police, shelter := devAPI(st, "police"), devAPI(st, "shelter")
	id := openedRequest(t, police, shelter, time.Now().Add(72*time.Hour))
	r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/response",
		map[string]any{"decline": map[string]any{"reason": "risk-to-victim", "detail": "afraid of the trial"}})
	if r.Status != 200 || r.str("status") != "declined" {
		t.Fatalf("decline: %d %s", r.Status, r.Raw)
	}
	waitListed(t, police, "outbox", id, "declined")
	got := police.do(t, "GET", "/v1/statement-requests/"+id, nil)
	tl := timeline(got)
	if len(tl) == 0 {
		t.Fatalf("no timeline at the police: %s", got.Raw)
	}
	last := tl[len(tl)-1]
	if last["event"] != "declined" || last["reason"] != "risk-to-victim" {
		t.Errorf("last timeline entry at the police %v, want declined with reason risk-to-victim", last)
	}
	if got.JSON["statement"] != nil {
		t.Errorf("a declined request shows a statement: %s", got.Raw)
	}
}

// TestStatementPastDue: past its due date a request is expired on both
// sides, by each side's clock, and takes no consent or response.
func TestStatementPastDue(t *testing.T) {
	st, _ := MustDev(t)
	police, shelter := devAPI(st, "police"), devAPI(st, "shelter")
	due := time.Now().Add(4 * time.Second).Truncate(time.Second)
	id := openedRequest(t, police, shelter, due)
	time.Sleep(time.Until(due))
	waitListed(t, shelter, "inbox", id, "expired")
	waitListed(t, police, "outbox", id, "expired")
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/consent", consentGiven(30, "")); r.Status != 403 {
		t.Errorf("consent after the due date: %d %s, want 403", r.Status, r.Raw)
	}
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/response", statementBody("late")); r.Status != 403 {
		t.Errorf("response after the due date: %d %s, want 403", r.Status, r.Raw)
	}
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/response",
		map[string]any{"decline": map[string]any{"reason": "other"}}); r.Status != 403 {
		t.Errorf("decline after the due date: %d %s, want 403", r.Status, r.Raw)
	}
}

// TestStatementRequestNotPolice: only police staff ask for statements.
func TestStatementRequestNotPolice(t *testing.T) {
	st, _ := MustDev(t)
	dinsos := devAPI(st, "dinsos")
	r := dinsos.do(t, "POST", "/v1/statement-requests", requestBody("shelter", "V-2026-0042", time.Now().Add(time.Hour)))
	if r.Status != 403 {
		t.Fatalf("statement request from dinsos: %d %s, want 403", r.Status, r.Raw)
	}
	if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) {
		t.Errorf("WWW-Authenticate %q", h)
	}
	if l := devAPI(st, "shelter").do(t, "GET", "/v1/statement-requests?box=inbox", nil); len(l.JSON["items"].([]any)) != 0 {
		t.Errorf("the shelter received a request: %s", l.Raw)
	}
}

// TestOfficerWithoutScope: a police officer whose token lacks
// statement:request is refused, and the refusal names the scope.
func TestOfficerWithoutScope(t *testing.T) {
	st, data := MustDev(t)
	tok, err := cli.MintDevToken(cli.TokenConfig{Data: data, Agency: "police", Subject: "officer-7",
		Scopes: []string{"statement:read", "referral:read"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	officer := api{st.Gateways["police"].URL, tok}
	r := officer.do(t, "POST", "/v1/statement-requests", requestBody("shelter", "V-2026-0042", time.Now().Add(time.Hour)))
	if r.Status != 403 {
		t.Fatalf("officer without statement:request: %d %s, want 403", r.Status, r.Raw)
	}
	scopes, _ := r.JSON["scopes"].([]any)
	if !slices.Contains(scopes, any("statement:request")) {
		t.Errorf("the problem does not name the missing scope in scopes: %s", r.Raw)
	}
	if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, "statement:request") {
		t.Errorf("WWW-Authenticate %q", h)
	}
	// Reading is still allowed.
	if l := officer.do(t, "GET", "/v1/statement-requests?box=outbox", nil); l.Status != 200 {
		t.Errorf("list with statement:read: %d %s", l.Status, l.Raw)
	}
}

// TestStatementWithoutRequest: a statement answers a request held here,
// or does not leave.
func TestStatementWithoutRequest(t *testing.T) {
	st, _ := MustDev(t)
	shelter := devAPI(st, "shelter")
	for _, id := range []string{"no-such-request", "Gl8kxdI2CyAYHZ10Grl4kA"} {
		if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/response", statementBody("x")); r.Status != 403 {
			t.Errorf("statement for %s: %d %s, want 403", id, r.Status, r.Raw)
		}
	}
	// Nor in answer to a referral it holds.
	iom := devAPI(st, "iom")
	ref := iom.do(t, "POST", "/v1/referrals", sampleReferral("shelter"))
	waitStatus(t, iom.url, iom.tok, ref.str("id"), "delivered")
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+ref.str("id")+"/response", statementBody("x")); r.Status != 403 {
		t.Errorf("statement answering a referral: %d %s, want 403", r.Status, r.Raw)
	}
}

// TestMinorVerbalConsent: a 16-year-old's verbal consent without a social
// worker as witness is not consent to a statement.
func TestMinorVerbalConsent(t *testing.T) {
	st, _ := MustDev(t)
	police, shelter := devAPI(st, "police"), devAPI(st, "shelter")
	id := openedRequest(t, police, shelter, time.Now().Add(72*time.Hour))
	r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/consent", map[string]any{"given": true,
		"purposes": []string{"statement"}, "method": "verbal", "person": map[string]any{"age": 16}})
	if r.Status != 403 || r.str("reason") != "consent-minor" {
		t.Fatalf("minor, verbal, no witness: %d %s, want 403 consent-minor", r.Status, r.Raw)
	}
	// Nothing changed, and nothing may be sent on it.
	if s := listedStatus(t, shelter, "inbox", id); s != "read" {
		t.Errorf("status after the refused consent %q, want read", s)
	}
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/response", statementBody("x")); r.Status != 403 {
		t.Errorf("statement without consent: %d %s, want 403", r.Status, r.Raw)
	}
	// With a social worker as witness it is consent.
	ok := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/consent", map[string]any{"given": true,
		"purposes": []string{"statement"}, "method": "verbal", "witness_role": "social-worker", "witness": "S. Rahma",
		"person": map[string]any{"age": 16}})
	if ok.Status != 200 || ok.str("status") != "consent-given" {
		t.Errorf("minor, verbal, social worker as witness: %d %s", ok.Status, ok.Raw)
	}
}
