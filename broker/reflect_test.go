package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// NATS does not check the reply subject a client sets. These attacks aim
// JetStream's answers at another agency's subjects; each agency's own
// account keeps the answers with the agency that asked.

// TestReflectedPullCannotStarve: agency A turns its own messages into pull
// requests on B's consumer (reply subject = B's MSG.NEXT), so that B's
// messages would be delivered where nobody reads them. B still gets all of
// its messages.
func TestReflectedPullCannotStarve(t *testing.T) {
	const idA, idB, idC = "shelter-a", "dinsos-ntb", "police"
	n := newTestNet(t, idA, idB, idC)
	cfg := n.config(t)
	cfg.AckWait = 500 * time.Millisecond
	cfg.BackOff = []time.Duration{500 * time.Millisecond}
	s := mustStart(t, cfg)
	url := s.ClientURL()
	gwC := mustConnect(t, url, n.Agencies[idC])
	gwB := mustConnect(t, url, n.Agencies[idB])
	h := dialHostile(t, url, n.Agencies[idA])
	const planted = 20
	for range planted {
		m := nats.NewMsg("rujukan.msg." + idA + "." + idA)
		m.Data = []byte(`{"batch":256,"expires":3600000000000}`)
		h.nc.PublishMsg(m)
	}
	h.nc.Flush()
	time.Sleep(100 * time.Millisecond)
	h.nc.PublishMsg(&nats.Msg{Subject: "$JS.API.CONSUMER.MSG.NEXT.INBOX_" + idA + ".from_" + idA,
		Reply: "$JS.API.CONSUMER.MSG.NEXT.INBOX_" + idB + ".from_" + idC, Data: []byte(fmt.Sprintf(`{"batch":%d,"no_wait":true}`, planted))})
	h.nc.Flush()
	time.Sleep(200 * time.Millisecond)
	for i := range 5 {
		if err := gwC.Publish(context.Background(), idB, fmt.Sprintf("env-%d", i), []byte("legit")); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < 5 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		msgs, _ := gwB.Fetch(ctx, 10)
		cancel()
		for _, m := range msgs {
			if string(m.Data()) == "legit" {
				got++
			}
			m.AckSync(context.Background())
		}
	}
	if got != 5 {
		t.Fatalf("B received %d of its 5 messages", got)
	}
}

// TestReflectedAckCannotSpoof: agency A publishes with a reply subject in
// B's inbox under another agency's name; the publish acknowledgement must
// not be stored there.
func TestReflectedAckCannotSpoof(t *testing.T) {
	const idA, idB = "shelter-a", "dinsos-ntb"
	n := newTestNet(t, idA, idB, "police")
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	gwB := mustConnect(t, url, n.Agencies[idB])
	h := dialHostile(t, url, n.Agencies[idA])
	for _, subj := range []string{"rujukan.msg." + idA + "." + idA, "rujukan.msg." + idB + "." + idA} {
		h.nc.PublishMsg(&nats.Msg{Subject: subj, Reply: "rujukan.msg." + idB + ".police", Data: []byte("x")})
	}
	h.nc.PublishMsg(&nats.Msg{Subject: "$JS.API.CONSUMER.INFO.INBOX_" + idA + ".from_" + idA, Reply: "rujukan.msg." + idB + ".police"})
	h.nc.Flush()
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	msgs, _ := gwB.Fetch(ctx, 10)
	for _, m := range msgs {
		if m.From() == "police" {
			t.Fatalf("a reflected answer was stored in B's inbox as from police: %q", m.Data())
		}
	}
}
