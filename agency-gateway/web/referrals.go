package web

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
)

// Enumerations of the referral body, as the API description lists them.
var (
	priorities     = []string{"normal", "urgent"}
	sexes          = []string{"female", "male", "other", "unknown"}
	exploitations  = []string{"sexual", "labour", "forced-marriage", "organ-removal", "other"}
	needs          = []string{"shelter", "medical", "psychosocial", "legal", "repatriation", "reintegration", "family-tracing", "documentation"}
	risks          = []string{"low", "medium", "high"}
	purposes       = []string{"services", "law-enforcement", "statement"}
	methods        = []string{"written", "verbal", "guardian"}
	witnessRoles   = []string{"social-worker", "guardian", "interpreter", "other"}
	srPurposes     = []string{"investigation", "prosecution", "victim-identification"}
	declineReasons = []string{"no-consent", "risk-to-victim", "not-known", "other"}
	statusChanges  = []string{"accepted", "declined", "in-progress", "completed", "withdrawn"}
)

type listPage struct {
	Box   string
	Items []gateway.Item
	Next  string
	// Kind and Status are the operator's filters.
	Kind, Status string
	Statuses     []string
	// Facts are what the referrals listed say in their bodies, by id.
	Facts map[string]bodyFacts
}

func box(r *http.Request, def string) string {
	if b := r.URL.Query().Get("box"); b == "inbox" || b == "outbox" {
		return b
	}
	return def
}

func (s *server) referrals(c *ctx) {
	b := box(c.r, "inbox")
	page, err := s.gw.List(c.sess.Principal, gateway.ListQuery{Box: b, Cursor: c.r.URL.Query().Get("cursor"), Limit: 50})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "referrals", "nav."+b, listPage{Box: b, Items: page.Items, Next: page.NextCursor,
		Facts: s.facts.of(s, c.sess, page.Items)})
}

// bodyFacts is what a list shows of a referral's body: the priority (a
// received record keeps none outside the body) and the risk.
type bodyFacts struct{ Priority, Risk string }

// factsCache remembers the facts of the referrals listed: a body never
// changes, so each is opened once, not on every view of the list.
type factsCache struct {
	mu sync.Mutex
	m  map[string]bodyFacts
}

// maxFacts bounds the cache; when full it starts again.
const maxFacts = 100000

// of returns the facts of each referral in items, by id, when the user
// may read the referrals.
func (fc *factsCache) of(s *server, sess *staff.Session, items []gateway.Item) map[string]bodyFacts {
	if !hasScope(sess, policy.ScopeReferralRead) {
		return nil
	}
	out := make(map[string]bodyFacts, len(items))
	var missing []string
	fc.mu.Lock()
	for _, it := range items {
		if f, ok := fc.m[it.ID]; ok {
			out[it.ID] = f
		} else {
			missing = append(missing, it.ID)
		}
	}
	fc.mu.Unlock()
	if len(missing) == 0 {
		return out
	}
	found := make(map[string]bodyFacts, len(missing))
	for _, id := range missing {
		it, err := s.gw.Item(sess.Principal, policy.ActionReferralRead, id)
		if err != nil {
			s.log.Warn("referral body for the list", "id", id, "err", err)
			continue
		}
		var f bodyFacts
		json.Unmarshal(it.Referral, &struct {
			Priority *string `json:"priority"`
			Risk     *string `json:"risk"`
		}{&f.Priority, &f.Risk})
		if !slices.Contains(priorities, f.Priority) {
			f.Priority = ""
		}
		if !slices.Contains(risks, f.Risk) {
			f.Risk = ""
		}
		found[id] = f
		out[id] = f
	}
	fc.mu.Lock()
	if fc.m == nil || len(fc.m)+len(found) > maxFacts {
		fc.m = make(map[string]bodyFacts, len(found))
	}
	maps.Copy(fc.m, found)
	fc.mu.Unlock()
	return out
}

type referralForm struct {
	*form
	Priorities, Sexes, Exploitations, Needs, Risks, Purposes, Methods, WitnessRoles []string
	Now                                                                             string
	// Accept lists the file types accepted, MaxSize the largest file.
	Accept, MaxSize string
}

func (s *server) showReferralForm(c *ctx, code int, f *form) {
	s.render(c, code, "referral_form", "nav.newreferral", referralForm{form: f, Priorities: priorities, Sexes: sexes,
		Exploitations: exploitations, Needs: needs, Risks: risks, Purposes: purposes, Methods: methods,
		WitnessRoles: witnessRoles, Now: localInput(time.Now(), s.cfg.Location),
		Accept: acceptTypes, MaxSize: c.L.Size(s.gw.MaxAttachmentSize())})
}

func (s *server) referralForm(c *ctx) {
	v := url.Values{"priority": {"normal"}, "recorded_at": {localInput(time.Now(), s.cfg.Location)}}
	if to := c.r.URL.Query().Get("to"); to != "" {
		v.Set("to", to)
	}
	s.showReferralForm(c, http.StatusOK, newForm(c, v))
}

