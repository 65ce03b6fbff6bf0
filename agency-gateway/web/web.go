// Package web is the staff web app of one gateway (DESIGN.md §9), served
// under /ui/: server-rendered pages in English and Bahasa Indonesia over
// the same core functions and policy checks as the HTTP API. Every action
// is taken as the signed-in user's policy.Principal, so the core checks
// the scopes of the user's roles as it does a token's. Pages work without
// JavaScript; one small script adds live updates over server-sent events.
package web

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/policy"
)

//go:embed templates/*.html static/* locales/*.json
var assets embed.FS

// Auth signs staff in and out and looks up their sessions.
type Auth interface {
	Login(name, password, code, addr string) (*staff.Session, error)
	// Session returns a session and counts the request as use.
	Session(id string) (*staff.Session, error)
	// Peek returns a session without counting as use (the live-update
	// stream, which the user did not ask for, must not keep it alive).
	Peek(id string) (*staff.Session, error)
	Logout(id string) error
}

// Config configures the web app.
type Config struct {
	// Location is the time zone dates are shown in; default WIB
	// (Asia/Jakarta).
	Location *time.Location
	// SecureCookies marks cookies Secure (serve over HTTPS).
	SecureCookies bool
	Logger        *slog.Logger
}

// Cookie names.
const (
	sessionCookie = "rujukan_session"
	loginCookie   = "rujukan_login"
	langCookie    = "lang"
	prefix        = "/ui/"
)

// csp is the Content-Security-Policy of every response.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type server struct {
	gw    *gateway.Gateway
	auth  Auth
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	cat   *catalog
	facts factsCache
}

// New returns the web app of gw, serving every path under /ui/.
func New(gw *gateway.Gateway, auth Auth, cfg Config) (http.Handler, error) {
	if gw == nil || auth == nil {
		return nil, errors.New("web: a gateway and an Auth are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Location == nil {
		loc, err := time.LoadLocation("Asia/Jakarta")
		if err != nil {
			loc = time.FixedZone("WIB", 7*3600)
		}
		cfg.Location = loc
	}
	cat, err := loadCatalog()
	if err != nil {
		return nil, err
	}
	s := &server{gw: gw, auth: auth, cfg: cfg, log: cfg.Logger.With("component", "web"), mux: http.NewServeMux(), cat: cat}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(assets, "static")
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	s.mux.Handle("GET /ui/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
	s.public("GET /ui/login", s.loginPage)
	s.public("POST /ui/login", s.login)
	s.route("POST /ui/logout", nil, s.logout)
	s.route("GET /ui/{$}", nil, s.home)
	s.route("GET /ui/events", nil, s.events)

	cw := []staff.Role{staff.RoleCaseworker}
	s.route("GET /ui/referrals", cw, s.referrals)
	s.route("GET /ui/referrals/new", cw, s.referralForm)
	s.routeWith("POST /ui/referrals", cw, postOpts{files: "referral"}, s.sendReferral)
	s.route("GET /ui/referrals/{id}", cw, s.referral)
	s.route("GET /ui/referrals/{id}/files/{aid}", cw, s.download("referral"))
	s.route("POST /ui/referrals/{id}/status", cw, s.referralStatus)

	sr := []staff.Role{staff.RoleInvestigator, staff.RoleConsentRecorder}
	inv := []staff.Role{staff.RoleInvestigator}
	rec := []staff.Role{staff.RoleConsentRecorder}
	s.route("GET /ui/requests", sr, s.requests)
	s.route("GET /ui/requests/new", inv, s.requestForm)
	s.routeWith("POST /ui/requests", inv, postOpts{files: "statement-request"}, s.sendRequest)
	s.route("GET /ui/requests/{id}", sr, s.request)
	s.route("GET /ui/requests/{id}/files/{aid}", sr, s.download("statement-request"))
	s.route("POST /ui/requests/{id}/consent", rec, s.recordConsent)
	s.routeWith("POST /ui/requests/{id}/response", rec, postOpts{files: "statement"}, s.respond)
	// Uploads by script, one file a request, before its form is sent.
	s.routeWith("POST /ui/attachments", []staff.Role{staff.RoleCaseworker, staff.RoleInvestigator, staff.RoleConsentRecorder},
		postOpts{raw: true}, s.upload)

	op := []staff.Role{staff.RoleOperator}
	s.route("GET /ui/deliveries", op, s.deliveries)
	s.route("GET /ui/deliveries/{kind}/{id}", op, s.delivery)
	s.route("GET /ui/audit", op, s.audit)
	s.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		c := s.newCtx(w, r)
		if sess, err := s.session(r, true); err == nil {
			c.sess = sess
		}
		s.errorPage(c, http.StatusNotFound, "error.notfound", "")
	})
	return http.HandlerFunc(s.serve), nil
}

