// Package httpapi serves one gateway's HTTP API (openapi.json; see
// docs/ARCHITECTURE.md §1): JSON in and out, RFC 9457 problem details for
// every error, RFC 6750 bearer challenges for token failures. It only translates: every decision is the
// gateway's and the policy package's, and every error is mapped to a status
// in one table (writeError). Internal error text never reaches a caller.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/openapi"
	"github.com/rujukan/rujukan/agency-gateway/problem"
	"github.com/rujukan/rujukan/policy"
)

// Server is the HTTP API of one gateway.
type Server struct {
	gw      *gateway.Gateway
	log     *slog.Logger
	maxBody int64
	mux     *http.ServeMux
	routes  []string
}

// New returns the API handler of gw.
func New(gw *gateway.Gateway, maxBody int64, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{gw: gw, log: log, maxBody: maxBody, mux: http.NewServeMux()}
	s.send("POST /v1/referrals", "referral", policy.ActionReferralSend, false)
	s.route("GET /v1/referrals", policy.ActionReferralList, s.list(policy.ActionReferralList, gw.List))
	s.route("GET /v1/referrals/{id}", policy.ActionReferralRead, s.get(policy.ActionReferralRead, gw.Get))
	s.send("POST /v1/referrals/{id}/status", "status", policy.ActionReferralStatus, true)
	s.route("GET /v1/referrals/{id}/receipts", policy.ActionReferralReceipts, s.receipts(policy.ActionReferralReceipts, gw.Receipts))
	s.send("POST /v1/statement-requests", "statement-request", policy.ActionStatementRequestSend, false)
	s.route("GET /v1/statement-requests", policy.ActionStatementRequestList, s.list(policy.ActionStatementRequestList, gw.ListStatementRequests))
	s.route("GET /v1/statement-requests/{id}", policy.ActionStatementRequestRead, s.get(policy.ActionStatementRequestRead, gw.GetStatementRequest))
	s.send("POST /v1/statement-requests/{id}/consent", "consent", policy.ActionConsentRecord, true)
	s.send("POST /v1/statement-requests/{id}/response", "statement", policy.ActionStatementRespond, true)
	s.route("GET /v1/statement-requests/{id}/receipts", policy.ActionStatementRequestRead, s.receipts(policy.ActionStatementRequestRead, gw.StatementRequestReceipts))
	s.route("GET /v1/audit", policy.ActionAuditList, s.audit)
	s.route("GET /v1/audit/verify", policy.ActionAuditVerify, s.verifyAudit)
	s.route("GET /v1/audit/checkpoint", policy.ActionAuditVerify, s.auditCheckpoint)
	s.route("GET /v1/audit/{seq}/proof", policy.ActionAuditVerify, s.auditInclusion)
	s.route("GET /v1/audit/consistency", policy.ActionAuditVerify, s.auditConsistency)
	s.witnessRoutes()
	s.attachmentRoutes()
	s.route("GET /v1/audit/export", policy.ActionAuditList, s.auditExport)
	s.handle("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.handle("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := gw.Ready(); reason != "" {
			problem.Write(w, problem.New(http.StatusServiceUnavailable, "the gateway is not ready").WithReason(reason))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	s.handle("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openapi.JSON)
	})
	s.mux.HandleFunc("/", s.noRoute)
	return s
}

// noRoute answers 405 with Allow for a known path and another method, and
// 404 otherwise.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		problem.Write(w, problem.New(http.StatusMethodNotAllowed, "the method is not allowed on this path"))
		return
	}
	problem.Write(w, problem.New(http.StatusNotFound, "no such route"))
}

// Routes lists the method and path pattern of every route served.
func (s *Server) Routes() []string { return s.routes }

func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.routes = append(s.routes, pattern)
	_, path, _ := strings.Cut(pattern, " ")
	agency := s.gw.Agency()
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		sw.Header().Set("Cache-Control", "no-store")
		sw.Header().Set("X-Content-Type-Options", "nosniff")
		h(sw, r)
		m := s.gw.Metrics()
		m.Requests.WithLabelValues(agency, path, strconv.Itoa(sw.code)).Inc()
		m.Latency.WithLabelValues(agency, path).Observe(time.Since(start).Seconds())
	})
}

// route serves an authenticated API route: the bearer token is verified
// before the handler runs; the handler and the gateway decide the scope.
func (s *Server) route(pattern string, action policy.Action, h func(http.ResponseWriter, *http.Request, policy.Principal)) {
	s.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil {
			s.gw.Metrics().AuthFailures.WithLabelValues(s.gw.Agency(), policy.ReasonOf(err)).Inc()
			s.writeError(w, r, action, err)
			return
		}
		h(w, r, p)
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) authenticate(r *http.Request) (policy.Principal, error) {
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if auth == "" {
		return policy.Principal{}, &policy.Error{Reason: policy.ReasonTokenMissing, Detail: "no bearer token"}
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return policy.Principal{}, &policy.Error{Reason: policy.ReasonTokenMalformed, Detail: "Authorization is not a Bearer token"}
	}
	return s.gw.Verifier().Verify(strings.TrimSpace(token))
}

