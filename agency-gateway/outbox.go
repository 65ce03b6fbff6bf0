package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Publish loop tuning.
const (
	publishBatch       = 64
	publishConcurrency = 16
	retryMin           = 100 * time.Millisecond
	retryMax           = 5 * time.Second
	idlePoll           = 2 * time.Second
)

// publish sends one queued envelope to the broker, waits for its PubAck,
// then dequeues it and marks its record sent, in one transaction that
// joins the gateway's next commit (store.DB.Later): the bookkeeping of a
// publish costs no fsync of its own. The item stays in flight, so it is
// not published again, until that commit. The envelope id is the
// Nats-Msg-Id, so a second publish of the same item (a crash between
// PubAck and commit) is dropped by the broker's duplicate window, and a
// recipient ignores an envelope it stored already.
func (g *Gateway) publish(ctx context.Context, it store.QueueItem) (err error) {
	if g.limitBlocked(it.To, g.now()) {
		return errLimitWait
	}
	if _, busy := g.inflight.LoadOrStore(it.Seq, true); busy {
		return errInFlight
	}
	later := false // the in-flight mark is the Later call's to clear
	defer func() {
		if !later {
			g.inflight.Delete(it.Seq)
		}
	}()
	var env []byte
	err = g.db.View(func(tx *store.Tx) (err error) {
		if _, err = tx.Queued1(it.Seq); err != nil {
			return err // already published
		}
		env, err = tx.Envelope(it.ID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := g.bus.Publish(ctx, it.To, it.ID, env); err != nil {
		g.metrics.publishFailures.Inc()
		if le := (*LimitError)(nil); errors.As(err, &le) {
			g.limitHit(it, le)
		} else if errors.Is(err, ErrLimit) {
			g.limitHit(it, &LimitError{Reason: "other", Err: err})
		}
		return err
	}
	g.limitCleared(it.To)
	now := g.now().UTC()
	later = true
	g.db.Later(func(tx *store.Tx) error {
		if err := tx.Dequeue(it.Seq); err != nil {
			return err
		}
		if it.Kind == kindReceipt || it.Kind == kindCheckpoint || it.Kind == kindCosignature {
			return tx.DeleteEnvelope(it.ID)
		}
		if it.Ref != it.ID {
			return nil // a receipt, status or statement envelope
		}
		rec, err := tx.Record(it.Ref)
		if err != nil || rec.Status != policy.RefQueued {
			return err // a receipt may have overtaken the acknowledgement
		}
		return g.transition(tx, rec, Change{To: policy.RefSent, Role: policy.RoleSystem, By: g.self, At: now,
			Action: ActEnvelopePublish, Detail: map[string]string{"to": it.To}})
	}, func(err error) {
		g.inflight.Delete(it.Seq)
		if err != nil {
			g.log.Warn("failed to record a publish; it will be published again", "envelope", it.ID, "err", err)
			return
		}
		g.metricsEnvelope("out", it.Kind, "published")
		g.changed()
		g.pokeTransfers()
	})
	return nil
}

var (
	errInFlight = errors.New("publish already in flight")
	// errLimitWait is returned for an envelope to a recipient that is
	// waited out after a limit refusal (not sent to the broker).
	errLimitWait = fmt.Errorf("%w: waiting before publishing to this recipient again", ErrLimit)
)

// publishLoop drains the outbox queue until every envelope is acked,
// retrying with back-off while the broker is unreachable. It reads the
// queue a page at a time, going on from where the last page ended, so that
// envelopes to a recipient whose inbox is full (which wait; see limits.go)
// never hold up those to the others, however many there are.
//
// Envelopes being published (or whose publish is being recorded) are not
// read again, and neither are those to a recipient waited out after a
// limit refusal, once a pass has seen whom they go to: a sender with
// thousands of envelopes waiting for one recipient spends nothing on them
// each time the loop wakes.
func (g *Gateway) publishLoop(ctx context.Context) {
	backoff := retryMin
	var from uint64
	// to knows the recipient of the items read in the last pass and this
	// one (seen), by sequence.
	to, seen := map[uint64]string{}, map[uint64]string{}
	for ctx.Err() == nil {
		if from == 0 {
			to, seen = seen, map[uint64]string{}
		}
		now := g.now()
		skip := func(seq uint64) bool {
			if _, busy := g.inflight.Load(seq); busy {
				return true
			}
			r, ok := to[seq]
			if ok {
				seen[seq] = r
			}
			return ok && g.limitBlocked(r, now)
		}
		var items []store.QueueItem
		err := g.db.View(func(tx *store.Tx) (err error) {
			items, err = tx.QueuedFrom(from, publishBatch, skip)
			g.metrics.queued.WithLabelValues(g.self).Set(float64(tx.QueueLen()))
			return err
		})
		if err != nil {
			g.log.Error("failed to read the outbox queue", "err", err)
		}
		for _, it := range items {
			to[it.Seq], seen[it.Seq] = it.To, it.To
		}
		more := err == nil && len(items) == publishBatch
		if more {
			from = items[len(items)-1].Seq + 1
		} else {
			from = 0
		}
		published, failed := g.publishAll(ctx, items)
		switch {
		case more && !failed:
			continue // the rest of the queue
		case published > 0 && !failed:
			backoff = retryMin
			continue
		case failed:
			wait(ctx, g.wake, backoff)
			backoff = min(backoff*2, retryMax)
		default:
			wait(ctx, g.wake, g.limitWait(idlePoll))
		}
	}
}

// publishAll publishes items concurrently. It reports how many it
// published (or found already published) and whether any failed; items
// being published by a request right now are skipped, and so are items to a
// recipient waited out after a limit refusal (a refusal for a limit is not
// a failure: it does not slow down the publishing to other recipients).
func (g *Gateway) publishAll(ctx context.Context, items []store.QueueItem) (published int, failed bool) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, publishConcurrency)
	now := g.now()
	for _, it := range items {
		if _, busy := g.inflight.Load(it.Seq); busy {
			continue // published meanwhile, its bookkeeping not yet committed
		}
		if now.After(it.Deadline) {
			g.dropExpired(it)
			continue
		}
		if !g.recipientActive(it.To) {
			g.dropRevoked(it)
			continue
		}
		if g.limitBlocked(it.To, now) {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := g.publish(ctx, it)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				published++
			case errors.Is(err, errInFlight):
			case errors.Is(err, ErrLimit):
				// Counted, logged and audited by limitHit; the
				// recipient is waited out.
			default:
				if !errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
					g.log.Warn("publish failed; will retry", "envelope", it.ID, "err", err)
				}
				failed = true
			}
		}()
	}
	wg.Wait()
	return published, failed
}