// serve sets the headers every response carries.
func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if r.URL.Path == "/ui" {
		http.Redirect(w, r, prefix, http.StatusSeeOther)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// ctx is one request as the handlers see it.
type ctx struct {
	w    http.ResponseWriter
	r    *http.Request
	sess *staff.Session
	L    *loc
	// up is what the files of a multipart form came to (files.go).
	up uploads
}

func (s *server) newCtx(w http.ResponseWriter, r *http.Request) *ctx {
	return &ctx{w: w, r: r, L: s.localizer(w, r)}
}

// public serves a page without a session (sign-in).
func (s *server) public(pattern string, h func(*ctx)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		c := s.newCtx(w, r)
		if r.Method == http.MethodPost && !sameOrigin(r) {
			s.errorPage(c, http.StatusForbidden, "error.csrf", "")
			return
		}
		h(c)
	})
}

// route serves a page for a signed-in user holding one of roles (any user
// when roles is empty). A POST must come from this origin and carry the
// session's CSRF token.
func (s *server) route(pattern string, roles []staff.Role, h func(*ctx)) {
	s.routeWith(pattern, roles, postOpts{}, h)
}

// postOpts says how a route reads the body of a POST.
type postOpts struct {
	// files is the kind of message (referral, statement-request,
	// statement) whose form may post as multipart/form-data with files,
	// which are uploaded as they are read (files.go).
	files string
	// raw: the body is a file, left unread; the CSRF token comes in the
	// X-CSRF-Token header.
	raw bool
}

func (s *server) routeWith(pattern string, roles []staff.Role, o postOpts, h func(*ctx)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		c := s.newCtx(w, r)
		post := r.Method == http.MethodPost
		refuse := func(code int, key string) {
			if o.raw {
				// The script shows the message next to its file.
				writeJSON(w, code, map[string]string{"error": c.L.T(key)})
				return
			}
			s.errorPage(c, code, key, "")
		}
		if post && !sameOrigin(r) {
			refuse(http.StatusForbidden, "error.csrf")
			return
		}
		sess, err := s.session(r, r.URL.Path != "/ui/events")
		if err != nil {
			if post || r.URL.Path == "/ui/events" {
				refuse(http.StatusForbidden, "error.session")
				return
			}
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		c.sess = sess
		if post && (o.raw || (o.files != "" && isMultipart(r))) {
			// The role is checked before any of the body is read; the
			// CSRF token before any file is stored.
			if len(roles) > 0 && !slices.ContainsFunc(roles, sess.Has) {
				refuse(http.StatusForbidden, "error.role")
				return
			}
			if o.raw {
				if !csrfOK(sess, r.Header.Get(csrfHeader)) {
					refuse(http.StatusForbidden, "error.csrf")
					return
				}
			} else if code, key := s.readMultipart(c, o.files); code != 0 {
				s.errorPage(c, code, key, "")
				return
			}
			h(c)
			return
		}
		if post {
			r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
			if err := r.ParseForm(); err != nil {
				s.errorPage(c, http.StatusBadRequest, "error.badrequest", "")
				return
			}
			if !csrfOK(sess, r.PostForm.Get("csrf")) {
				s.errorPage(c, http.StatusForbidden, "error.csrf", "")
				return
			}
		}
		if len(roles) > 0 && !slices.ContainsFunc(roles, sess.Has) {
			s.errorPage(c, http.StatusForbidden, "error.role", "")
			return
		}
		h(c)
	})
}

// csrfOK reports whether tok is the session's CSRF token.
func csrfOK(sess *staff.Session, tok string) bool {
	return sess.CSRF != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(sess.CSRF)) == 1
}

func (s *server) session(r *http.Request, use bool) (*staff.Session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, staff.ErrNoSession
	}
	get := s.auth.Session
	if !use {
		get = s.auth.Peek
	}
	sess, err := get(ck.Value)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return nil, staff.ErrNoSession
	}
	return sess, nil
}

