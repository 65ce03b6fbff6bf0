package membus

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
)

// fileQueue is one agency's queue of attachment chunks: a queue per
// sender, served in turn as the broker client serves its consumers.
type fileQueue struct {
	ready   map[string][]*ChunkMsg // sender -> chunks waiting, in order
	pending map[*ChunkMsg]bool     // delivered, not settled
	next    string                 // the sender served first next time
	signal  chan struct{}
}

func (n *Network) fileQueue(id string) *fileQueue {
	q := n.files[id]
	if q == nil {
		q = &fileQueue{ready: map[string][]*ChunkMsg{}, pending: map[*ChunkMsg]bool{}, signal: make(chan struct{}, 1)}
		n.files[id] = q
	}
	return q
}

func (n *Network) pushChunk(to string, m *ChunkMsg) {
	q := n.fileQueue(to)
	q.ready[m.from] = append(q.ready[m.from], m)
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// heldChunks returns how many chunks from sender from agency to's file
// queue holds, waiting or unacked.
func (n *Network) heldChunks(to, from string) int {
	q := n.fileQueue(to)
	c := len(q.ready[from])
	for m := range q.pending {
		if m.from == from {
			c++
		}
	}
	return c
}

// SetChunkFilter makes every chunk published from now on go through f,
// which returns what the recipient's file queue gets instead: the chunk
// itself to let it pass, nil to drop it, two copies to duplicate it, a
// chunk with other Data or headers to replace it; a filter that keeps a
// chunk and returns it with a later one reorders them. The filter runs
// after the broker's checks (down, duplicate message id, sender share), so
// what it returns is delivered as is. f must not call the Network. nil
// removes the filter.
func (n *Network) SetChunkFilter(f func(to string, c gateway.Chunk) []gateway.Chunk) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.chunkFilter = f
}

// SetChunkSenderLimit makes agency to's file queue hold at most max chunks
// (waiting or unacked) from each sender, as the broker's per-sender files
// share does: a publish over it fails with a *gateway.LimitError (reason
// sender-share). 0 removes the limit.
func (n *Network) SetChunkSenderLimit(to string, max int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.chunkShare == nil {
		n.chunkShare = map[string]int{}
	}
	n.chunkShare[to] = max
}

// ChunkLen returns how many chunks agency id has waiting or unacked.
func (n *Network) ChunkLen(id string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	q := n.fileQueue(id)
	c := len(q.pending)
	for _, r := range q.ready {
		c += len(r)
	}
	return c
}

// RedeliverChunks puts every chunk agency id was handed and has not
// settled back in its queue, as the broker does once the ack wait runs out.
func (n *Network) RedeliverChunks(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	q := n.fileQueue(id)
	ms := slices.Collect(maps.Keys(q.pending))
	slices.SortFunc(ms, func(a, b *ChunkMsg) int { return a.seq - b.seq })
	for _, m := range ms {
		delete(q.pending, m)
	}
	// Back in front of what waits, in the order they were published.
	for i := len(ms) - 1; i >= 0; i-- {
		m := ms[i]
		q.ready[m.from] = append([]*ChunkMsg{m}, q.ready[m.from]...)
	}
	if len(ms) > 0 {
		select {
		case q.signal <- struct{}{}:
		default:
		}
	}
}

func copyChunk(c gateway.Chunk) gateway.Chunk {
	out := gateway.Chunk{MsgID: c.MsgID, Data: append([]byte(nil), c.Data...)}
	if c.Header != nil {
		out.Header = maps.Clone(c.Header)
	}
	return out
}

