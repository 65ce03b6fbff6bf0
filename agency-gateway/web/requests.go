package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
)

func (s *server) requests(c *ctx) {
	def := "outbox"
	if c.sess.Has(staff.RoleConsentRecorder) {
		def = "inbox"
	}
	b := box(c.r, def)
	page, err := s.gw.ListStatementRequests(c.sess.Principal, gateway.ListQuery{Box: b, Cursor: c.r.URL.Query().Get("cursor"), Limit: 50})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "requests", "nav.requests."+b, listPage{Box: b, Items: page.Items, Next: page.NextCursor})
}

type requestForm struct {
	*form
	Purposes        []string
	Accept, MaxSize string
}

func (s *server) showRequestForm(c *ctx, code int, f *form) {
	s.render(c, code, "request_form", "nav.newrequest", requestForm{form: f, Purposes: srPurposes,
		Accept: acceptTypes, MaxSize: c.L.Size(s.gw.MaxAttachmentSize())})
}

func (s *server) requestForm(c *ctx) {
	q := c.r.URL.Query()
	v := url.Values{"purpose": {"investigation"}, "due": {localInput(time.Now().Add(7*24*time.Hour), s.cfg.Location)}}
	// A pseudonym never comes from the URL: URLs end up in logs and
	// browser history.
	for _, k := range []string{"to", "referral_id"} {
		if q.Get(k) != "" {
			v.Set(k, q.Get(k))
		}
	}
	s.showRequestForm(c, http.StatusOK, newForm(c, v))
}

func (s *server) sendRequest(c *ctx) {
	f := c.r.PostForm
	o := obj{}
	o.str("to", f.Get("to"))
	o.str("pseudonym", f.Get("pseudonym"))
	o.str("referral_id", f.Get("referral_id"))
	o.str("legal_basis", f.Get("legal_basis"))
	o.str("purpose", f.Get("purpose"))
	o.list("questions", strings.Split(strings.ReplaceAll(f.Get("questions"), "\r\n", "\n"), "\n"))
	if _, ok := o["questions"]; !ok {
		o["questions"] = []string{}
	}
	o.when("due", f.Get("due"), s.cfg.Location)
	o.files(f)
	d := gateway.Draft{Kind: "statement-request", Action: policy.ActionStatementRequestSend, Body: o.json()}
	s.sendForm(c, d, func(a gateway.Accepted) string { return "/ui/requests/" + a.ID },
		func(code int, f *form) { s.showRequestForm(c, code, f) })
}

type requestView struct {
	It       gateway.Item
	Req      *body.StatementRequest
	Receipts []gateway.ReceiptView
	Inbox    bool
	// CanConsent, CanAnswer and CanDecline say which forms the state
	// allows the holding agency.
	CanConsent, CanAnswer, CanDecline               bool
	Purposes, Methods, WitnessRoles, DeclineReasons []string
	Now                                             string
	Accept, MaxSize                                 string
	// Form is the form shown again, and which one it is.
	Which string
	*form
}

func (s *server) request(c *ctx) { s.showRequest(c, http.StatusOK, "", newForm(c, nil)) }

func (s *server) showRequest(c *ctx, code int, which string, f *form) {
	id := c.r.PathValue("id")
	it, err := s.gw.GetStatementRequest(c.r.Context(), c.sess.Principal, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	v := requestView{It: it, Inbox: it.Box == store.Inbox, form: f, Which: which, Purposes: purposes, Methods: methods,
		WitnessRoles: witnessRoles, DeclineReasons: declineReasons, Now: localInput(time.Now(), s.cfg.Location),
		Accept: acceptTypes, MaxSize: c.L.Size(s.gw.MaxAttachmentSize())}
	if len(it.StatementRequest) > 0 {
		var r body.StatementRequest
		if json.Unmarshal(it.StatementRequest, &r) == nil {
			v.Req = &r
		}
	}
	if v.Receipts, err = s.gw.StatementRequestReceipts(c.sess.Principal, id); err != nil {
		s.fail(c, err)
		return
	}
	if v.Inbox {
		next := policy.StatementRequestMachine.Next(it.Status, policy.RoleRecipient)
		open := true
		if due, err := time.Parse(time.RFC3339Nano, it.Due); err == nil && time.Now().After(due) {
			open = false
		}
		v.CanConsent = open && hasScope(c.sess, policy.ScopeConsentRecord) &&
			(slices.Contains(next, policy.SRConsentGiven) || slices.Contains(next, policy.SRConsentRefused))
		v.CanAnswer = open && hasScope(c.sess, policy.ScopeStatementRespond) && slices.Contains(next, policy.SRAnswered)
		v.CanDecline = open && hasScope(c.sess, policy.ScopeStatementRespond) && slices.Contains(next, policy.SRDeclined)
	}
	if which == "" {
		v.Which = "none"
	}
	s.render(c, code, "request", "request.title", v)
}

func (s *server) recordConsent(c *ctx) {
	id := c.r.PathValue("id")
	f := c.r.PostForm
	o := obj{}
	switch f.Get("given") {
	case "yes":
		o["given"] = true
		o.list("purposes", f["purposes"])
	case "no":
		o["given"] = false
	}
	o.str("method", f.Get("method"))
	o.str("witness_role", f.Get("witness_role"))
	o.str("witness", f.Get("witness"))
	o.text("notes", f.Get("notes"))
	p := obj{}
	p.num("age", f.Get("age"))
	p.str("age_range", f.Get("age_range"))
	o.sub("person", p)
	d := gateway.Draft{Kind: "consent", Action: policy.ActionConsentRecord, Ref: id, Body: o.json()}
	s.sendForm(c, d, func(gateway.Accepted) string { return "/ui/requests/" + id },
		func(code int, fm *form) { s.showRequest(c, code, "consent", fm) })
}

func (s *server) respond(c *ctx) {
	id := c.r.PathValue("id")
	f := c.r.PostForm
	o := obj{}
	which := "statement"
	if f.Get("answer") == "decline" {
		which = "decline"
		dec := obj{}
		dec.str("reason", f.Get("reason"))
		dec.text("detail", f.Get("detail"))
		o["decline"] = map[string]any(dec)
	} else {
		st := obj{}
		st.text("text", f.Get("text"))
		st.str("language", f.Get("language"))
		st.when("taken_at", f.Get("taken_at"), s.cfg.Location)
		st.str("taken_by", f.Get("taken_by"))
		o["statement"] = map[string]any(st)
		o.files(f)
	}
	d := gateway.Draft{Kind: "statement", Action: policy.ActionStatementRespond, Ref: id, Body: o.json()}
	s.sendForm(c, d, func(gateway.Accepted) string { return "/ui/requests/" + id },
		func(code int, fm *form) { s.showRequest(c, code, which, fm) })
}
