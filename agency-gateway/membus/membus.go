// Package membus is an in-memory broker for tests of the gateway core: it
// keeps one inbox per agency, drops a second publish of the same message
// id, redelivers what is not acked, can be taken down to simulate an
// unreachable broker, and can cap each sender's share of an inbox as the
// broker does (SetSenderLimit). Beside each inbox it keeps a file queue of
// attachment chunks (gateway.FileBus), with the same behaviour, a share per
// sender of its own (SetChunkSenderLimit) and a filter through which every
// published chunk passes, so tests can tamper with chunks in flight
// (SetChunkFilter), and a tap that sees every envelope published (SetTap).
// It keeps nothing across processes.
package membus

import (
	"context"
	"fmt"
	"sync"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
)

// Network is a set of inboxes shared by the gateways of one test.
type Network struct {
	mu      sync.Mutex
	inboxes map[string]*inbox
	seen    map[string]bool // message ids published
	down    bool
	share   map[string]int // inbox -> messages one sender may keep there
	// Published counts accepted publishes.
	Published int
	// tap sees every accepted publish (SetTap); hold keeps aside those it
	// names, until Release.
	tap      func(to, from string, env []byte)
	hold     func(to, from string, env []byte) bool
	heldBack []*Msg

	files       map[string]*fileQueue
	chunkSeen   map[string]bool // recipient + "/" + chunk message id
	chunkShare  map[string]int  // file queue -> chunks one sender may keep there
	chunkFilter func(to string, c gateway.Chunk) []gateway.Chunk
	seq         int // chunks enqueued, for redelivery in order
	// PublishedChunks counts accepted chunk publishes (not counting
	// duplicates of a message id already stored).
	PublishedChunks int
}

type inbox struct {
	ready   []*Msg
	pending map[*Msg]bool
	signal  chan struct{}
}

// New returns an empty network.
func New() *Network {
	return &Network{inboxes: map[string]*inbox{}, seen: map[string]bool{},
		files: map[string]*fileQueue{}, chunkSeen: map[string]bool{}}
}

func (n *Network) box(id string) *inbox {
	b := n.inboxes[id]
	if b == nil {
		b = &inbox{pending: map[*Msg]bool{}, signal: make(chan struct{}, 1)}
		n.inboxes[id] = b
	}
	return b
}

// SetDown makes every publish and fetch fail (true) or work again.
func (n *Network) SetDown(down bool) {
	n.mu.Lock()
	n.down = down
	n.mu.Unlock()
}

// SetSenderLimit makes agency to's inbox hold at most max messages (waiting
// or unacked) from each sender, as the broker's per-sender share does: a
// publish over it fails with a *gateway.LimitError (reason sender-share).
// 0 removes the limit.
func (n *Network) SetSenderLimit(to string, max int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.share == nil {
		n.share = map[string]int{}
	}
	n.share[to] = max
}

// held returns how many messages from sender from agency to's inbox holds.
func (n *Network) held(to, from string) int {
	b := n.box(to)
	c := 0
	for _, m := range b.ready {
		if m.from == from {
			c++
		}
	}
	for m := range b.pending {
		if m.from == from {
			c++
		}
	}
	return c
}

// SetTap makes f see every envelope published from then on (under the
// network's lock: f must not call back into it).
func (n *Network) SetTap(f func(to, from string, env []byte)) {
	n.mu.Lock()
	n.tap = f
	n.mu.Unlock()
}

// SetHold makes the network keep aside, accepted but not delivered, every
// envelope f names from then on, until Release (a message delayed in
// flight).
func (n *Network) SetHold(f func(to, from string, env []byte) bool) {
	n.mu.Lock()
	n.hold = f
	n.mu.Unlock()
}

// Release delivers the envelopes kept aside by SetHold.
func (n *Network) Release() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.heldBack {
		n.push(m.to, m)
	}
	n.heldBack = nil
}

