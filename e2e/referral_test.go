package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/cli"
)

// TestReferralLifecycle follows one referral from IOM to the shelter
// through every state, with real HTTP, the real broker and four gateways.
func TestReferralLifecycle(t *testing.T) {
	st, _ := MustDev(t)
	iom, shelter := st.Gateways["iom"].URL, st.Gateways["shelter"].URL
	iomTok, shTok := st.Tokens["iom"], st.Tokens["shelter"]

	r := call(t, "POST", iom+"/v1/referrals", iomTok, sampleReferral("shelter"))
	if r.Status != 202 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	id := r.str("id")
	if s := r.str("status"); s != "sent" && s != "queued" {
		t.Fatalf("send status %q", s)
	}
	waitStatus(t, iom, iomTok, id, "delivered")

	list := call(t, "GET", shelter+"/v1/referrals?box=inbox", shTok, nil)
	items, _ := list.JSON["items"].([]any)
	if list.Status != 200 || len(items) != 1 || items[0].(map[string]any)["id"] != id {
		t.Fatalf("shelter inbox: %d %s", list.Status, list.Raw)
	}

	one := call(t, "GET", shelter+"/v1/referrals/"+id, shTok, nil)
	if one.Status != 200 || one.str("status") != "read" || one.str("from") != "iom" {
		t.Fatalf("shelter read: %d %s", one.Status, one.Raw)
	}
	body, _ := one.JSON["referral"].(map[string]any)
	person, _ := body["person"].(map[string]any)
	if person["pseudonym"] != "V-2026-0042" {
		t.Fatalf("decrypted body: %s", one.Raw)
	}
	consent, _ := body["consent"].(map[string]any)
	if consent["recorded_by"] != "iom/tester-iom" && consent["recorded_by"] != "iom/dev-iom" {
		t.Errorf("consent recorded_by = %v, want agency/subject of the sender", consent["recorded_by"])
	}
	waitStatus(t, iom, iomTok, id, "read")

	for _, next := range []string{"accepted", "in-progress", "completed"} {
		r := call(t, "POST", shelter+"/v1/referrals/"+id+"/status", shTok, map[string]string{"status": next})
		if r.Status != 200 || r.str("status") != next {
			t.Fatalf("shelter -> %s: %d %s", next, r.Status, r.Raw)
		}
		waitStatus(t, iom, iomTok, id, next)
	}

	// The sender sees the whole timeline and both receipts, verified.
	final := call(t, "GET", iom+"/v1/referrals/"+id, iomTok, nil)
	var events []string
	for _, e := range final.JSON["timeline"].([]any) {
		events = append(events, e.(map[string]any)["event"].(string))
	}
	for _, want := range []string{"queued", "delivered", "read", "accepted", "in-progress", "completed"} {
		if !strings.Contains(strings.Join(events, " "), want) {
			t.Errorf("timeline %v lacks %s", events, want)
		}
	}
	if final.str("outcome") != "delivered" {
		t.Errorf("outcome %q, want delivered", final.str("outcome"))
	}
	rc := call(t, "GET", iom+"/v1/referrals/"+id+"/receipts", iomTok, nil)
	receipts, _ := rc.JSON["receipts"].([]any)
	got := map[string]bool{}
	for _, x := range receipts {
		m := x.(map[string]any)
		if m["verified"] != true {
			t.Errorf("receipt not verified: %v", m)
		}
		got[m["event"].(string)] = true
	}
	if !got["delivered"] || !got["read"] {
		t.Errorf("receipts %s, want delivered and read", rc.Raw)
	}
	// Completed is terminal.
	if r := call(t, "POST", shelter+"/v1/referrals/"+id+"/status", shTok, map[string]string{"status": "accepted"}); r.Status != 409 {
		t.Errorf("completed -> accepted: %d %s, want 409", r.Status, r.Raw)
	}
}

