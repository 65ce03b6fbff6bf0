package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/rujukan/rujukan/crypto"
)

// queuedMsg is a fetched envelope of a given size from a given sender.
type queuedMsg struct {
	from string
	data []byte
}

func (m *queuedMsg) Data() []byte                  { return m.data }
func (m *queuedMsg) From() string                  { return m.from }
func (m *queuedMsg) Delivered() int                { return 1 }
func (m *queuedMsg) AckSync(context.Context) error { return nil }
func (m *queuedMsg) Nak(time.Duration) error       { return nil }
func (m *queuedMsg) Term() error                   { return nil }

func enqueue(q *fairQueue, from string, size int) {
	m := &queuedMsg{from: from, data: make([]byte, size)}
	q.reserve(size)
	q.push(queued{m: m, in: &Incoming{Env: m.data}})
}

// The queue serves senders in turn, each in its own order, and keeps to
// its bounds by count and by bytes.
func TestFairQueueRoundRobin(t *testing.T) {
	q := newFairQueue(8, 4*crypto.MaxEnvelopeSize)
	ctx := context.Background()
	for range 5 {
		enqueue(q, "iom", 10)
	}
	enqueue(q, "dinsos", 10)
	enqueue(q, "police", 10)
	if n := q.waitRoom(ctx); n != 1 {
		t.Fatalf("room for %d with 7 of 8 queued, want 1", n)
	}
	var got []string
	for range 7 {
		it, ok := q.pop(ctx)
		if !ok {
			t.Fatal("pop failed")
		}
		got = append(got, it.m.From())
	}
	want := []string{"iom", "dinsos", "police", "iom", "iom", "iom", "iom"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("served %v, want %v", got, want)
		}
	}
	// Bytes: room is counted as if every envelope were of the largest size.
	enqueue(q, "iom", 3*crypto.MaxEnvelopeSize)
	if n := q.waitRoom(ctx); n != 1 {
		t.Fatalf("room for %d with 3 of 4 largest envelopes' bytes queued, want 1", n)
	}
	q.reserve(crypto.MaxEnvelopeSize)
	full, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if n := q.waitRoom(full); n != 0 {
		t.Fatalf("room for %d in a full queue", n)
	}
	q.release(crypto.MaxEnvelopeSize)
	if n := q.waitRoom(ctx); n != 1 {
		t.Fatalf("room for %d after a release, want 1", n)
	}
	// Closing stops every waiting worker.
	q.pop(ctx)
	done := make(chan bool)
	for range 3 {
		go func() {
			_, ok := q.pop(ctx)
			done <- ok
		}()
	}
	q.close()
	for range 3 {
		if <-done {
			t.Fatal("pop from an empty closed queue returned an envelope")
		}
	}
}

// Urgent envelopes go first, at most urgentRun in a row while others wait,
// each lane round-robin by sender.
func TestFairQueueUrgentLane(t *testing.T) {
	q := newFairQueue(64, 64*crypto.MaxEnvelopeSize)
	ctx := context.Background()
	push := func(from string, urgent bool) {
		m := &queuedMsg{from: from, data: make([]byte, 10)}
		q.reserve(10)
		q.push(queued{m: m, in: &Incoming{Env: m.data}, urgent: urgent})
	}
	for range 3 {
		push("iom", false)
	}
	for range 6 {
		push("shelter", true)
	}
	push("police", true)
	var got []string
	for range 10 {
		it, ok := q.pop(ctx)
		if !ok {
			t.Fatal("pop failed")
		}
		tag := it.m.From()
		if it.urgent {
			tag += "!"
		}
		got = append(got, tag)
	}
	want := []string{"shelter!", "police!", "shelter!", "shelter!", "iom", "shelter!", "shelter!", "shelter!", "iom", "iom"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("served %v, want %v", got, want)
		}
	}
}
