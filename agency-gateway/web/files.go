package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/httpapi"
	"github.com/rujukan/rujukan/policy"
)

// Files (attachments) in the forms and on the record pages.
//
// Without JavaScript a form that may carry files posts as
// multipart/form-data, its file input last: the text fields are read
// first (the CSRF token among them) and each file part is streamed
// straight into the gateway's Upload, which seals it as it reads; nothing
// is written to disk in plaintext or held whole in memory. With
// JavaScript (static/upload.js) each file is uploaded on its own to POST
// /ui/attachments as it is chosen, with a progress bar, and the form then
// carries the ids as "attachment" fields. Both end in the same handler,
// which lists the ids in the body it sends.

const (
	// fileField is the name of the file input.
	fileField = "file"
	// attachmentField holds the id of a file already uploaded.
	attachmentField = "attachment"
	// attachmentNameField tells the name and size of an uploaded file
	// ("id/size/name"), to show it with a form shown again.
	attachmentNameField = "attachment_name"
	// csrfHeader carries the CSRF token of a script's upload.
	csrfHeader = "X-CSRF-Token"
	// nameHeader carries the file name of a script's upload,
	// percent-encoded (encodeURIComponent).
	nameHeader = "X-File-Name"
	// maxText bounds the text fields of a multipart form.
	maxText = 256 << 10
)

// uploads is what the file parts of one multipart form came to.
type uploads struct {
	// names are the names of the files uploaded with this request, by id.
	names map[string]keptFile
	// errKey is the message id of the first upload that failed, code its
	// status, name its file's name.
	errKey  string
	errCode int
	errName string
}

// keptFile is a file uploaded and not sent yet, shown with a form shown
// again so it is not uploaded twice.
type keptFile struct {
	ID, Name string
	Size     int64
}

func isMultipart(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "multipart/form-data"
}

