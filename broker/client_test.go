package broker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker/client"
)

// TestClientMessageLifecycle drives Consume, Nak, Term and AckSync against
// the provisioned consumer.
func TestClientMessageLifecycle(t *testing.T) {
	n := newTestNet(t, "iom", "shelter")
	cfg := n.config(t)
	s := mustStart(t, cfg)
	tx := mustConnect(t, s.ClientURL(), n.Agencies["iom"])
	rx := mustConnect(t, s.ClientURL(), n.Agencies["shelter"])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range []string{"retry-me", "reject-me"} {
		if err := tx.Publish(ctx, "shelter", id, []byte("body of "+id)); err != nil {
			t.Fatal(err)
		}
	}
	type delivery struct {
		id   string
		from string
		n    int
	}
	var (
		mu  sync.Mutex
		got []delivery
	)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- rx.Consume(cctx, func(m *client.Msg) {
			mu.Lock()
			got = append(got, delivery{m.MsgID(), m.From(), m.Delivered()})
			mu.Unlock()
			switch {
			case m.MsgID() == "reject-me":
				m.Term()
			case m.Delivered() == 1:
				m.Nak(0) // a transient failure: try again
			default:
				if err := m.AckSync(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		l := len(got)
		mu.Unlock()
		if l >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Give a wrongly redelivered message the chance to show up.
	time.Sleep(300 * time.Millisecond)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The redelivery of retry-me may come before or after reject-me (which
	// depends on whether one pull brought both); each comes exactly once.
	want := []delivery{{"retry-me", "iom", 1}, {"reject-me", "iom", 1}, {"retry-me", "iom", 2}}
	if len(got) != len(want) || got[0] != want[0] {
		t.Fatalf("deliveries %+v, want %+v", got, want)
	}
	for _, w := range want[1:] {
		if got[1] != w && got[2] != w {
			t.Fatalf("deliveries %+v, want %+v", got, want)
		}
	}
	intact(t, s, "shelter", nil)
}
