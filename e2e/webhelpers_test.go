package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// webNet is the dev network, each gateway serving its web app at /ui/,
// with the accounts `rujukan dev` makes.
type webNet struct {
	urls      map[string]string
	passwords map[string]map[string]string // agency -> account -> password
}

func mustWebNet(t *testing.T) *webNet {
	t.Helper()
	st, _ := MustDev(t)
	wn := &webNet{urls: map[string]string{}, passwords: map[string]map[string]string{}}
	for id, g := range st.Gateways {
		wn.urls[id] = g.URL
		wn.passwords[id] = map[string]string{}
		for _, a := range st.Accounts[id] {
			wn.passwords[id][a.Name] = a.Password
		}
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
	err := chromedp.Do(c, actions...)
	if pageReloaded(err) {
		// The page's live-update script reloaded it under the action.
		err = chromedp.Do(c, actions...)
	}
	if err != nil {
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
	for i := 0; i < 3 && pageReloaded(err); i++ {
		time.Sleep(200 * time.Millisecond)
		v, err = chromedp.Run(c, a)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// pageReloaded tells an action that failed because the page went away
// under it (a reload by the live-update script) from a real failure.
func pageReloaded(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Cannot find context with specified id")
}

// shoot saves screenshots of the page at phone (360 px, the narrowest the
// app is made for) and desktop sizes, and checks the phone layout does not
// scroll sideways.
func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := filepath.Join("artifacts", "web")
	os.MkdirAll(dir, 0o755)
	for _, sz := range []struct{ w, h int64 }{{360, 740}, {1280, 800}} {
		brun(t, ctx, "viewport "+name, chromedp.EmulateViewport(sz.w, sz.h), chromedp.Sleep(150*time.Millisecond))
		width := value(t, ctx, "scrollWidth", chromedp.Evaluate[int64](`document.documentElement.scrollWidth`))
		if sz.w == 360 && width > 360 {
			t.Errorf("%s: scrollWidth %d > 360 at 360 px", name, width)
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