// readJSON reads a JSON request body under the size limit.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, errUnsupportedMedia
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("%w: failed to read the body", gateway.ErrBadRequest)
	}
	return b, nil
}

var (
	errUnsupportedMedia = errors.New("unsupported media type")
	errTooLarge         = errors.New("body too large")
)

// send serves a route that sends: a new referral or request (answered
// 202 with its id and status) or a change to one (answered 200 with the
// record as it now is).
func (s *Server) send(pattern, kind string, action policy.Action, onRecord bool) {
	s.route(pattern, action, func(w http.ResponseWriter, r *http.Request, p policy.Principal) {
		body, err := s.readJSON(w, r)
		if err == nil {
			d := gateway.Draft{Kind: kind, Action: action, Ref: r.PathValue("id"), Body: body}
			var acc gateway.Accepted
			if acc, err = s.gw.Send(r.Context(), p, d); err == nil {
				if !onRecord {
					_, path, _ := strings.Cut(pattern, " ")
					w.Header().Set("Location", path+"/"+acc.ID)
					writeJSON(w, http.StatusAccepted, acc)
					return
				}
				var it gateway.Item
				if it, err = s.gw.Item(p, action, acc.ID); err == nil {
					writeJSON(w, http.StatusOK, it)
					return
				}
			}
		}
		s.writeError(w, r, action, err)
	})
}

func (s *Server) list(action policy.Action, fn func(policy.Principal, gateway.ListQuery) (gateway.Page, error)) func(http.ResponseWriter, *http.Request, policy.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p policy.Principal) {
		q := r.URL.Query()
		lq := gateway.ListQuery{Box: q.Get("box"), Status: q.Get("status"), Cursor: q.Get("cursor")}
		var err error
		if v := q.Get("limit"); v != "" {
			if lq.Limit, err = strconv.Atoi(v); err != nil {
				err = fmt.Errorf("%w: limit is not a number", gateway.ErrBadRequest)
			}
		}
		var page gateway.Page
		if err == nil {
			if page, err = fn(p, lq); err == nil {
				writeJSON(w, http.StatusOK, page)
				return
			}
		}
		s.writeError(w, r, action, err)
	}
}

func (s *Server) get(action policy.Action, fn func(context.Context, policy.Principal, string) (gateway.Item, error)) func(http.ResponseWriter, *http.Request, policy.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p policy.Principal) {
		it, err := fn(r.Context(), p, r.PathValue("id"))
		if err != nil {
			s.writeError(w, r, action, err)
			return
		}
		writeJSON(w, http.StatusOK, it)
	}
}

