// Package problem writes HTTP error responses as RFC 9457 problem details
// (application/problem+json), the only error format of a gateway's API.
//
// Each kind of problem has a [Code], a stable type URI under [BaseURI], a
// title and an HTTP status, all in one table. Handlers pick a status ([New])
// or, where one status has several kinds, a code ([For]), and add a detail
// for the caller.
//
// # Guarantees
//
//   - [Write] never puts internal error text in a 5xx response: for any
//     status of 500 or more it replaces the detail with the code's fixed
//     text, drops field errors and keeps the reason only when it is a short
//     lowercase code.
//   - Every response carries Content-Type application/problem+json,
//     Cache-Control no-store and X-Content-Type-Options nosniff.
//   - [BearerChallenge] builds RFC 6750 WWW-Authenticate values that cannot
//     be used to inject header syntax.
//
// The package depends on nothing but the standard library. Field errors of
// other packages with the same three string fields (such as
// body.FieldError) convert to [FieldError] with a plain conversion.
package problem

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// BaseURI is the prefix of every problem type URI.
const BaseURI = "https://rujukan.id/problems/"

// MediaType is the content type of a problem response.
const MediaType = "application/problem+json"

// Code names a kind of problem; its type URI is BaseURI + code.
type Code string

// Codes.
const (
	BadRequest           Code = "bad-request"            // 400: malformed request or body syntax
	InvalidQuery         Code = "invalid-query"          // 400: a query parameter is malformed
	Unauthorized         Code = "unauthorized"           // 401: missing or invalid token
	Forbidden            Code = "forbidden"              // 403: scope, network rule or consent
	NotFound             Code = "not-found"              // 404
	MethodNotAllowed     Code = "method-not-allowed"     // 405
	Conflict             Code = "conflict"               // 409: illegal state transition
	BodyTooLarge         Code = "body-too-large"         // 413
	UnsupportedMediaType Code = "unsupported-media-type" // 415
	InvalidBody          Code = "invalid-body"           // 422: the body failed field validation
	Internal             Code = "internal"               // 500
	Unavailable          Code = "unavailable"            // 503: not ready (broker, database)
)

type entry struct {
	status int
	title  string
	detail string // fixed detail for 5xx
}

var table = map[Code]entry{
	BadRequest:           {http.StatusBadRequest, "The request is malformed", ""},
	InvalidQuery:         {http.StatusBadRequest, "A query parameter is invalid", ""},
	Unauthorized:         {http.StatusUnauthorized, "Authentication is required", ""},
	Forbidden:            {http.StatusForbidden, "The request is not allowed", ""},
	NotFound:             {http.StatusNotFound, "Not found", ""},
	MethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed", ""},
	Conflict:             {http.StatusConflict, "The request conflicts with the current state", ""},
	BodyTooLarge:         {http.StatusRequestEntityTooLarge, "The request body is too large", ""},
	UnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type", ""},
	InvalidBody:          {http.StatusUnprocessableEntity, "The request body is invalid", ""},
	Internal: {http.StatusInternalServerError, "Internal error",
		"The gateway could not complete the request. The failure has been logged."},
	Unavailable: {http.StatusServiceUnavailable, "Service unavailable",
		"The gateway is not ready to serve requests."},
}

// byStatus is the code New picks for a status.
var byStatus = map[int]Code{
	http.StatusBadRequest:            BadRequest,
	http.StatusUnauthorized:          Unauthorized,
	http.StatusForbidden:             Forbidden,
	http.StatusNotFound:              NotFound,
	http.StatusMethodNotAllowed:      MethodNotAllowed,
	http.StatusConflict:              Conflict,
	http.StatusRequestEntityTooLarge: BodyTooLarge,
	http.StatusUnsupportedMediaType:  UnsupportedMediaType,
	http.StatusUnprocessableEntity:   InvalidBody,
	http.StatusInternalServerError:   Internal,
	http.StatusServiceUnavailable:    Unavailable,
}

// Codes returns every code, for documentation and tests.
func Codes() []Code {
	return []Code{BadRequest, InvalidQuery, Unauthorized, Forbidden, NotFound, MethodNotAllowed,
		Conflict, BodyTooLarge, UnsupportedMediaType, InvalidBody, Internal, Unavailable}
}

// Status returns the HTTP status of code, or 500 for an unknown code.
func (c Code) Status() int {
	if e, ok := table[c]; ok {
		return e.status
	}
	return http.StatusInternalServerError
}

// URI returns the problem type URI of code.
func (c Code) URI() string { return BaseURI + string(c) }

