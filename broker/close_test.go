package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker/client"
)

// statuses records whether a client reported a lost connection.
type statuses struct {
	down chan struct{} // closed at the first report of a lost connection
	once sync.Once
}

func newStatuses() *statuses { return &statuses{down: make(chan struct{})} }

func (s *statuses) option() client.Option {
	return client.OnStatus(func(up bool) {
		if !up {
			s.once.Do(func() { close(s.down) })
		}
	})
}

// TestCloseIsNoOutage: closing a client ends a Fetch waiting for envelopes
// with ErrClosed at once and is not reported as a lost connection; the
// broker going away still is.
func TestCloseIsNoOutage(t *testing.T) {
	n := newTestNet(t, "iom", "shelter")
	s := mustStart(t, n.config(t))

	closing := newStatuses()
	c := mustConnect(t, s.ClientURL(), n.Agencies["shelter"], closing.option())
	fetched := make(chan error, 1)
	go func() {
		_, err := c.Fetch(context.Background(), 1)
		fetched <- err
	}()
	c.Close()
	if err := <-fetched; !errors.Is(err, client.ErrClosed) {
		t.Errorf("a Fetch waiting when the client closed returned %v, want ErrClosed", err)
	}
	// The connection's callbacks run on a goroutine of their own: give a
	// wrong report time to arrive.
	select {
	case <-closing.down:
		t.Errorf("closing the client was reported as a lost connection")
	case <-time.After(2 * time.Second):
	}

	outage := newStatuses()
	mustConnect(t, s.ClientURL(), n.Agencies["iom"], outage.option())
	s.Close()
	select {
	case <-outage.down:
	case <-time.After(30 * time.Second):
		t.Fatal("the broker went away and the client did not report it")
	}
}

// TestCloseLosesNothing: a client closes while the broker hands it
// envelopes that it keeps giving back (Nak), as someone looking into an
// inbox does. What it has pulled ahead and not handed out it gives back
// as it closes; what the broker was handing to its pull at that moment
// comes back after the ack wait (2 s here, 30 s by default). Either way
// the next client gets every envelope: none is lost or held for good.
func TestCloseLosesNothing(t *testing.T) {
	n := newTestNet(t, "iom", "shelter")
	cfg := n.config(t)
	cfg.AckWait, cfg.BackOff = 2*time.Second, []time.Duration{2 * time.Second}
	s := mustStart(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	iom := mustConnect(t, s.ClientURL(), n.Agencies["iom"])
	const total = 4 // as many as the client pulls ahead for one sender
	for i := range total {
		if err := iom.Publish(ctx, "shelter", fmt.Sprintf("m%d", i), []byte("envelope")); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		look := mustConnect(t, s.ClientURL(), n.Agencies["shelter"])
		seen := map[string]bool{}
		for len(seen) < total {
			msgs, err := look.Fetch(ctx, 64)
			if err != nil {
				t.Fatalf("round %d: %v (seen %d of %d)", round, err, len(seen), total)
			}
			for _, m := range msgs {
				seen[m.MsgID()] = true
				if err := m.Nak(0); err != nil {
					t.Fatal(err)
				}
			}
		}
		look.Close()
	}
	next := mustConnect(t, s.ClientURL(), n.Agencies["shelter"])
	got := map[string]bool{}
	for len(got) < total {
		msgs, err := next.Fetch(ctx, total)
		if err != nil {
			t.Fatalf("after the closes the next client got %d of %d envelopes: %v", len(got), total, err)
		}
		for _, m := range msgs {
			got[m.MsgID()] = true
			if err := m.AckSync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}
