package openapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	ctJSON    = "application/json"
	ctProblem = "application/problem+json"
)

const goodReferral = `{"to":"shelter","priority":"urgent",
 "person":{"pseudonym":"V-2026-0042","sex":"female","age":17,"nationality":"ID","languages":["id","sas"]},
 "exploitation":["sexual","labour"],
 "identified":{"date":"2026-11-20","place":"Lombok International Airport","by":"iom"},
 "needs":["shelter","medical","psychosocial"],"risk":"high",
 "consent":{"given":true,"purposes":["services"],"method":"guardian","witness":"social worker S. Rahma",
            "recorded_at":"2026-11-20T09:00:00Z","recorded_by":"caseworker-7"},
 "notes":"free text"}`

func item(status, referral string) string {
	return `{"id":"01JD5X","kind":"referral","box":"outbox","from":"iom","to":"shelter","status":"` + status + `",
	"priority":"urgent","created_at":"2026-11-20T09:00:00Z","updated_at":"2026-11-20T09:05:00.123+08:00",
	"referral":` + referral + `,
	"timeline":[{"event":"queued","at":"2026-11-20T09:00:00Z","by":"caseworker-7","clock":"iom"},
	            {"event":"delivered","at":"2026-11-20T09:00:01Z","by":"shelter","clock":"shelter"},
	            {"event":"declined","at":"2026-11-20T09:05:00Z","by":"shelter/worker-3","clock":"shelter","reason":"no-bed","note":"no bed free"}]}`
}

const srItem = `{"id":"01JD6A","kind":"statement-request","box":"inbox","from":"polda-ntb","to":"shelter",
	"status":"consent-given","created_at":"2026-11-21T09:00:00Z","updated_at":"2026-11-22T10:00:00Z",
	"statement_request":{"to":"shelter","referral_id":"01JD5X","legal_basis":"LP/B/123/XI/2026/NTB",
	  "purpose":"investigation","questions":["What happened on 12 November?"],"due":"2026-12-01T00:00:00Z"},
	"timeline":[{"event":"delivered","at":"2026-11-21T09:00:01Z","by":"shelter","clock":"shelter"},
	            {"event":"consent-given","at":"2026-11-22T10:00:00Z","by":"worker-3","clock":"shelter"}],
	"consent":{"given":true,"purposes":["statement"],"method":"guardian","witness_role":"social-worker",
	  "recorded_at":"2026-11-22T10:00:00Z","recorded_by":"worker-3"}}`

func problemBody(code string, status int, extra string) string {
	return `{"type":"https://rujukan.id/problems/` + code + `","title":"t","status":` + strconv.Itoa(status) + extra + `}`
}

