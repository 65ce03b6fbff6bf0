package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// setLimits sets the limits of agency id ("" for the network's).
func (n *testNet) setLimits(id string, l *crypto.Limits) {
	if id == "" {
		n.Dir.Limits = l
		return
	}
	for i := range n.Dir.Agencies {
		if n.Dir.Agencies[i].ID == id {
			n.Dir.Agencies[i].Limits = l
		}
	}
}

// publishN publishes n messages of size bytes from c to agency to, with
// ids prefix-0, prefix-1, ..., and fails the test on any error.
func publishN(t *testing.T, c *client.Client, to, prefix string, n, size int) {
	t.Helper()
	for i := range n {
		if err := c.Publish(context.Background(), to, fmt.Sprintf("%s-%d", prefix, i), make([]byte, size)); err != nil {
			t.Fatalf("%s: publish %d of %d to %s: %v", c.ID(), i+1, n, to, err)
		}
	}
}

// refused publishes one message and requires a limit refusal for reason.
func refused(t *testing.T, c *client.Client, to, id string, size int, reason string) {
	t.Helper()
	err := c.Publish(context.Background(), to, id, make([]byte, size))
	var le *client.LimitError
	if !errors.Is(err, client.ErrLimit) || !errors.As(err, &le) || le.Reason != reason {
		t.Fatalf("%s: publish %s to %s: error %v, want a limit refusal (%s)", c.ID(), id, to, err, reason)
	}
	if errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("a limit refusal also reads as the broker being unavailable: %v", err)
	}
}

// inboxCount returns how many messages each sender has in agency id's inbox.
func inboxCount(t *testing.T, s *Server, id string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, client.StreamName(id))
	if err != nil {
		t.Fatal(err)
	}
	counts, err := perSubjectCounts(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for subj, n := range counts {
		_, from, err := client.ParseSubject(subj)
		if err != nil {
			t.Fatal(err)
		}
		out[from] = n
	}
	return out
}

// drain fetches and acks up to n messages of c's inbox.
func drain(t *testing.T, c *client.Client, n int) int {
	t.Helper()
	got := 0
	for got < n {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		msgs, err := c.Fetch(ctx, n-got)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if err := m.AckSync(context.Background()); err != nil {
				t.Fatal(err)
			}
			got++
		}
	}
	return got
}

// TestLimitSenderShare: a sender that fills its share of an inbox is
// refused, with a reason, while the other senders' messages are still
// accepted; once the recipient reads some, the sender may send again.
func TestLimitSenderShare(t *testing.T) {
	n := newTestNet(t, "iom", "shelter", "police")
	n.setLimits("police", &crypto.Limits{SenderMaxMessages: 5})
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	iom := mustConnect(t, url, n.Agencies["iom"])
	shelter := mustConnect(t, url, n.Agencies["shelter"])
	police := mustConnect(t, url, n.Agencies["police"])

	publishN(t, iom, "police", "flood", 5, 1000)
	refused(t, iom, "police", "flood-5", 1000, client.LimitSenderShare)
	// Another sender still has its whole share.
	publishN(t, shelter, "police", "ok", 5, 1000)
	refused(t, shelter, "police", "ok-5", 1000, client.LimitSenderShare)
	// The share is per inbox: iom can still send elsewhere.
	publishN(t, iom, "shelter", "elsewhere", 5, 1000)
	if got := inboxCount(t, s, "police"); got["iom"] != 5 || got["shelter"] != 5 {
		t.Fatalf("police inbox holds %v, want 5 from each sender", got)
	}

	// The police read their inbox: room is made, and iom's refused message
	// is accepted under its own id.
	if got := drain(t, police, 10); got != 10 {
		t.Fatalf("police read %d messages, want 10", got)
	}
	publishN(t, iom, "police", "flood-5", 1, 1000)
	if got := inboxCount(t, s, "police"); got["iom"] != 1 {
		t.Fatalf("police inbox holds %v after the retry, want 1 from iom", got)
	}
}

// TestLimitSenderShareBytes: the byte share holds even for messages of the
// largest size: it is enforced as a number of such messages.
func TestLimitSenderShareBytes(t *testing.T) {
	n := newTestNet(t, "iom", "shelter", "police")
	n.setLimits("police", &crypto.Limits{SenderMaxBytes: 3 << 20})
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	iom := mustConnect(t, url, n.Agencies["iom"])
	shelter := mustConnect(t, url, n.Agencies["shelter"])
	const big = client.MaxMessageSize - 4096
	publishN(t, iom, "police", "big", 3, big)
	refused(t, iom, "police", "big-3", big, client.LimitSenderShare)
	publishN(t, shelter, "police", "small", 3, 100)
	if got := inboxCount(t, s, "police"); got["iom"] != 3 || got["shelter"] != 3 {
		t.Fatalf("police inbox holds %v", got)
	}
}