// readMultipart reads a multipart form: text fields into r.PostForm, each
// file uploaded as it is read for a message of kind forKind. It answers a
// status and a message id when the request must be refused (no CSRF
// token before the first file, a malformed body); an upload that fails is
// kept in c.up, and the handler shows the form again with it.
func (s *server) readMultipart(c *ctx, forKind string) (int, string) {
	r := c.r
	maxFile := s.gw.MaxAttachmentSize()
	r.Body = http.MaxBytesReader(c.w, r.Body, maxFile*body.MaxAttachments+maxText+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		return http.StatusBadRequest, "error.badrequest"
	}
	vals := url.Values{}
	ok := csrfOK(c.sess, r.Header.Get(csrfHeader))
	var text int64
	c.up.names = map[string]keptFile{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return http.StatusRequestEntityTooLarge, "error.badrequest"
			}
			return http.StatusBadRequest, "error.badrequest"
		}
		name := p.FormName()
		if name == fileField {
			// Nothing is stored before the token is known good.
			if !ok {
				return http.StatusForbidden, "error.csrf"
			}
			fname := p.FileName()
			if fname == "" || c.up.errKey != "" {
				continue // an empty file input, or a file after one that failed
			}
			if len(vals[attachmentField]) >= body.MaxAttachments {
				c.up.errKey, c.up.errCode, c.up.errName = "files.error.count", http.StatusRequestEntityTooLarge, fname
				continue
			}
			info, err := s.gw.Upload(r.Context(), c.sess.Principal, forKind, declaredType(p.Header.Get("Content-Type"), fname), fname, p)
			if err != nil {
				c.up.errCode, c.up.errKey = s.uploadError(c, err)
				c.up.errName = fname
				continue
			}
			vals.Add(attachmentField, info.ID)
			c.up.names[info.ID] = keptFile{ID: info.ID, Name: path.Base(strings.ReplaceAll(fname, `\`, "/")), Size: info.Size}
			continue
		}
		if name == "" {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(p, maxText-text+1))
		if err != nil {
			return http.StatusBadRequest, "error.badrequest"
		}
		if text += int64(len(b)); text > maxText {
			return http.StatusRequestEntityTooLarge, "error.badrequest"
		}
		vals.Add(name, string(b))
		if name == "csrf" && !ok {
			ok = csrfOK(c.sess, string(b))
		}
	}
	if !ok {
		return http.StatusForbidden, "error.csrf"
	}
	r.PostForm, r.Form = vals, vals
	return 0, ""
}

// declaredType is the type a file is uploaded as: what the browser says,
// or failing that what its name's extension says (the bytes must be of
// it either way).
func declaredType(ct, name string) string {
	if t, _, err := mime.ParseMediaType(ct); err == nil && t != "application/octet-stream" {
		return ct
	}
	switch strings.ToLower(path.Ext(name)) {
	case ".pdf":
		return "application/pdf"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".png":
		return "image/png"
	case ".heic":
		return "image/heic"
	case ".mp3":
		return "audio/mpeg"
	case ".m4a":
		return "audio/x-m4a"
	case ".ogg", ".oga":
		return "audio/ogg"
	case ".wav":
		return "audio/wav"
	case ".mp4":
		return "video/mp4"
	}
	return ct
}

// uploadError is the status and message id of a failed upload.
func (s *server) uploadError(c *ctx, err error) (int, string) {
	var inv *gateway.InvalidError
	switch {
	case errors.Is(err, gateway.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "files.error.toolarge"
	case errors.Is(err, gateway.ErrUnsupportedType):
		return http.StatusUnsupportedMediaType, "files.error.type"
	case errors.As(err, &inv):
		return http.StatusUnprocessableEntity, "files.error.name"
	case errors.Is(err, policy.ErrInsufficientScope), errors.Is(err, policy.ErrDenied):
		return http.StatusForbidden, "error.forbidden"
	case errors.Is(err, gateway.ErrBadRequest):
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, "files.error.toolarge"
		}
		return http.StatusBadRequest, "files.error.failed"
	}
	s.log.Error("upload failed", "path", c.r.URL.Path, "err", err)
	return http.StatusInternalServerError, "files.error.failed"
}

// fileMsg is a failed upload's message.
func (s *server) fileMsg(l *loc, key string) string {
	return l.T(key, "Max", l.Size(s.gw.MaxAttachmentSize()))
}

// upload takes one file from the script: the raw file as the body, its
// type in Content-Type, its name percent-encoded in X-File-Name, the
// message it is for in ?for=. It answers {"id","name","size"} or
// {"error"} with a translated message.
func (s *server) upload(c *ctx) {
	forKind := c.r.URL.Query().Get("for")
	if forKind != "referral" && forKind != "statement-request" && forKind != "statement" {
		writeJSON(c.w, http.StatusBadRequest, map[string]string{"error": c.L.T("files.error.failed")})
		return
	}
	name, err := url.PathUnescape(c.r.Header.Get(nameHeader))
	if err != nil {
		name = ""
	}
	maxFile := s.gw.MaxAttachmentSize()
	if c.r.ContentLength > maxFile {
		writeJSON(c.w, http.StatusRequestEntityTooLarge, map[string]string{"error": s.fileMsg(c.L, "files.error.toolarge")})
		return
	}
	rd := http.MaxBytesReader(c.w, c.r.Body, maxFile+1)
	info, err := s.gw.Upload(c.r.Context(), c.sess.Principal, forKind, declaredType(c.r.Header.Get("Content-Type"), name), name, rd)
	if err != nil {
		code, key := s.uploadError(c, err)
		writeJSON(c.w, code, map[string]string{"error": s.fileMsg(c.L, key)})
		return
	}
	writeJSON(c.w, http.StatusCreated, map[string]any{"id": info.ID, "size": info.Size, "type": info.Type})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// download serves a file of a referral or statement request as a
// download, to a member of staff who may read the record.
func (s *server) download(kind string) func(*ctx) {
	return func(c *ctx) {
		fromStart, err := httpapi.CheckRange(c.r)
		if err != nil {
			s.errorPage(c, http.StatusRequestedRangeNotSatisfiable, "error.badrequest", "")
			return
		}
		f, err := s.gw.OpenAttachment(c.r.Context(), c.sess.Principal, kind, c.r.PathValue("id"), c.r.PathValue("aid"), fromStart)
		if errors.Is(err, gateway.ErrArriving) {
			s.errorPage(c, http.StatusConflict, "files.error.arriving", "")
			return
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		defer f.Close()
		httpapi.ServeAttachment(c.w, c.r, f)
	}
}

// attachmentIDs are the ids of the files a form sends: each once, in
// order.
func attachmentIDs(v url.Values) []string {
	var out []string
	for _, id := range v[attachmentField] {
		if id = strings.TrimSpace(id); id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// files sets the attachments of a body from the form's ids.
func (o obj) files(v url.Values) {
	ids := attachmentIDs(v)
	if len(ids) == 0 {
		return
	}
	refs := make([]map[string]string, len(ids))
	for i, id := range ids {
		refs[i] = map[string]string{"id": id}
	}
	o["attachments"] = refs
}

// keptFiles are the files a form shown again still holds. Their names
// come from this request's uploads or, for those uploaded before (by the
// script, or with a form shown again), from the form's "attachment_name"
// fields ("id/size/name"): shown as text to the one who chose the files.
func keptFiles(c *ctx, v url.Values) []keptFile {
	told := map[string]keptFile{}
	for _, nv := range v[attachmentNameField] {
		parts := strings.SplitN(nv, "/", 3)
		if len(parts) != 3 || len(parts[2]) > 255 {
			continue
		}
		size, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || size < 0 {
			continue
		}
		told[parts[0]] = keptFile{ID: parts[0], Name: parts[2], Size: size}
	}
	var out []keptFile
	for _, id := range attachmentIDs(v) {
		k, ok := c.up.names[id]
		if !ok {
			if k, ok = told[id]; !ok {
				k = keptFile{ID: id}
			}
		}
		out = append(out, k)
	}
	return out
}

// Size is a file size for people: 512 B, 4.2 KB, 1.3 MB, 2.0 GB (decimal
// comma in Bahasa Indonesia).
func (l *loc) Size(n int64) string {
	units := []string{"KB", "MB", "GB", "TB"}
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n) / 1000
	u := 0
	for v >= 999.95 && u < len(units)-1 {
		v /= 1000
		u++
	}
	s := fmt.Sprintf("%.1f", v)
	if l.lang == "id" {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s + " " + units[u]
}

// Percent is how much of a file arriving is here.
func (l *loc) Percent(a gateway.AttachmentView) int {
	total := a.SealedSize
	if total <= 0 {
		total = a.Size
	}
	if total <= 0 {
		return 0
	}
	return int(min(100, a.Received*100/total))
}

// Short is the start of a hash or id, to show in little room.
func (l *loc) Short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// acceptTypes is the accept attribute of the file inputs: a hint to the
// browser's file chooser (the gateway checks every file's bytes).
const acceptTypes = ".pdf,.jpg,.jpeg,.png,.heic,.mp3,.m4a,.ogg,.wav,.mp4,application/pdf,image/jpeg,image/png,image/heic,audio/*,video/mp4"

// FileType names a media type shortly: PDF, JPEG, MP3.
func (l *loc) FileType(t string) string {
	switch t {
	case "application/pdf":
		return "PDF"
	case "image/jpeg":
		return "JPEG"
	case "image/png":
		return "PNG"
	case "image/heic":
		return "HEIC"
	case "audio/mpeg":
		return "MP3"
	case "audio/x-m4a":
		return "M4A"
	case "audio/ogg":
		return "OGG"
	case "audio/wav":
		return "WAV"
	case "video/mp4":
		return "MP4"
	}
	return t
}
