package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/run"
	"github.com/rujukan/rujukan/cli"
	bolt "go.etcd.io/bbolt"
)

// newWebNetwork is newNetwork with the web accounts `rujukan dev` makes
// in each gateway's store, the broker and gateways ids started. It
// returns the passwords by agency and account.
func newWebNetwork(t *testing.T, ids ...string) (*network, map[string]map[string]string) {
	t.Helper()
	n := newNetwork(t)
	accts, err := cli.InitDevAccounts(n.data, testArgon)
	if err != nil {
		t.Fatal(err)
	}
	pw := map[string]map[string]string{}
	for id, as := range accts {
		pw[id] = map[string]string{}
		for _, a := range as {
			pw[id][a.Name] = a.Password
		}
	}
	n.startBroker()
	for _, id := range ids {
		n.startGateway(id)
	}
	return n, pw
}

// submitLogin fills the sign-in form of base in language lang and sends
// it, and waits for the page that answers: signed in (nav.main) or
// refused (.alert). It returns the alert's text, "" when signed in.
func submitLogin(t *testing.T, ctx context.Context, base, lang, name, password string) string {
	t.Helper()
	brun(t, ctx, "sign in as "+name,
		chromedp.Navigate(base+"/ui/login?lang="+lang),
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Submit(chromedp.CSS("#name")),
		chromedp.WaitVisible(chromedp.CSS("nav.main, .alert")))
	return value(t, ctx, "sign-in answer", chromedp.Evaluate[string](`(document.querySelector(".alert") || {textContent: ""}).textContent.trim()`))
}

// TestWebLockout: ten wrong passwords through the sign-in form lock the
// account, and the right password is then refused with the lockout
// message, in Bahasa Indonesia and English; an account of IOM does not
// sign in at the shelter.
func TestWebLockout(t *testing.T) {
	bin := chromium(t)
	n, pw := newWebNetwork(t, "iom", "shelter")
	ctx := newBrowser(t, bin)
	iom, shelter := n.url("iom"), n.url("shelter")

	// The shelter has an account of the same name, with another password.
	if msg := submitLogin(t, ctx, shelter, "en", "caseworker", pw["iom"]["caseworker"]); !strings.Contains(msg, "Wrong user name, password or code") {
		t.Errorf("iom's caseworker at the shelter: %q, want refused", msg)
	}
	if msg := submitLogin(t, ctx, shelter, "id", "caseworker", pw["iom"]["caseworker"]); !strings.Contains(msg, "Nama pengguna, kata sandi, atau kode salah") {
		t.Errorf("iom's caseworker at the shelter (id): %q, want refused", msg)
	}
	if msg := submitLogin(t, ctx, iom, "en", "caseworker", pw["iom"]["caseworker"]); msg != "" {
		t.Fatalf("iom's caseworker at iom: %q", msg)
	}
	brun(t, ctx, "sign out", chromedp.Submit(chromedp.CSS("form.logout")), chromedp.WaitVisible(chromedp.CSS("#name")))

	const user = "consent-recorder"
	for i := range 10 {
		msg := submitLogin(t, ctx, iom, "en", user, "wrong-password-"+itoa(int64(i)))
		if !strings.Contains(msg, "Wrong user name, password or code") {
			t.Fatalf("wrong password %d: %q", i+1, msg)
		}
	}
	if msg := submitLogin(t, ctx, iom, "id", user, pw["iom"][user]); !strings.Contains(msg, "Terlalu banyak percobaan masuk yang gagal") {
		t.Fatalf("right password after ten wrong ones: %q, want the lockout message", msg)
	}
	shoot(t, ctx, "login-locked-id")
	if msg := submitLogin(t, ctx, iom, "en", user, pw["iom"][user]); !strings.Contains(msg, "Too many failed sign-ins") {
		t.Fatalf("right password again: %q, want the lockout message", msg)
	}
	// Another account of the same gateway is not locked.
	if msg := submitLogin(t, ctx, iom, "en", "operator", pw["iom"]["operator"]); msg != "" {
		t.Fatalf("operator while consent-recorder is locked: %q", msg)
	}
}

// deliveryRow is one row of the deliveries table.
type deliveryRow struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Tick    string `json:"tick"`
	Outcome string `json:"outcome"`
}

// deliveryRows reads the deliveries table of the page open in ctx.
func deliveryRows(t *testing.T, ctx context.Context) []deliveryRow {
	t.Helper()
	return value(t, ctx, "deliveries table", chromedp.Evaluate[[]deliveryRow](`Array.from(document.querySelectorAll("table.grid tbody tr")).map(r => ({
		id: r.querySelector("a").textContent.trim(),
		status: r.cells[0].textContent.replace(/[✓…✗]/g, "").trim(),
		tick: (r.cells[0].querySelector(".tick") || {className: ""}).className.replace("tick", "").trim(),
		outcome: r.cells[2].textContent.trim(),
	}))`))
}