// Inject puts raw bytes in agency to's inbox as if from agency from had
// published them, as a hostile member could.
func (n *Network) Inject(to, from string, data []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.push(to, &Msg{n: n, to: to, from: from, data: data})
}

func (n *Network) push(to string, m *Msg) {
	b := n.box(to)
	b.ready = append(b.ready, m)
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// Len returns how many messages agency id has waiting or unacked.
func (n *Network) Len(id string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := n.box(id)
	return len(b.ready) + len(b.pending)
}

// Bus returns agency id's connection to the network.
func (n *Network) Bus(id string) *Bus { return &Bus{n: n, id: id} }

// Bus is one agency's connection; it implements gateway.Bus.
type Bus struct {
	n  *Network
	id string
}

var (
	_ gateway.Bus      = (*Bus)(nil)
	_ gateway.FileBus  = (*Bus)(nil)
	_ gateway.ChunkMsg = (*ChunkMsg)(nil)
)

// Publish implements gateway.Bus.
func (b *Bus) Publish(ctx context.Context, to, id string, env []byte) error {
	b.n.mu.Lock()
	defer b.n.mu.Unlock()
	if b.n.down {
		return fmt.Errorf("%w: membus is down", gateway.ErrUnavailable)
	}
	if b.n.seen[id] {
		return nil
	}
	if max := b.n.share[to]; max > 0 && b.n.held(to, b.id) >= max {
		return &gateway.LimitError{Reason: "sender-share", Err: fmt.Errorf("membus: %s holds %d messages from %s", to, max, b.id)}
	}
	b.n.seen[id] = true
	b.n.Published++
	if b.n.tap != nil {
		b.n.tap(to, b.id, env)
	}
	m := &Msg{n: b.n, to: to, from: b.id, data: append([]byte(nil), env...)}
	if b.n.hold != nil && b.n.hold(to, b.id, env) {
		b.n.heldBack = append(b.n.heldBack, m)
		return nil
	}
	b.n.push(to, m)
	return nil
}

// Fetch implements gateway.Bus: it waits up to 50 ms for messages.
func (b *Bus) Fetch(ctx context.Context, max int) ([]gateway.Msg, error) {
	deadline := time.NewTimer(50 * time.Millisecond)
	defer deadline.Stop()
	for {
		b.n.mu.Lock()
		if b.n.down {
			b.n.mu.Unlock()
			return nil, fmt.Errorf("%w: membus is down", gateway.ErrUnavailable)
		}
		box := b.n.box(b.id)
		var out []gateway.Msg
		for len(box.ready) > 0 && len(out) < max {
			m := box.ready[0]
			box.ready = box.ready[1:]
			m.delivered++
			box.pending[m] = true
			out = append(out, m)
		}
		signal := box.signal
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

// Connected implements gateway.Bus.
func (b *Bus) Connected() bool {
	b.n.mu.Lock()
	defer b.n.mu.Unlock()
	return !b.n.down
}

// Msg is one delivered message; it implements gateway.Msg.
type Msg struct {
	n         *Network
	to, from  string
	data      []byte
	delivered int
}

// Data implements gateway.Msg.
func (m *Msg) Data() []byte { return m.data }

// From implements gateway.Msg.
func (m *Msg) From() string { return m.from }

// Delivered implements gateway.Msg.
func (m *Msg) Delivered() int { return m.delivered }

// AckSync implements gateway.Msg.
func (m *Msg) AckSync(ctx context.Context) error { m.settle(false, 0); return nil }

// Nak implements gateway.Msg.
func (m *Msg) Nak(delay time.Duration) error { m.settle(true, delay); return nil }

// Term implements gateway.Msg.
func (m *Msg) Term() error { m.settle(false, 0); return nil }

func (m *Msg) settle(again bool, delay time.Duration) {
	m.n.mu.Lock()
	delete(m.n.box(m.to).pending, m)
	m.n.mu.Unlock()
	if again {
		time.AfterFunc(delay, func() {
			m.n.mu.Lock()
			defer m.n.mu.Unlock()
			m.n.push(m.to, m)
		})
	}
}
