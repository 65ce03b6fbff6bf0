package web

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/staff"
)

type reviewClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *reviewClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *reviewClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// realApp is IOM's web app over real staff accounts on a clock the test
// moves.
func realApp(t *testing.T) (*client, *staff.Accounts, *reviewClock) {
	t.Helper()
	n := mustNetwork(t)
	clk := &reviewClock{t: time.Now()}
	accts := staff.New(n.gws["iom"].DB(), "iom", n.kinds["iom"], staff.Options{Now: clk.Now,
		Argon: staff.Params{Time: 1, Memory: 64, Threads: 1}})
	if err := accts.Add("cw", []staff.Role{staff.RoleCaseworker}, "password of cw"); err != nil {
		t.Fatal(err)
	}
	h, err := New(n.gws["iom"], accts, Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := (&app{t: t, srv: srv}).client()
	p := c.get("/ui/login")
	r := c.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, p)}, "name": {"cw"}, "password": {"password of cw"}}, nil)
	if r.Code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", r.Code)
	}
	return c, accts, clk
}

// openEvents opens /ui/events as the page's EventSource does and returns
// once the first event came, with a way to read on and to close it.
func openEvents(t *testing.T, c *client) (*bufio.Reader, func()) {
	t.Helper()
	br, stop, code := tryEvents(t, c)
	if code != http.StatusOK {
		t.Fatalf("events: %d", code)
	}
	return br, stop
}

func tryEvents(t *testing.T, c *client) (*bufio.Reader, func(), int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+"/ui/events", nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		return nil, nil, resp.StatusCode
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "event: unread") {
			break
		}
	}
	return br, func() { cancel(); resp.Body.Close() }, http.StatusOK
}

// A tab left open reconnects its event stream (every 30 s, when the
// server's WriteTimeout cuts it); that is not use: after 30 minutes in
// which only the page's script asked, the session is over.
func TestEventStreamDoesNotKeepSessionAlive(t *testing.T) {
	c, _, clk := realApp(t)
	clk.Add(20 * time.Minute)
	_, stop := openEvents(t, c) // only the page's script, nobody at the screen
	stop()
	clk.Add(20 * time.Minute)
	if _, _, code := tryEvents(t, c); code != http.StatusForbidden {
		t.Fatalf("events after 40 idle minutes: %d, want 403", code)
	}
	if p := c.get("/ui/referrals?box=inbox"); p.Code != http.StatusSeeOther {
		t.Fatalf("a page after 40 idle minutes: %d, want a redirect to sign in", p.Code)
	}
}

// An open event stream ends soon after its session does (here: the
// account is disabled).
func TestEventStreamEndsWithSession(t *testing.T) {
	c, accts, _ := realApp(t)
	br, stop := openEvents(t, c)
	defer stop()
	if err := accts.Disable("cw"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := br.ReadString('\n'); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the event stream of a disabled account is still open 5 s later")
	}
}
