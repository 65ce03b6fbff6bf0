package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

// Languages of the catalogs, the first the default.
var languages = []string{"en", "id"}

// catalog holds the message catalogs.
type catalog struct {
	bundle *i18n.Bundle
	locs   map[string]*i18n.Localizer
	// ids lists the message ids of each language.
	ids     map[string]map[string]bool
	matcher language.Matcher
}

func loadCatalog() (*catalog, error) {
	b := i18n.NewBundle(language.English)
	b.RegisterUnmarshalFunc("json", json.Unmarshal)
	c := &catalog{bundle: b, locs: map[string]*i18n.Localizer{}, ids: map[string]map[string]bool{}}
	var tags []language.Tag
	for _, l := range languages {
		path := "locales/" + l + ".json"
		raw, err := assets.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if _, err := b.ParseMessageFileBytes(raw, path); err != nil {
			return nil, fmt.Errorf("web: catalog %s: %w", path, err)
		}
		var m map[string]string
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("web: catalog %s must be a flat object of strings: %w", path, err)
		}
		c.ids[l] = map[string]bool{}
		for k := range m {
			c.ids[l][k] = true
		}
		c.locs[l] = i18n.NewLocalizer(b, l)
		tags = append(tags, language.Make(l))
	}
	c.matcher = language.NewMatcher(tags)
	return c, nil
}

// localizer picks the language of a request: ?lang= (remembered in a
// cookie), the lang cookie, then Accept-Language.
func (s *server) localizer(w http.ResponseWriter, r *http.Request) *loc {
	lang := ""
	if q := r.URL.Query().Get("lang"); s.cat.locs[q] != nil {
		lang = q
		http.SetCookie(w, &http.Cookie{Name: langCookie, Value: q, Path: prefix, MaxAge: 365 * 24 * 3600,
			HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
	} else if ck, err := r.Cookie(langCookie); err == nil && s.cat.locs[ck.Value] != nil {
		lang = ck.Value
	} else {
		tags, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
		_, i, conf := s.cat.matcher.Match(tags...)
		lang = languages[0]
		if conf != language.No {
			lang = languages[i]
		}
	}
	return &loc{lang: lang, l: s.cat.locs[lang], tz: s.cfg.Location, s: s}
}

// loc is the language of one request, used by templates as .L.
type loc struct {
	lang string
	l    *i18n.Localizer
	tz   *time.Location
	s    *server
}

var missingOnce sync.Map

// Lang is the language code, for <html lang>.
func (l *loc) Lang() string { return l.lang }

// T translates message id; args are name, value pairs for its template.
func (l *loc) T(id string, args ...any) string {
	var data map[string]any
	if len(args) > 0 {
		data = map[string]any{}
		for i := 0; i+1 < len(args); i += 2 {
			data[fmt.Sprint(args[i])] = args[i+1]
		}
	}
	out, err := l.l.Localize(&i18n.LocalizeConfig{MessageID: id, TemplateData: data})
	if err != nil {
		if _, seen := missingOnce.LoadOrStore(l.lang+":"+id, true); !seen {
			l.s.log.Warn("message missing from catalog", "lang", l.lang, "id", id)
		}
		return id
	}
	return out
}

// Has reports whether message id exists.
func (l *loc) Has(id string) bool { return l.s.cat.ids[l.lang][id] }

// E translates value v of enumeration group (status, need, ...), showing
// the value itself when the catalog does not know it.
func (l *loc) E(group, v string) string {
	if v == "" {
		return ""
	}
	if l.Has(group + "." + v) {
		return l.T(group + "." + v)
	}
	return v
}

// Event names a timeline event: a state, or a receipt or note.
func (l *loc) Event(v string) string {
	if l.Has("event." + v) {
		return l.T("event." + v)
	}
	return l.E("status", v)
}

// Reason translates a reason code (a policy refusal, a receipt, a
// decline), or shows the code.
func (l *loc) Reason(v string) string {
	for _, g := range []string{"reason", "decline"} {
		if l.Has(g + "." + v) {
			return l.T(g + "." + v)
		}
	}
	return v
}

// Date formats a time stamp of the core (RFC 3339) in the app's zone:
// "2 Dec 2026, 09:30 WITA", "2 Desember 2026, 09.30 WITA".
func (l *loc) Date(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return ""
		}
		t = *x
	case string:
		if x == "" {
			return ""
		}
		var err error
		if t, err = time.Parse(time.RFC3339Nano, x); err != nil {
			return x
		}
	default:
		return fmt.Sprint(v)
	}
	if t.IsZero() {
		return ""
	}
	t = t.In(l.tz)
	sep := ":"
	if l.lang == "id" {
		sep = "."
	}
	return fmt.Sprintf("%d %s %d, %02d%s%02d %s", t.Day(), l.T("month."+strconv.Itoa(int(t.Month()))), t.Year(),
		t.Hour(), sep, t.Minute(), t.Format("MST"))
}

// Age says how long ago a time stamp was, shortly: 5 min, 3 h, 2 d.
func (l *loc) Age(v string) string {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return ""
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return l.T("age.now")
	case d < time.Hour:
		return l.T("age.minutes", "N", int(d/time.Minute))
	case d < 48*time.Hour:
		return l.T("age.hours", "N", int(d/time.Hour))
	}
	return l.T("age.days", "N", int(d/(24*time.Hour)))
}

// Zone is the abbreviation of the app's time zone (WIB, WITA, WIT).
func (l *loc) Zone() string { return time.Now().In(l.tz).Format("MST") }

// List joins translated values of a group.
func (l *loc) List(group string, vs []string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = l.E(group, v)
	}
	return strings.Join(out, ", ")
}