func TestWithdraw(t *testing.T) {
	st, _ := MustDev(t)
	iom, dinsos := st.Gateways["iom"].URL, st.Gateways["dinsos"].URL
	iomTok, dTok := st.Tokens["iom"], st.Tokens["dinsos"]
	r := call(t, "POST", iom+"/v1/referrals", iomTok, sampleReferral("dinsos"))
	if r.Status != 202 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	id := r.str("id")
	waitStatus(t, iom, iomTok, id, "delivered")
	w := call(t, "POST", iom+"/v1/referrals/"+id+"/status", iomTok, map[string]string{"status": "withdrawn", "reason": "sent to the wrong office"})
	if w.Status != 200 || w.str("status") != "withdrawn" {
		t.Fatalf("withdraw: %d %s", w.Status, w.Raw)
	}
	eventually(t, "dinsos seeing the withdrawal", 20*time.Second, func() (bool, string) {
		l := call(t, "GET", dinsos+"/v1/referrals?box=inbox&status=withdrawn", dTok, nil)
		items, _ := l.JSON["items"].([]any)
		return len(items) == 1, string(l.Raw)
	})
	// The recipient cannot accept a withdrawn referral.
	if r := call(t, "POST", dinsos+"/v1/referrals/"+id+"/status", dTok, map[string]string{"status": "accepted"}); r.Status != 409 {
		t.Errorf("accept after withdrawal: %d %s, want 409", r.Status, r.Raw)
	}
}

