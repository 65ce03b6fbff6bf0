package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func referralValues(to string) url.Values {
	return url.Values{"to": {to}, "priority": {"urgent"}, "pseudonym": {"V-2026-0042"}, "sex": {"female"}, "age": {"17"},
		"nationality": {"id"}, "languages": {"id, sas"}, "exploitation": {"sexual", "labour"}, "needs": {"shelter", "medical"},
		"risk": {"high"}, "consent": {"given"}, "purposes": {"services"}, "method": {"guardian"},
		"witness": {"S. Rahma"}, "recorded_at": {"2026-01-20T09:00"}, "notes": {"<script>alert(1)</script> bed needed"}}
}

func TestReferralFlow(t *testing.T) {
	n := mustNetwork(t)
	iom, shelter := mustApp(t, n, "iom"), mustApp(t, n, "shelter")
	cw := iom.client()
	cw.login("cw")
	r := cw.post("/ui/referrals/new", "/ui/referrals", referralValues("shelter"))
	if r.Code != http.StatusSeeOther || !strings.HasPrefix(r.Loc, "/ui/referrals/") {
		t.Fatalf("send: %d %s\n%s", r.Code, r.Loc, r.Body)
	}
	id := strings.TrimPrefix(r.Loc, "/ui/referrals/")
	scw := shelter.client()
	scw.login("cw")
	eventually(t, "the referral arriving", func() bool {
		return strings.Contains(scw.get("/ui/referrals?box=inbox").Body, id)
	})
	// The lists show the priority and the risk from the body (a received
	// record keeps no priority outside it), translated.
	inbox := scw.get("/ui/referrals?box=inbox").Body
	if !strings.Contains(inbox, `<span class="prio-urgent">Urgent</span> · <span class="risk-high">Risk: High</span>`) {
		t.Errorf("inbox without priority and risk:\n%s", inbox)
	}
	scw.lang = "id"
	if inbox := scw.get("/ui/referrals?box=inbox").Body; !strings.Contains(inbox, `Mendesak</span> · <span class="risk-high">Risiko: Tinggi`) {
		t.Errorf("inbox in Bahasa Indonesia without priority and risk:\n%s", inbox)
	}
	scw.lang = ""
	if outbox := cw.get("/ui/referrals?box=outbox").Body; !strings.Contains(outbox, `Urgent</span> · <span class="risk-high">Risk: High`) {
		t.Errorf("outbox without priority and risk:\n%s", outbox)
	}
	p := scw.get("/ui/referrals/" + id)
	if p.Code != 200 {
		t.Fatalf("open: %d\n%s", p.Code, p.Body)
	}
	if strings.Contains(p.Body, "<script>alert(1)") || !strings.Contains(p.Body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatalf("notes not escaped:\n%s", p.Body)
	}
	r = scw.post("/ui/referrals/"+id, "/ui/referrals/"+id+"/status", url.Values{"status": {"accepted"}})
	if r.Code != http.StatusSeeOther {
		t.Fatalf("accept: %d\n%s", r.Code, r.Body)
	}
	eventually(t, "iom seeing accepted", func() bool {
		b := cw.get("/ui/referrals?box=outbox").Body
		return strings.Contains(b, "tick read") && strings.Contains(b, "Accepted")
	})
}

func TestHeaders(t *testing.T) {
	n := mustNetwork(t)
	a := mustApp(t, n, "iom")
	c := a.client()
	for _, path := range []string{"/ui/login", "/ui/static/style.css", "/ui/nowhere", "/ui/referrals"} {
		p := c.get(path)
		h := p.Header
		if h.Get("Content-Security-Policy") != csp || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: security headers missing: %v", path, h)
		}
		if !strings.HasPrefix(path, "/ui/static/") && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", path, h.Get("Cache-Control"))
		}
	}
}

