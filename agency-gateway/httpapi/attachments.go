package httpapi

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/problem"
	"github.com/rujukan/rujukan/policy"
)

// attachmentRoutes serves uploads and downloads of files.
//
//   - POST /v1/attachments?for=referral|statement-request|statement: the
//     raw file as the body (streamed, never held whole), its type in
//     Content-Type, its name in Content-Disposition (filename or
//     filename*). 201 {"id","sha256","size","type"}.
//   - GET /v1/referrals/{id}/attachments/{aid} and the same under
//     statement requests: the file, decrypted as it is read, with Range
//     support, always as a download.
func (s *Server) attachmentRoutes() {
	s.route("POST /v1/attachments", policy.ActionReferralSend, s.upload)
	s.route("GET /v1/referrals/{id}/attachments/{aid}", policy.ActionReferralRead, s.download("referral", policy.ActionReferralRead))
	s.route("GET /v1/statement-requests/{id}/attachments/{aid}", policy.ActionStatementRequestRead,
		s.download("statement-request", policy.ActionStatementRequestRead))
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, p policy.Principal) {
	forKind := r.URL.Query().Get("for")
	action := policy.ActionReferralSend
	switch forKind {
	case "statement-request":
		action = policy.ActionStatementRequestSend
	case "statement":
		action = policy.ActionStatementRespond
	}
	name := ""
	if cd := r.Header.Get("Content-Disposition"); cd != "" {
		_, params, err := mime.ParseMediaType(cd)
		if err != nil {
			s.writeError(w, r, action, badRequest("Content-Disposition is malformed"))
			return
		}
		name = params["filename"]
	}
	max := s.gw.MaxAttachmentSize()
	if r.ContentLength > max {
		s.writeError(w, r, action, gateway.ErrTooLarge)
		return
	}
	body := http.MaxBytesReader(w, r.Body, max+1)
	info, err := s.gw.Upload(r.Context(), p, forKind, r.Header.Get("Content-Type"), name, body)
	if err != nil {
		s.writeError(w, r, action, err)
		return
	}
	w.Header().Set("Location", "/v1/attachments/"+info.ID)
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) download(kind string, action policy.Action) func(http.ResponseWriter, *http.Request, policy.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p policy.Principal) {
		fromStart, err := CheckRange(r)
		if err != nil {
			problem.Write(w, problem.New(http.StatusRequestedRangeNotSatisfiable, err.Error()))
			return
		}
		f, err := s.gw.OpenAttachment(r.Context(), p, kind, r.PathValue("id"), r.PathValue("aid"), fromStart)
		if err != nil {
			s.writeError(w, r, action, err)
			return
		}
		defer f.Close()
		ServeAttachment(w, r, f)
	}
}

// MaxRanges is the most ranges one request may ask for: each costs the
// decryption of at least one 64 KiB chunk.
const MaxRanges = 16

// CheckRange refuses a Range header of more than MaxRanges ranges and
// reports whether the request reads the file from its start (no range, or
// one starting at byte 0): only such a download is audited.
func CheckRange(r *http.Request) (fromStart bool, err error) {
	h := r.Header.Get("Range")
	if h == "" || r.Method == http.MethodHead {
		return r.Method != http.MethodHead, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return true, nil // not a byte range: ServeContent sends the whole file
	}
	if strings.Count(spec, ",") >= MaxRanges {
		return false, fmt.Errorf("at most %d ranges in one request", MaxRanges)
	}
	return strings.HasPrefix(strings.TrimSpace(spec), "0-"), nil
}

// ServeAttachment writes an opened file as a download: never rendered
// inline, its type as the bytes showed it, Range requests answered from
// the sealed file.
func ServeAttachment(w http.ResponseWriter, r *http.Request, f *gateway.AttachmentFile) {
	h := w.Header()
	h.Set("Content-Type", f.Type)
	h.Set("Content-Disposition", contentDisposition(f.Name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "no-store")
	h.Set("ETag", `"`+f.SHA256+`"`)
	rw := &rangeWriter{ResponseWriter: w}
	http.ServeContent(rw, r, "", f.ModTime, io.NewSectionReader(f, 0, f.Size))
}

// rangeWriter answers an unsatisfiable range with a problem, as every
// other error, instead of ServeContent's plain text.
type rangeWriter struct {
	http.ResponseWriter
	swallow bool
}

func (w *rangeWriter) WriteHeader(code int) {
	if code == http.StatusRequestedRangeNotSatisfiable {
		w.swallow = true
		h := w.Header()
		h.Del("Content-Type")
		h.Del("Content-Disposition")
		h.Del("X-Content-Type-Options")
		problem.Write(w.ResponseWriter, problem.New(code, "the range is outside the file"))
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *rangeWriter) Write(b []byte) (int, error) {
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// contentDisposition is attachment; filename=<ASCII fallback>;
// filename*=UTF-8”<name> (RFC 6266).
func contentDisposition(name string) string {
	ascii := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '%' {
			return '_'
		}
		return r
	}, name)
	return `attachment; filename="` + ascii + `"; filename*=UTF-8''` + url.PathEscape(name)
}

func badRequest(msg string) error { return fmt.Errorf("%w: %s", gateway.ErrBadRequest, msg) }