// FieldError is one problem with one field of a request body. Field is an
// RFC 6901 JSON pointer into the body.
type FieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Problem is an RFC 9457 problem details object, with two extension
// members: Errors (field-level validation errors) and Reason (a
// machine-readable reason code, e.g. from policy).
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	// Scopes, on a 403 for a missing scope, lists the scopes of which the
	// action needs one.
	Scopes []string `json:"scopes,omitempty"`
}

// New returns the problem for an HTTP status with a detail for the caller:
// the status's code from the table (400 bad-request, 422 invalid-body, ...)
// or, for a status without one, type about:blank. For 5xx the detail is
// ignored (see Write).
func New(status int, detail string) Problem {
	if code, ok := byStatus[status]; ok {
		return For(code, detail)
	}
	if status < 400 || status > 599 {
		return For(Internal, detail)
	}
	return Problem{Type: "about:blank", Title: statusTitle(status), Status: status, Detail: detail}
}

// For returns the problem of code with a detail for the caller; an
// unknown code gives the internal problem. For 5xx codes the detail is
// ignored (see Write).
func For(code Code, detail string) Problem {
	e, ok := table[code]
	if !ok {
		code, e = Internal, table[Internal]
	}
	return Problem{Type: code.URI(), Title: e.title, Status: e.status, Detail: detail}
}

func statusTitle(status int) string {
	if t := http.StatusText(status); t != "" {
		return t
	}
	if status == 499 {
		return "Client Closed Request"
	}
	return "Error"
}

// Invalid returns the invalid-body problem (422) carrying field errors.
func Invalid(errs []FieldError) Problem {
	p := For(InvalidBody, "The request body has "+plural(len(errs), "error")+"; see errors.")
	p.Errors = errs
	return p
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// WithReason returns p with a machine-readable reason code.
func (p Problem) WithReason(reason string) Problem {
	p.Reason = reason
	return p
}

// safeReason is what a reason code may look like in a 5xx response.
var safeReason = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// sanitize makes p safe to send: a known status, a title, and for 5xx no
// text that may come from an internal error.
func sanitize(p Problem) Problem {
	if p.Status < 400 || p.Status > 599 {
		p.Status = http.StatusInternalServerError
	}
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" || p.Type == "about:blank" {
		p.Title = statusTitle(p.Status)
	}
	if p.Status >= 500 {
		p.Detail = ""
		if code, ok := strings.CutPrefix(p.Type, BaseURI); ok {
			if e, ok := table[Code(code)]; ok && e.status == p.Status {
				p.Detail = e.detail
				p.Title = e.title
			}
		}
		if p.Detail == "" {
			p.Type = "about:blank"
			p.Title = statusTitle(p.Status)
		}
		p.Errors = nil
		if !safeReason.MatchString(p.Reason) {
			p.Reason = ""
		}
	}
	return p
}

// Write sends p as the response, with its status and the headers listed in
// the package documentation. Headers the caller set before, such as
// WWW-Authenticate, are kept.
func Write(w http.ResponseWriter, p Problem) {
	p = sanitize(p)
	b, err := json.Marshal(p)
	if err != nil { // not reachable with these field types
		b = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		p.Status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", MediaType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Del("ETag")
	h.Del("Last-Modified")
	w.WriteHeader(p.Status)
	_, _ = w.Write(b)
}

// RFC 6750 error codes of a Bearer challenge.
const (
	BearerInvalidRequest    = "invalid_request"
	BearerInvalidToken      = "invalid_token"
	BearerInsufficientScope = "insufficient_scope"
)

// BearerChallenge returns an RFC 6750 WWW-Authenticate value such as
// `Bearer realm="iom", error="insufficient_scope", scope="referral:send"`.
// Empty arguments are left out; with errCode empty (no token at all) the
// challenge carries only the realm, as RFC 6750 section 3.1 asks.
// Characters outside printable ASCII, quotes and backslashes are removed
// from every value.
func BearerChallenge(realm, errCode, description, scope string) string {
	var parts []string
	add := func(k, v string) {
		if v = headerValue(v); v != "" {
			parts = append(parts, k+`="`+v+`"`)
		}
	}
	add("realm", realm)
	if errCode != "" {
		add("error", errCode)
		add("error_description", description)
		add("scope", scope)
	}
	if len(parts) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(parts, ", ")
}

// headerValue keeps the characters RFC 6750 allows in an attribute value
// (%x20-21 / %x23-5B / %x5D-7E).
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
