package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/rujukan/rujukan/broker/client"
)

// hostile is agency A connected with its own valid credentials through raw
// nats.go, so it can try anything the protocol allows.
type hostile struct {
	nc   *nats.Conn
	errs chan error
}

func dialHostile(t *testing.T, url string, a *testAgency) *hostile {
	t.Helper()
	kp, err := nkeys.FromSeed(a.Seed)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostile{errs: make(chan error, 64)}
	nc, err := nats.Connect(url,
		nats.Nkey(a.Pub, kp.Sign),
		nats.CustomInboxPrefix(client.InboxPrefix(a.ID)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case h.errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("agency %s cannot log in with its own credentials: %v", a.ID, err)
	}
	t.Cleanup(nc.Close)
	h.nc = nc
	return h
}

// expectDenied runs op and requires the broker to answer with a permission
// violation naming subject.
func (h *hostile) expectDenied(t *testing.T, kind, subject string, op func() error) {
	t.Helper()
	for len(h.errs) > 0 {
		<-h.errs
	}
	if err := op(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatalf("unexpected error: %v", err)
	}
	h.nc.Flush()
	want := strings.ToLower(fmt.Sprintf("permissions violation for %s to %q", kind, subject))
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-h.errs:
			if strings.Contains(strings.ToLower(err.Error()), want) {
				if !errors.Is(err, nats.ErrPermissionViolation) {
					t.Fatalf("error %v does not wrap nats.ErrPermissionViolation", err)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no permission error for %s to %q", kind, subject)
		}
	}
}

func (h *hostile) deniedSub(t *testing.T, subject string) {
	t.Helper()
	h.expectDenied(t, "subscription", subject, func() error {
		sub, err := h.nc.SubscribeSync(subject)
		if err == nil {
			t.Cleanup(func() { sub.Unsubscribe() })
		}
		return err
	})
}

func (h *hostile) deniedPub(t *testing.T, subject string, data []byte) {
	t.Helper()
	h.expectDenied(t, "publish", subject, func() error {
		return h.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: h.nc.NewRespInbox(), Data: data})
	})
}

// deniedRequest checks a JetStream API request is refused and, because a
// refused request is dropped, never answered.
func (h *hostile) deniedRequest(t *testing.T, subject string, data []byte) {
	t.Helper()
	h.expectDenied(t, "publish", subject, func() error {
		_, err := h.nc.Request(subject, data, 200*time.Millisecond)
		if err == nil {
			t.Fatalf("request to %s was answered", subject)
		}
		return nil
	})
}

type queued struct {
	subject string
	data    []byte
}

// intact checks B's inbox holds exactly want, undelivered and unacked.
func intact(t *testing.T, s *Server, id string, want []queued) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, client.StreamName(id))
	if err != nil {
		t.Fatalf("stream of %s: %v", id, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(want)) {
		t.Fatalf("stream %s holds %d messages, want %d", info.Config.Name, info.State.Msgs, len(want))
	}
	if info.Config.Name != client.StreamName(id) || len(info.Config.Subjects) != 1 ||
		info.Config.Subjects[0] != client.SubjectPrefix+id+".*" || info.Config.Retention != jetstream.WorkQueuePolicy {
		t.Fatalf("stream %s config changed: %+v", info.Config.Name, info.Config)
	}
	untouched(t, ctx, s, st, info, want, "message")
}

