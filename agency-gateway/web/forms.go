package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/body"
)

// form is a form shown again with what was entered and what was wrong.
type form struct {
	V url.Values
	// Errs are the body's field errors.
	Errs formErrs
	// Refusal is the message id of a policy refusal, Reason its code.
	Refusal string
	Reason  string
	// Files are the files uploaded and not sent yet, kept with the form;
	// FileErr the message of an upload that failed, FileName its file's
	// name.
	Files    []keptFile
	FileErr  string
	FileName string
}

type formErrs struct {
	list []body.FieldError
	l    *loc
}

// For returns the messages of the errors at pointer p or below it.
func (e formErrs) For(p string) []string {
	var out []string
	for _, f := range e.list {
		if f.Field == p || strings.HasPrefix(f.Field, p+"/") {
			out = append(out, e.msg(f))
		}
	}
	return out
}

// Exact returns the messages of the errors at pointer p itself.
func (e formErrs) Exact(p string) []string {
	var out []string
	for _, f := range e.list {
		if f.Field == p {
			out = append(out, e.msg(f))
		}
	}
	return out
}

// Summary is every error with the label of its field.
func (e formErrs) Summary() []string {
	var out []string
	for _, f := range e.list {
		out = append(out, e.l.Label(f.Field)+": "+e.msg(f))
	}
	return out
}

func (e formErrs) msg(f body.FieldError) string {
	if e.l.Has("fielderr." + f.Code) {
		return e.l.T("fielderr." + f.Code)
	}
	return f.Message
}

// Label is the label of the field at JSON pointer p.
func (l *loc) Label(p string) string {
	var parts []string
	for _, s := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if _, err := strconv.Atoi(s); err != nil && s != "" {
			parts = append(parts, s)
		}
	}
	key := "field.body"
	if len(parts) > 0 {
		key = "field." + strings.Join(parts, ".")
	}
	if l.Has(key) {
		return l.T(key)
	}
	return p
}

// sendForm sends a draft and answers with a redirect to next, or shows the
// form again: with field errors (422) or a policy refusal.
//
// A form whose file failed to upload is shown again with that error and
// nothing is sent; the files that did upload are kept with it.
func (s *server) sendForm(c *ctx, d gateway.Draft, next func(gateway.Accepted) string, again func(code int, f *form)) {
	if c.up.errKey != "" {
		f := &form{V: c.r.PostForm, Errs: formErrs{l: c.L}, Files: keptFiles(c, c.r.PostForm),
			FileErr: s.fileMsg(c.L, c.up.errKey), FileName: c.up.errName}
		again(c.up.errCode, f)
		return
	}
	acc, err := s.gw.Send(c.r.Context(), c.sess.Principal, d)
	if err == nil {
		http.Redirect(c.w, c.r, next(acc), http.StatusSeeOther)
		return
	}
	f := &form{V: c.r.PostForm, Errs: formErrs{l: c.L}, Files: keptFiles(c, c.r.PostForm)}
	var inv *gateway.InvalidError
	if errors.As(err, &inv) {
		f.Errs.list = inv.Fields
		again(http.StatusUnprocessableEntity, f)
		return
	}
	code, key, reason := classify(err)
	if code == http.StatusInternalServerError || code == http.StatusNotFound {
		s.fail(c, err)
		return
	}
	f.Refusal, f.Reason = key, reason
	again(code, f)
}

func newForm(c *ctx, v url.Values) *form {
	if v == nil {
		v = url.Values{}
	}
	return &form{V: v, Errs: formErrs{l: c.L}}
}

// obj builds a JSON object from form values, leaving out what is empty.
type obj map[string]any

func (o obj) str(key, v string) {
	if v = strings.TrimSpace(v); v != "" {
		o[key] = v
	}
}

func (o obj) text(key, v string) {
	if strings.TrimSpace(v) != "" {
		o[key] = strings.ReplaceAll(v, "\r\n", "\n")
	}
}

func (o obj) list(key string, vs []string) {
	var out []string
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	if len(out) > 0 {
		o[key] = out
	}
}

// num sets a whole number, or the text as typed so the schema names the
// error.
func (o obj) num(key, v string) {
	if v = strings.TrimSpace(v); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			o[key] = n
		} else {
			o[key] = v
		}
	}
}

// when sets a time entered in a datetime-local or date field, read in
// zone tz, as RFC 3339; other text as typed.
func (o obj) when(key, v string, tz *time.Location) {
	if v = strings.TrimSpace(v); v == "" {
		return
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, tz); err == nil {
			o[key] = t.UTC().Format(time.RFC3339)
			return
		}
	}
	o[key] = v
}

func (o obj) sub(key string, m obj) {
	if len(m) > 0 {
		o[key] = map[string]any(m)
	}
}

func (o obj) json() []byte {
	b, _ := json.Marshal(map[string]any(o))
	return b
}

// split splits a list typed into one field, by commas and spaces.
func split(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == ';' || r == '\n' || r == '\r' })
}

// localInput formats t for a datetime-local field in zone tz.
func localInput(t time.Time, tz *time.Location) string { return t.In(tz).Format("2006-01-02T15:04") }
