package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Item is a referral or statement request as clients see it: metadata,
// and for one item the body, the timeline and what belongs to it.
type Item struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Box       store.Box `json:"box"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Status    string    `json:"status"`
	Priority  string    `json:"priority,omitempty"`
	Outcome   string    `json:"outcome,omitempty"`
	CreatedAt string    `json:"created_at"`
	UpdatedAt string    `json:"updated_at"`
	Due       string    `json:"due,omitempty"`

	Referral         json.RawMessage `json:"referral,omitempty"`
	StatementRequest json.RawMessage `json:"statement_request,omitempty"`
	// Consent is the consent record: at the holding agency the one it
	// recorded (with its notes); at the police the one the statement
	// carries.
	Consent   *ConsentView    `json:"consent,omitempty"`
	Statement *body.Statement `json:"statement,omitempty"`
	// Attachments are the files of the record's messages (for a
	// statement request, those of the request and of the statement), with
	// their state here.
	Attachments []AttachmentView `json:"attachments,omitempty"`
	Timeline    []TimelineEvent  `json:"timeline,omitempty"`
}

// ConsentView is a consent record as shown.
type ConsentView struct {
	policy.Consent
	Notes string `json:"notes,omitempty"`
}

// TimelineEvent is one step of a record's history, in the order the record
// went through them. At is read from the clock of agency Clock.
type TimelineEvent struct {
	Event  string `json:"event"`
	At     string `json:"at"`
	Clock  string `json:"clock"`
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
	Note   string `json:"note,omitempty"`
}

// item is the view of a record; full adds the timeline, with staff notes
// decrypted.
func (g *Gateway) item(rec *store.Record, full bool) (Item, error) {
	it := Item{ID: rec.ID, Kind: rec.Kind, Box: rec.Box, From: rec.From, To: rec.To, Status: rec.Status,
		Priority: rec.Priority, Outcome: rec.Outcome,
		CreatedAt: rec.CreatedAt.UTC().Format(timeFormat), UpdatedAt: rec.UpdatedAt.UTC().Format(timeFormat)}
	if !rec.Due.IsZero() {
		it.Due = rec.Due.UTC().Format(timeFormat)
	}
	if !full {
		return it, nil
	}
	it.Timeline = make([]TimelineEvent, 0, len(rec.Timeline))
	for _, e := range rec.Timeline {
		te := TimelineEvent{Event: e.Event, At: e.At.UTC().Format(timeFormat), By: e.By, Clock: e.Clock, Reason: e.Reason}
		if te.Clock == "" {
			te.Clock = g.self
		}
		note, err := g.openNote(rec.ID, e.Note)
		if err != nil {
			return Item{}, fmt.Errorf("timeline note of %s does not open: %w", rec.ID, err)
		}
		te.Note = note
		it.Timeline = append(it.Timeline, te)
	}
	return it, nil
}

// ListQuery selects a page of records of one kind.
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
	return g.list(p, policy.ActionReferralList, ActReferralList, kindReferral, q)
}

// ListStatementRequests returns statement request metadata, newest first.
func (g *Gateway) ListStatementRequests(p policy.Principal, q ListQuery) (Page, error) {
	return g.list(p, policy.ActionStatementRequestList, ActStatementRequestList, kindStatementRequest, q)
}

func (g *Gateway) list(p policy.Principal, a policy.Action, act store.Action, kind string, q ListQuery) (Page, error) {
	if _, err := g.authorize(p, a, ""); err != nil {
		return Page{}, err
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
	if q.Status != "" && !machines[kind].Valid(q.Status) {
		return Page{}, fmt.Errorf("%w: status must be one of %s", ErrBadRequest, strings.Join(machines[kind].States, ", "))
	}
	if err := g.allowed(p, act, "", map[string]string{"box": q.Box, "status": q.Status}); err != nil {
		return Page{}, err
	}
	page := Page{Items: []Item{}}
	err := g.db.View(func(tx *store.Tx) error {
		recs, next, err := tx.List(store.ListOptions{Box: box, Status: q.Status, Kind: kind, Limit: q.Limit, Cursor: q.Cursor})
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

// Get opens one referral. Opening an inbox referral the first time records
// "read" and queues a signed read receipt to the sender.
func (g *Gateway) Get(ctx context.Context, p policy.Principal, id string) (Item, error) {
	return g.open1(p, policy.ActionReferralRead, ActReferralRead, id)
}

// GetStatementRequest opens one statement request, the same way; at the
// police, opening an answered request the first time sends a signed read
// receipt for the statement.
func (g *Gateway) GetStatementRequest(ctx context.Context, p policy.Principal, id string) (Item, error) {
	return g.open1(p, policy.ActionStatementRequestRead, ActStatementRequestRead, id)
}

func (g *Gateway) open1(p policy.Principal, a policy.Action, act store.Action, id string) (Item, error) {
	rec, err := g.authorize(p, a, id)
	if err != nil {
		return Item{}, err
	}
	now := g.now().UTC()
	by := actorOf(g.self, p)
	// Read receipts are signed before the transaction: for an inbox record
	// opened the first time, and at the police for a statement read the
	// first time.
	var reads []readReceipt
	// Not before the files of the envelope are all here: the sender learns
	// that it was delivered, then read, only once they are.
	var pending, stmtPending bool
	g.db.View(func(tx *store.Tx) error {
		pending = rec.Box == store.Inbox && g.filesPending(tx, id)
		if stmt := rec.Related[relStatement]; stmt != "" {
			stmtPending = g.filesPending(tx, stmt)
		}
		return nil
	})
	// None to a revoked agency: nothing is sealed to it any more.
	if peer, ok := g.state().dir.Agency(counterpart(rec)); ok && peer.Status == crypto.StatusActive {
		thread, err := g.peerThread(rec.ID, peer.ID)
		if err != nil {
			return Item{}, err
		}
		if rec.Box == store.Inbox && rec.Status == policy.RefDelivered && !pending {
			r, err := g.receipt(peer, thread, id, rec.EnvelopeHash, crypto.EventRead, "", now)
			if err != nil {
				return Item{}, err
			}
			reads = append(reads, readReceipt{about: id, r: r})
		}
		if stmt := rec.Related[relStatement]; rec.Box == store.Outbox && stmt != "" && !stmtPending {
			var env []byte
			g.db.View(func(tx *store.Tx) error {
				if !tx.HasReceipt(stmt, crypto.EventRead) {
					env, _ = tx.Envelope(stmt)
				}
				return nil
			})
			if env != nil {
				r, err := g.receipt(peer, thread, stmt, hashHex(env), crypto.EventRead, "", now)
				if err != nil {
					return Item{}, err
				}
				reads = append(reads, readReceipt{about: stmt, r: r})
			}
		}
	}
	err = g.db.Update(func(tx *store.Tx) error {
		if rec, err = tx.Record(id); err != nil {
			return err
		}
		return g.markRead(tx, rec, reads, by, now, act, pending)
	})
	if err != nil {
		return Item{}, err
	}
	g.poke()
	g.changed()
	return g.fullItem(rec)
}

type readReceipt struct {
	about string // the envelope read
	r     *sealed
}

// markRead queues the read receipts not sent yet and records the reads,
// in tx.
func (g *Gateway) markRead(tx *store.Tx, rec *store.Record, reads []readReceipt, by string, now time.Time, act store.Action, pending bool) error {
	stmtRead := false
	for _, rr := range reads {
		added, err := tx.AddReceipt(rr.about, crypto.EventRead, rr.r.signed)
		if err != nil {
			return err
		}
		if !added {
			continue // another request sent it meanwhile
		}
		if err := queueReceipt(tx, rr.r); err != nil {
			return err
		}
		stmtRead = stmtRead || rr.about != rec.ID
	}
	switch {
	case rec.Box == store.Inbox && rec.Status == policy.RefDelivered && !pending:
		return g.transition(tx, rec, Change{To: policy.RefRead, Role: policy.RoleRecipient, By: by, At: now, Action: act})
	case stmtRead:
		return g.note(tx, rec, Change{To: "statement-read", By: by, At: now, Action: act})
	}
	return tx.Audit(store.AuditEvent{At: now, Actor: by, Action: act, Object: rec.ID, Outcome: "opened"})
}

// Item shows one record the principal may act on with action a, without
// opening it (nothing is marked read).
func (g *Gateway) Item(p policy.Principal, a policy.Action, id string) (Item, error) {
	rec, err := g.authorize(p, a, id)
	if err != nil {
		return Item{}, err
	}
	return g.fullItem(rec)
}
