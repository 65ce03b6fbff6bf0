package httpapi

import (
	"fmt"
	"net/http"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/policy"
)

// exportType is the media type of an audit export: JSON lines.
const exportType = "application/x-ndjson"

// exportTimeout is how long writing one export may take; the server's
// write timeout is too short for a large log.
const exportTimeout = 30 * time.Minute

// auditExport serves GET /v1/audit/export?since=&until= (RFC 3339 times,
// both optional): the gateway's export as JSON lines.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, p policy.Principal) {
	q := r.URL.Query()
	var since, until time.Time
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"since", &since}, {"until", &until}} {
		v := q.Get(f.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			s.writeError(w, r, policy.ActionAuditList, fmt.Errorf("%w: %s is not an RFC 3339 time", gateway.ErrBadRequest, f.name))
			return
		}
		*f.t = t
	}
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(exportTimeout))
	lw := &lazyWriter{w: w}
	err := s.gw.AuditExport(p, since, until, lw)
	switch {
	case err != nil && !lw.started:
		s.writeError(w, r, policy.ActionAuditList, err)
	case err != nil:
		// The answer has begun: it ends without its checkpoint line, which
		// no verifier accepts.
		s.log.Error("audit export failed", "err", err)
	case !lw.started:
		lw.start()
	}
}

// lazyWriter sends the 200 and its headers with the first write, so an
// error before it can still be answered as a problem.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) start() {
	l.started = true
	l.w.Header().Set("Content-Type", exportType)
	l.w.Header().Set("Content-Disposition", `attachment; filename="audit-export.jsonl"`)
	l.w.WriteHeader(http.StatusOK)
}

func (l *lazyWriter) Write(b []byte) (int, error) {
	if !l.started {
		l.start()
	}
	return l.w.Write(b)
}

// Unwrap lets http.ResponseController reach the connection under the
// status recorder.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