// dropExpired removes an envelope whose deadline has passed: the recipient
// would refuse it. The timer loop reports its record failed.
func (g *Gateway) dropExpired(it store.QueueItem) {
	err := g.db.Update(func(tx *store.Tx) error {
		if err := tx.Dequeue(it.Seq); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{Actor: g.self, Action: ActEnvelopeExpire, Object: it.ID,
			Outcome: "dropped", Reason: "deadline-passed", Detail: map[string]string{"to": it.To, "kind": it.Kind}})
	})
	if err != nil {
		g.log.Error("failed to drop an expired envelope", "envelope", it.ID, "err", err)
	}
}

func wait(ctx context.Context, wake <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-wake:
	case <-t.C:
	}
}

// recipientActive says whether agency id is active in the directory in
// force: nothing is published to a revoked agency (its gateway can no
// longer log in to read it).
func (g *Gateway) recipientActive(id string) bool {
	a, ok := g.state().dir.Agency(id)
	return ok && a.Status == crypto.StatusActive
}

// dropRevoked removes an envelope queued to an agency the directory now
// revokes (or no longer lists) and, for a record's own envelope, reports
// the record failed at once with reason recipient-revoked, instead of at
// its delivery deadline.
func (g *Gateway) dropRevoked(it store.QueueItem) {
	now := g.now().UTC()
	failed := false
	err := g.db.Update(func(tx *store.Tx) error {
		if err := tx.Dequeue(it.Seq); err != nil {
			return err
		}
		if err := tx.Audit(store.AuditEvent{At: now, Actor: g.self, Action: ActEnvelopeExpire, Object: it.ID,
			Outcome: "dropped", Reason: ReasonRecipientRevoked, Detail: map[string]string{"to": it.To, "kind": it.Kind}}); err != nil {
			return err
		}
		if it.Ref != it.ID {
			return nil // a receipt, status or statement envelope
		}
		rec, err := tx.Record(it.Ref)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if failed, err = delivered(tx, rec, policy.RefFailed); err != nil || !failed {
			return err
		}
		c := Change{To: policy.RefFailed, Role: policy.RoleSystem, By: g.self, At: now, Reason: ReasonRecipientRevoked,
			Action: ActEnvelopeExpire, Detail: map[string]string{"to": it.To}}
		if policy.Transition(machines[rec.Kind], rec.Status, policy.RefFailed, policy.RoleSystem) != nil {
			return g.note(tx, rec, c)
		}
		return g.transition(tx, rec, c)
	})
	if err != nil {
		g.log.Error("failed to drop an envelope to a revoked agency", "envelope", it.ID, "err", err)
		return
	}
	g.log.Warn("dropped an envelope queued to an agency the directory revokes", "envelope", it.ID, "to", it.To, "kind", it.Kind)
	if failed {
		g.decided(it.Ref, policy.RefFailed)
		g.changed()
	}
}