// TestWebOperator: after referrals and a statement request went through
// IOM, its operator sees each in the deliveries table with how far it
// went, each receipt verified, and the audit chain verified; after an
// event is edited in the stopped gateway's file, the audit page shows the
// red banner.
func TestWebOperator(t *testing.T) {
	bin := chromium(t)
	n, pw := newWebNetwork(t, "iom", "shelter", "police")
	iomAPI, shelterAPI, policeAPI := n.api("iom"), n.api("shelter"), n.api("police")

	// Three referrals from IOM to the shelter: one accepted, one read, one
	// only delivered.
	var refs []string
	for range 3 {
		r := iomAPI.do(t, "POST", "/v1/referrals", sampleReferral("shelter"))
		if r.Status != 202 {
			t.Fatalf("send: %d %s", r.Status, r.Raw)
		}
		refs = append(refs, r.str("id"))
	}
	for _, id := range refs {
		waitStatus(t, n.url("iom"), n.tokens["iom"], id, "delivered")
	}
	for _, id := range refs[:2] {
		if r := shelterAPI.do(t, "GET", "/v1/referrals/"+id, nil); r.Status != 200 {
			t.Fatalf("open at the shelter: %d %s", r.Status, r.Raw)
		}
	}
	if r := shelterAPI.do(t, "POST", "/v1/referrals/"+refs[0]+"/status", map[string]string{"status": "accepted"}); r.Status != 200 && r.Status != 202 {
		t.Fatalf("accept: %d %s", r.Status, r.Raw)
	}
	waitStatus(t, n.url("iom"), n.tokens["iom"], refs[0], "accepted")
	waitStatus(t, n.url("iom"), n.tokens["iom"], refs[1], "read")

	// A statement request from the police, answered by IOM.
	req := sendRequest(t, policeAPI, requestBody("iom", "V-2026-0042", time.Now().Add(72*time.Hour)))
	waitListed(t, iomAPI, "inbox", req, "delivered")
	if r := iomAPI.do(t, "GET", "/v1/statement-requests/"+req, nil); r.Status != 200 {
		t.Fatalf("open the request at iom: %d %s", r.Status, r.Raw)
	}
	if r := iomAPI.do(t, "POST", "/v1/statement-requests/"+req+"/consent", consentGiven(30, "")); r.Status != 200 {
		t.Fatalf("consent: %d %s", r.Status, r.Raw)
	}
	if r := iomAPI.do(t, "POST", "/v1/statement-requests/"+req+"/response", statementBody("They kept our passports.")); r.Status != 200 {
		t.Fatalf("response: %d %s", r.Status, r.Raw)
	}
	waitListed(t, policeAPI, "outbox", req, "answered")

	iom := n.url("iom")
	op := newBrowser(t, bin)
	if msg := submitLogin(t, op, iom, "en", "operator", pw["iom"]["operator"]); msg != "" {
		t.Fatalf("operator sign-in: %q", msg)
	}

	// Referrals sent: a row each, with its ticks, status and outcome.
	brun(t, op, "referral deliveries",
		chromedp.Navigate(iom+"/ui/deliveries?kind=referral&box=outbox&lang=en"),
		chromedp.WaitVisible(chromedp.CSS("table.grid")))
	shoot(t, op, "operator-deliveries-en")
	want := map[string]deliveryRow{
		refs[0]: {Status: "Accepted", Tick: "read", Outcome: "Delivered"},
		refs[1]: {Status: "Read", Tick: "read", Outcome: "Delivered"},
		refs[2]: {Status: "Delivered", Tick: "delivered", Outcome: "Delivered"},
	}
	rows := deliveryRows(t, op)
	if len(rows) != len(want) {
		t.Errorf("referral rows: %d, want %d: %+v", len(rows), len(want), rows)
	}
	for _, r := range rows {
		w, ok := want[r.ID]
		w.ID = r.ID
		if !ok || r != w {
			t.Errorf("row %+v, want %+v", r, w)
		}
	}
	// Nothing in the inbox of referrals at IOM.
	brun(t, op, "referral inbox deliveries",
		chromedp.Navigate(iom+"/ui/deliveries?kind=referral&box=inbox&lang=en"),
		chromedp.WaitVisible(chromedp.CSS("p.empty")))

	// The statement request received.
	brun(t, op, "statement request deliveries",
		chromedp.Navigate(iom+"/ui/deliveries?kind=statement-request&box=inbox&lang=en"),
		chromedp.WaitVisible(chromedp.CSS("table.grid")))
	if rows := deliveryRows(t, op); len(rows) != 1 || rows[0].ID != req || rows[0].Status != "Answered" || rows[0].Tick != "read" {
		t.Errorf("statement request rows: %+v", rows)
	}

	// Each record's timeline, every receipt verified.
	for _, p := range []struct {
		path     string
		receipts int
	}{
		{"referral/" + refs[0], 2}, {"referral/" + refs[1], 2}, {"referral/" + refs[2], 1}, {"statement-request/" + req, 1},
	} {
		brun(t, op, "delivery "+p.path,
			chromedp.Navigate(iom+"/ui/deliveries/"+p.path+"?lang=en"),
			chromedp.WaitVisible(chromedp.CSS("ol.timeline li")))
		got := value(t, op, "receipts", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(".receipts li")).map(li => li.className + " " + li.querySelector(".verified").textContent.trim())`))
		if len(got) < p.receipts {
			t.Errorf("%s: receipts %q, want at least %d", p.path, got, p.receipts)
		}
		for _, g := range got {
			if g != "ok ✓ verified" {
				t.Errorf("%s: receipt %q, want verified", p.path, g)
			}
		}
		if p.path == "referral/"+refs[0] {
			shoot(t, op, "operator-delivery-en")
		}
	}

	brun(t, op, "audit",
		chromedp.Navigate(iom+"/ui/audit?lang=en"),
		chromedp.WaitVisible(chromedp.CSS(".banner.ok")))
	if ok := value(t, op, "audit rows", chromedp.Evaluate[int](`document.querySelectorAll("table.grid tbody tr").length`)); ok < 5 {
		t.Errorf("audit page lists %d events", ok)
	}

	// Edit one event in the stopped gateway's file.
	n.stopGateway("iom")
	db, err := bolt.Open(filepath.Join(n.data, "gateways", "iom", "gateway.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		c := b.Cursor()
		c.First()
		k, v := c.Next()
		edited := bytes.Replace(v, []byte(`"outcome":"`), []byte(`"outcome":"x`), 1)
		if bytes.Equal(edited, v) {
			t.Errorf("second audit event has no outcome: %s", v)
		}
		return b.Put(k, edited)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The gateway refuses to start on the edited log, naming the event,
	// unless its operator accepts the break.
	cfg := n.config("iom")
	if r, err := run.Start(context.Background(), cfg, gateway.Options{Logger: quietLogger(t)}); err == nil || !strings.Contains(err.Error(), "event 2 was altered") {
		if r != nil {
			r.Close(context.Background())
		}
		t.Fatalf("start on the edited log: %v, want a refusal naming event 2", err)
	}
	cfg.Audit.AcceptBreak = true
	n.startGatewayWith("iom", cfg, gateway.Options{})
	if r := call(t, "GET", iom+"/readyz", "", nil); r.Status != 503 || r.str("reason") != "audit-broken" {
		t.Errorf("readyz after an accepted break: %d %s", r.Status, r.Raw)
	}

	op2 := newBrowser(t, bin)
	if msg := submitLogin(t, op2, iom, "en", "operator", pw["iom"]["operator"]); msg != "" {
		t.Fatalf("operator sign-in after the restart: %q", msg)
	}
	for lang, text := range map[string]string{"en": "The audit log does NOT verify", "id": "Log audit TIDAK terverifikasi"} {
		brun(t, op2, "broken audit "+lang,
			chromedp.Navigate(iom+"/ui/audit?lang="+lang),
			chromedp.WaitVisible(chromedp.CSS(".banner.broken")))
		got := value(t, op2, "banner", chromedp.Text(chromedp.CSS(".banner.broken")))
		if !strings.Contains(got, text) {
			t.Errorf("%s banner: %q, want %q", lang, got, text)
		}
		if n := value(t, op2, "ok banner", chromedp.Evaluate[int](`document.querySelectorAll(".banner.ok").length`)); n != 0 {
			t.Errorf("%s: the ok banner shows with a broken chain", lang)
		}
		bg := value(t, op2, "banner colour", chromedp.Evaluate[string](`getComputedStyle(document.querySelector(".banner.broken")).backgroundColor`))
		if bg != "rgb(198, 40, 40)" {
			t.Errorf("%s banner background %s, want red", lang, bg)
		}
		shoot(t, op2, "audit-broken-"+lang)
	}
}