// PublishChunks implements gateway.FileBus.
func (b *Bus) PublishChunks(ctx context.Context, to string, chunks []gateway.Chunk) (int, error) {
	n := b.n
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, c := range chunks {
		if n.down {
			return i, fmt.Errorf("%w: membus is down", gateway.ErrUnavailable)
		}
		if err := ctx.Err(); err != nil {
			return i, fmt.Errorf("%w: %v", gateway.ErrUnavailable, err)
		}
		key := to + "/" + c.MsgID
		if n.chunkSeen[key] {
			continue
		}
		if max := n.chunkShare[to]; max > 0 && n.heldChunks(to, b.id) >= max {
			return i, &gateway.LimitError{Reason: "sender-share", Err: fmt.Errorf("membus: %s holds %d chunks from %s", to, max, b.id)}
		}
		n.chunkSeen[key] = true
		n.PublishedChunks++
		c = copyChunk(c)
		out := []gateway.Chunk{c}
		if n.chunkFilter != nil {
			out = n.chunkFilter(to, c)
		}
		for _, o := range out {
			n.seq++
			n.pushChunk(to, &ChunkMsg{n: n, to: to, from: b.id, seq: n.seq, c: copyChunk(o)})
		}
	}
	return len(chunks), nil
}

// FetchChunks implements gateway.FileBus: it waits up to 50 ms for chunks
// and takes the senders in turn.
func (b *Bus) FetchChunks(ctx context.Context, max int) ([]gateway.ChunkMsg, error) {
	deadline := time.NewTimer(50 * time.Millisecond)
	defer deadline.Stop()
	for {
		b.n.mu.Lock()
		if b.n.down {
			b.n.mu.Unlock()
			return nil, fmt.Errorf("%w: membus is down", gateway.ErrUnavailable)
		}
		q := b.n.fileQueue(b.id)
		out := q.take(max)
		signal := q.signal
		b.n.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, nil
		case <-signal:
		}
	}
}

// take hands out up to max chunks, one per sender in turn.
func (q *fileQueue) take(max int) []gateway.ChunkMsg {
	senders := make([]string, 0, len(q.ready))
	for from, r := range q.ready {
		if len(r) > 0 {
			senders = append(senders, from)
		}
	}
	if len(senders) == 0 {
		return nil
	}
	slices.Sort(senders)
	// Start at the first sender at or after q.next.
	start, _ := slices.BinarySearch(senders, q.next)
	var out []gateway.ChunkMsg
	for len(out) < max {
		got := false
		for i := 0; i < len(senders) && len(out) < max; i++ {
			from := senders[(start+i)%len(senders)]
			r := q.ready[from]
			if len(r) == 0 {
				continue
			}
			m := r[0]
			q.ready[from] = r[1:]
			m.delivered++
			q.pending[m] = true
			out = append(out, m)
			got = true
			q.next = from + "\x00" // the sender after this one
		}
		if !got {
			break
		}
	}
	return out
}

// ChunkMsg is one delivered chunk; it implements gateway.ChunkMsg.
type ChunkMsg struct {
	n         *Network
	to, from  string
	seq       int
	c         gateway.Chunk
	delivered int
}

// Data implements gateway.Msg.
func (m *ChunkMsg) Data() []byte { return m.c.Data }

// From implements gateway.Msg.
func (m *ChunkMsg) From() string { return m.from }

// MsgID returns the chunk's message id as published.
func (m *ChunkMsg) MsgID() string { return m.c.MsgID }

// Header implements gateway.ChunkMsg.
func (m *ChunkMsg) Header(key string) string { return m.c.Header[key] }

// Delivered implements gateway.Msg.
func (m *ChunkMsg) Delivered() int { return m.delivered }

// AckSync implements gateway.Msg.
func (m *ChunkMsg) AckSync(ctx context.Context) error { m.settle(false, 0); return nil }

// Nak implements gateway.Msg.
func (m *ChunkMsg) Nak(delay time.Duration) error { m.settle(true, delay); return nil }

// Term implements gateway.Msg.
func (m *ChunkMsg) Term() error { m.settle(false, 0); return nil }

func (m *ChunkMsg) settle(again bool, delay time.Duration) {
	m.n.mu.Lock()
	q := m.n.fileQueue(m.to)
	was := q.pending[m]
	delete(q.pending, m)
	if !again {
		// Settled for good, even from an earlier delivery while it waits
		// again.
		q.ready[m.from] = slices.DeleteFunc(q.ready[m.from], func(o *ChunkMsg) bool { return o == m })
	}
	m.n.mu.Unlock()
	if again && was {
		time.AfterFunc(delay, func() {
			m.n.mu.Lock()
			defer m.n.mu.Unlock()
			m.n.pushChunk(m.to, m)
		})
	}
}
