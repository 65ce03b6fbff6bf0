package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/rujukan/rujukan/agency-gateway/staff"
)

// view is what every page template gets.
type view struct {
	L      *loc
	Sess   *staff.Session
	Agency string
	// Title is the message id of the page title.
	Title  string
	CSRF   string
	Nav    []navItem
	Unread int
	// Here is the path of the page, for the active link.
	Here string
	D    any
	url  *url.URL
}

// LangURL is this page in language l.
func (v view) LangURL(l string) string {
	q := v.url.Query()
	q.Set("lang", l)
	return v.url.Path + "?" + q.Encode()
}

type navItem struct {
	Key, Href string
	Active    bool
}

var funcs = template.FuncMap{
	// has reports whether form field name holds value v.
	"has":  func(f url.Values, name, v string) bool { return slices.Contains(f[name], v) },
	"join": strings.Join,
	"lines": func(s string) []string {
		return strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	},
	"add":  func(a, b int) int { return a + b },
	"list": func(v ...string) []string { return v },
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[fmt.Sprint(kv[i])] = kv[i+1]
		}
		return m
	},
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if pages[name], err = t.ParseFS(assets, n); err != nil {
			return nil, err
		}
	}
	return pages, nil
}

// render writes page name with status code; title is a message id.
func (s *server) render(c *ctx, code int, name, title string, d any) {
	v := view{L: c.L, Sess: c.sess, Agency: s.gw.Agency(), Title: title, D: d, Here: c.r.URL.Path, url: c.r.URL}
	if c.sess != nil {
		v.CSRF = c.sess.CSRF
		v.Nav = nav(c.sess, c.r)
		v.Unread, _ = s.unread(c.sess)
	}
	t := s.pages[name]
	if t == nil {
		http.Error(c.w, "no such page", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		s.log.Error("page failed", "page", name, "err", err)
		http.Error(c.w, "internal error", http.StatusInternalServerError)
		return
	}
	c.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	c.w.Header().Set("Content-Language", c.L.lang)
	c.w.WriteHeader(code)
	c.w.Write(buf.Bytes())
}

// nav lists the pages of the user's roles.
func nav(sess *staff.Session, r *http.Request) []navItem {
	var out []navItem
	add := func(key, href string) {
		u, _ := url.Parse(href)
		active := u.Path == r.URL.Path && (u.Query().Get("box") == "" || u.Query().Get("box") == r.URL.Query().Get("box"))
		out = append(out, navItem{Key: key, Href: href, Active: active})
	}
	if sess.Has(staff.RoleCaseworker) {
		add("nav.inbox", "/ui/referrals?box=inbox")
		add("nav.outbox", "/ui/referrals?box=outbox")
		add("nav.newreferral", "/ui/referrals/new")
	}
	if sess.Has(staff.RoleConsentRecorder) {
		add("nav.requests.inbox", "/ui/requests?box=inbox")
	}
	if sess.Has(staff.RoleInvestigator) {
		add("nav.requests.outbox", "/ui/requests?box=outbox")
		add("nav.newrequest", "/ui/requests/new")
	}
	if sess.Has(staff.RoleOperator) {
		add("nav.deliveries", "/ui/deliveries")
		add("nav.audit", "/ui/audit")
	}
	return out
}
