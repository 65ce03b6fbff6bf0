package web

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/membus"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// network is the four dev agencies' gateway cores on an in-memory bus.
type network struct {
	gws   map[string]*gateway.Gateway
	kinds map[string]string
	keys  map[string]gateway.Keys
	bus   *membus.Network
	data  string
}

func mustNetwork(t testing.TB) *network {
	t.Helper()
	return mustNetworkOpts(t, gateway.Options{})
}

// mustNetworkOpts is mustNetwork with options for every gateway (the
// logger and the retry wait are set here).
func mustNetworkOpts(t testing.TB, opts gateway.Options) *network {
	t.Helper()
	return mustNetworkConfig(t, opts, nil)
}

// mustNetworkConfig is mustNetworkOpts with each gateway's config changed
// by edit.
func mustNetworkConfig(t testing.TB, opts gateway.Options, edit func(*gateway.Config)) *network {
	t.Helper()
	data := t.TempDir()
	bus := membus.New()
	n := &network{gws: map[string]*gateway.Gateway{}, kinds: map[string]string{}, keys: map[string]gateway.Keys{}, bus: bus, data: data}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(data, "authority"), 0o700)
	if err := os.WriteFile(filepath.Join(data, "authority", "authority.pub"), []byte(base64.StdEncoding.EncodeToString(pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := crypto.NewDirectory("test", policy.DefaultRulesJSON())
	ids := []string{"iom", "dinsos", "police", "shelter"}
	for _, id := range ids {
		nk, err := broker.NewNATSKey()
		if err != nil {
			t.Fatal(err)
		}
		entry, err := crypto.WriteAgencyKeys(filepath.Join(data, "agencies", id), id, id, id, nk, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := dir.Add(*entry); err != nil {
			t.Fatal(err)
		}
		n.kinds[id] = id
	}
	dir.IssuedAt = time.Now().UTC().Truncate(time.Second)
	signed, err := crypto.SignDirectory(dir, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "network.json"), signed, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		cfg := gatewayConfig(data, id)
		if edit != nil {
			edit(&cfg)
		}
		keys, err := gateway.LoadKeys(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.keys[id] = keys
		opts.Logger, opts.WaitRetry = quiet, 50*time.Millisecond
		gw, err := gateway.New(cfg, keys, bus.Bus(id), opts)
		if err != nil {
			t.Fatal(err)
		}
		gw.Start()
		n.gws[id] = gw
		t.Cleanup(func() { gw.Close() })
	}
	return n
}

// fakeAuth is an Auth over fixed accounts; every password is the name
// repeated ("iom-cw" signs in with "iom-cwiom-cw").
type fakeAuth struct {
	agency, kind string
	mu           sync.Mutex
	users        map[string][]staff.Role
	sessions     map[string]*staff.Session
}

func newFakeAuth(agency, kind string, users map[string][]staff.Role) *fakeAuth {
	return &fakeAuth{agency: agency, kind: kind, users: users, sessions: map[string]*staff.Session{}}
}

func (a *fakeAuth) Login(name, password, code, addr string) (*staff.Session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	roles, ok := a.users[name]
	if !ok || password != name+name {
		return nil, staff.ErrBadLogin
	}
	if addr == "" {
		return nil, errors.New("no address")
	}
	now := time.Now()
	s := &staff.Session{ID: randomToken(), User: name, Roles: roles, CSRF: randomToken(), Created: now, Seen: now,
		Principal: policy.Principal{Agency: a.agency, Subject: name, Scopes: staff.ScopesFor(roles, a.kind)}}
	a.sessions[s.ID] = s
	return s, nil
}

func (a *fakeAuth) Session(id string) (*staff.Session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[id]
	if !ok {
		return nil, staff.ErrNoSession
	}
	return s, nil
}

func (a *fakeAuth) Peek(id string) (*staff.Session, error) { return a.Session(id) }

func (a *fakeAuth) Logout(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.sessions, id)
	return nil
}

// expireAll ends every session, as the idle timeout would.
func (a *fakeAuth) expireAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sessions = map[string]*staff.Session{}
}

// app is one agency's web app served over HTTP.
type app struct {
	t    testing.TB
	srv  *httptest.Server
	auth *fakeAuth
}

var testUsers = map[string][]staff.Role{
	"cw":  {staff.RoleCaseworker},
	"cr":  {staff.RoleConsentRecorder},
	"inv": {staff.RoleInvestigator},
	"op":  {staff.RoleOperator},
}

func mustApp(t testing.TB, n *network, agency string) *app {
	t.Helper()
	auth := newFakeAuth(agency, n.kinds[agency], testUsers)
	loc, _ := time.LoadLocation("Asia/Makassar")
	h, err := New(n.gws[agency], auth, Config{Location: loc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &app{t: t, srv: srv, auth: auth}
}

// client is a browser without JavaScript: cookies, no redirects followed.
type client struct {
	t    testing.TB
	base string
	hc   *http.Client
	lang string
}

func (a *app) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: a.t, base: a.srv.URL, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	Code   int
	Header http.Header
	Body   string
	Loc    string
}

func (c *client) do(method, path string, form url.Values, hdr map[string]string) page {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.lang != "" {
		req.Header.Set("Accept-Language", c.lang)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{Code: resp.StatusCode, Header: resp.Header, Body: string(raw), Loc: resp.Header.Get("Location")}
}

func (c *client) get(path string) page { c.t.Helper(); return c.do("GET", path, nil, nil) }

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the token of the forms on a page.
func csrfOf(t testing.TB, p page) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no csrf field in page:\n%s", p.Body)
	}
	return m[1]
}

// post submits a form from page path with its CSRF token.
func (c *client) post(from, path string, form url.Values) page {
	c.t.Helper()
	form.Set("csrf", csrfOf(c.t, c.get(from)))
	return c.do("POST", path, form, nil)
}

func (c *client) login(name string) {
	c.t.Helper()
	p := c.get("/ui/login")
	r := c.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(c.t, p)}, "name": {name}, "password": {name + name}}, nil)
	if r.Code != http.StatusSeeOther {
		c.t.Fatalf("sign-in as %s: %d\n%s", name, r.Code, r.Body)
	}
}

func (c *client) signedIn(a *app, name string) *client { c.login(name); return c }

// eventually polls cond until it holds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not happen", what)
}

var gatewayOutbox = gateway.ListQuery{Box: "outbox"}

// anyPrincipal is a caseworker of the fake's agency.
func (a *fakeAuth) anyPrincipal() policy.Principal {
	return policy.Principal{Agency: a.agency, Subject: "test", Scopes: staff.ScopesFor([]staff.Role{staff.RoleCaseworker}, a.kind)}
}

// gatewayConfig is the config of agency id's gateway in the layout of the
// dev network (the cli package builds the same; it imports this one).
func gatewayConfig(data, id string) gateway.Config {
	cfg := gateway.DefaultConfig()
	cfg.Agency = id
	cfg.Keys = filepath.Join(data, "agencies", id)
	cfg.Directory = filepath.Join(data, "network.json")
	cfg.Authority = "@" + filepath.Join(data, "authority", "authority.pub")
	cfg.Broker.URL = "nats://127.0.0.1:1"
	cfg.Broker.NKeySeed = filepath.Join(cfg.Keys, crypto.NATSSeedFile)
	cfg.Issuers = []gateway.IssuerConfig{{Issuer: policy.DevIssuer(id), JWKS: filepath.Join(cfg.Keys, crypto.JWKSFile)}}
	cfg.Data = filepath.Join(data, "gateways", id)
	return cfg
}
