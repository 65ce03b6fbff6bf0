package gateway

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
)

// Change is one state change of a record.
type Change struct {
	// To is the new state.
	To string
	// Role is who makes the change, seen from the record: its sender, its
	// recipient, or the system (publish acknowledgements, receipts,
	// deadlines).
	Role policy.Role
	// By is "agency/subject" for staff, "agency" for a gateway's own step.
	By string
	// At is when, by the clock of agency Clock.
	At    time.Time
	Clock string
	// Reason is a reason code; Note is staff free text, sealed at rest.
	Reason string
	Note   string
	// Peer marks a change announced by the counterpart: when the two sides
	// changed the record at the same moment, the machine's precedence
	// decides (see resolve).
	Peer bool
	// Create makes a new record: rec.Status must be empty.
	Create bool
	// Action, Actor and Detail are the audit event's; Actor defaults to By.
	Action store.Action
	Actor  string
	Detail map[string]string
}

// errSuperseded reports a peer's change that lost to a concurrent local one
// by the machine's precedence: it is recorded, not applied, and not
// refused.
var errSuperseded = errors.New("superseded by a concurrent change")

// machines are the state machines of the kinds of record.
var machines = map[string]*policy.Machine{
	kindReferral:         policy.ReferralMachine,
	kindStatementRequest: policy.StatementRequestMachine,
}

// transition is the one function that changes a record's state: it checks
// the kind's state machine, sets the status and time, appends the
// timeline entry and writes the audit event, all in tx. No other code sets
// a status.
//
// A peer's change that is not an edge of the machine is resolved by the
// machine's precedence when the record's state was set by this side (the
// two changes crossed): the winning state is applied, or the losing one is
// recorded in the timeline and errSuperseded returned. Anything else
// illegal is a policy.ErrConflict.
func (g *Gateway) transition(tx *store.Tx, rec *store.Record, c Change) error {
	m := machines[rec.Kind]
	if m == nil {
		return fmt.Errorf("records of kind %q have no state machine", rec.Kind)
	}
	outcome := c.To
	switch {
	case c.Create:
		if rec.Status != "" || !startState(m, rec.Box, c.To) {
			return fmt.Errorf("a new %s record cannot start as %q", rec.Kind, c.To)
		}
	default:
		err := policy.Transition(m, rec.Status, c.To, c.Role)
		if err != nil && c.Peer && errors.Is(err, policy.ErrConflict) {
			// The peer's change crossed one made here only if it was a
			// legal change for its role from the state before ours.
			before, ok := g.beforeLocalChange(rec)
			if ok && rec.Box == store.Outbox && c.Role == policy.RoleRecipient &&
				(before == policy.RefQueued || before == policy.RefSent || before == policy.RefDelivered) {
				before = policy.RefRead // the sender's copy lags: a change by the recipient proves it read it
			}
			if ok && policy.Transition(m, before, c.To, c.Role) == nil {
				switch {
				case m.Supersedes(c.To, rec.Status):
					err = nil
					outcome = c.To + " (supersedes " + rec.Status + ")"
				case m.Supersedes(rec.Status, c.To) || m.Terminal(rec.Status):
					return g.superseded(tx, rec, c)
				}
			}
		}
		if err != nil {
			return err
		}
	}
	rec.Status = c.To
	rec.UpdatedAt = g.now().UTC()
	rec.Timeline = append(rec.Timeline, g.event(rec.ID, c, ""))
	if err := tx.PutRecord(rec); err != nil {
		return err
	}
	return g.auditChange(tx, rec, c, outcome)
}

// startState says whether a new record of machine m may start in state s:
// the sender's copy starts at the machine's initial state, the recipient's
// once delivered.
func startState(m *policy.Machine, box store.Box, s string) bool {
	if box == store.Outbox {
		return s == m.Initial
	}
	return s == policy.RefDelivered // the same name in both machines
}

// beforeLocalChange returns the state the record had before its current
// state, when the current state was set by this gateway's side (so a
// conflicting change from the peer may have crossed it).
func (g *Gateway) beforeLocalChange(rec *store.Record) (string, bool) {
	m := machines[rec.Kind]
	var states []store.Event
	for _, e := range rec.Timeline {
		if m.Valid(e.Event) && e.Reason != reasonSuperseded {
			states = append(states, e)
		}
	}
	n := len(states)
	if n < 2 || states[n-1].Event != rec.Status {
		return "", false
	}
	agency, _, _ := strings.Cut(states[n-1].By, "/")
	return states[n-2].Event, agency == g.self
}

const reasonSuperseded = "superseded"

// superseded records a peer's change that lost to a crossing local one.
func (g *Gateway) superseded(tx *store.Tx, rec *store.Record, c Change) error {
	rec.UpdatedAt = g.now().UTC()
	rec.Timeline = append(rec.Timeline, g.event(rec.ID, c, reasonSuperseded))
	if err := tx.PutRecord(rec); err != nil {
		return err
	}
	if err := g.auditChange(tx, rec, c, reasonSuperseded); err != nil {
		return err
	}
	return errSuperseded
}

// event is the timeline entry of a change.
func (g *Gateway) event(recID string, c Change, reason string) store.Event {
	if reason == "" {
		reason = c.Reason
	}
	clock := c.Clock
	if clock == "" {
		clock = g.self
	}
	return store.Event{Event: c.To, At: c.At.UTC(), By: c.By, Clock: clock, Reason: reason,
		Note: g.sealNote(recID, c.Note)}
}

func (g *Gateway) auditChange(tx *store.Tx, rec *store.Record, c Change, outcome string) error {
	actor := c.Actor
	if actor == "" {
		actor = c.By
	}
	detail := maps.Clone(c.Detail)
	if detail == nil {
		detail = map[string]string{}
	}
	detail["kind"] = rec.Kind
	detail["counterpart"] = counterpart(rec)
	return tx.Audit(store.AuditEvent{At: g.now().UTC(), Actor: actor, Action: c.Action, Object: rec.ID,
		Outcome: outcome, Reason: c.Reason, Detail: detail})
}

// note appends a timeline entry that is not a state change (a receipt for
// a status or statement envelope, say) and audits it.
func (g *Gateway) note(tx *store.Tx, rec *store.Record, c Change) error {
	rec.UpdatedAt = g.now().UTC()
	rec.Timeline = append(rec.Timeline, g.event(rec.ID, c, ""))
	if err := tx.PutRecord(rec); err != nil {
		return err
	}
	return g.auditChange(tx, rec, c, c.To)
}

// counterpart returns the other agency of a record.
func counterpart(rec *store.Record) string {
	if rec.Box == store.Outbox {
		return rec.To
	}
	return rec.From
}

// sealNote encrypts a staff note of a record's timeline for the store; an
// empty note stays empty.
func (g *Gateway) sealNote(recordID, note string) []byte {
	if note == "" {
		return nil
	}
	return g.keys.AtRest.Seal(recordID+"/note", []byte(note))
}

// openNote decrypts a note sealed by sealNote.
func (g *Gateway) openNote(recordID string, sealed []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	b, err := g.keys.AtRest.Open(recordID+"/note", sealed)
	return string(b), err
}

// delivered sets a sent record's one delivery outcome, once; it reports
// whether this call set it.
func delivered(tx *store.Tx, rec *store.Record, outcome string) (bool, error) {
	if rec.Box != store.Outbox || rec.Outcome != "" {
		return false, nil
	}
	rec.Outcome = outcome
	return true, tx.DeletePending(rec)
}