// sameOrigin refuses a request that a browser says comes from another
// site (Sec-Fetch-Site), or whose Origin, or failing that Referer, names
// another host than the one asked. Our own Referrer-Policy no-referrer
// makes browsers send "Origin: null" with our forms; that passes here, and
// the CSRF token decides.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	src := r.Header.Get("Origin")
	if src == "null" {
		return true
	}
	if src == "" {
		src = r.Header.Get("Referer")
		if src == "" {
			return true
		}
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

func (s *server) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: prefix, HttpOnly: true, Secure: s.cfg.SecureCookies,
		SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// clientIP is the address of r's peer, without the port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// mainPage is where a user lands: the first page of their first role.
func mainPage(sess *staff.Session) string {
	switch {
	case sess.Has(staff.RoleCaseworker):
		return "/ui/referrals?box=inbox"
	case sess.Has(staff.RoleConsentRecorder):
		return "/ui/requests?box=inbox"
	case sess.Has(staff.RoleInvestigator):
		return "/ui/requests?box=outbox"
	case sess.Has(staff.RoleOperator):
		return "/ui/deliveries"
	}
	return "/ui/login"
}

func (s *server) home(c *ctx) {
	if mainPage(c.sess) == "/ui/login" {
		s.errorPage(c, http.StatusForbidden, "error.role", "")
		return
	}
	http.Redirect(c.w, c.r, mainPage(c.sess), http.StatusSeeOther)
}

func (s *server) loginPage(c *ctx) {
	if sess, err := s.session(c.r, true); err == nil {
		http.Redirect(c.w, c.r, mainPage(sess), http.StatusSeeOther)
		return
	}
	s.renderLogin(c, http.StatusOK, "", "")
}

func (s *server) renderLogin(c *ctx, code int, msg, name string) {
	tok := randomToken()
	http.SetCookie(c.w, s.cookie(loginCookie, tok, 3600))
	s.render(c, code, "login", "login.title", map[string]any{"Token": tok, "Error": msg, "Name": name})
}

func (s *server) login(c *ctx) {
	r := c.r
	r.Body = http.MaxBytesReader(c.w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.errorPage(c, http.StatusBadRequest, "error.badrequest", "")
		return
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostForm.Get("csrf"))) != 1 {
		s.errorPage(c, http.StatusForbidden, "error.csrf", "")
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	sess, err := s.auth.Login(name, r.PostForm.Get("password"), strings.TrimSpace(r.PostForm.Get("code")), clientIP(r))
	if err != nil {
		key, code := "login.error.bad", http.StatusUnauthorized
		switch {
		case errors.Is(err, staff.ErrLocked), errors.Is(err, staff.ErrBusy):
			key, code = "login.error.locked", http.StatusTooManyRequests
		case errors.Is(err, staff.ErrNeedCode):
			key = "login.error.needcode"
		case errors.Is(err, staff.ErrBadLogin):
		default:
			s.log.Error("sign-in failed", "err", err)
			key, code = "error.internal", http.StatusInternalServerError
		}
		s.renderLogin(c, code, key, name)
		return
	}
	if old, err := r.Cookie(sessionCookie); err == nil && old.Value != "" {
		s.auth.Logout(old.Value) // signing in again ends the session before
	}
	http.SetCookie(c.w, s.cookie(loginCookie, "", -1))
	http.SetCookie(c.w, s.cookie(sessionCookie, sess.ID, int(staff.MaxAge/time.Second)))
	http.Redirect(c.w, r, mainPage(sess), http.StatusSeeOther)
}

func (s *server) logout(c *ctx) {
	if err := s.auth.Logout(c.sess.ID); err != nil && !errors.Is(err, staff.ErrNoSession) {
		s.log.Error("sign-out failed", "err", err)
	}
	http.SetCookie(c.w, s.cookie(sessionCookie, "", -1))
	http.Redirect(c.w, c.r, "/ui/login", http.StatusSeeOther)
}

// fail shows a core error as a page: refusals by policy with their reason
// translated, conflicts, unknown records.
func (s *server) fail(c *ctx, err error) {
	code, key, reason := classify(err)
	if code == http.StatusInternalServerError {
		s.log.Error("request failed", "method", c.r.Method, "path", c.r.URL.Path, "err", err)
	}
	s.errorPage(c, code, key, reason)
}

// classify maps a core error to a status, a message key and a reason code.
func classify(err error) (int, string, string) {
	reason := policy.ReasonOf(err)
	switch {
	case errors.Is(err, policy.ErrInsufficientScope), errors.Is(err, policy.ErrDenied):
		return http.StatusForbidden, "error.forbidden", reason
	case errors.Is(err, policy.ErrConflict):
		return http.StatusConflict, "error.conflict", reason
	case errors.Is(err, policy.ErrInvalidInput):
		return http.StatusUnprocessableEntity, "error.invalid", reason
	case errors.Is(err, gateway.ErrNotFound):
		return http.StatusNotFound, "error.notfound", ""
	case errors.Is(err, gateway.ErrNoFiles):
		return http.StatusServiceUnavailable, "files.error.nofiles", ""
	case errors.Is(err, gateway.ErrBadRequest):
		return http.StatusBadRequest, "error.badrequest", ""
	}
	return http.StatusInternalServerError, "error.internal", ""
}

func (s *server) errorPage(c *ctx, code int, key, reason string) {
	s.render(c, code, "error", key, map[string]any{"Key": key, "Reason": reason, "Code": code})
}

// hasScope reports whether the session's principal holds scope.
func hasScope(sess *staff.Session, scope string) bool {
	return slices.Contains(sess.Principal.Scopes, scope)
}