// untouched checks that a work-queue stream (info, as read last) has the
// provisioned consumers and holds exactly want, each item of which no one
// has been handed: a delivery shows as ack pending, redelivered or pending
// counted past the first message, and an ack as a shortfall.
func untouched(t *testing.T, ctx context.Context, s *Server, st jetstream.Stream, info *jetstream.StreamInfo, want []queued, unit string) {
	t.Helper()
	var cons []string
	for n := range st.ConsumerNames(ctx).Name() {
		cons = append(cons, n)
	}
	slices.Sort(cons)
	var wantCons []string
	for _, a := range s.Directory().Agencies {
		wantCons = append(wantCons, client.ConsumerFor(a.ID))
	}
	slices.Sort(wantCons)
	if !slices.Equal(cons, wantCons) {
		t.Fatalf("stream %s has consumers %v, want %v", info.Config.Name, cons, wantCons)
	}
	// A consumer counts what is pending as it learns of new messages, a
	// moment after the stream has stored them: the count may trail the
	// stream briefly, never exceed it.
	for wait := time.Now().Add(5 * time.Second); ; {
		var pending uint64
		for _, name := range cons {
			ci, err := st.Consumer(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			cinfo, err := ci.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cinfo.NumAckPending != 0 || cinfo.NumRedelivered != 0 ||
				(cinfo.NumPending > 0 && cinfo.Delivered.Stream >= info.State.FirstSeq) {
				t.Fatalf("consumer %s of %s disturbed: pending %d, ack pending %d, delivered %d",
					name, info.Config.Name, cinfo.NumPending, cinfo.NumAckPending, cinfo.Delivered.Consumer)
			}
			pending += cinfo.NumPending
		}
		if pending == uint64(len(want)) {
			break
		}
		if pending > uint64(len(want)) || time.Now().After(wait) {
			t.Fatalf("consumers of %s have %d %ss pending, want %d", info.Config.Name, pending, unit, len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, w := range want {
		m, err := st.GetMsg(ctx, info.State.FirstSeq+uint64(i))
		if err != nil {
			t.Fatalf("%s %d: %v", unit, i, err)
		}
		if m.Subject != w.subject || !bytes.Equal(m.Data, w.data) {
			t.Fatalf("%s %d changed: %s %q", unit, i, m.Subject, m.Data)
		}
	}
}

func TestHostileIsolation(t *testing.T) {
	const idA, idB, idC = "shelter-a", "dinsos-ntb", "police"
	n := newTestNet(t, idA, idB, idC)
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	A, B, C := n.Agencies[idA], n.Agencies[idB], n.Agencies[idC]

	// C queues three messages for B.
	gwC := mustConnect(t, url, C)
	var want []queued
	for i := range 3 {
		data := []byte(fmt.Sprintf("ciphertext %d for B", i))
		if err := gwC.Publish(context.Background(), idB, fmt.Sprintf("env-%d", i), data); err != nil {
			t.Fatal(err)
		}
		want = append(want, queued{client.Subject(idB, idC), data})
	}
	intact(t, s, idB, want)

	h := dialHostile(t, url, A)
	streamB, streamA := client.StreamName(idB), client.StreamName(idA)
	evilStream := []byte(`{"name":"EVIL","subjects":["rujukan.msg.` + idB + `.*"],"retention":"limits","storage":"file"}`)
	spyConsumer := []byte(`{"stream_name":"` + streamB + `","config":{"durable_name":"spy","ack_policy":"none","deliver_policy":"all"}}`)
	ownConsumer := []byte(`{"stream_name":"` + streamA + `","config":{"durable_name":"gateway","ack_policy":"none","deliver_policy":"all","max_deliver":1}}`)

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"subscribe to B's subjects", func(t *testing.T) { h.deniedSub(t, "rujukan.msg."+idB+".*") }},
		{"subscribe to rujukan.>", func(t *testing.T) { h.deniedSub(t, "rujukan.>") }},
		{"subscribe to >", func(t *testing.T) { h.deniedSub(t, ">") }},
		{"subscribe to _INBOX.>", func(t *testing.T) { h.deniedSub(t, "_INBOX.>") }},
		{"subscribe to B's reply prefix", func(t *testing.T) { h.deniedSub(t, "_INBOX_"+idB+".>") }},
		{"subscribe to JetStream acks", func(t *testing.T) { h.deniedSub(t, "$JS.ACK.>") }},
		{"publish with a spoofed sender", func(t *testing.T) {
			h.deniedPub(t, client.Subject(idB, idC), []byte("forged"))
		}},
		{"create a stream", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.CREATE.EVIL", evilStream) }},
		{"update B's stream", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.UPDATE."+streamB, evilStream) }},
		{"update own stream", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.UPDATE."+streamA, nil) }},
		{"delete B's stream", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.DELETE."+streamB, nil) }},
		{"delete own stream", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.DELETE."+streamA, nil) }},
		{"create a consumer on own stream", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.CREATE."+streamA+".other", ownConsumer)
		}},
		{"update own consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.CREATE."+streamA+".gateway", ownConsumer)
		}},
		{"update own consumer through the durable API", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DURABLE.CREATE."+streamA+".gateway", ownConsumer)
		}},
		{"delete own consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DELETE."+streamA+".gateway", nil)
		}},
		{"delete B's consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DELETE."+streamB+".gateway", nil)
		}},
		{"fetch from B's consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.MSG.NEXT."+streamB+".gateway", []byte(`{"batch":10,"no_wait":true}`))
		}},
		{"ack B's messages", func(t *testing.T) {
			h.deniedPub(t, "$JS.ACK."+streamB+".gateway.1.1.1.1700000000000000000.2", []byte("+ACK"))
		}},
		{"fetch from B's consumer of C's envelopes", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.MSG.NEXT."+streamB+"."+client.ConsumerFor(idC), []byte(`{"batch":10,"no_wait":true}`))
		}},
		{"fetch from B's consumer of A's own envelopes", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.MSG.NEXT."+streamB+"."+client.ConsumerFor(idA), []byte(`{"batch":10,"no_wait":true}`))
		}},
		{"fetch from B's consumer of C's envelopes with a reply into A's inbox", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.MSG.NEXT."+streamB+"."+client.ConsumerFor(idC), []byte(`{"batch":10,"expires":1000000000}`))
		}},
		{"read B's per-sender consumer info", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.INFO."+streamB+"."+client.ConsumerFor(idC), nil)
		}},
		{"ack into B's consumer of C's envelopes", func(t *testing.T) {
			h.deniedPub(t, "$JS.ACK."+streamB+"."+client.ConsumerFor(idC)+".1.1.1.1700000000000000000.2", []byte("+ACK"))
		}},
		{"term into B's consumer of A's own envelopes", func(t *testing.T) {
			h.deniedPub(t, "$JS.ACK."+streamB+"."+client.ConsumerFor(idA)+".1.1.1.1700000000000000000.2", []byte("+TERM"))
		}},
		{"delete B's per-sender consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DELETE."+streamB+"."+client.ConsumerFor(idC), nil)
		}},
		{"delete own per-sender consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DELETE."+streamA+"."+client.ConsumerFor(idB), nil)
		}},
		{"create a catch-all consumer on own stream", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DURABLE.CREATE."+streamA+"."+client.LegacyConsumerName, ownConsumer)
		}},
		{"read B's stream through STREAM.MSG.GET", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.STREAM.MSG.GET."+streamB, []byte(`{"seq":1}`))
		}},
		{"read B's stream through DIRECT.GET", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.DIRECT.GET."+streamB, []byte(`{"seq":1}`))
		}},
		{"read B's stream through DIRECT.GET by subject", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.DIRECT.GET."+streamB+"."+client.Subject(idB, idC), nil)
		}},
		{"read B's stream through a new consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.CREATE."+streamB+".spy", spyConsumer)
		}},
		{"read B's stream through a new ephemeral consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.CREATE."+streamB, spyConsumer)
		}},
		{"read B's stream through a new durable consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DURABLE.CREATE."+streamB+".spy", spyConsumer)
		}},
		{"delete a message of B", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.STREAM.MSG.DELETE."+streamB, []byte(`{"seq":1}`))
		}},
		{"purge B's stream", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.PURGE."+streamB, nil) }},
		{"purge own stream", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.PURGE."+streamA, nil) }},
		{"read B's stream info", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.INFO."+streamB, nil) }},
		{"list streams", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.NAMES", nil) }},
		{"read account info", func(t *testing.T) { h.deniedRequest(t, "$JS.API.INFO", nil) }},
		{"snapshot B's stream", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.STREAM.SNAPSHOT."+streamB, []byte(`{"deliver_subject":"_INBOX_`+idA+`.snap"}`))
		}},
		{"log in with B's public nkey without B's seed", func(t *testing.T) {
			kp, _ := nkeys.FromSeed(A.Seed)
			nc, err := nats.Connect(url, nats.Nkey(B.Pub, kp.Sign), nats.Timeout(3*time.Second))
			if err == nil {
				nc.Close()
				t.Fatal("logged in as B without B's seed")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("want an authorization error, got %v", err)
			}
		}},
		{"log in with B's id through the client with A's seed", func(t *testing.T) {
			c, err := client.Connect(context.Background(), url, idB, A.Seed,
				client.NoRetryOnFailedConnect(), client.WithTimeout(500*time.Millisecond))
			if err != nil {
				t.Fatal(err) // logging in works: the id is only a label
			}
			defer c.Close()
			c.SetSenders([]string{idA, idB, idC})
			// but the broker treats it as A: publishing as B is refused and
			// pulling B's consumer is refused.
			if err := c.Publish(context.Background(), idC, "x", []byte("x")); !errors.Is(err, client.ErrUnavailable) {
				t.Fatalf("publish as B with A's key: %v", err)
			}
			// Every pull is refused: Fetch returns nothing and, once each
			// sender's consumer has been tried, an error.
			deadline := time.Now().Add(20 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				msgs, err := c.Fetch(ctx, 10)
				cancel()
				if len(msgs) > 0 {
					t.Fatalf("fetch of B's consumers with A's key: %d messages", len(msgs))
				}
				if errors.Is(err, client.ErrUnavailable) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("fetch of B's consumers with A's key: %v, want ErrUnavailable", err)
				}
			}
		}},
		{"log in with an unknown nkey", func(t *testing.T) {
			kp, _ := nkeys.CreateUser()
			seed, _ := kp.Seed()
			_, err := client.Connect(context.Background(), url, idA, seed, client.NoRetryOnFailedConnect())
			if !errors.Is(err, client.ErrAuth) {
				t.Fatalf("want ErrAuth, got %v", err)
			}
		}},
		{"log in with no credentials", func(t *testing.T) {
			nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
			if err == nil {
				nc.Close()
				t.Fatal("logged in without credentials")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("want an authorization error, got %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t)
			intact(t, s, idB, want)
			if !h.nc.IsConnected() {
				t.Fatal("the broker dropped A's connection")
			}
		})
	}
	if _, err := s.js.Stream(context.Background(), "EVIL"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream EVIL: %v", err)
	}

	t.Run("allowed paths work", func(t *testing.T) {
		gwA := mustConnect(t, url, A)
		gwB := mustConnect(t, url, B)
		ctx := context.Background()
		if err := gwA.Publish(ctx, idB, "env-a", []byte("from A")); err != nil {
			t.Fatal(err)
		}
		// A retry with the same id is acknowledged and not stored twice.
		if err := gwA.Publish(ctx, idB, "env-a", []byte("from A")); err != nil {
			t.Fatal(err)
		}
		want = append(want, queued{client.Subject(idB, idA), []byte("from A")})
		var got []*client.Msg
		for len(got) < len(want) {
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			msgs, err := gwB.Fetch(fctx, 10)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				t.Fatalf("got %d of %d messages", len(got), len(want))
			}
			got = append(got, msgs...)
		}
		// Senders are served in turn; each sender's messages come in the
		// order they were sent.
		bySender := map[string][]queued{}
		for _, w := range want {
			bySender[w.subject] = append(bySender[w.subject], w)
		}
		for i, m := range got {
			q := bySender[m.Subject()]
			if len(q) == 0 || !bytes.Equal(m.Data(), q[0].data) || m.Delivered() != 1 {
				t.Fatalf("message %d: %s %q delivered %d", i, m.Subject(), m.Data(), m.Delivered())
			}
			bySender[m.Subject()] = q[1:]
			if wantFrom := map[string]string{client.Subject(idB, idC): idC, client.Subject(idB, idA): idA}[m.Subject()]; m.From() != wantFrom {
				t.Fatalf("message %d from %q, want %q", i, m.From(), wantFrom)
			}
			if err := m.AckSync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		intact(t, s, idB, nil)
		// A can also read its own consumer and use its own reply prefix.
		fctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := gwA.Fetch(fctx, 1); err != nil {
			t.Fatalf("A fetching its own consumer: %v", err)
		}
	})
}

// filesIntact checks B's file queue holds exactly want, undelivered and
// unacked, with its configuration and consumers as provisioned.
func filesIntact(t *testing.T, s *Server, id string, want []queued) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, client.FilesStreamName(id))
	if err != nil {
		t.Fatalf("file queue of %s: %v", id, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(want)) {
		t.Fatalf("stream %s holds %d chunks, want %d", info.Config.Name, info.State.Msgs, len(want))
	}
	if len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != client.FileSubjectPrefix+id+".*" ||
		info.Config.Retention != jetstream.WorkQueuePolicy || !info.Config.DenyPurge || !info.Config.DenyDelete {
		t.Fatalf("stream %s config changed: %+v", info.Config.Name, info.Config)
	}
	untouched(t, ctx, s, st, info, want, "chunk")
}

// TestHostileFiles: agency A, with its own valid credentials, cannot touch
// another agency's file queue: not send chunks as someone else, not pull,
// read, ack, term, delete or create consumers, not purge or delete the
// stream or its chunks. Its own file queue it can only pull and ack. A
// revoked agency cannot send chunks.
func TestHostileFiles(t *testing.T) {
	const idA, idB, idC = "shelter-a", "dinsos-ntb", "police"
	n := newTestNet(t, idA, idB, idC)
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	A, C := n.Agencies[idA], n.Agencies[idC]
	ctx := context.Background()

	// C queues three chunks for B, and one for A.
	gwC := mustConnect(t, url, C)
	cs := chunks("att", 3, 100)
	if k, err := gwC.PublishChunks(ctx, idB, cs); k != 3 || err != nil {
		t.Fatalf("PublishChunks: %d, %v", k, err)
	}
	var want []queued
	for _, c := range cs {
		want = append(want, queued{client.FileSubject(idB, idC), c.Data})
	}
	if k, err := gwC.PublishChunks(ctx, idA, chunks("for-a", 1, 10)); k != 1 || err != nil {
		t.Fatalf("PublishChunks: %d, %v", k, err)
	}
	filesIntact(t, s, idB, want)

	h := dialHostile(t, url, A)
	filesB, filesA := client.FilesStreamName(idB), client.FilesStreamName(idA)
	spy := []byte(`{"stream_name":"` + filesB + `","config":{"durable_name":"spy","ack_policy":"none","deliver_policy":"all"}}`)
	own := []byte(`{"stream_name":"` + filesA + `","config":{"durable_name":"other","ack_policy":"none","deliver_policy":"all"}}`)
	next := []byte(`{"batch":10,"no_wait":true}`)
	ackSubj := func(stream, cons string) string {
		return "$JS.ACK." + stream + "." + cons + ".1.1.1.1700000000000000000.2"
	}

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"publish a chunk as C", func(t *testing.T) { h.deniedPub(t, client.FileSubject(idB, idC), []byte("forged")) }},
		{"publish a chunk as B to B", func(t *testing.T) { h.deniedPub(t, client.FileSubject(idB, idB), []byte("forged")) }},
		{"publish a chunk into B's stream subjects", func(t *testing.T) { h.deniedPub(t, "rujukan.file."+idB, []byte("forged")) }},
		{"subscribe to B's chunks", func(t *testing.T) { h.deniedSub(t, "rujukan.file."+idB+".*") }},
		{"subscribe to every chunk", func(t *testing.T) { h.deniedSub(t, "rujukan.file.>") }},
		{"pull B's consumer of C's chunks", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.MSG.NEXT."+filesB+"."+client.ConsumerFor(idC), next)
		}},
		{"pull B's consumer of A's own chunks", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.MSG.NEXT."+filesB+"."+client.ConsumerFor(idA), next)
		}},
		{"read B's files consumer info", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.INFO."+filesB+"."+client.ConsumerFor(idC), nil)
		}},
		{"ack B's chunks", func(t *testing.T) { h.deniedPub(t, ackSubj(filesB, client.ConsumerFor(idC)), []byte("+ACK")) }},
		{"term B's chunks", func(t *testing.T) { h.deniedPub(t, ackSubj(filesB, client.ConsumerFor(idC)), []byte("+TERM")) }},
		{"nak B's chunks", func(t *testing.T) { h.deniedPub(t, ackSubj(filesB, client.ConsumerFor(idC)), []byte("-NAK")) }},
		{"delete B's files consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DELETE."+filesB+"."+client.ConsumerFor(idC), nil)
		}},
		{"delete own files consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DELETE."+filesA+"."+client.ConsumerFor(idC), nil)
		}},
		{"pause B's files consumer", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.PAUSE."+filesB+"."+client.ConsumerFor(idC), []byte(`{"pause_until":"2100-01-01T00:00:00Z"}`))
		}},
		{"create a consumer on B's file queue", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.CREATE."+filesB+".spy", spy)
		}},
		{"create an ephemeral consumer on B's file queue", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.CREATE."+filesB, spy)
		}},
		{"create a durable consumer on B's file queue", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.DURABLE.CREATE."+filesB+".spy", spy)
		}},
		{"create a consumer on own file queue", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.CONSUMER.CREATE."+filesA+".other", own)
		}},
		{"delete B's file queue", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.DELETE."+filesB, nil) }},
		{"delete own file queue", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.DELETE."+filesA, nil) }},
		{"update own file queue", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.UPDATE."+filesA, nil) }},
		{"purge B's file queue", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.PURGE."+filesB, nil) }},
		{"purge own file queue", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.PURGE."+filesA, nil) }},
		{"delete a chunk of B", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.STREAM.MSG.DELETE."+filesB, []byte(`{"seq":1}`))
		}},
		{"delete a chunk of own", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.STREAM.MSG.DELETE."+filesA, []byte(`{"seq":1}`))
		}},
		{"read B's chunks through STREAM.MSG.GET", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.STREAM.MSG.GET."+filesB, []byte(`{"seq":1}`))
		}},
		{"read B's chunks through DIRECT.GET", func(t *testing.T) {
			h.deniedRequest(t, "$JS.API.DIRECT.GET."+filesB, []byte(`{"seq":1}`))
		}},
		{"read B's file queue info", func(t *testing.T) { h.deniedRequest(t, "$JS.API.STREAM.INFO."+filesB, nil) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t)
			filesIntact(t, s, idB, want)
			if !h.nc.IsConnected() {
				t.Fatal("the broker dropped A's connection")
			}
		})
	}

	t.Run("own file queue works", func(t *testing.T) {
		gwA := mustConnect(t, url, A)
		ms := fetchChunks(t, gwA, 1)
		if ms[0].From() != idC || ms[0].MsgID() != "for-a-0" {
			t.Fatalf("A got %s from %s", ms[0].MsgID(), ms[0].From())
		}
		if err := ms[0].AckSync(ctx); err != nil {
			t.Fatal(err)
		}
		// A can send B chunks as itself, and B gets them.
		if k, err := gwA.PublishChunks(ctx, idB, chunks("from-a", 1, 10)); k != 1 || err != nil {
			t.Fatalf("A's own chunk: %d, %v", k, err)
		}
		want := append(slices.Clone(want), queued{client.FileSubject(idB, idA), make([]byte, 10)})
		filesIntact(t, s, idB, want)
	})

	t.Run("a revoked agency cannot send chunks", func(t *testing.T) {
		gwA := mustConnect(t, url, A)
		closed := make(chan struct{})
		go func() {
			for gwA.Connected() {
				time.Sleep(20 * time.Millisecond)
			}
			close(closed)
		}()
		n.Dir.Version = 2
		n.revoke(idA)
		if err := s.Reload(n.sign(t)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the revoked agency's connection stays open")
		}
		if k, err := gwA.PublishChunks(ctx, idB, chunks("revoked", 1, 10)); k != 0 || err == nil {
			t.Fatalf("revoked agency's chunk: %d, %v", k, err)
		}
		if _, err := client.Connect(ctx, url, idA, A.Seed, client.NoRetryOnFailedConnect()); !errors.Is(err, client.ErrAuth) {
			t.Fatalf("revoked agency logged in: %v", err)
		}
		if got := filesInfo(t, s, idB).State.Msgs; got != 4 {
			t.Fatalf("B's file queue holds %d chunks, want C's 3 and A's 1 sent before the revocation", got)
		}
	})
}