// TestLimitInbox: the inbox's own message and byte limits refuse new
// messages and keep what is stored.
func TestLimitInbox(t *testing.T) {
	n := newTestNet(t, "iom", "shelter", "police", "dinsos")
	n.setLimits("police", &crypto.Limits{InboxMaxMessages: 6, SenderMaxMessages: 5})
	n.setLimits("dinsos", &crypto.Limits{InboxMaxBytes: 2 << 20, SenderMaxBytes: 2 << 20})
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	iom := mustConnect(t, url, n.Agencies["iom"])
	shelter := mustConnect(t, url, n.Agencies["shelter"])

	publishN(t, iom, "police", "a", 5, 100)
	publishN(t, shelter, "police", "b", 1, 100)
	refused(t, shelter, "police", "b-1", 100, client.LimitInboxMessages)
	if got := inboxCount(t, s, "police"); got["iom"] != 5 || got["shelter"] != 1 {
		t.Fatalf("police inbox holds %v", got)
	}

	const part = 600 << 10
	publishN(t, iom, "dinsos", "c", 2, part)
	publishN(t, shelter, "dinsos", "d", 1, part)
	refused(t, shelter, "dinsos", "d-1", part, client.LimitInboxBytes)
	if got := inboxCount(t, s, "dinsos"); got["iom"] != 2 || got["shelter"] != 1 {
		t.Fatalf("dinsos inbox holds %v", got)
	}
}

// TestLimitConnections: an agency cannot open more connections than its
// limit; another agency is not affected.
func TestLimitConnections(t *testing.T) {
	n := newTestNet(t, "iom", "police")
	n.setLimits("", &crypto.Limits{MaxConnections: 2})
	n.setLimits("iom", &crypto.Limits{MaxConnections: 4})
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	ctx := context.Background()
	police := n.Agencies["police"]
	mustConnect(t, url, police)
	mustConnect(t, url, police)
	if c, err := client.Connect(ctx, url, "police", police.Seed, client.NoRetryOnFailedConnect()); err == nil {
		c.Close()
		t.Fatal("a third police connection was accepted over a limit of 2")
	} else if !strings.Contains(strings.ToLower(err.Error()), "maximum") {
		t.Fatalf("third connection refused for another reason: %v", err)
	}
	for range 4 {
		mustConnect(t, url, n.Agencies["iom"])
	}
	// A reload that raises the police's limit lets a third one in.
	n.Dir.Version = 2
	n.setLimits("police", &crypto.Limits{MaxConnections: 3})
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	mustConnect(t, url, police)
}

// TestLimitSubscriptions: a connection cannot hold more subscriptions than
// its agency's limit.
func TestLimitSubscriptions(t *testing.T) {
	n := newTestNet(t, "iom", "police")
	n.setLimits("iom", &crypto.Limits{MaxSubscriptions: 3})
	s := mustStart(t, n.config(t))
	h := dialHostile(t, s.ClientURL(), n.Agencies["iom"])
	var err error
	for i := range 10 {
		if _, err = h.nc.SubscribeSync(fmt.Sprintf("%s.x%d", client.InboxPrefix("iom"), i)); err != nil {
			break
		}
		h.nc.Flush()
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-h.errs:
			if strings.Contains(strings.ToLower(e.Error()), "maximum subscriptions") {
				return
			}
		case <-deadline:
			t.Fatalf("no maximum subscriptions error after 10 subscriptions over a limit of 3 (last error %v)", err)
		}
	}
}