func TestLogin(t *testing.T) {
	n := mustNetwork(t)
	a := mustApp(t, n, "iom")
	c := a.client()
	p := c.get("/ui/login")
	bad := c.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, p)}, "name": {"cw"}, "password": {"wrong-password"}}, nil)
	if bad.Code != http.StatusUnauthorized || !strings.Contains(bad.Body, "Wrong user name, password or code.") {
		t.Fatalf("bad login: %d\n%s", bad.Code, bad.Body)
	}
	c.lang = "id"
	p = c.get("/ui/login")
	bad = c.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, p)}, "name": {"cw"}, "password": {"x"}}, nil)
	if !strings.Contains(bad.Body, "Nama pengguna, kata sandi, atau kode salah.") {
		t.Fatalf("bad login not translated:\n%s", bad.Body)
	}
	// no login token
	if r := c.do("POST", "/ui/login", url.Values{"name": {"cw"}, "password": {"cwcw"}}, nil); r.Code != http.StatusForbidden {
		t.Fatalf("login without token: %d", r.Code)
	}
	p = c.get("/ui/login")
	ok := c.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, p)}, "name": {"cw"}, "password": {"cwcw"}}, nil)
	if ok.Code != http.StatusSeeOther || ok.Loc != "/ui/referrals?box=inbox" {
		t.Fatalf("login: %d %s", ok.Code, ok.Loc)
	}
	var ck *http.Cookie
	for _, k := range (&http.Response{Header: ok.Header}).Cookies() {
		if k.Name == sessionCookie {
			ck = k
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" || ck.Secure {
		t.Fatalf("session cookie: %+v", ck)
	}
	if r := c.get("/ui/"); r.Code != http.StatusSeeOther || r.Loc != "/ui/referrals?box=inbox" {
		t.Fatalf("/ui/: %d %s", r.Code, r.Loc)
	}
	r := c.post("/ui/referrals", "/ui/logout", url.Values{})
	if r.Code != http.StatusSeeOther || r.Loc != "/ui/login" {
		t.Fatalf("logout: %d %s", r.Code, r.Loc)
	}
	if r := c.get("/ui/referrals"); r.Code != http.StatusSeeOther || r.Loc != "/ui/login" {
		t.Fatalf("after logout: %d %s", r.Code, r.Loc)
	}
}

func TestCSRFAndOrigin(t *testing.T) {
	n := mustNetwork(t)
	a := mustApp(t, n, "iom")
	c := a.client()
	c.login("cw")
	form := referralValues("shelter")
	if r := c.do("POST", "/ui/referrals", form, nil); r.Code != http.StatusForbidden {
		t.Fatalf("no token: %d", r.Code)
	}
	form.Set("csrf", "not-the-token")
	if r := c.do("POST", "/ui/referrals", form, nil); r.Code != http.StatusForbidden {
		t.Fatalf("wrong token: %d", r.Code)
	}
	form.Set("csrf", csrfOf(t, c.get("/ui/referrals/new")))
	if r := c.do("POST", "/ui/referrals", form, map[string]string{"Origin": "https://evil.example"}); r.Code != http.StatusForbidden {
		t.Fatalf("cross origin: %d", r.Code)
	}
	if r := c.do("POST", "/ui/referrals", form, map[string]string{"Referer": "https://evil.example/x"}); r.Code != http.StatusForbidden {
		t.Fatalf("cross referer: %d", r.Code)
	}
	if r := c.do("POST", "/ui/referrals", form, map[string]string{"Origin": a.srv.URL}); r.Code != http.StatusSeeOther {
		t.Fatalf("same origin: %d\n%s", r.Code, r.Body)
	}
	page, _ := n.gws["iom"].List(a.auth.anyPrincipal(), gatewayOutbox)
	if len(page.Items) != 1 {
		t.Fatalf("%d referrals sent, want 1", len(page.Items))
	}
}

func TestExpiredSession(t *testing.T) {
	n := mustNetwork(t)
	a := mustApp(t, n, "iom")
	c := a.client()
	c.login("cw")
	tok := csrfOf(t, c.get("/ui/referrals/new"))
	a.auth.expireAll()
	if r := c.get("/ui/referrals/new"); r.Code != http.StatusSeeOther || r.Loc != "/ui/login" {
		t.Fatalf("GET: %d %s", r.Code, r.Loc)
	}
	form := referralValues("shelter")
	form.Set("csrf", tok)
	if r := c.do("POST", "/ui/referrals", form, nil); r.Code != http.StatusForbidden {
		t.Fatalf("POST: %d", r.Code)
	}
}

