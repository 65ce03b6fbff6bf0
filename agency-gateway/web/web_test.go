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