func TestErrors(t *testing.T) {
	st, data := MustDev(t)
	iom, shelter := st.Gateways["iom"].URL, st.Gateways["shelter"].URL
	iomTok, shTok := st.Tokens["iom"], st.Tokens["shelter"]
	readOnly, err := cli.MintDevToken(cli.TokenConfig{Data: data, Agency: "iom", Subject: "viewer", Scopes: []string{"referral:read"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sendOnly, err := cli.MintDevToken(cli.TokenConfig{Data: data, Agency: "iom", Subject: "caseworker", Scopes: []string{"referral:send"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sent := call(t, "POST", iom+"/v1/referrals", iomTok, sampleReferral("shelter"))
	id := sent.str("id")
	waitStatus(t, iom, iomTok, id, "delivered")

	noConsent := sampleReferral("shelter")
	delete(noConsent, "consent")
	noConsent["priority"] = "normal"
	refused := sampleReferral("shelter")
	refused["consent"].(map[string]any)["given"] = false
	wrongPurpose := sampleReferral("shelter")
	wrongPurpose["consent"].(map[string]any)["purposes"] = []string{"law-enforcement"}
	minorVerbal := sampleReferral("shelter")
	minorVerbal["consent"].(map[string]any)["method"] = "verbal"
	delete(minorVerbal["consent"].(map[string]any), "witness")
	overrideNormal := sampleReferral("shelter")
	delete(overrideNormal, "consent")
	overrideNormal["priority"] = "normal"
	overrideNormal["consent_override"] = map[string]any{"justification": "the person is in immediate danger tonight"}
	overrideUrgent := sampleReferral("shelter")
	delete(overrideUrgent, "consent")
	overrideUrgent["consent_override"] = map[string]any{"justification": "the person is in immediate danger tonight"}
	unknownField := sampleReferral("shelter")
	unknownField["name"] = "Real Name"
	badEnum := sampleReferral("shelter")
	badEnum["risk"] = "extreme"
	toUnknown := sampleReferral("nobody")
	big := `{"notes":"` + strings.Repeat("x", 300<<10) + `"}`

	cases := []struct {
		name, method, url, token string
		body                     any
		ctype                    string
		want                     int
		wantAuth                 string
	}{
		{"no token", "GET", iom + "/v1/referrals", "", nil, "", 401, `Bearer realm="rujukan"`},
		{"garbage token", "GET", iom + "/v1/referrals", "not.a.token", nil, "", 401, `error="invalid_token"`},
		{"token of another agency", "GET", iom + "/v1/referrals", shTok, nil, "", 401, `error="invalid_token"`},
		{"missing scope", "POST", iom + "/v1/referrals", readOnly, sampleReferral("shelter"), "", 403, `error="insufficient_scope"`},
		{"malformed JSON", "POST", iom + "/v1/referrals", iomTok, `{"to":`, "", 400, ""},
		{"unknown field", "POST", iom + "/v1/referrals", iomTok, unknownField, "", 422, ""},
		{"bad enumeration", "POST", iom + "/v1/referrals", iomTok, badEnum, "", 422, ""},
		{"unknown recipient", "POST", iom + "/v1/referrals", iomTok, toUnknown, "", 422, ""},
		{"self addressed", "POST", iom + "/v1/referrals", iomTok, sampleReferral("iom"), "", 422, ""},
		{"no consent", "POST", iom + "/v1/referrals", iomTok, noConsent, "", 422, ""},
		{"consent refused", "POST", iom + "/v1/referrals", iomTok, refused, "", 403, ""},
		{"consent for another purpose", "POST", iom + "/v1/referrals", iomTok, wrongPurpose, "", 403, ""},
		{"minor without guardian or social worker", "POST", iom + "/v1/referrals", iomTok, minorVerbal, "", 403, ""},
		{"override without urgency", "POST", iom + "/v1/referrals", iomTok, overrideNormal, "", 422, ""},
		{"override without the scope", "POST", iom + "/v1/referrals", sendOnly, overrideUrgent, "", 403, ""},
		{"too large", "POST", iom + "/v1/referrals", iomTok, big, "", 413, ""},
		{"not JSON", "POST", iom + "/v1/referrals", iomTok, "to=shelter", "text/plain", 415, ""},
		{"bad box", "GET", iom + "/v1/referrals?box=trash", iomTok, nil, "", 400, ""},
		{"bad limit", "GET", iom + "/v1/referrals?box=inbox&limit=1000", iomTok, nil, "", 400, ""},
		{"bad cursor", "GET", iom + "/v1/referrals?box=inbox&cursor=zzz", iomTok, nil, "", 400, ""},
		{"unknown referral", "GET", iom + "/v1/referrals/nope", iomTok, nil, "", 404, ""},
		{"other agency's referral", "GET", shelter + "/v1/referrals/nope", shTok, nil, "", 404, ""},
		{"sender cannot accept", "POST", iom + "/v1/referrals/" + id + "/status", iomTok, map[string]string{"status": "accepted"}, "", 409, ""},
		{"recipient cannot complete yet", "POST", shelter + "/v1/referrals/" + id + "/status", shTok, map[string]string{"status": "completed"}, "", 409, ""},
		{"unknown status", "POST", shelter + "/v1/referrals/" + id + "/status", shTok, map[string]string{"status": "lost"}, "", 422, ""},
		{"no such route", "GET", iom + "/v1/nothing", iomTok, nil, "", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if tc.ctype != "" {
				r = callType(t, tc.method, tc.url, tc.token, tc.body.(string), tc.ctype)
			} else {
				r = call(t, tc.method, tc.url, tc.token, tc.body)
			}
			if r.Status != tc.want {
				t.Fatalf("got %d %s, want %d", r.Status, r.Raw, tc.want)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("content type %q, want application/problem+json", ct)
			}
			if tc.wantAuth != "" && !strings.Contains(r.Header.Get("WWW-Authenticate"), tc.wantAuth) {
				t.Errorf("WWW-Authenticate %q lacks %s", r.Header.Get("WWW-Authenticate"), tc.wantAuth)
			}
		})
	}
	// Nothing accepted before was disturbed by the bad requests.
	if s, _ := statusOf(t, iom, iomTok, id); s != "delivered" {
		t.Errorf("referral status after bad requests: %s", s)
	}
}
