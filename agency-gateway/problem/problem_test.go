package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/problem"
)

func TestWrite(t *testing.T) {
	secret := errors.New("open /var/lib/rujukan/iom/gateway.db: permission denied")
	tests := []struct {
		name       string
		p          problem.Problem
		wantStatus int
		want       map[string]any
	}{
		{"not found", problem.For(problem.NotFound, "no referral with this id"), 404, map[string]any{
			"type": "https://rujukan.id/problems/not-found", "title": "Not found", "status": 404.0,
			"detail": "no referral with this id"}},
		{"invalid body with errors", problem.Invalid([]problem.FieldError{{Field: "/to", Code: "required", Message: "is required"}}),
			422, map[string]any{
				"type": "https://rujukan.id/problems/invalid-body", "title": "The request body is invalid", "status": 422.0,
				"detail": "The request body has 1 error; see errors.",
				"errors": []any{map[string]any{"field": "/to", "code": "required", "message": "is required"}}}},
		{"forbidden with reason", problem.For(problem.Forbidden, "consent does not cover law-enforcement").WithReason("consent-purpose"),
			403, map[string]any{
				"type": "https://rujukan.id/problems/forbidden", "title": "The request is not allowed", "status": 403.0,
				"detail": "consent does not cover law-enforcement", "reason": "consent-purpose"}},
		{"internal hides the error", problem.For(problem.Internal, secret.Error()), 500, map[string]any{
			"type": "https://rujukan.id/problems/internal", "title": "Internal error", "status": 500.0,
			"detail": "The gateway could not complete the request. The failure has been logged."}},
		{"hand-made 5xx hides everything", problem.Problem{Type: problem.Conflict.URI(), Title: "x", Status: 502,
			Detail: secret.Error(), Errors: []problem.FieldError{{Field: "/x", Code: "y", Message: secret.Error()}},
			Reason: secret.Error()}, 502, map[string]any{
			"type": "about:blank", "title": "Bad Gateway", "status": 502.0}},
		{"unavailable keeps a reason code", problem.For(problem.Unavailable, "").WithReason("broker-disconnected"), 503,
			map[string]any{"type": "https://rujukan.id/problems/unavailable", "title": "Service unavailable",
				"status": 503.0, "detail": "The gateway is not ready to serve requests.", "reason": "broker-disconnected"}},
		{"zero problem", problem.Problem{}, 500, map[string]any{
			"type": "about:blank", "title": "Internal Server Error", "status": 500.0}},
		{"success status refused", problem.Problem{Type: "about:blank", Status: 200, Detail: "x"}, 500, map[string]any{
			"type": "about:blank", "title": "Internal Server Error", "status": 500.0}},
		{"by status", problem.New(http.StatusConflict, "already completed"), 409, map[string]any{
			"type": "https://rujukan.id/problems/conflict", "title": "The request conflicts with the current state",
			"status": 409.0, "detail": "already completed"}},
		{"by status 400", problem.New(http.StatusBadRequest, "malformed JSON at byte 3"), 400, map[string]any{
			"type": "https://rujukan.id/problems/bad-request", "title": "The request is malformed",
			"status": 400.0, "detail": "malformed JSON at byte 3"}},
		{"by status 422", problem.New(http.StatusUnprocessableEntity, "see errors"), 422, map[string]any{
			"type": "https://rujukan.id/problems/invalid-body", "title": "The request body is invalid",
			"status": 422.0, "detail": "see errors"}},
		{"by status 500 hides the error", problem.New(http.StatusInternalServerError, secret.Error()), 500, map[string]any{
			"type": "https://rujukan.id/problems/internal", "title": "Internal error", "status": 500.0,
			"detail": "The gateway could not complete the request. The failure has been logged."}},
		{"status without a code", problem.New(499, "client closed the request"), 499, map[string]any{
			"type": "about:blank", "title": "Client Closed Request", "status": 499.0, "detail": "client closed the request"}},
		{"status without a code 5xx", problem.New(http.StatusBadGateway, secret.Error()), 502, map[string]any{
			"type": "about:blank", "title": "Bad Gateway", "status": 502.0}},
		{"not an error status", problem.New(http.StatusOK, "fine"), 500, map[string]any{
			"type": "https://rujukan.id/problems/internal", "title": "Internal error", "status": 500.0,
			"detail": "The gateway could not complete the request. The failure has been logged."}},
		{"unknown code", problem.For(problem.Code("teapot"), "x"), 500, map[string]any{
			"type": "https://rujukan.id/problems/internal", "title": "Internal error", "status": 500.0,
			"detail": "The gateway could not complete the request. The failure has been logged."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rec.Header().Set("ETag", `"abc"`)
			problem.Write(rec, tt.p)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			for k, v := range map[string]string{"Content-Type": "application/problem+json", "Cache-Control": "no-store",
				"X-Content-Type-Options": "nosniff", "ETag": ""} {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if a, b := fmt.Sprint(got), fmt.Sprint(tt.want); a != b {
				t.Errorf("body = %s\nwant   %s", a, b)
			}
			if strings.Contains(rec.Body.String(), "permission denied") {
				t.Errorf("internal error text leaked: %s", rec.Body.String())
			}
		})
	}
}

// TestWriteOverHTTP checks the headers a real client sees, including a
// WWW-Authenticate header set before Write.
func TestWriteOverHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", problem.BearerChallenge("iom", problem.BearerInvalidToken, "token expired", ""))
		problem.Write(w, problem.For(problem.Unauthorized, "The token has expired.").WithReason("token-expired"))
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/referrals")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 401 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got, want := resp.Header.Get("WWW-Authenticate"), `Bearer realm="iom", error="invalid_token", error_description="token expired"`; got != want {
		t.Fatalf("WWW-Authenticate = %q, want %q", got, want)
	}
	if ct := resp.Header.Get("Content-Type"); ct != problem.MediaType {
		t.Fatalf("Content-Type = %q", ct)
	}
	var p problem.Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Reason != "token-expired" || p.Status != 401 {
		t.Fatalf("body %s: %v", body, err)
	}
}

