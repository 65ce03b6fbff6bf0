package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// publish sends queued envelopes, all to one recipient, to the broker:
// one alone as itself, several as bundles (bundle.go) of at most
// maxBundleParts envelopes and crypto.MaxEnvelopeSize bytes, one after the
// other. For each bundle it waits for the PubAck, then dequeues its
// envelopes and marks their records sent, in one transaction that joins
// the gateway's next commit (store.DB.Later): the bookkeeping of a publish
// costs no fsync of its own. An item stays in flight, so it is not
// published again, until that commit. The envelope id (a bundle's: a hash
// of its envelopes' ids) is the Nats-Msg-Id, so a second publish of the
// same envelope or bundle (a crash between PubAck and commit) is dropped by
// the broker's duplicate window; a recipient ignores an envelope it stored
// already, however it came again.
//
// It returns each item's outcome, in order: nil when it is published (or
// was already), errInFlight when another publish has it, else the error
// of the publish that was to carry it (the items after a failed bundle are
// not tried).
func (g *Gateway) publish(ctx context.Context, items ...store.QueueItem) []error {
	errs := make([]error, len(items))
	if g.limitBlocked(items[0].To, g.now()) {
		for i := range errs {
			errs[i] = errLimitWait
		}
		return errs
	}
	// mine indexes the items this call holds in flight.
	mine := make([]int, 0, len(items))
	for i, it := range items {
		if _, busy := g.inflight.LoadOrStore(it.Seq, true); busy {
			errs[i] = errInFlight
		} else {
			mine = append(mine, i)
		}
	}
	// The in-flight mark of an item handed to a Later call is its to
	// clear; the others' are cleared here.
	handed := make([]bool, len(items))
	defer func() {
		for _, i := range mine {
			if !handed[i] {
				g.inflight.Delete(items[i].Seq)
			}
		}
	}()
	envs := make([][]byte, len(items))
	err := g.db.View(func(tx *store.Tx) error {
		for _, i := range mine {
			if _, err := tx.Queued1(items[i].Seq); errors.Is(err, store.ErrNotFound) {
				continue // already published
			} else if err != nil {
				return err
			}
			env, err := tx.Envelope(items[i].ID)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			envs[i] = env
		}
		return nil
	})
	if err != nil {
		for _, i := range mine {
			errs[i] = err
		}
		return errs
	}
	var todo []int // the items to publish, in order
	for _, i := range mine {
		if envs[i] != nil {
			todo = append(todo, i)
		}
	}
	for len(todo) > 0 {
		n := bundleCount(envsOf(envs, todo))
		err := g.publishBundle(ctx, items, envs, todo[:n], handed)
		if err != nil && n > 1 && !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrLimit) {
			// The broker refused the bundle itself (a smaller maximum
			// message size, say): the envelopes go alone.
			n, err = 1, g.publishBundle(ctx, items, envs, todo[:1], handed)
		}
		if err != nil {
			for _, i := range todo {
				errs[i] = err
			}
			return errs
		}
		todo = todo[n:]
	}
	return errs
}

func envsOf(envs [][]byte, idx []int) [][]byte {
	out := make([][]byte, len(idx))
	for k, i := range idx {
		out[k] = envs[i]
	}
	return out
}

// bundleCount is how many of envs, from the first, go in the next broker
// message: at least one, at most maxBundleParts, their bundle within
// crypto.MaxEnvelopeSize.
func bundleCount(envs [][]byte) int {
	size := bundleSize()
	for i, e := range envs {
		size += bundlePartHead + len(e)
		if i == maxBundleParts || (i > 0 && size > crypto.MaxEnvelopeSize) {
			return i
		}
	}
	return len(envs)
}

// publishBundle publishes the envelopes of items idx (in flight) as one
// broker message and, once the broker acknowledged it, hands each item's
// bookkeeping to the next commit, which clears its in-flight mark (handed).
func (g *Gateway) publishBundle(ctx context.Context, items []store.QueueItem, envs [][]byte, idx []int, handed []bool) error {
	first := items[idx[0]]
	id, data := first.ID, envs[idx[0]]
	if len(idx) > 1 {
		ids := make([]string, len(idx))
		for k, i := range idx {
			ids[k] = items[i].ID
		}
		id, data = bundleID(ids), encodeBundle(envsOf(envs, idx))
	}
	if err := g.bus.Publish(ctx, first.To, id, data); err != nil {
		g.metrics.publishFailures.Inc()
		if le := (*LimitError)(nil); errors.As(err, &le) {
			g.limitHit(first, le)
		} else if errors.Is(err, ErrLimit) {
			g.limitHit(first, &LimitError{Reason: "other", Err: err})
		}
		return err
	}
	g.limitCleared(first.To)
	g.metrics.perMessage.Observe(float64(len(idx)))
	now := g.now().UTC()
	for _, i := range idx {
		handed[i] = true
		g.published(items[i], now)
	}
	return nil
}

// published records, with the next commit, that the broker holds its
// envelope: out of the queue, and its record sent.
func (g *Gateway) published(it store.QueueItem, now time.Time) {
	files := false // a transfer may wait for this envelope to leave
	g.db.Later(func(tx *store.Tx) error {
		files = tx.SendingFiles()
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
		if files {
			g.pokeTransfers()
		}
	})
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
	// Envelopes to one recipient go together, in bundles (publish).
	var order []string
	byTo := map[string][]store.QueueItem{}
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
		if len(byTo[it.To]) == 0 {
			order = append(order, it.To)
		}
		byTo[it.To] = append(byTo[it.To], it)
	}
	for _, to := range order {
		for group := range slices.Chunk(byTo[to], maxBundleParts) {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				errs := g.publish(ctx, group...)
				mu.Lock()
				defer mu.Unlock()
				for i, err := range errs {
					switch {
					case err == nil:
						published++
					case errors.Is(err, errInFlight):
					case errors.Is(err, ErrLimit):
						// Counted, logged and audited by limitHit; the
						// recipient is waited out.
					default:
						if !failed && !errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
							g.log.Warn("publish failed; will retry", "envelope", group[i].ID, "err", err)
						}
						failed = true
					}
				}
			}()
		}
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
