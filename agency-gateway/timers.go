package gateway

import (
	"context"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
)

// timerPoll is how often the timer loop looks for records past their
// delivery deadline or due date.
const timerPoll = time.Second

// timerLoop reports sent records failed once their delivery deadline has
// passed without a delivered receipt, and expires open statement requests
// past their due date, on both sides, each by its own clock.
func (g *Gateway) timerLoop(ctx context.Context) {
	t := time.NewTicker(timerPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := g.sweep(); err != nil {
			g.log.Error("timer sweep failed", "err", err)
		}
	}
}

// sweep applies the deadlines and due dates that have passed.
func (g *Gateway) sweep() error {
	now := g.now().UTC()
	var overdue, due []string
	g.db.View(func(tx *store.Tx) error {
		overdue, due = tx.Overdue(now, 256), tx.PastDue(now, 256)
		return nil
	})
	for _, id := range overdue {
		failed := false
		err := g.db.Update(func(tx *store.Tx) error {
			rec, err := tx.Record(id)
			if err != nil {
				return err
			}
			if failed, err = delivered(tx, rec, policy.RefFailed); err != nil || !failed {
				return err
			}
			c := Change{To: policy.RefFailed, Role: policy.RoleSystem, By: g.self, At: now,
				Reason: ReasonUndelivered, Action: ActDeadline}
			if policy.Transition(machines[rec.Kind], rec.Status, policy.RefFailed, policy.RoleSystem) != nil {
				return g.note(tx, rec, c) // it moved on meanwhile (withdrawn, say)
			}
			return g.transition(tx, rec, c)
		})
		if err != nil {
			return err
		}
		if failed {
			g.decided(id, policy.RefFailed)
			g.changed()
		}
	}
	for _, id := range due {
		err := g.db.Update(func(tx *store.Tx) error {
			rec, err := tx.Record(id)
			if err != nil {
				return err
			}
			if err := tx.DeleteDue(rec.Due, id); err != nil {
				return err
			}
			if policy.Transition(policy.StatementRequestMachine, rec.Status, policy.SRExpired, policy.RoleSystem) != nil {
				return nil // answered or declined already
			}
			return g.transition(tx, rec, Change{To: policy.SRExpired, Role: policy.RoleSystem, By: g.self, At: now,
				Reason: "past-due", Action: ActDue})
		})
		if err != nil {
			return err
		}
		g.changed()
	}
	return nil
}
