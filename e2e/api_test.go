package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/httpapi"
	"github.com/rujukan/rujukan/agency-gateway/openapi"
)

// TestRoutesMatchDescription: every route served is in the OpenAPI
// description and every described route is served.
func TestRoutesMatchDescription(t *testing.T) {
	st, _ := MustDev(t)
	srv := httpapi.New(st.Gateways["iom"].Gateway, 1<<16, nil)
	var served, documented []string
	served = append(served, srv.Routes()...)
	for _, r := range openapi.Routes() {
		documented = append(documented, r.Method+" "+r.Path)
	}
	slices.Sort(served)
	slices.Sort(documented)
	if !slices.Equal(served, documented) {
		t.Fatalf("served %v\ndocumented %v", served, documented)
	}
}

func TestOperationalEndpoints(t *testing.T) {
	st, _ := MustDev(t)
	base, tok := st.Gateways["police"].URL, st.Tokens["police"]
	if r := call(t, "GET", base+"/healthz", "", nil); r.Status != 200 {
		t.Errorf("healthz: %d %s", r.Status, r.Raw)
	}
	if r := call(t, "GET", base+"/readyz", "", nil); r.Status != 200 || r.str("status") != "ready" {
		t.Errorf("readyz: %d %s", r.Status, r.Raw)
	}
	if r := call(t, "GET", base+"/v1/openapi.json", "", nil); r.Status != 200 || r.str("openapi") == "" {
		t.Errorf("openapi.json: %d", r.Status)
	}
	call(t, "GET", base+"/v1/referrals?box=inbox", tok, nil)
	if m := metrics(t, st.Gateways["police"].MetricsURL); !strings.Contains(m, `rujukan_http_requests_total{agency="police"`) {
		t.Errorf("metrics lack the request counter")
	}
	// The API port does not serve the metrics.
	if r := call(t, "GET", base+"/metrics", "", nil); r.Status != 404 {
		t.Errorf("GET /metrics on the API: %d", r.Status)
	}
	r := call(t, "DELETE", base+"/v1/referrals/x", tok, nil)
	if r.Status != http.StatusMethodNotAllowed || !strings.Contains(r.Header.Get("Allow"), "GET") {
		t.Errorf("DELETE: %d Allow=%q", r.Status, r.Header.Get("Allow"))
	}
	// Audit: events and a verified chain, audit:read only.
	a := call(t, "GET", base+"/v1/audit?limit=5", tok, nil)
	if a.Status != 200 {
		t.Errorf("audit: %d %s", a.Status, a.Raw)
	}
	// Filters: the first event's action and actor, within the last day.
	if evs, _ := a.JSON["events"].([]any); len(evs) > 0 {
		e0, _ := evs[0].(map[string]any)
		action, _ := e0["action"].(string)
		actor, _ := e0["actor"].(string)
		q := url.Values{"action": {action}, "actor": {actor}, "since": {time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)},
			"until": {time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, "limit": {"50"}}
		f := call(t, "GET", base+"/v1/audit?"+q.Encode(), tok, nil)
		fevs, _ := f.JSON["events"].([]any)
		if f.Status != 200 || len(fevs) == 0 {
			t.Errorf("filtered audit: %d %s", f.Status, f.Raw)
		}
		for _, x := range fevs {
			if e, _ := x.(map[string]any); e["action"] != action || e["actor"] != actor {
				t.Errorf("filtered audit: %v", e)
			}
		}
	} else {
		t.Errorf("audit: no events: %s", a.Raw)
	}
	for _, bad := range []string{"since=yesterday", "until=2026-13-01T00:00:00Z", "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"} {
		if r := call(t, "GET", base+"/v1/audit?"+bad, tok, nil); r.Status != 400 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("audit?%s: %d %s %s", bad, r.Status, r.Header.Get("Content-Type"), r.Raw)
		}
	}
	v := call(t, "GET", base+"/v1/audit/verify", tok, nil)
	if v.Status != 200 || v.JSON["ok"] != true {
		t.Errorf("audit verify: %d %s", v.Status, v.Raw)
	}
	// The broker going away makes the gateway not ready.
	st.Broker.Close()
	eventually(t, "readyz turning 503", 10e9, func() (bool, string) {
		r := call(t, "GET", base+"/readyz", "", nil)
		return r.Status == 503, string(r.Raw)
	})
}