func TestRoles(t *testing.T) {
	n := mustNetwork(t)
	a := mustApp(t, n, "iom")
	cw := a.client()
	cw.login("cw")
	for _, path := range []string{"/ui/deliveries", "/ui/audit", "/ui/requests/new"} {
		r := cw.get(path)
		if r.Code != http.StatusForbidden || !strings.Contains(r.Body, "Your role does not include this page.") {
			t.Errorf("caseworker %s: %d", path, r.Code)
		}
	}
	cw.lang = "id"
	if r := cw.get("/ui/audit"); !strings.Contains(r.Body, "Peran Anda tidak mencakup halaman ini.") {
		t.Errorf("403 page not translated:\n%s", r.Body)
	}
	op := a.client()
	op.login("op")
	if r := op.get("/ui/referrals/new"); r.Code != http.StatusForbidden {
		t.Errorf("operator on the referral form: %d", r.Code)
	}
	for _, path := range []string{"/ui/deliveries", "/ui/deliveries?kind=statement-request&box=inbox", "/ui/audit"} {
		if r := op.get(path); r.Code != 200 {
			t.Errorf("operator %s: %d\n%s", path, r.Code, r.Body)
		}
	}
	if r := op.get("/ui/deliveries/referral/nosuchid"); r.Code != http.StatusNotFound {
		t.Errorf("unknown record: %d", r.Code)
	}
}

func TestFormErrors(t *testing.T) {
	n := mustNetwork(t)
	a := mustApp(t, n, "iom")
	c := a.client()
	c.login("cw")
	form := referralValues("shelter")
	form.Set("pseudonym", "Siti Aminah")
	form.Del("needs")
	form.Set("age", "seventeen")
	r := c.post("/ui/referrals/new", "/ui/referrals", form)
	if r.Code != http.StatusUnprocessableEntity {
		t.Fatalf("invalid form: %d\n%s", r.Code, r.Body)
	}
	for _, want := range []string{"Not in the expected form.", "Wrong kind of value", `value="Siti Aminah"`} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("form again lacks %q", want)
		}
	}
	// a policy refusal: a child's consent without guardian or social worker
	form = referralValues("shelter")
	form.Set("method", "written")
	form.Set("witness", "")
	r = c.post("/ui/referrals/new", "/ui/referrals", form)
	if r.Code != http.StatusForbidden || !strings.Contains(r.Body, "For a child or a person of unknown age") {
		t.Fatalf("minor's consent: %d\n%s", r.Code, r.Body)
	}
}

func TestLanguage(t *testing.T) {
	n := mustNetwork(t)
	a := mustApp(t, n, "iom")
	c := a.client()
	if r := c.get("/ui/login"); !strings.Contains(r.Body, `<html lang="en">`) {
		t.Fatal("default language is not en")
	}
	c.lang = "id-ID,id;q=0.9,en;q=0.5"
	if r := c.get("/ui/login"); !strings.Contains(r.Body, `<html lang="id">`) || !strings.Contains(r.Body, "Kata sandi") {
		t.Fatal("Accept-Language id not followed")
	}
	if r := c.get("/ui/login?lang=en"); !strings.Contains(r.Body, `<html lang="en">`) || !strings.Contains(r.Body, "Password") {
		t.Fatal("switch to en not followed")
	}
	if r := c.get("/ui/login"); !strings.Contains(r.Body, `<html lang="en">`) {
		t.Fatal("switch not remembered")
	}
	c.login("cw")
	r := c.get("/ui/referrals?box=outbox&lang=id")
	if !strings.Contains(r.Body, `<html lang="id">`) || !strings.Contains(r.Body, "Kotak keluar") {
		t.Fatalf("switch on a signed-in page:\n%s", r.Body)
	}
	if !strings.Contains(r.Body, `href="/ui/referrals?box=outbox&amp;lang=en"`) {
		t.Errorf("language link does not keep the page")
	}
	if !strings.Contains(r.Body, "WITA") {
		t.Errorf("time zone not shown")
	}
}
