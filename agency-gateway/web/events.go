package web

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/staff"
)

// lists are the lists a user follows: referrals for caseworkers,
// statement requests for police and holding agencies.
func (s *server) lists(sess *staff.Session) []func(gateway.ListQuery) (gateway.Page, error) {
	var out []func(gateway.ListQuery) (gateway.Page, error)
	p := sess.Principal
	if sess.Has(staff.RoleCaseworker) {
		out = append(out, func(q gateway.ListQuery) (gateway.Page, error) { return s.gw.List(p, q) })
	}
	if sess.Has(staff.RoleConsentRecorder) || sess.Has(staff.RoleInvestigator) {
		out = append(out, func(q gateway.ListQuery) (gateway.Page, error) { return s.gw.ListStatementRequests(p, q) })
	}
	return out
}

// unread counts the inbox items still delivered (not opened) the user can
// see, up to 1000.
func (s *server) unread(sess *staff.Session) (int, error) {
	n := 0
	for _, list := range s.lists(sess) {
		q := gateway.ListQuery{Box: "inbox", Status: "delivered", Limit: 200}
		for n < 1000 {
			page, err := list(q)
			if err != nil {
				return n, err
			}
			n += len(page.Items)
			if page.NextCursor == "" {
				break
			}
			q.Cursor = page.NextCursor
		}
	}
	return n, nil
}

// version is a digest of the newest items of the user's lists: it changes
// when anything the lists show changes, and not when a record is only
// looked at again.
func (s *server) version(sess *staff.Session) string {
	h := sha256.New()
	for _, list := range s.lists(sess) {
		for _, b := range []string{"inbox", "outbox"} {
			page, _ := list(gateway.ListQuery{Box: b, Limit: 50})
			for _, it := range page.Items {
				fmt.Fprintf(h, "%s %s %s %s\n", it.ID, it.Status, it.Outcome, it.UpdatedAt)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// events streams the unread count (event "unread") whenever the user's
// lists change.
func (s *server) events(c *ctx) {
	fl, ok := c.w.(http.Flusher)
	if !ok {
		http.Error(c.w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch, stop := s.gw.Watch()
	defer stop()
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	c.w.WriteHeader(http.StatusOK)
	last := ""
	send := func() bool {
		if _, err := s.auth.Peek(c.sess.ID); err != nil {
			return false
		}
		v := s.version(c.sess)
		if v == last {
			return true
		}
		last = v
		n, _ := s.unread(c.sess)
		if _, err := fmt.Fprintf(c.w, "event: unread\ndata: %s\n\n", strconv.Itoa(n)); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	fmt.Fprint(c.w, "retry: 2000\n\n")
	if !send() {
		return
	}
	// Every 2 s the session is looked at (without counting as use), so the
	// stream ends soon after the session does; every 24 s a comment keeps
	// proxies from closing an idle stream.
	check := time.NewTicker(2 * time.Second)
	defer check.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-c.r.Context().Done():
			return
		case <-ch:
			if !send() {
				return
			}
		case <-check.C:
			if _, err := s.auth.Peek(c.sess.ID); err != nil {
				return // signed out, disabled or idle: the stream ends with the session
			}
			if tick%12 == 0 {
				if _, err := fmt.Fprint(c.w, ": keep-alive\n\n"); err != nil {
					return
				}
				fl.Flush()
			}
		}
	}
}