// referralBody is the referral body of the form's values.
func referralBody(f url.Values, tz *time.Location) []byte {
	o := obj{}
	o.str("to", f.Get("to"))
	o.str("priority", f.Get("priority"))
	o.str("case_ref", f.Get("case_ref"))
	p := obj{}
	p.str("pseudonym", f.Get("pseudonym"))
	if p["pseudonym"] == nil {
		p["pseudonym"] = ""
	}
	p.str("sex", f.Get("sex"))
	p.num("age", f.Get("age"))
	p.str("age_range", f.Get("age_range"))
	p.str("nationality", strings.ToUpper(strings.TrimSpace(f.Get("nationality"))))
	p.list("languages", split(f.Get("languages")))
	o.sub("person", p)
	o.list("exploitation", f["exploitation"])
	id := obj{}
	id.str("date", f.Get("identified_date"))
	id.str("place", f.Get("identified_place"))
	id.str("by", f.Get("identified_by"))
	o.sub("identified", id)
	o.str("destination", strings.ToUpper(strings.TrimSpace(f.Get("destination"))))
	o.list("needs", f["needs"])
	if _, ok := o["needs"]; !ok {
		o["needs"] = []string{}
	}
	o.str("risk", f.Get("risk"))
	if g := f.Get("consent"); g == "given" || g == "refused" {
		cs := obj{"given": g == "given"}
		if g == "given" {
			cs.list("purposes", f["purposes"])
		}
		cs.str("method", f.Get("method"))
		cs.str("witness_role", f.Get("witness_role"))
		cs.str("witness", f.Get("witness"))
		if strings.TrimSpace(f.Get("recorded_at")) == "" {
			cs["recorded_at"] = time.Now().UTC().Format(time.RFC3339)
		} else {
			cs.when("recorded_at", f.Get("recorded_at"), tz)
		}
		cs.when("expires_at", f.Get("expires_at"), tz)
		o.sub("consent", cs)
	}
	ov := obj{}
	ov.text("justification", f.Get("override"))
	o.sub("consent_override", ov)
	o.text("notes", f.Get("notes"))
	o.files(f)
	return o.json()
}

func (s *server) sendReferral(c *ctx) {
	d := gateway.Draft{Kind: "referral", Action: policy.ActionReferralSend, Body: referralBody(c.r.PostForm, s.cfg.Location)}
	s.sendForm(c, d, func(a gateway.Accepted) string { return "/ui/referrals/" + a.ID },
		func(code int, f *form) { s.showReferralForm(c, code, f) })
}

type referralView struct {
	It       gateway.Item
	Ref      *body.Referral
	Receipts []gateway.ReceiptView
	Inbox    bool
	Actions  []string
	*form
}

func (s *server) referral(c *ctx) {
	s.showReferral(c, http.StatusOK, newForm(c, nil))
}

func (s *server) showReferral(c *ctx, code int, f *form) {
	id := c.r.PathValue("id")
	it, err := s.gw.Get(c.r.Context(), c.sess.Principal, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	v := referralView{It: it, Inbox: it.Box == store.Inbox, form: f}
	if len(it.Referral) > 0 {
		var r body.Referral
		if json.Unmarshal(it.Referral, &r) == nil {
			v.Ref = &r
			if v.It.Priority == "" {
				v.It.Priority = r.Priority
			}
		}
	}
	if v.Receipts, err = s.gw.Receipts(c.sess.Principal, id); err != nil {
		s.fail(c, err)
		return
	}
	role := policy.RoleSender
	if v.Inbox {
		role = policy.RoleRecipient
	}
	if hasScope(c.sess, policy.ScopeReferralUpdate) {
		for _, n := range policy.ReferralMachine.Next(it.Status, role) {
			if slices.Contains(statusChanges, n) {
				v.Actions = append(v.Actions, n)
			}
		}
	}
	s.render(c, code, "referral", "referral.title", v)
}

func (s *server) referralStatus(c *ctx) {
	id := c.r.PathValue("id")
	o := obj{}
	o.str("status", c.r.PostForm.Get("status"))
	o.text("reason", c.r.PostForm.Get("reason"))
	d := gateway.Draft{Kind: "status", Action: policy.ActionReferralStatus, Ref: id, Body: o.json()}
	s.sendForm(c, d, func(gateway.Accepted) string { return "/ui/referrals/" + id },
		func(code int, f *form) { s.showReferral(c, code, f) })
}

// tick is how a list shows how far a record went: ✓ sent, ✓✓ delivered,
// coloured ✓✓ read (and every state after it), ✗ failed.
type tick struct{ Glyph, Class string }

func ticks(status, outcome string) tick {
	switch status {
	case policy.RefQueued:
		return tick{"…", "queued"}
	case policy.RefSent:
		return tick{"✓", "sent"}
	case policy.RefDelivered:
		return tick{"✓✓", "delivered"}
	case policy.RefFailed:
		return tick{"✗", "failed"}
	case policy.SRExpired:
		if outcome == "delivered" {
			return tick{"✓✓", "delivered"}
		}
		return tick{"✓", "sent"}
	}
	return tick{"✓✓", "read"}
}

func init() { funcs["ticks"] = ticks }
