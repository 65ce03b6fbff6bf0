package gateway

import (
	"context"
	"errors"
	"sync"

	"github.com/rujukan/rujukan/agency-gateway/store"
)

// joiner lets requests that publish their own envelope at once (publishNow)
// share broker messages, as the store's committer lets them share commits:
// while a publish to a recipient is on its way, envelopes for that
// recipient wait, and the next publish takes all of them (up to
// maxBundleParts) as one bundle. A lone request publishes at once, as
// before; under load, a broker message and its fsync carry several
// envelopes.
type joiner struct {
	mu      sync.Mutex
	busy    map[string]bool // a publish to this recipient is on its way
	waiting map[string][]*joinWaiter
}

// joinWaiter is one request waiting for the publish to its recipient.
type joinWaiter struct {
	it store.QueueItem
	// turn tells it the outcome of the publish that carried its envelope,
	// or hands it the next group to publish (lead).
	turn chan joinTurn
}

// errPublishAborted is told to the group of a publish that did not
// finish; their envelopes stay in the outbox for the publish loop.
var errPublishAborted = errors.New("the publish that was to carry this envelope stopped")

type joinTurn struct {
	lead []*joinWaiter // this waiter publishes these (itself first)
	err  error
}

// publishJoined publishes it, alone or with the envelopes to the same
// recipient that are waiting, and returns its outcome. A request whose
// context ends while it waits leaves the queue (its envelope stays in the
// outbox for the publish loop).
func (g *Gateway) publishJoined(ctx context.Context, it store.QueueItem) error {
	j := &g.joiner
	j.mu.Lock()
	if j.busy == nil {
		j.busy, j.waiting = map[string]bool{}, map[string][]*joinWaiter{}
	}
	var group []*joinWaiter
	if j.busy[it.To] {
		w := &joinWaiter{it: it, turn: make(chan joinTurn, 1)}
		j.waiting[it.To] = append(j.waiting[it.To], w)
		j.mu.Unlock()
		var t joinTurn
		select {
		case t = <-w.turn:
		case <-ctx.Done():
			if j.leave(w) {
				return ctx.Err()
			}
			t = <-w.turn // taken into a group already: its turn is coming
		}
		if t.lead == nil {
			return t.err
		}
		group = t.lead
	} else {
		j.busy[it.To] = true
		j.mu.Unlock()
		group = []*joinWaiter{{it: it}}
	}
	// Whatever happens to this publish, the group is told and the
	// recipient handed over.
	var errs []error
	defer func() {
		for i, w := range group[1:] {
			err := errPublishAborted
			if errs != nil {
				err = errs[i+1]
			}
			w.turn <- joinTurn{err: err}
		}
		j.handOver(it.To)
	}()
	items := make([]store.QueueItem, len(group))
	for i, w := range group {
		items[i] = w.it
	}
	errs = g.publish(ctx, items...)
	return errs[0]
}

// leave takes waiter w out of its recipient's queue; false if a group
// took it already.
func (j *joiner) leave(w *joinWaiter) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	q := j.waiting[w.it.To]
	for i, x := range q {
		if x == w {
			j.waiting[w.it.To] = append(q[:i:i], q[i+1:]...)
			return true
		}
	}
	return false
}

// handOver gives the recipient to the first of those who waited for it,
// with as many of them as a bundle takes, or frees it.
func (j *joiner) handOver(to string) {
	j.mu.Lock()
	next := j.waiting[to]
	if len(next) == 0 {
		delete(j.busy, to)
		delete(j.waiting, to)
		j.mu.Unlock()
		return
	}
	n := min(len(next), maxBundleParts)
	lead := next[:n:n]
	j.waiting[to] = next[n:]
	j.mu.Unlock()
	lead[0].turn <- joinTurn{lead: lead}
}
