package e2e

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/cli"
)

// TestListNeedsBox: a list names its box.
func TestListNeedsBox(t *testing.T) {
	st, _ := MustDev(t)
	for _, path := range []string{"/v1/referrals", "/v1/referrals?box=", "/v1/statement-requests", "/v1/statement-requests?status=read"} {
		for _, id := range []string{"iom", "police"} {
			if r := devAPI(st, id).do(t, "GET", path, nil); r.Status != 400 {
				t.Errorf("%s at %s: %d %s, want 400", path, id, r.Status, r.Raw)
			}
		}
	}
}

// TestForbiddenNamesScope: a refusal for a missing scope names the scope,
// in the problem body and in the bearer challenge.
func TestForbiddenNamesScope(t *testing.T) {
	st, data := MustDev(t)
	viewer, err := cli.MintDevToken(cli.TokenConfig{Data: data, Agency: "iom", Subject: "viewer", Scopes: []string{"referral:read"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path string
		body         any
		scope        string
	}{
		{"POST", "/v1/referrals", sampleReferral("shelter"), "referral:send"},
		{"POST", "/v1/referrals/x/status", map[string]string{"status": "withdrawn"}, "referral:update"},
		{"GET", "/v1/audit", nil, "audit:read"},
		{"GET", "/v1/statement-requests?box=inbox", nil, "statement:read"},
	}
	for _, c := range cases {
		r := call(t, c.method, st.Gateways["iom"].URL+c.path, viewer, c.body)
		if r.Status != 403 {
			t.Errorf("%s %s: %d %s, want 403", c.method, c.path, r.Status, r.Raw)
			continue
		}
		scopes, _ := r.JSON["scopes"].([]any)
		if !slices.Contains(scopes, any(c.scope)) || !strings.Contains(r.str("detail"), c.scope) {
			t.Errorf("%s %s: the problem does not name %s: %s", c.method, c.path, c.scope, r.Raw)
		}
		if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, c.scope) {
			t.Errorf("%s %s: WWW-Authenticate %q", c.method, c.path, h)
		}
	}
}

// byRE is who made a timeline entry: a gateway (agency) or a member of its
// staff (agency/subject).
var byRE = regexp.MustCompile(`^(iom|shelter)(/[^/\s]+)?$`)

// TestTimelineOrderAndClock: the sender's timeline is in the order the
// referral went through its states, whichever side's clock timed each
// step, and every entry says whose clock and who.
func TestTimelineOrderAndClock(t *testing.T) {
	st, _ := MustDev(t)
	iom, shelter := devAPI(st, "iom"), devAPI(st, "shelter")
	r := iom.do(t, "POST", "/v1/referrals", sampleReferral("shelter"))
	id := r.str("id")
	waitStatus(t, iom.url, iom.tok, id, "delivered")
	shelter.do(t, "GET", "/v1/referrals/"+id, nil)
	waitStatus(t, iom.url, iom.tok, id, "read")
	for _, s := range []string{"accepted", "in-progress"} {
		if c := shelter.do(t, "POST", "/v1/referrals/"+id+"/status", map[string]string{"status": s}); c.Status != 200 {
			t.Fatalf("%s: %d %s", s, c.Status, c.Raw)
		}
		waitStatus(t, iom.url, iom.tok, id, s)
	}
	check := func(who string, a api, want []string) {
		one := a.do(t, "GET", "/v1/referrals/"+id, nil)
		if got := eventNames(one); !slices.Equal(got, want) {
			t.Errorf("%s's timeline %v, want %v", who, got, want)
		}
		for _, e := range timeline(one) {
			clock, _ := e["clock"].(string)
			by, _ := e["by"].(string)
			if clock != "iom" && clock != "shelter" {
				t.Errorf("%s: entry %v has no clock of a party", who, e)
			}
			if !byRE.MatchString(by) {
				t.Errorf("%s: entry %v: by is not agency or agency/subject", who, e)
			}
			if _, err := time.Parse(time.RFC3339Nano, e["at"].(string)); err != nil {
				t.Errorf("%s: entry %v: at: %v", who, e, err)
			}
		}
		tl := timeline(one)
		if len(tl) > 0 && (tl[0]["by"] != "iom/dev-iom" && who == "iom") {
			t.Errorf("iom's first entry %v, want by iom/dev-iom", tl[0])
		}
	}
	check("iom", iom, []string{"queued", "sent", "delivered", "read", "accepted", "in-progress"})
	check("shelter", shelter, []string{"sent", "delivered", "read", "accepted", "in-progress"})
}
