package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/agency-gateway/web"
	"github.com/rujukan/rujukan/policy"
)

// webAuth is a stand-in for the gateway's staff accounts: fixed users,
// each signing in with the password "<name>-password".
type webAuth struct {
	agency, kind string
	users        map[string][]staff.Role
	mu           sync.Mutex
	sessions     map[string]*staff.Session
}

func token() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (a *webAuth) Login(name, password, code, addr string) (*staff.Session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	roles, ok := a.users[name]
	if !ok || password != name+"-password" {
		return nil, staff.ErrBadLogin
	}
	now := time.Now()
	s := &staff.Session{ID: token(), CSRF: token(), User: name, Roles: roles, Created: now, Seen: now,
		Principal: policy.Principal{Agency: a.agency, Subject: name, Scopes: staff.ScopesFor(roles, a.kind)}}
	a.sessions[s.ID] = s
	return s, nil
}

func (a *webAuth) Session(id string) (*staff.Session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.sessions[id]; ok {
		return s, nil
	}
	return nil, staff.ErrNoSession
}

func (a *webAuth) Logout(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.sessions, id)
	return nil
}

// webNet is the dev network with each agency's web app served.
type webNet struct {
	urls map[string]string
}

var devKinds = map[string]string{"iom": policy.KindIOM, "dinsos": policy.KindDinsos, "police": policy.KindPolice, "shelter": policy.KindShelter}

func mustWebNet(t *testing.T) *webNet {
	t.Helper()
	st, _ := MustDev(t)
	loc, err := time.LoadLocation("Asia/Makassar")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string][]staff.Role{
		"cw":  {staff.RoleCaseworker},
		"cr":  {staff.RoleConsentRecorder},
		"inv": {staff.RoleInvestigator},
		"op":  {staff.RoleOperator},
	}
	wn := &webNet{urls: map[string]string{}}
	for id, g := range st.Gateways {
		auth := &webAuth{agency: id, kind: devKinds[id], users: users, sessions: map[string]*staff.Session{}}
		h, err := web.New(g.Gateway, auth, web.Config{Location: loc, Logger: quietLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		wn.urls[id] = srv.URL
	}
	return wn
}

// chromium finds a Chromium or Chrome binary. Without one the test is
// skipped, except in CI, where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium binary found (install Debian's chromium)")
	}
	t.Skip("no chromium binary found; install Debian's chromium to run the browser tests")
	return ""
}

// newBrowser starts a headless browser of its own (its own cookies) and
// returns its context.
func newBrowser(t *testing.T, bin string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 800))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// brun runs browser actions with a deadline.
func brun(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 3000) : ""`))
		t.Fatalf("%s: %v\nat %s\n%s", what, err, loc, body)
	}
}

// value runs one browser action that returns a value.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// shoot saves screenshots of the page at phone and desktop sizes, and
// checks the phone layout does not scroll sideways.
func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := filepath.Join("artifacts", "web")
	os.MkdirAll(dir, 0o755)
	for _, sz := range []struct{ w, h int64 }{{390, 844}, {1280, 800}} {
		brun(t, ctx, "viewport "+name, chromedp.EmulateViewport(sz.w, sz.h), chromedp.Sleep(150*time.Millisecond))
		width := value(t, ctx, "scrollWidth", chromedp.Evaluate[int64](`document.documentElement.scrollWidth`))
		if sz.w == 390 && width > 390 {
			t.Errorf("%s: scrollWidth %d > 390 at 390 px", name, width)
		}
		png := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
		file := filepath.Join(dir, name+"-"+itoa(sz.w)+".png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	brun(t, ctx, "restore viewport", chromedp.EmulateViewport(1280, 800))
}

func itoa(n int64) string {
	s := ""
	if n == 0 {
		return "0"
	}
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}

// checkLabels fails for any form control without a label.
func checkLabels(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	missing := value(t, ctx, "labels "+name, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
		.filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
		.map(e => e.name || e.id)`))
	if len(missing) > 0 {
		t.Errorf("%s: form controls without a label: %s", name, strings.Join(missing, ", "))
	}
}