// TestLimitReload: new limits apply on reload, to existing inboxes too; a
// lowered share never drops what a sender already has waiting.
func TestLimitReload(t *testing.T) {
	n := newTestNet(t, "iom", "shelter", "police")
	n.setLimits("police", &crypto.Limits{SenderMaxMessages: 3})
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	iom := mustConnect(t, url, n.Agencies["iom"])
	shelter := mustConnect(t, url, n.Agencies["shelter"])
	publishN(t, iom, "police", "a", 3, 100)
	refused(t, iom, "police", "a-3", 100, client.LimitSenderShare)

	// v2 raises the police share to 10 and lowers the network's to 2.
	n.Dir.Version = 2
	n.setLimits("", &crypto.Limits{SenderMaxMessages: 2})
	n.setLimits("police", &crypto.Limits{SenderMaxMessages: 10})
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	publishN(t, iom, "police", "b", 7, 100)
	refused(t, iom, "police", "b-7", 100, client.LimitSenderShare)
	publishN(t, iom, "shelter", "c", 2, 100)
	refused(t, iom, "shelter", "c-2", 100, client.LimitSenderShare)

	// v3 lowers the police share to 4 while iom holds 10: none of the 10 is
	// dropped and iom cannot add any; shelter gets its 4, not more.
	n.Dir.Version = 3
	n.setLimits("police", &crypto.Limits{SenderMaxMessages: 4})
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	if got := inboxCount(t, s, "police"); got["iom"] != 10 {
		t.Fatalf("police inbox holds %v after the share was lowered, want iom's 10 kept", got)
	}
	refused(t, iom, "police", "d-0", 100, client.LimitSenderShare)
	publishN(t, shelter, "police", "e", 4, 100)
	if got := inboxCount(t, s, "police"); got["shelter"] > 10 {
		t.Fatalf("police inbox holds %v", got)
	}

	// Once the police have read their inbox, the next reload applies the
	// lowered share in full.
	police := mustConnect(t, url, n.Agencies["police"])
	drain(t, police, 100)
	n.Dir.Version = 4
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	publishN(t, shelter, "police", "f", 4, 100)
	refused(t, shelter, "police", "f-4", 100, client.LimitSenderShare)
}

// TestLimitMaxStore: an explicit max store that the directory's inboxes
// and file queues could outgrow is refused at start and on reload, with the
// numbers; the default sizes itself from the directory and grows with it.
func TestLimitMaxStore(t *testing.T) {
	n := newTestNet(t, "iom", "police")
	cfg := n.config(t)
	cfg.MaxStore = 1 << 30
	// Two agencies: two 1 GiB inboxes and two 4 GiB file queues.
	if _, err := New(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "10737418240 bytes") {
		t.Fatalf("New with a max store below the inboxes' limits: %v", err)
	}
	cfg.MaxStore = 11 << 30
	s := mustStart(t, cfg)
	n.Dir.Version = 2
	n.setLimits("police", &crypto.Limits{InboxMaxBytes: 3 << 30})
	if err := s.Reload(n.sign(t)); !errors.Is(err, ErrConfig) {
		t.Fatalf("reload past the max store: %v", err)
	}

	auto := newTestNet(t, "iom", "police")
	a := mustStart(t, auto.config(t))
	if got := a.ns.JetStreamConfig().MaxStore; got != 10<<30 {
		t.Fatalf("automatic max store %d, want the two inboxes' 2 GiB and file queues' 8 GiB", got)
	}
	if got := a.ns.JetStreamConfig().MaxMemory; got != DefaultConfig().MaxMemory {
		t.Fatalf("max memory %d, want %d", got, DefaultConfig().MaxMemory)
	}
	auto.Dir.Version = 2
	auto.add(t, "shelter")
	auto.setLimits("police", &crypto.Limits{InboxMaxBytes: 4 << 30})
	if err := a.Reload(auto.sign(t)); err != nil {
		t.Fatal(err)
	}
	if got := a.ns.JetStreamConfig().MaxStore; got != 18<<30 {
		t.Fatalf("automatic max store after reload %d, want 6 GiB of inboxes and 12 GiB of file queues", got)
	}
	c := mustConnect(t, a.ClientURL(), auto.Agencies["iom"])
	publishN(t, c, "shelter", "x", 1, 100)
}

