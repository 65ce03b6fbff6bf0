package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rujukan/rujukan/broker/client"
)

// consumerNames returns the consumers of agency id's inbox, sorted.
func consumerNames(t *testing.T, s *Server, id string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, client.StreamName(id))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	l := st.ConsumerNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// wantConsumers returns the per-sender consumer names for senders.
func wantConsumers(senders ...string) []string {
	var names []string
	for _, id := range senders {
		names = append(names, client.ConsumerFor(id))
	}
	slices.Sort(names)
	return names
}

// TestPerSenderConsumersFollowDirectory: every inbox has one consumer per
// agency of the directory, filtered on that sender's subject; a reload
// adds the consumers of a new agency on every inbox, and a revoked agency
// keeps its consumers, so envelopes it left waiting are still delivered.
func TestPerSenderConsumersFollowDirectory(t *testing.T) {
	n := newTestNet(t, "iom", "dinsos", "police")
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	ctx := context.Background()
	for _, id := range []string{"iom", "dinsos", "police"} {
		if got, want := consumerNames(t, s, id), wantConsumers("iom", "dinsos", "police"); !slices.Equal(got, want) {
			t.Fatalf("consumers of %s: %v, want %v", id, got, want)
		}
	}
	st, err := s.js.Stream(ctx, client.StreamName("police"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.Consumer(ctx, client.ConsumerFor("dinsos"))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.CachedInfo().Config.FilterSubject; f != client.Subject("police", "dinsos") {
		t.Fatalf("consumer %s filters %q", client.ConsumerFor("dinsos"), f)
	}

	// dinsos leaves an envelope at the police, then is revoked; shelter-ntb
	// joins.
	dinsos := mustConnect(t, url, n.Agencies["dinsos"])
	if err := dinsos.Publish(ctx, "police", "left-behind", []byte("from dinsos")); err != nil {
		t.Fatal(err)
	}
	n.Dir.Version = 2
	n.revoke("dinsos")
	n.add(t, "shelter-ntb")
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	all := wantConsumers("iom", "dinsos", "police", "shelter-ntb")
	for _, id := range []string{"iom", "police", "shelter-ntb"} {
		if got := consumerNames(t, s, id); !slices.Equal(got, all) {
			t.Fatalf("consumers of %s after reload: %v, want %v", id, got, all)
		}
	}
	police := mustConnect(t, url, n.Agencies["police"])
	got := fetchAll(t, police, 1)
	if len(got) != 1 || got[0] != "left-behind" {
		t.Fatalf("police got %v, want the revoked agency's waiting envelope", got)
	}
}

// fetchAll fetches and acks until want messages have arrived (or a
// generous deadline passes) and returns their message ids in order.
func fetchAll(t *testing.T, c *client.Client, want int) []string {
	t.Helper()
	var ids []string
	deadline := time.Now().Add(60 * time.Second)
	for len(ids) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		msgs, err := c.Fetch(ctx, 64)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			ids = append(ids, m.MsgID())
			if err := m.AckSync(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids
}

// TestUpgradeFromSingleConsumerLosesNothing: an inbox provisioned with the
// single catch-all consumer of earlier versions, holding messages that
// consumer delivered and never acked and messages it never delivered, is
// provisioned again: the catch-all consumer is gone, the per-sender
// consumers are there, and every message is delivered, once acked, exactly
// once.
func TestUpgradeFromSingleConsumerLosesNothing(t *testing.T) {
	n := newTestNet(t, "iom", "dinsos", "police")
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream := client.StreamName("police")

	// The inbox as earlier versions provisioned it: one consumer, no filter.
	for _, id := range []string{"iom", "dinsos", "police"} {
		if err := s.js.DeleteConsumer(ctx, stream, client.ConsumerFor(id)); err != nil {
			t.Fatal(err)
		}
	}
	legacy, err := s.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: client.LegacyConsumerName, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: time.Hour, DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i, from := range []string{"iom", "dinsos", "iom", "dinsos", "iom", "iom", "dinsos", "iom"} {
		c := mustConnect(t, url, n.Agencies[from])
		id := fmt.Sprintf("%s-%d", from, i)
		if err := c.Publish(ctx, "police", id, []byte("body of "+id)); err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	// The old gateway took three and never acknowledged them.
	batch, err := legacy.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for range batch.Messages() {
		taken++
	}
	if taken != 3 {
		t.Fatalf("the catch-all consumer delivered %d messages, want 3", taken)
	}

	if err := s.provision(ctx, s.js, s.Directory(), []string{"police"}); err != nil {
		t.Fatal(err)
	}
	if got, w := consumerNames(t, s, "police"), wantConsumers("iom", "dinsos", "police"); !slices.Equal(got, w) {
		t.Fatalf("consumers after the upgrade: %v, want %v", got, w)
	}
	police := mustConnect(t, url, n.Agencies["police"])
	got := fetchAll(t, police, len(want))
	seen := map[string]bool{}
	for _, id := range got {
		if !want[id] || seen[id] {
			t.Fatalf("unexpected or repeated message %q (got %v)", id, got)
		}
		seen[id] = true
	}
	if len(seen) != len(want) {
		t.Fatalf("got %d of %d messages after the upgrade: %v", len(seen), len(want), got)
	}
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("inbox holds %d messages after every one was acked", info.State.Msgs)
	}
}

// TestFetchServesSendersInTurn: a sender holding its whole share of an
// inbox does not delay another sender's single message behind it.
func TestFetchServesSendersInTurn(t *testing.T) {
	n := newTestNet(t, "flooder", "dinsos", "police")
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	share := int(senderMax(s.Directory().LimitsOf("police"), s.cfg.MaxMsgSize))
	flooder := mustConnect(t, url, n.Agencies["flooder"])
	for i := range share {
		if err := flooder.Publish(ctx, "police", fmt.Sprintf("flood-%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := flooder.Publish(ctx, "police", "one-more", []byte("x")); !errors.Is(err, client.ErrLimit) {
		t.Fatalf("publish over the share: %v", err)
	}
	police := mustConnect(t, url, n.Agencies["police"])
	// The police is already pulling the flood when dinsos sends.
	first, err := police.Fetch(ctx, 16)
	if err != nil || len(first) == 0 {
		t.Fatalf("first fetch: %d messages, %v", len(first), err)
	}
	// and its pull on dinsos's consumer is waiting at the broker.
	st, err := s.js.Stream(ctx, client.StreamName("police"))
	if err != nil {
		t.Fatal(err)
	}
	dc, err := st.Consumer(ctx, client.ConsumerFor("dinsos"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		ci, err := dc.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumWaiting > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	dinsos := mustConnect(t, url, n.Agencies["dinsos"])
	if err := dinsos.Publish(ctx, "police", "genuine", []byte("y")); err != nil {
		t.Fatal(err)
	}
	before := len(first)
	for _, m := range first {
		m.Term()
	}
	fetches := 1
	for found := false; !found; {
		if ctx.Err() != nil || before >= share {
			t.Fatalf("dinsos's message not delivered before the flood's %d messages", before)
		}
		msgs, err := police.Fetch(ctx, 16)
		if err != nil {
			t.Fatal(err)
		}
		fetches++
		for _, m := range msgs {
			if m.From() == "dinsos" {
				found = true
				m.AckSync(ctx)
				continue
			}
			if !found {
				before++
			}
			m.Term()
		}
	}
	t.Logf("dinsos's message came after %d of the flood's %d messages, in fetch %d", before, share, fetches)
	// Arrival order would put it after all of them; in turn it comes after
	// the few pulled while it was on its way.
	if before >= share/2 {
		t.Fatalf("dinsos's message came after %d of the flood's messages", before)
	}
}
