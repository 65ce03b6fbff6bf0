package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// Publish loop tuning.
const (
	publishBatch       = 64
	publishConcurrency = 16
	retryMin           = 100 * time.Millisecond
	retryMax           = 5 * time.Second
	idlePoll           = 2 * time.Second
	deadlinePoll       = time.Second
)

// publish sends one queued envelope to the broker, waits for its PubAck,
// then dequeues it and marks its record sent, in one transaction. The
// envelope id is the Nats-Msg-Id, so a second publish of the same item (a
// crash between PubAck and commit) is dropped by the broker's duplicate
// window.
func (g *Gateway) publish(ctx context.Context, it store.QueueItem) error {
	if _, busy := g.inflight.LoadOrStore(it.Seq, true); busy {
		return errInFlight
	}
	defer g.inflight.Delete(it.Seq)
	var env []byte
	err := g.db.View(func(tx *store.Tx) (err error) {
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
		return err
	}
	now := g.now().UTC()
	err = g.db.Batch(func(tx *store.Tx) error {
		if err := tx.Dequeue(it.Seq); err != nil {
			return err
		}
		if it.Ref == "" || it.Ref != it.ID {
			return nil // a receipt or status envelope
		}
		rec, err := tx.Record(it.Ref)
		if err != nil {
			return err
		}
		if rec.Status == StatusQueued {
			rec.Status = StatusSent
			rec.UpdatedAt = now
		}
		rec.Timeline = append(rec.Timeline, store.Event{Event: StatusSent, At: now, By: g.self})
		return tx.PutRecord(rec)
	})
	if err == nil {
		g.metricsEnvelope("out", it.Kind, "published")
	}
	return err
}

var errInFlight = errors.New("publish already in flight")

// publishLoop drains the outbox queue until every envelope is acked,
// retrying with back-off while the broker is unreachable.
func (g *Gateway) publishLoop(ctx context.Context) {
	backoff := retryMin
	for ctx.Err() == nil {
		var items []store.QueueItem
		err := g.db.View(func(tx *store.Tx) (err error) {
			items, err = tx.Queued(publishBatch)
			g.metrics.queued.WithLabelValues(g.self).Set(float64(tx.QueueLen()))

			return err
		})
		if err != nil {
			g.log.Error("failed to read the outbox queue", "err", err)
		}
		published, failed := g.publishAll(ctx, items)
		switch {
		case published > 0 && !failed:
			backoff = retryMin
			continue
		case failed:
			wait(ctx, g.wake, backoff)
			backoff = min(backoff*2, retryMax)
		default:
			wait(ctx, g.wake, idlePoll)
		}
	}
}

// publishAll publishes items concurrently. It reports how many it
// published (or found already published) and whether any failed; items
// being published by a request right now are skipped.
func (g *Gateway) publishAll(ctx context.Context, items []store.QueueItem) (published int, failed bool) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, publishConcurrency)
	now := g.now()
	for _, it := range items {
		if now.After(it.Deadline) {
			g.dropExpired(it)
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := g.publish(ctx, it)
			if err == nil {
				mu.Lock()
				published++
				mu.Unlock()
			}
			if err != nil && !errors.Is(err, errInFlight) {
				if !errors.Is(err, client.ErrUnavailable) && ctx.Err() == nil {
					g.log.Warn("publish failed; will retry", "envelope", it.ID, "err", err)
				}
				mu.Lock()
				failed = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return published, failed
}

// dropExpired removes an envelope whose deadline has passed: the recipient
// would refuse it. The deadline loop reports its referral failed.
func (g *Gateway) dropExpired(it store.QueueItem) {
	err := g.db.Update(func(tx *store.Tx) error {
		if err := tx.Dequeue(it.Seq); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{Actor: "gateway", Action: "envelope.expire", Object: it.ID,
			Outcome: "dropped", Reason: "deadline-passed", Detail: map[string]string{"to": it.To, "kind": it.Kind}})
	})
	if err != nil {
		g.log.Error("failed to drop an expired envelope", "envelope", it.ID, "err", err)
	}
}

// deadlineLoop reports referrals failed once their delivery deadline has
// passed without a delivered receipt.
func (g *Gateway) deadlineLoop(ctx context.Context) {
	t := time.NewTicker(deadlinePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := g.failOverdue(); err != nil {
			g.log.Error("deadline sweep failed", "err", err)
		}
	}
}

func (g *Gateway) failOverdue() error {
	now := g.now().UTC()
	var ids []string
	g.db.View(func(tx *store.Tx) error {
		ids = tx.Overdue(now, 256)
		return nil
	})
	for _, id := range ids {
		failed := false
		err := g.db.Update(func(tx *store.Tx) error {
			rec, err := tx.Record(id)
			if err != nil {
				return err
			}
			if err := tx.DeletePending(rec); err != nil {
				return err
			}
			if rec.Outcome != "" {
				return nil
			}
			rec.Outcome = StatusFailed
			rec.Status = StatusFailed
			rec.UpdatedAt = now
			rec.Timeline = append(rec.Timeline, store.Event{Event: StatusFailed, At: now, By: g.self, Reason: "undelivered-by-deadline"})
			if err := tx.PutRecord(rec); err != nil {
				return err
			}
			failed = true
			return tx.Audit(store.AuditEvent{At: now, Actor: "gateway", Action: "referral.fail", Object: id,
				Outcome: StatusFailed, Reason: "undelivered-by-deadline", Detail: map[string]string{"to": rec.To}})
		})
		if err != nil {
			return err
		}
		if failed {
			g.decided(id, StatusFailed)
		}
	}
	return nil
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

// queueEnvelope stores a sealed envelope and its queue entry in tx.
func queueEnvelope(tx *store.Tx, h crypto.Header, env []byte, ref string) error {
	if err := tx.PutEnvelope(h.ID, env); err != nil {
		return err
	}
	_, err := tx.Enqueue(store.QueueItem{ID: h.ID, Kind: h.Kind, To: h.To, Ref: ref, Deadline: h.Expires})
	return err
}