func (s *Server) receipts(action policy.Action, fn func(policy.Principal, string) ([]gateway.ReceiptView, error)) func(http.ResponseWriter, *http.Request, policy.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p policy.Principal) {
		rs, err := fn(p, r.PathValue("id"))
		if err != nil {
			s.writeError(w, r, action, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"receipts": rs})
	}
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request, p policy.Principal) {
	q := r.URL.Query()
	aq := gateway.AuditQuery{Action: q.Get("action"), Actor: q.Get("actor"), Object: q.Get("object")}
	var err error
	if v := q.Get("after"); v != "" {
		if aq.After, err = strconv.ParseUint(v, 10, 64); err != nil || aq.After == math.MaxUint64 {
			s.writeError(w, r, policy.ActionAuditList, fmt.Errorf("%w: after is not a sequence number", gateway.ErrBadRequest))
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if aq.Limit, err = strconv.Atoi(v); err != nil {
			s.writeError(w, r, policy.ActionAuditList, fmt.Errorf("%w: limit is not a number", gateway.ErrBadRequest))
			return
		}
	}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := q.Get(f.name); v != "" {
			if *f.t, err = time.Parse(time.RFC3339, v); err != nil {
				s.writeError(w, r, policy.ActionAuditList, fmt.Errorf("%w: %s is not an RFC 3339 time", gateway.ErrBadRequest, f.name))
				return
			}
		}
	}
	page, err := s.gw.Audit(p, aq)
	if err != nil {
		s.writeError(w, r, policy.ActionAuditList, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, p policy.Principal) {
	v, err := s.gw.VerifyAudit(p)
	if err != nil {
		s.writeError(w, r, policy.ActionAuditVerify, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request, p policy.Principal) {
	cp, err := s.gw.AuditCheckpoint(p)
	if err != nil {
		s.writeError(w, r, policy.ActionAuditVerify, err)
		return
	}
	writeJSON(w, http.StatusOK, cp)
}

// treeSize parses an optional tree size or sequence number parameter: 0
// when absent.
func treeSize(v, name string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: %s must be a number from 1", gateway.ErrBadRequest, name)
	}
	return n, nil
}

func (s *Server) auditInclusion(w http.ResponseWriter, r *http.Request, p policy.Principal) {
	seq, err := treeSize(r.PathValue("seq"), "seq")
	if err == nil && seq == 0 {
		err = fmt.Errorf("%w: seq must be a number from 1", gateway.ErrBadRequest)
	}
	var size uint64
	if err == nil {
		size, err = treeSize(r.URL.Query().Get("size"), "size")
	}
	if err != nil {
		s.writeError(w, r, policy.ActionAuditVerify, err)
		return
	}
	proof, err := s.gw.AuditInclusion(p, seq, size)
	if err != nil {
		s.writeError(w, r, policy.ActionAuditVerify, err)
		return
	}
	writeJSON(w, http.StatusOK, proof)
}

func (s *Server) auditConsistency(w http.ResponseWriter, r *http.Request, p policy.Principal) {
	q := r.URL.Query()
	from, err := treeSize(q.Get("from"), "from")
	if err == nil && from == 0 {
		err = fmt.Errorf("%w: from is required", gateway.ErrBadRequest)
	}
	var to uint64
	if err == nil {
		to, err = treeSize(q.Get("to"), "to")
	}
	if err != nil {
		s.writeError(w, r, policy.ActionAuditVerify, err)
		return
	}
	proof, err := s.gw.AuditConsistency(p, from, to)
	if err != nil {
		s.writeError(w, r, policy.ActionAuditVerify, err)
		return
	}
	writeJSON(w, http.StatusOK, proof)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// writeError is the one table from errors to HTTP statuses.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, action policy.Action, err error) {
	reason := policy.ReasonOf(err)
	var inv *gateway.InvalidError
	switch {
	case errors.Is(err, policy.ErrInvalidToken):
		desc := strings.ReplaceAll(reason, `"`, "")
		w.Header().Set("WWW-Authenticate", `Bearer realm="rujukan", error="invalid_token", error_description="`+desc+`"`)
		if reason == policy.ReasonTokenMissing {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rujukan"`)
		}
		problem.Write(w, problem.New(http.StatusUnauthorized, "the bearer token is missing or not valid").WithReason(reason))
	case errors.Is(err, policy.ErrInsufficientScope):
		scopes := policy.RequiredScopes(action)
		w.Header().Set("WWW-Authenticate", `Bearer realm="rujukan", error="insufficient_scope", scope="`+
			strings.Join(scopes, " ")+`"`)
		pr := problem.New(http.StatusForbidden, "the token lacks the scope for this action: it needs "+
			strings.Join(scopes, " or ")).WithReason(reason)
		pr.Scopes = scopes
		problem.Write(w, pr)
	case errors.Is(err, policy.ErrDenied):
		problem.Write(w, problem.New(http.StatusForbidden, safeDetail(err)).WithReason(reason))
	case errors.Is(err, policy.ErrConflict):
		problem.Write(w, problem.New(http.StatusConflict, safeDetail(err)).WithReason(reason))
	case errors.Is(err, policy.ErrInvalidInput):
		problem.Write(w, problem.New(http.StatusUnprocessableEntity, safeDetail(err)).WithReason(reason))
	case errors.As(err, &inv):
		problem.Write(w, fieldProblem(inv))
	case errors.Is(err, gateway.ErrTooLarge):
		problem.Write(w, problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("the file is larger than %d bytes", s.gw.MaxAttachmentSize())))
	case errors.Is(err, gateway.ErrUnsupportedType):
		problem.Write(w, problem.New(http.StatusUnsupportedMediaType, "the file is not of an accepted type, or its bytes are not of the type it is sent as").WithReason("file-type"))
	case errors.Is(err, gateway.ErrArriving):
		problem.Write(w, problem.New(http.StatusConflict, "the file is still arriving; try again once it is available").WithReason("arriving"))
	case errors.Is(err, gateway.ErrNoFiles):
		problem.Write(w, problem.New(http.StatusServiceUnavailable, ""))
	case errors.Is(err, errTooLarge):
		problem.Write(w, problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", s.maxBody)))
	case errors.Is(err, errUnsupportedMedia):
		problem.Write(w, problem.New(http.StatusUnsupportedMediaType, "the body must be application/json"))
	case errors.Is(err, gateway.ErrNotFound):
		problem.Write(w, problem.New(http.StatusNotFound, "no such record"))
	case errors.Is(err, gateway.ErrBadRequest):
		problem.Write(w, problem.New(http.StatusBadRequest, err.Error()))
	case errors.Is(err, context.Canceled):
		problem.Write(w, problem.New(499, "client closed the request"))
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		problem.Write(w, problem.New(http.StatusInternalServerError, "internal error; the gateway log has the details"))
	}
}

// safeDetail returns a policy refusal's own detail, which names no internal
// state.
func safeDetail(err error) string {
	var pe *policy.Error
	if errors.As(err, &pe) && pe.Detail != "" {
		return pe.Detail
	}
	return policy.ReasonOf(err)
}

func fieldProblem(inv *gateway.InvalidError) problem.Problem {
	code := http.StatusUnprocessableEntity
	if len(inv.Fields) == 1 {
		switch inv.Fields[0].Code {
		case "syntax", "encoding", "trailing-data":
			code = http.StatusBadRequest
		case "too-large":
			code = http.StatusRequestEntityTooLarge
		}
	}
	p := problem.New(code, "the body is not valid; see errors")
	for _, f := range inv.Fields {
		p.Errors = append(p.Errors, problem.FieldError{Field: f.Field, Code: f.Code, Message: f.Message})
	}
	return p
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}
