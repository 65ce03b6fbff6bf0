package gateway

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/rujukan/rujukan/crypto"
)

// queued is a screened (and opened) envelope waiting for a worker.
type queued struct {
	m      Msg
	in     *Incoming
	start  time.Time
	urgent bool
}

// urgent says whether an opened body asks to be served first: a
// top-level "priority": "urgent" (referrals; any kind with a priority).
func urgent(body []byte) bool {
	var b struct {
		Priority string `json:"priority"`
	}
	return json.Unmarshal(body, &b) == nil && b.Priority == "urgent"
}

// urgentRun is how many urgent envelopes are served in a row while others
// wait.
const urgentRun = 4

// fairQueue holds screened envelopes in two lanes, urgent and the rest,
// each with one FIFO queue per sender (the sender the broker
// authenticated, an agency of the directory: screen refuses any other),
// handing them out one sender at a time, round-robin. The urgent lane goes
// first, at most urgentRun in a row while the other lane waits. It holds
// at most max envelopes and maxBytes bytes.
type fairQueue struct {
	mu        sync.Mutex
	lanes     [2]lane // urgent, then the rest
	run       int     // urgent envelopes served in a row
	n, bytes  int     // envelopes queued or reserved, and their size
	queued    int     // envelopes queued
	max, maxB int
	closed    bool
	ready     chan struct{} // an envelope was pushed
	room      chan struct{} // an envelope was taken
}

// lane is one sender-fair queue.
type lane struct {
	bySender map[string][]queued
	ring     []string // senders with envelopes queued, in serving order
}

func (l *lane) push(it queued) {
	from := it.m.From()
	if len(l.bySender[from]) == 0 {
		l.ring = append(l.ring, from)
	}
	l.bySender[from] = append(l.bySender[from], it)
}

func (l *lane) pop() queued {
	from := l.ring[0]
	l.ring = l.ring[1:]
	list := l.bySender[from]
	it := list[0]
	list[0] = queued{}
	if list = list[1:]; len(list) > 0 {
		l.bySender[from] = list
		l.ring = append(l.ring, from)
	} else {
		delete(l.bySender, from)
	}
	return it
}

func newFairQueue(max, maxBytes int) *fairQueue {
	q := &fairQueue{max: max, maxB: maxBytes, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
	for i := range q.lanes {
		q.lanes[i].bySender = map[string][]queued{}
	}
	return q
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// reserve holds room for a fetched envelope, size bytes (roomTaken), until
// it is taken or released; waitRoom said there was room for it.
func (q *fairQueue) reserve(size int) {
	q.mu.Lock()
	q.n++
	q.bytes += size
	q.mu.Unlock()
}

// release gives back the room of a fetched envelope that was not queued,
// size bytes (roomFreed).
func (q *fairQueue) release(size int) {
	q.mu.Lock()
	q.n--
	q.bytes -= size
	q.mu.Unlock()
	signal(q.room)
}

// push queues an envelope whose room was reserved.
func (q *fairQueue) push(it queued) {
	q.mu.Lock()
	if it.urgent {
		q.lanes[0].push(it)
	} else {
		q.lanes[1].push(it)
	}
	q.queued++
	q.mu.Unlock()
	signal(q.ready)
}

// pop takes the next sender's oldest envelope, waiting for one; false once
// ctx is done or the queue closed.
func (q *fairQueue) pop(ctx context.Context) (queued, bool) {
	for {
		q.mu.Lock()
		if q.closed || ctx.Err() != nil {
			q.mu.Unlock()
			signal(q.ready) // wake another worker to stop
			return queued{}, false
		}
		if q.queued > 0 {
			var it queued
			urgentWaits, restWaits := len(q.lanes[0].ring) > 0, len(q.lanes[1].ring) > 0
			if urgentWaits && (!restWaits || q.run < urgentRun) {
				it = q.lanes[0].pop()
				q.run++
			} else {
				it = q.lanes[1].pop()
				q.run = 0
			}
			q.n--
			q.queued--
			q.bytes -= roomFreed(it.m)
			more := q.queued > 0
			q.mu.Unlock()
			signal(q.room)
			if more {
				signal(q.ready) // wake another worker
			}
			return it, true
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-ctx.Done():
			return queued{}, false
		}
	}
}

// waitRoom waits until the queue has room and returns how many envelopes
// may be fetched: as many as fit by count, and by bytes if each were of
// the largest size. 0 once ctx is done.
func (q *fairQueue) waitRoom(ctx context.Context) int {
	for {
		q.mu.Lock()
		n := min(q.max-q.n, (q.maxB-q.bytes)/crypto.MaxEnvelopeSize)
		q.mu.Unlock()
		if n > 0 {
			return n
		}
		select {
		case <-q.room:
		case <-ctx.Done():
			return 0
		}
	}
}

// close wakes the workers to stop.
func (q *fairQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.ready)
}