func TestBearerChallenge(t *testing.T) {
	tests := []struct {
		name                     string
		realm, code, desc, scope string
		want                     string
	}{
		{"no token", "iom", "", "ignored", "ignored", `Bearer realm="iom"`},
		{"nothing", "", "", "", "", `Bearer`},
		{"invalid token", "iom", problem.BearerInvalidToken, "", "", `Bearer realm="iom", error="invalid_token"`},
		{"insufficient scope", "shelter", problem.BearerInsufficientScope, "needs referral:send", "referral:send",
			`Bearer realm="shelter", error="insufficient_scope", error_description="needs referral:send", scope="referral:send"`},
		{"injection removed", "iom\", evil=\"1", problem.BearerInvalidToken, "a\r\nSet-Cookie: x=1\\", "",
			`Bearer realm="iom, evil=1", error="invalid_token", error_description="aSet-Cookie: x=1"`},
		{"non-ASCII removed", "iom", problem.BearerInvalidToken, "kedaluwarsa é", "",
			`Bearer realm="iom", error="invalid_token", error_description="kedaluwarsa "`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := problem.BearerChallenge(tt.realm, tt.code, tt.desc, tt.scope); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestCodes(t *testing.T) {
	seen := map[int]bool{}
	for _, c := range problem.Codes() {
		p := problem.For(c, "")
		if p.Type != problem.BaseURI+string(c) || p.Status != c.Status() || p.Title == "" {
			t.Errorf("%s: %+v", c, p)
		}
		seen[p.Status] = true
	}
	for _, s := range []int{400, 401, 403, 404, 405, 409, 413, 415, 422, 500, 503} {
		if !seen[s] {
			t.Errorf("no code for status %d", s)
		}
	}
	if !slices.Contains(problem.Codes(), problem.BodyTooLarge) {
		t.Error("missing body-too-large")
	}
}

// TestFieldErrorConversion keeps body.FieldError convertible.
func TestFieldErrorConversion(t *testing.T) {
	_, errs := body.ParseReferral([]byte(`{}`))
	var out []problem.FieldError
	for _, e := range errs {
		out = append(out, problem.FieldError(e))
	}
	if len(out) == 0 || out[0].Field == "" || out[0].Code == "" {
		t.Fatalf("conversion lost data: %+v", out)
	}
	a, _ := json.Marshal(errs)
	b, _ := json.Marshal(out)
	if string(a) != string(b) {
		t.Fatalf("different JSON:\n%s\n%s", a, b)
	}
}

func ExampleWrite() {
	rec := httptest.NewRecorder()
	problem.Write(rec, problem.For(problem.Conflict, "A completed referral cannot be withdrawn.").WithReason("illegal-transition"))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	fmt.Println(rec.Body.String())
	// Output:
	// 409 application/problem+json
	// {"type":"https://rujukan.id/problems/conflict","title":"The request conflicts with the current state","status":409,"detail":"A completed referral cannot be withdrawn.","reason":"illegal-transition"}
}