func TestRoutes(t *testing.T) {
	want := []Route{
		{"GET", "/healthz"},
		{"GET", "/readyz"},
		{"POST", "/v1/attachments"},
		{"GET", "/v1/audit"},
		{"GET", "/v1/audit/checkpoint"},
		{"GET", "/v1/audit/consistency"},
		{"GET", "/v1/audit/export"},
		{"GET", "/v1/audit/verify"},
		{"GET", "/v1/audit/witnesses"},
		{"GET", "/v1/audit/{seq}/proof"},
		{"GET", "/v1/openapi.json"},
		{"GET", "/v1/referrals"},
		{"POST", "/v1/referrals"},
		{"GET", "/v1/referrals/{id}"},
		{"GET", "/v1/referrals/{id}/attachments/{aid}"},
		{"GET", "/v1/referrals/{id}/receipts"},
		{"POST", "/v1/referrals/{id}/status"},
		{"GET", "/v1/statement-requests"},
		{"POST", "/v1/statement-requests"},
		{"GET", "/v1/statement-requests/{id}"},
		{"GET", "/v1/statement-requests/{id}/attachments/{aid}"},
		{"POST", "/v1/statement-requests/{id}/consent"}, {"GET", "/v1/statement-requests/{id}/receipts"},
		{"POST", "/v1/statement-requests/{id}/response"},
	}
	if got := Routes(); !slices.Equal(got, want) {
		t.Fatalf("Routes() = %v\nwant %v", got, want)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		path        string
		status      int
		contentType string
		body        string
		want        error // nil: valid
	}{
		// Good responses.
		{"send sent", "POST", "/v1/referrals", 202, ctJSON, `{"id":"01JD5X","status":"sent"}`, nil},
		{"send queued with charset", "POST", "/v1/referrals", 202, "application/json; charset=utf-8", `{"id":"x","status":"queued"}`, nil},
		{"list", "GET", "/v1/referrals?box=inbox&limit=10", 200, ctJSON,
			`{"items":[{"id":"a","kind":"referral","box":"inbox","from":"iom","to":"shelter","status":"delivered",
			"created_at":"2026-11-20T09:00:00Z","updated_at":"2026-11-20T09:00:00Z","priority":"normal"},
			{"id":"b","kind":"referral","from":"iom","to":"shelter","status":"read",
			"created_at":"2026-11-20T09:00:00Z","updated_at":"2026-11-20T09:00:00Z"}],"next_cursor":"abc"}`, nil},
		{"empty list", "GET", "/v1/referrals", 200, ctJSON, `{"items":[],"next_cursor":""}`, nil},
		{"one item", "GET", "/v1/referrals/01JD5X", 200, ctJSON, item("declined", goodReferral), nil},
		{"one item by template", "GET", "/v1/referrals/{id}", 200, ctJSON, item("read", goodReferral), nil},
		{"status change", "POST", "/v1/referrals/01JD5X/status", 200, ctJSON, item("accepted", goodReferral), nil},
		{"receipts", "GET", "/v1/referrals/01JD5X/receipts", 200, ctJSON,
			`{"receipts":[{"event":"delivered","at":"2026-11-20T09:00:01Z","by":"shelter","verified":true,
			"to":"iom","envelope_id":"01JD5X","envelope_sha256":"` + strings.Repeat("ab", 32) + `","key_id":"ed25519:abc"},
			{"event":"rejected","at":"2026-11-20T09:00:01Z","by":"police","verified":false,"reason":"replay",
			"error":"bad-signature"}]}`, nil},
		{"healthz", "GET", "/healthz", 200, ctJSON, `{"status":"ok"}`, nil},
		{"readyz", "GET", "/readyz", 200, ctJSON, `{"status":"ready","checks":{"broker":"ok","db":"ok"}}`, nil},
		{"readyz down", "GET", "/readyz", 503, ctProblem, problemBody("unavailable", 503, `,"reason":"broker-disconnected"`), nil},
		{"export", "GET", "/v1/audit/export?since=2026-11-20T00:00:00Z", 200, "application/x-ndjson",
			"{\"seq\":1,\"record\":\"e30=\"}\n{\"checkpoint\":\"x\",\"proofs\":[]}\n", nil},
		{"openapi", "GET", "/v1/openapi.json", 200, ctJSON, string(JSON), nil},
		{"invalid body", "POST", "/v1/referrals", 400, ctProblem, problemBody("invalid-body", 400,
			`,"detail":"2 errors","errors":[{"field":"/to","code":"required","message":"is required"},
			{"field":"","code":"syntax","message":"x"}]`), nil},
		{"invalid body 422", "POST", "/v1/referrals/x/status", 422, ctProblem, problemBody("invalid-body", 422,
			`,"errors":[{"field":"/status","code":"enum","message":"must be one of: accepted"}]`), nil},
		{"outcome", "GET", "/v1/referrals", 200, ctJSON,
			`{"items":[{"id":"a","kind":"referral","box":"outbox","from":"iom","to":"shelter","status":"failed","outcome":"failed",
			"created_at":"2026-11-20T09:00:00.000000Z","updated_at":"2026-11-20T09:00:00.000000Z"}],"next_cursor":""}`, nil},
		{"unauthorized", "GET", "/v1/referrals", 401, ctProblem, problemBody("unauthorized", 401, `,"reason":"token-expired"`), nil},
		{"forbidden", "POST", "/v1/referrals", 403, ctProblem, problemBody("forbidden", 403, `,"reason":"insufficient_scope"`), nil},
		{"not found", "GET", "/v1/referrals/nope", 404, ctProblem, problemBody("not-found", 404, ""), nil},
		{"conflict", "POST", "/v1/referrals/x/status", 409, ctProblem, problemBody("conflict", 409, ""), nil},
		{"too large", "POST", "/v1/referrals", 413, ctProblem, problemBody("body-too-large", 413, ""), nil},
		{"internal", "GET", "/v1/referrals/x/receipts", 500, ctProblem, problemBody("internal", 500, ""), nil},
		{"about blank", "GET", "/healthz", 500, ctProblem, `{"type":"about:blank","title":"Internal Server Error","status":500}`, nil},
		{"unknown path 404", "GET", "/v2/nothing", 404, ctProblem, problemBody("not-found", 404, ""), nil},
		{"unknown method 405", "DELETE", "/v1/referrals/x", 405, ctProblem, problemBody("method-not-allowed", 405, ""), nil},

		{"request statement", "POST", "/v1/statement-requests", 202, ctJSON, `{"id":"01JD6A","status":"queued"}`, nil},
		{"list statement requests", "GET", "/v1/statement-requests?box=outbox", 200, ctJSON,
			`{"items":[{"id":"01JD6A","kind":"statement-request","box":"outbox","from":"polda-ntb","to":"shelter",
			"status":"consent-given","purpose":"investigation","due":"2026-12-01T00:00:00Z",
			"created_at":"2026-11-21T09:00:00Z","updated_at":"2026-11-22T10:00:00Z"}],"next_cursor":""}`, nil},
		{"one statement request", "GET", "/v1/statement-requests/01JD6A", 200, ctJSON, srItem, nil},
		{"consent recorded", "POST", "/v1/statement-requests/01JD6A/consent", 200, ctJSON, srItem, nil},
		{"statement sent", "POST", "/v1/statement-requests/01JD6A/response", 200, ctJSON, strings.Replace(srItem, `"consent-given"`, `"answered"`, 1), nil},
		{"timeline entry without clock", "GET", "/v1/referrals/01JD5X", 200, ctJSON,
			strings.Replace(item("read", goodReferral), `,"clock":"iom"`, ``, 1), ErrBody},
		{"response to a closed request", "POST", "/v1/statement-requests/01JD6A/response", 409, ctProblem, problemBody("conflict", 409, `,"reason":"request-not-open"`), nil},
		{"statement request unknown status", "GET", "/v1/statement-requests/01JD6A", 200, ctJSON,
			strings.Replace(srItem, `"consent-given"`, `"accepted"`, 1), ErrBody},
		{"statement request item without body", "GET", "/v1/statement-requests/01JD6A", 200, ctJSON,
			strings.Replace(srItem, `"statement_request"`, `"request"`, 1), ErrBody},
		{"statement request consent with an unknown field", "GET", "/v1/statement-requests/01JD6A", 200, ctJSON,
			strings.Replace(srItem, `"given":true`, `"given":true,"name":"x"`, 1), ErrBody},
		{"timeline clock not an agency", "GET", "/v1/referrals/01JD5X", 200, ctJSON,
			strings.Replace(item("read", goodReferral), `"clock":"iom"`, `"clock":"IOM Mataram"`, 1), ErrBody},
		{"item referral without recorder", "GET", "/v1/referrals/x", 200, ctJSON,
			item("read", strings.Replace(goodReferral, `,"recorded_by":"caseworker-7"`, ``, 1)), ErrBody},

		// Operation and status.
		{"undocumented path", "GET", "/v1/nothing", 200, ctJSON, `{}`, ErrUndocumentedPath},
		{"undocumented method", "DELETE", "/v1/referrals/x", 200, ctJSON, `{}`, ErrUndocumentedMethod},
		{"undocumented status", "POST", "/v1/referrals", 200, ctJSON, `{"id":"x","status":"sent"}`, ErrUndocumentedStatus},
		{"409 not documented for send", "POST", "/v1/referrals", 409, ctProblem, problemBody("conflict", 409, ""), ErrUndocumentedStatus},
		{"empty id segment", "GET", "/v1/referrals//receipts", 200, ctJSON, `{"receipts":[]}`, ErrUndocumentedPath},
		{"trailing slash", "GET", "/v1/referrals/x/", 200, ctJSON, `{}`, ErrUndocumentedPath},

		// Content type.
		{"error as plain JSON", "POST", "/v1/referrals", 400, ctJSON, problemBody("invalid-body", 400, ""), ErrContentType},
		{"success as problem", "POST", "/v1/referrals", 202, ctProblem, `{"id":"x","status":"sent"}`, ErrContentType},
		{"no content type", "GET", "/healthz", 200, "", `{"status":"ok"}`, ErrContentType},
		{"export as JSON", "GET", "/v1/audit/export", 200, ctJSON, `{}`, ErrContentType},
		{"404 as text", "GET", "/v2/x", 404, "text/plain; charset=utf-8", "404 page not found\n", ErrContentType},

		// Bodies.
		{"status outside enum", "POST", "/v1/referrals", 202, ctJSON, `{"id":"x","status":"delivered"}`, ErrBody},
		{"missing id", "POST", "/v1/referrals", 202, ctJSON, `{"status":"sent"}`, ErrBody},
		{"extra member", "POST", "/v1/referrals", 202, ctJSON, `{"id":"x","status":"sent","debug":"x"}`, ErrBody},
		{"not JSON", "POST", "/v1/referrals", 202, ctJSON, `id=x`, ErrBody},
		{"two values", "POST", "/v1/referrals", 202, ctJSON, `{"id":"x","status":"sent"}{}`, ErrBody},
		{"list without cursor", "GET", "/v1/referrals", 200, ctJSON, `{"items":[]}`, ErrBody},
		{"list item bad time", "GET", "/v1/referrals", 200, ctJSON,
			`{"items":[{"id":"a","kind":"referral","from":"iom","to":"shelter","status":"read",
			"created_at":"2026-11-20 09:00:00","updated_at":"2026-11-20T09:00:00Z"}],"next_cursor":""}`, ErrBody},
		{"list item leaks store fields", "GET", "/v1/referrals", 200, ctJSON,
			`{"items":[{"id":"a","kind":"referral","from":"iom","to":"shelter","status":"read","envelope_hash":"00",
			"created_at":"2026-11-20T09:00:00Z","updated_at":"2026-11-20T09:00:00Z"}],"next_cursor":""}`, ErrBody},
		{"item without timeline", "GET", "/v1/referrals/x", 200, ctJSON,
			strings.Replace(item("read", goodReferral), `"timeline"`, `"timeline_"`, 1), ErrBody},
		{"item with unknown status", "GET", "/v1/referrals/x", 200, ctJSON, item("lost", goodReferral), ErrBody},
		{"item referral with a name", "GET", "/v1/referrals/x", 200, ctJSON,
			item("read", strings.Replace(goodReferral, `"pseudonym"`, `"name":"Siti","pseudonym"`, 1)), ErrBody},
		{"item referral with both ages", "GET", "/v1/referrals/x", 200, ctJSON,
			item("read", strings.Replace(goodReferral, `"age":17`, `"age":17,"age_range":"15-17"`, 1)), ErrBody},
		{"receipt without verified", "GET", "/v1/referrals/x/receipts", 200, ctJSON,
			`{"receipts":[{"event":"read","at":"2026-11-20T09:00:01Z","by":"shelter"}]}`, ErrBody},
		{"receipt verified as string", "GET", "/v1/referrals/x/receipts", 200, ctJSON,
			`{"receipts":[{"event":"read","at":"2026-11-20T09:00:01Z","by":"shelter","verified":"yes"}]}`, ErrBody},
		{"healthz wrong", "GET", "/healthz", 200, ctJSON, `{"status":"fine"}`, ErrBody},
		{"problem status differs", "GET", "/v1/referrals/x", 404, ctProblem, problemBody("not-found", 400, ""), ErrBody},
		{"problem type elsewhere", "GET", "/v1/referrals/x", 404, ctProblem,
			`{"type":"https://example.com/nf","title":"t","status":404}`, ErrBody},
		{"problem without title", "GET", "/v1/referrals/x", 404, ctProblem,
			`{"type":"about:blank","status":404}`, ErrBody},
		{"problem with stack", "GET", "/v1/referrals/x", 500, ctProblem, problemBody("internal", 500, `,"stack":"main.go:12"`), ErrBody},
		{"field error without pointer", "POST", "/v1/referrals", 400, ctProblem,
			problemBody("invalid-body", 400, `,"errors":[{"code":"required","message":"x"}]`), ErrBody},
		{"404 outside the document, bad body", "GET", "/v2/x", 404, ctProblem, `{"status":404}`, ErrBody},
		{"export not UTF-8", "GET", "/v1/audit/export", 200, "application/x-ndjson", "\xff", ErrBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.method, tt.path, tt.status, tt.contentType, []byte(tt.body))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckHeader(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		name   string
		method string
		path   string
		status int
		header http.Header
		want   error
	}{
		{"401 with challenge", "GET", "/v1/referrals", 401, h("WWW-Authenticate", `Bearer realm="iom", error="invalid_token"`), nil},
		{"401 without token", "POST", "/v1/referrals/x/status", 401, h("WWW-Authenticate", `Bearer realm="iom"`), nil},
		{"403 with scope", "POST", "/v1/referrals", 403,
			h("WWW-Authenticate", `Bearer error="insufficient_scope", scope="referral:send"`), nil},
		{"401 missing challenge", "GET", "/v1/referrals/x", 401, h(), ErrHeader},
		{"403 missing challenge", "GET", "/v1/referrals/x/receipts", 403, h("Content-Type", ctProblem), ErrHeader},
		{"401 basic challenge", "GET", "/v1/referrals", 401, h("WWW-Authenticate", `Basic realm="x"`), ErrHeader},
		{"200 needs none", "GET", "/v1/referrals", 200, h(), nil},
		{"undocumented", "GET", "/nope", 401, h(), ErrUndocumentedPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHeader(tt.method, tt.path, tt.status, tt.header)
			if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("CheckHeader = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckRequest(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		want        error
	}{
		{"status change", "POST", "/v1/referrals/x/status", ctJSON, `{"status":"accepted","reason":"bed free"}`, nil},
		{"status change not allowed value", "POST", "/v1/referrals/x/status", ctJSON, `{"status":"read"}`, ErrBody},
		{"status change blank reason", "POST", "/v1/referrals/x/status", ctJSON, `{"status":"declined","reason":" "}`, ErrBody},
		{"statement request", "POST", "/v1/statement-requests", ctJSON, `{"to":"shelter","pseudonym":"V-2026-0042",
			"legal_basis":"LP/B/123/XI/2026/NTB","purpose":"prosecution","questions":["q"],"due":"2026-12-01T00:00:00Z"}`, nil},
		{"statement request naming both", "POST", "/v1/statement-requests", ctJSON, `{"to":"shelter","pseudonym":"V-1",
			"referral_id":"01JD5X","legal_basis":"LP/1","purpose":"prosecution","questions":["q"],"due":"2026-12-01T00:00:00Z"}`, ErrBody},
		{"consent decision", "POST", "/v1/statement-requests/x/consent", ctJSON,
			`{"given":false,"method":"verbal","person":{"age_range":"18+"}}`, nil},
		{"consent decision with recorder", "POST", "/v1/statement-requests/x/consent", ctJSON,
			`{"given":false,"method":"verbal","recorded_by":"me"}`, ErrBody},
		{"decline", "POST", "/v1/statement-requests/x/response", ctJSON, `{"decline":{"reason":"no-consent"}}`, nil},
		{"statement and decline", "POST", "/v1/statement-requests/x/response", ctJSON,
			`{"decline":{"reason":"no-consent"},"statement":{"text":"t","language":"id","taken_at":"2026-11-22T10:00:00Z","taken_by":"x"}}`, ErrBody},
		{"status change as form", "POST", "/v1/referrals/x/status", "application/x-www-form-urlencoded", `status=accepted`, ErrContentType},
		{"get has no body", "GET", "/v1/referrals", ctJSON, ``, nil},
		{"body on a get", "GET", "/v1/referrals", ctJSON, `{}`, ErrContentType},
		{"unknown route", "PUT", "/v1/referrals", ctJSON, `{}`, ErrUndocumentedMethod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRequest(tt.method, tt.path, tt.contentType, []byte(tt.body))
			if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("CheckRequest = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDocumentConventions checks rules every operation must follow.
func TestDocumentConventions(t *testing.T) {
	for _, r := range Routes() {
		op := spec.match(r.Path).ops[r.Method]
		resps := op["responses"].(map[string]any)
		_, public := op["security"]
		scopes, _ := Scopes(r.Method, r.Path)
		if public == (len(scopes) > 0) {
			t.Errorf("%s %s: security %v with scopes %v", r.Method, r.Path, public, scopes)
		}
		if !public {
			for _, code := range []string{"401", "403", "500"} {
				if _, ok := resps[code]; !ok {
					t.Errorf("%s %s: no %s response", r.Method, r.Path, code)
				}
			}
		}
		for code, resp := range resps {
			n, err := strconv.Atoi(code)
			if err != nil {
				t.Errorf("%s %s: response key %q is not a status", r.Method, r.Path, code)
				continue
			}
			rm, _ := spec.deref(resp, "")
			content, _ := rm["content"].(map[string]any)
			if n >= 400 {
				if len(content) != 1 || content[ctProblem] == nil {
					t.Errorf("%s %s %d: errors must be application/problem+json only", r.Method, r.Path, n)
				}
			}
			if n == 401 || n == 403 {
				hd, _ := rm["headers"].(map[string]any)
				if hd["WWW-Authenticate"] == nil {
					t.Errorf("%s %s %d: no WWW-Authenticate header", r.Method, r.Path, n)
				}
			}
			if n < 300 && len(content) == 0 {
				t.Errorf("%s %s %d: no content", r.Method, r.Path, n)
			}
		}
	}
	var doc map[string]any
	if err := json.Unmarshal(JSON, &doc); err != nil {
		t.Fatal(err)
	}
	sec := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)["bearer"].(map[string]any)
	if sec["type"] != "http" || sec["scheme"] != "bearer" {
		t.Errorf("bearer scheme = %v", sec)
	}
}

func TestScopes(t *testing.T) {
	tests := []struct {
		method, path string
		want         []string
		ok           bool
	}{
		{"POST", "/v1/referrals", []string{"referral:send"}, true},
		{"GET", "/v1/referrals", []string{"referral:read"}, true},
		{"GET", "/v1/referrals/x", []string{"referral:read"}, true},
		{"POST", "/v1/referrals/x/status", []string{"referral:update"}, true},
		{"GET", "/v1/referrals/x/receipts", []string{"referral:read", "audit:read"}, true},
		{"POST", "/v1/statement-requests", []string{"statement:request"}, true},
		{"GET", "/v1/statement-requests", []string{"statement:read"}, true},
		{"GET", "/v1/statement-requests/x", []string{"statement:read"}, true},
		{"POST", "/v1/statement-requests/x/consent", []string{"consent:record"}, true},
		{"POST", "/v1/statement-requests/x/response", []string{"statement:respond"}, true},
		{"GET", "/healthz", nil, true},
		{"GET", "/v1/openapi.json", nil, true},
		{"PUT", "/v1/referrals", nil, false},
		{"GET", "/nope", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got, ok := Scopes(tt.method, tt.path)
			if ok != tt.ok || !slices.Equal(got, tt.want) {
				t.Fatalf("Scopes = %v, %v, want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestLoadRefusesBrokenDocuments(t *testing.T) {
	base := func(schema string) []byte {
		return []byte(`{"openapi":"3.1.0","paths":{"/x":{"get":{"responses":{"200":{"description":"d",
			"content":{"application/json":{"schema":` + schema + `}}}}}}},
			"components":{"schemas":{"A":{"type":"string"}}}}`)
	}
	tests := []struct {
		name string
		doc  []byte
		ok   bool
	}{
		{"fine", base(`{"type":"object","properties":{"a":{"$ref":"#/components/schemas/A"}}}`), true},
		{"not a schema", base(`{"type":"strin"}`), false},
		{"nested not a schema", base(`{"type":"array","items":{"minLength":-1}}`), false},
		{"dangling reference", base(`{"$ref":"#/components/schemas/B"}`), false},
		{"remote reference", base(`{"$ref":"https://example.com/s.json"}`), false},
		{"file reference", base(`{"$ref":"/etc/passwd"}`), false},
		{"bad pattern", base(`{"type":"string","pattern":"(?=a)"}`), false},
		{"empty anyOf", base(`{"anyOf":[]}`), false},
		{"openapi 3.0", []byte(`{"openapi":"3.0.3","paths":{"/x":{}}}`), false},
		{"no paths", []byte(`{"openapi":"3.1.0","paths":{}}`), false},
		{"not an object", []byte(`[]`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(tt.doc)
			if (err == nil) != tt.ok {
				t.Fatalf("load: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestFormats(t *testing.T) {
	tests := []struct {
		name   string
		format string
		inst   string
		ok     bool
	}{
		{"date-time Z", "date-time", "2026-11-20T09:00:00Z", true},
		{"date-time offset", "date-time", "2026-11-20T09:00:00+07:00", true},
		{"date-time fraction", "date-time", "2026-11-20T09:00:00.123456789Z", true},
		{"date-time lower case", "date-time", "2026-11-20t09:00:00z", false},
		{"date-time space", "date-time", "2026-11-20 09:00:00Z", false},
		{"date-time no zone", "date-time", "2026-11-20T09:00:00", false},
		{"date-time leap second", "date-time", "2026-12-31T23:59:60Z", false},
		{"date-time before 1900", "date-time", "1899-12-31T23:59:59Z", false},
		{"date-time impossible day", "date-time", "2026-02-29T09:00:00Z", false},
		{"date", "date", "2026-11-20", true},
		{"date impossible", "date", "2026-02-29", false},
		{"date before 1900", "date", "1899-01-01", false},
		{"date short", "date", "2026-1-20", false},
		{"date with time", "date", "2026-11-20T09:00:00Z", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			validate := validateDateTime
			if tt.format == "date" {
				validate = validateDate
			}
			if err := validate(tt.inst); (err == nil) != tt.ok {
				t.Fatalf("%s %q: %v, want ok=%v", tt.format, tt.inst, err, tt.ok)
			}
			if tt.format == "date-time" {
				if _, err := ParseDateTime(tt.inst); (err == nil) != tt.ok {
					t.Fatalf("ParseDateTime %q: %v", tt.inst, err)
				}
			}
		})
	}
}

func TestSchema(t *testing.T) {
	s, err := Schema("StatusChange")
	if err != nil {
		t.Fatal(err)
	}
	if s.Location != BaseURL+"#/components/schemas/StatusChange" {
		t.Errorf("location %q", s.Location)
	}
	if err := s.Validate(map[string]any{"status": "accepted"}); err != nil {
		t.Error(err)
	}
	if err := s.Validate(map[string]any{"status": "read"}); err == nil {
		t.Error("read accepted")
	}
	if _, err := Schema("Nothing"); err == nil {
		t.Error("an unknown schema compiled")
	}
}

func BenchmarkCheckItem(b *testing.B) {
	body := []byte(item("read", goodReferral))
	b.ReportAllocs()
	for b.Loop() {
		if err := Check("GET", "/v1/referrals/01JD5X", 200, ctJSON, body); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEnum(t *testing.T) {
	if got := Enum("DeclineReason"); !slices.Equal(got, []string{"no-consent", "risk-to-victim", "not-known", "other"}) {
		t.Fatalf("DeclineReason = %v", got)
	}
	if Enum("NoSuchSchema") != nil {
		t.Fatal("an unknown schema has an enumeration")
	}
}
