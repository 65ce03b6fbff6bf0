package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/referral"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Item is a referral as the API shows it: metadata, and for one item the
// body and timeline.
type Item struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Box       store.Box       `json:"box"`
	From      string          `json:"from"`
	To        string          `json:"to"`
	Status    string          `json:"status"`
	Priority  string          `json:"priority,omitempty"`
	Outcome   string          `json:"outcome,omitempty"`
	CreatedAt string          `json:"created_at"`
	UpdatedAt string          `json:"updated_at"`
	Referral  json.RawMessage `json:"referral,omitempty"`
	Timeline  []TimelineEvent `json:"timeline,omitempty"`
}

// TimelineEvent is one step of a referral's history.
type TimelineEvent struct {
	Event  string `json:"event"`
	At     string `json:"at"`
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

// item is the API view of a record; full adds the timeline, with staff
// notes decrypted.
func (g *Gateway) item(rec *store.Record, full bool) (Item, error) {
	it := Item{ID: rec.ID, Kind: rec.Kind, Box: rec.Box, From: rec.From, To: rec.To, Status: rec.Status,
		Priority: rec.Priority, Outcome: rec.Outcome,
		CreatedAt: rec.CreatedAt.UTC().Format(timeFormat), UpdatedAt: rec.UpdatedAt.UTC().Format(timeFormat)}
	if full {
		it.Timeline = make([]TimelineEvent, 0, len(rec.Timeline))
		for _, e := range rec.Timeline {
			te := TimelineEvent{Event: e.Event, At: e.At.UTC().Format(timeFormat), By: e.By, Reason: e.Reason}
			if len(e.Note) > 0 {
				note, err := g.openNote(rec.ID, e.Note)
				if err != nil {
					return Item{}, fmt.Errorf("timeline note of %s does not open: %w", rec.ID, err)
				}
				te.Reason = note
			}
			it.Timeline = append(it.Timeline, te)
		}
	}
	return it, nil
}

// ListQuery selects a page of referrals.
type ListQuery struct {
	Box    string
	Status string
	Limit  int
	Cursor string
}

// Page is one page of a list.
type Page struct {
	Items      []Item `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// List returns referral metadata, newest first.
func (g *Gateway) List(p policy.Principal, q ListQuery) (Page, error) {
	if err := policy.Decide(p, policy.ActionReferralList, policy.Resource{}); err != nil {
		return Page{}, g.denied(p, policy.ActionReferralList, "", err)
	}
	box := store.Box(q.Box)
	if box != store.Inbox && box != store.Outbox {
		return Page{}, fmt.Errorf("%w: box must be inbox or outbox", ErrBadRequest)
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	if q.Limit < 1 || q.Limit > 200 {
		return Page{}, fmt.Errorf("%w: limit must be 1..200", ErrBadRequest)
	}
	page := Page{Items: []Item{}}
	err := g.db.View(func(tx *store.Tx) error {
		recs, next, err := tx.List(store.ListOptions{Box: box, Status: q.Status, Kind: crypto.KindReferral, Limit: q.Limit, Cursor: q.Cursor})
		if err != nil {
			return err
		}
		for _, r := range recs {
			it, err := g.item(r, false)
			if err != nil {
				return err
			}
			page.Items = append(page.Items, it)
		}
		page.NextCursor = next
		return nil
	})
	if errors.Is(err, store.ErrBadCursor) {
		return Page{}, fmt.Errorf("%w: cursor is not one this gateway gave out", ErrBadRequest)
	}
	return page, err
}

// load returns a referral record the principal may act on.
func (g *Gateway) load(p policy.Principal, a policy.Action, id string) (*store.Record, error) {
	var rec *store.Record
	err := g.db.View(func(tx *store.Tx) (err error) {
		rec, err = tx.Record(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && rec.Kind != crypto.KindReferral) {
		if derr := policy.Decide(p, a, policy.Resource{}); derr != nil && !errors.Is(derr, policy.ErrDenied) {
			return nil, g.denied(p, a, id, derr)
		}
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := policy.Decide(p, a, policy.Resource{From: rec.From, To: rec.To}); err != nil {
		return nil, g.denied(p, a, id, err)
	}
	return rec, nil
}

// Get opens one referral. Opening an inbox referral for the first time
// records "read" and queues a signed read receipt to the sender.
func (g *Gateway) Get(ctx context.Context, p policy.Principal, id string) (Item, error) {
	rec, err := g.load(p, policy.ActionReferralRead, id)
	if err != nil {
		return Item{}, err
	}
	body, err := g.body(rec)
	if err != nil {
		return Item{}, err
	}
	now := g.now().UTC()
	st := g.state()
	err = g.db.Update(func(tx *store.Tx) error {
		cur, err := tx.Record(id)
		if err != nil {
			return err
		}
		rec = cur
		if rec.Box == store.Inbox && rec.Status == StatusDelivered {
			if sender, ok := st.dir.Agency(rec.From); ok {
				rh, renv, signed, err := g.receipt(st, sender, id, rec.EnvelopeHash, crypto.EventRead, "", now)
				if err != nil {
					return err
				}
				if err := queueEnvelope(tx, rh, renv, ""); err != nil {
					return err
				}
				if _, err := tx.AddReceipt(id, crypto.EventRead, signed); err != nil {
					return err
				}
			}
			rec.Status = StatusRead
			rec.UpdatedAt = now
			rec.Timeline = append(rec.Timeline, store.Event{Event: StatusRead, At: now, By: p.Subject})
			if err := tx.PutRecord(rec); err != nil {
				return err
			}
		}
		return tx.Audit(store.AuditEvent{At: now, Actor: p.Subject, Action: string(policy.ActionReferralRead),
			Object: id, Outcome: "opened"})
	})
	if err != nil {
		return Item{}, err
	}
	g.poke()
	return g.fullItem(rec, body)
}

// fullItem is one referral with its timeline and body; a nil body is
// opened from the store.
func (g *Gateway) fullItem(rec *store.Record, body []byte) (Item, error) {
	it, err := g.item(rec, true)
	if err != nil {
		return Item{}, err
	}
	if body == nil {
		if body, err = g.body(rec); err != nil {
			return Item{}, err
		}
	}
	it.Referral = body
	return it, nil
}

// body opens the stored envelope of a record: the ciphertext as received
// for the inbox, the copy sealed to this agency for the outbox.
func (g *Gateway) body(rec *store.Record) ([]byte, error) {
	key := rec.ID
	if rec.Box == store.Outbox {
		key = selfCopy(rec.ID)
	}
	var env []byte
	if err := g.db.View(func(tx *store.Tx) (err error) { env, err = tx.Envelope(key); return err }); err != nil {
		return nil, fmt.Errorf("failed to load envelope %s: %w", rec.ID, err)
	}
	var body []byte
	var err error
	if rec.Box == store.Outbox {
		body, err = g.atRest.Open(rec.ID, env)
	} else {
		_, body, err = g.opener.OpenStored(env)
	}
	if err != nil {
		return nil, fmt.Errorf("stored envelope %s does not open: %w", rec.ID, err)
	}
	return body, nil
}

// ChangeStatus moves a referral along its state machine and tells the
// counterpart with a signed status envelope.
func (g *Gateway) ChangeStatus(ctx context.Context, p policy.Principal, id string, body []byte) (Item, error) {
	rec, err := g.load(p, policy.ActionReferralStatus, id)
	if err != nil {
		return Item{}, err
	}
	sc, ferrs := referral.ParseStatusChange(body)
	if len(ferrs) > 0 {
		return Item{}, &InvalidError{Fields: ferrs}
	}
	st := g.state()
	peer, ok := st.dir.Agency(counterpart(rec))
	if !ok || peer.Status != crypto.StatusActive {
		return Item{}, g.denied(p, policy.ActionReferralStatus, id,
			&policy.Error{Reason: policy.ReasonRuleCounterpart, Detail: "the counterpart agency is no longer active"})
	}
	if err := st.rules.Allow(crypto.KindStatus, st.self.Kind, peer.Kind,
		policy.Facts{FromAgency: g.self, ToAgency: peer.ID, Counterpart: true}); err != nil {
		return Item{}, g.denied(p, policy.ActionReferralStatus, id, err)
	}
	// A referral withdrawn before it was published is taken out of the
	// outbox instead: it never leaves, and the recipient hears nothing of
	// it. Claiming its queue entry keeps the publish loop off it meanwhile.
	var claimed uint64
	if rec.Box == store.Outbox && sc.Status == policy.RefWithdrawn {
		var it *store.QueueItem
		g.db.View(func(tx *store.Tx) error { it, _ = tx.QueuedEnvelope(id); return nil })
		if it != nil {
			if _, busy := g.inflight.LoadOrStore(it.Seq, true); !busy {
				claimed = it.Seq
				defer g.inflight.Delete(it.Seq)
			}
		}
	}
	now := g.now().UTC()
	err = g.db.Update(func(tx *store.Tx) error {
		cur, err := tx.Record(id)
		if err != nil {
			return err
		}
		rec = cur
		if err := localTransition(rec, sc.Status); err != nil {
			return err
		}
		detail := map[string]string{}
		if it, ok := tx.QueuedEnvelope(id); ok && claimed != 0 && it.Seq == claimed {
			if err := tx.Dequeue(claimed); err != nil {
				return err
			}
			if err := tx.DeletePending(rec); err != nil {
				return err
			}
			detail["unsent"] = "true"
		} else {
			sb, _ := json.Marshal(statusBody{Ref: id, Status: sc.Status, Reason: sc.Reason, By: p.Subject, At: now})
			h := crypto.Header{ID: crypto.NewID(), Kind: crypto.KindStatus, From: g.self, To: peer.ID,
				Created: now, Expires: now.Add(g.cfg.DeliveryDeadline)}
			env, err := g.seal(h, sb, peer)
			if err != nil {
				return err
			}
			if err := queueEnvelope(tx, h, env, id); err != nil {
				return err
			}
			detail["status_envelope"] = h.ID
		}
		rec.Status = sc.Status
		rec.UpdatedAt = now
		rec.Timeline = append(rec.Timeline, store.Event{Event: sc.Status, At: now, By: p.Subject, Note: g.sealNote(id, sc.Reason)})
		if err := tx.PutRecord(rec); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{At: now, Actor: p.Subject, Action: string(policy.ActionReferralStatus),
			Object: id, Outcome: sc.Status, Detail: detail})
	})
	if errors.Is(err, policy.ErrConflict) {
		return Item{}, g.denied(p, policy.ActionReferralStatus, id, err)
	}
	if err != nil {
		return Item{}, err
	}
	g.poke()
	return g.fullItem(rec, nil)
}

// ReceiptView is a stored receipt with its verification result.
type ReceiptView struct {
	Event        string `json:"event"`
	At           string `json:"at"`
	By           string `json:"by"`
	To           string `json:"to"`
	Reason       string `json:"reason,omitempty"`
	EnvelopeID   string `json:"envelope_id"`
	EnvelopeHash string `json:"envelope_sha256"`
	KeyID        string `json:"key_id"`
	Verified     bool   `json:"verified"`
	Error        string `json:"error,omitempty"`
}

// Receipts returns the signed receipts of a referral, each verified against
// the directory.
func (g *Gateway) Receipts(p policy.Principal, id string) ([]ReceiptView, error) {
	if _, err := g.load(p, policy.ActionReferralReceipts, id); err != nil {
		return nil, err
	}
	var raw [][]byte
	g.db.View(func(tx *store.Tx) error { raw = tx.Receipts(id); return nil })
	dir := g.state().dir
	out := make([]ReceiptView, 0, len(raw))
	for _, b := range raw {
		r, err := crypto.VerifyReceipt(b, dir)
		v := ReceiptView{Event: r.Event, By: r.From, To: r.To, Reason: r.Reason, EnvelopeID: r.EnvelopeID,
			EnvelopeHash: r.HashHex(), KeyID: r.SignerKeyID, Verified: err == nil}
		if !r.At.IsZero() {
			v.At = r.At.UTC().Format(timeFormat)
		}
		if err != nil {
			v.Error = crypto.ReasonCode(err)
		}
		out = append(out, v)
	}
	return out, nil
}
