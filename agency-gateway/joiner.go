package gateway

import (
	"context"
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

type joinTurn struct {
	lead []*joinWaiter // this waiter publishes these (itself first)
	err  error
}

// publishJoined publishes it, alone or with the envelopes to the same
// recipient that are waiting, and returns the outcome of the publish that
// carried it.
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
		t := <-w.turn
		if t.lead == nil {
			return t.err
		}
		group = t.lead
	} else {
		j.busy[it.To] = true
		j.mu.Unlock()
		group = []*joinWaiter{{it: it}}
	}
	items := make([]store.QueueItem, len(group))
	for i, w := range group {
		items[i] = w.it
	}
	err := g.publish(ctx, items...)
	for _, w := range group[1:] {
		w.turn <- joinTurn{err: err}
	}
	// Hand the recipient over to the first of those who waited meanwhile,
	// with as many of them as a bundle takes.
	j.mu.Lock()
	next := j.waiting[it.To]
	if len(next) == 0 {
		delete(j.busy, it.To)
		delete(j.waiting, it.To)
		j.mu.Unlock()
		return err
	}
	n := min(len(next), maxBundleParts)
	lead := next[:n:n]
	j.waiting[it.To] = next[n:]
	j.mu.Unlock()
	lead[0].turn <- joinTurn{lead: lead}
	return err
}
