package httpapi

import (
	"net/http"

	"github.com/rujukan/rujukan/policy"
)

// witnessRoutes registers the routes of cross-witnessing.
func (s *Server) witnessRoutes() {
	s.route("GET /v1/audit/witnesses", policy.ActionAuditVerify, s.auditWitnesses)
}

func (s *Server) auditWitnesses(w http.ResponseWriter, r *http.Request, p policy.Principal) {
	ws, err := s.gw.Witnesses(p)
	if err != nil {
		s.writeError(w, r, policy.ActionAuditVerify, err)
		return
	}
	writeJSON(w, http.StatusOK, ws)
}