// TestLimitLoweredUnderLoad lowers the per-sender share by reload while two
// senders publish as fast as they can: every publish the broker
// acknowledged is still in the inbox afterwards (NATS would drop the oldest
// messages over a lowered limit if the broker let it).
func TestLimitLoweredUnderLoad(t *testing.T) {
	n := newTestNet(t, "iom", "shelter", "police")
	n.setLimits("police", &crypto.Limits{SenderMaxMessages: 400})
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	senders := []*client.Client{mustConnect(t, url, n.Agencies["iom"]), mustConnect(t, url, n.Agencies["shelter"])}
	acked := make([]int, len(senders))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				err := c.Publish(context.Background(), "police", fmt.Sprintf("%s-%d", c.ID(), j), make([]byte, 200))
				switch {
				case err == nil:
					acked[i]++
				case errors.Is(err, client.ErrLimit), errors.Is(err, client.ErrUnavailable):
					// Refused or paused: not stored, the sender keeps it.
					time.Sleep(time.Millisecond)
				default:
					t.Errorf("%s: %v", c.ID(), err)
					return
				}
			}
		}()
	}
	// Let both build a backlog, then lower the share below it, twice.
	for v, share := range []int64{60, 10} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			if got := inboxCount(t, s, "police"); got["iom"] > uint64(share) && got["shelter"] > uint64(share) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("senders built no backlog above %d: %v", share, inboxCount(t, s, "police"))
			}
			time.Sleep(10 * time.Millisecond)
		}
		n.Dir.Version = uint64(v + 2)
		n.setLimits("police", &crypto.Limits{SenderMaxMessages: share})
		if err := s.Reload(n.sign(t)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	got := inboxCount(t, s, "police")
	for i, c := range senders {
		if got[c.ID()] != uint64(acked[i]) {
			t.Fatalf("%s: the broker acknowledged %d messages and holds %d", c.ID(), acked[i], got[c.ID()])
		}
	}
	// And the inbox takes messages again.
	police := mustConnect(t, url, n.Agencies["police"])
	drain(t, police, 1000)
	publishN(t, senders[0], "police", "after", 1, 10)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLimitBrokerView: the broker's operator sees who fills whom: the
// metrics listener gives each sender's backlog in each inbox against its
// share, and the log says once (not at every check) that a sender holds
// its whole share.
func TestLimitBrokerView(t *testing.T) {
	n := newTestNet(t, "iom", "shelter", "police")
	n.setLimits("police", &crypto.Limits{SenderMaxMessages: 3})
	cfg := n.config(t)
	cfg.Metrics = "127.0.0.1:0"
	cfg.UsageInterval = 50 * time.Millisecond
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := mustStart(t, cfg)
	iom := mustConnect(t, s.ClientURL(), n.Agencies["iom"])
	shelter := mustConnect(t, s.ClientURL(), n.Agencies["shelter"])
	publishN(t, iom, "police", "a", 3, 100)
	refused(t, iom, "police", "a-3", 100, client.LimitSenderShare)
	publishN(t, shelter, "police", "b", 1, 100)

	resp, err := http.Get(s.MetricsURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`rujukan_broker_sender_messages{inbox="police",sender="iom"} 3`,
		`rujukan_broker_sender_messages{inbox="police",sender="shelter"} 1`,
		`rujukan_broker_sender_share_messages{inbox="police"} 3`,
		`rujukan_broker_inbox_messages{inbox="police"} 4`,
		`rujukan_broker_inbox_max_messages{inbox="police"} 100000`,
		`rujukan_broker_inbox_max_bytes{inbox="police"} 1073741824`,
		`rujukan_broker_connections{agency="iom"} 1`,
		`rujukan_broker_max_connections{agency="iom"} 8`,
		`rujukan_broker_max_store_bytes 16106127360`,
		`rujukan_broker_files_max_bytes{inbox="police"} 4294967296`,
		`rujukan_broker_files_sender_share_chunks{inbox="police"} 4096`,
	} {
		if !strings.Contains(string(raw), want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, raw)
		}
	}

	eventually := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "holds its whole share") {
		if time.Now().After(eventually) {
			t.Fatalf("no warning about iom's full share; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // ten more checks
	if c := strings.Count(logs.String(), "holds its whole share"); c != 1 {
		t.Fatalf("the full share was logged %d times, want once:\n%s", c, logs.String())
	}
	if !strings.Contains(logs.String(), "sender=iom") || strings.Contains(logs.String(), "sender=shelter") {
		t.Fatalf("warning names the wrong sender:\n%s", logs.String())
	}
}

// TestLimitUpgradeKeepsBacklog: an inbox created without a per-sender
// share (by an earlier version) keeps every stored message when the share
// is first applied, even a backlog above it.
func TestLimitUpgradeKeepsBacklog(t *testing.T) {
	n := newTestNet(t, "iom", "police")
	s := mustStart(t, n.config(t))
	ctx := context.Background()
	st, err := s.js.Stream(ctx, client.StreamName("police"))
	if err != nil {
		t.Fatal(err)
	}
	old := st.CachedInfo().Config
	old.MaxMsgsPerSubject, old.DiscardNewPerSubject, old.MaxMsgs, old.MaxBytes = -1, false, -1, -1
	if _, err := s.js.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	iom := mustConnect(t, s.ClientURL(), n.Agencies["iom"])
	publishN(t, iom, "police", "old", 10, 100)
	n.Dir.Version = 2
	n.setLimits("police", &crypto.Limits{SenderMaxMessages: 3})
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	if got := inboxCount(t, s, "police"); got["iom"] != 10 {
		t.Fatalf("police inbox holds %v after the share was first applied, want iom's 10", got)
	}
	refused(t, iom, "police", "new", 100, client.LimitSenderShare)
}
