package broker

import (
	"context"
	"errors"
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
// with ErrClosed, ends its pulls waiting at the broker, and is not
// reported as a lost connection; the broker going away still is.
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
