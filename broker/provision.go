package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// permissions returns the NATS permissions of an agency's user: exactly
// what the broker isolation of README.md's security model allows and
// nothing else.
//
//   - publish rujukan.msg.*.<self>: send to anyone, only as itself;
//   - publish $JS.API.CONSUMER.MSG.NEXT.INBOX_<self>.gateway: pull from its
//     own consumer (the JetStream API is restricted per stream, because
//     subscribe permissions do not limit what a consumer delivers);
//   - publish $JS.API.CONSUMER.INFO.INBOX_<self>.gateway: read its own
//     consumer's state (nats.go looks it up before pulling);
//   - publish $JS.ACK.INBOX_<self>.gateway.>: ack, nak and term its own
//     messages;
//   - subscribe _INBOX_<self>.>: its own replies (publish acks, pulled
//     messages), never the shared _INBOX.>.
//
// No stream or consumer administration, no other agency's stream, no
// direct get, no account information.
func permissions(id string) *server.Permissions {
	stream := client.StreamName(id)
	cons := client.ConsumerName
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			client.SubjectPrefix + "*." + id,
			"$JS.API.CONSUMER.MSG.NEXT." + stream + "." + cons,
			"$JS.API.CONSUMER.INFO." + stream + "." + cons,
			"$JS.ACK." + stream + "." + cons + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			client.InboxPrefix(id) + ".>",
		}},
	}
}

// The broker's accounts. Every inbox stream lives in the inbox account,
// where only the broker's own provisioning user logs in. Each agency has an
// account of its own that imports, as services, exactly its own subjects
// from the inbox account.
//
// Accounts, not only permissions, keep agencies apart: NATS does not check
// the reply subject a client sets, so in one shared account an agency could
// have JetStream answer into another agency's subjects (turning its own
// messages into pull requests on another inbox, or storing publish
// acknowledgements in another inbox under a third agency's name). Across
// an import the reply is rewritten, and an answer can only come back to the
// account that asked.
const inboxAccount = "RUJUKAN"

// jsAPIInfo is imported into every agency account only so that the server
// does not add its own JetStream responders there (they would race the
// imported API with "JetStream not enabled" answers). The agency's
// permissions do not let it publish on this subject.
const jsAPIInfo = "$JS.API.INFO"

// accountName is the NATS account of an agency.
func accountName(id string) string { return "AGENCY_" + id }

// accountsConfig returns the accounts block of the server configuration
// for the active agencies of d. The accounts of agencies in bare are
// declared empty (no user, no import): see reloadLocked.
func (s *Server) accountsConfig(d *crypto.Directory, bare map[string]bool) string {
	var b strings.Builder
	b.WriteString("accounts {\n")
	fmt.Fprintf(&b, "  %s {\n    jetstream: enabled\n    users: [ {nkey: %q} ]\n", inboxAccount, s.adminPub)
	b.WriteString("    exports: [\n")
	fmt.Fprintf(&b, "      {service: %q}\n", client.SubjectPrefix+">")
	fmt.Fprintf(&b, "      {service: %q, response: stream}\n", "$JS.API.CONSUMER.MSG.NEXT.*."+client.ConsumerName)
	fmt.Fprintf(&b, "      {service: %q}\n", "$JS.API.CONSUMER.INFO.*."+client.ConsumerName)
	fmt.Fprintf(&b, "      {service: %q}\n", "$JS.ACK.*."+client.ConsumerName+".>")
	fmt.Fprintf(&b, "      {service: %q}\n", jsAPIInfo)
	b.WriteString("    ]\n  }\n")
	for i := range d.Agencies {
		a := &d.Agencies[i]
		if a.Status != crypto.StatusActive {
			continue
		}
		k, ok := a.ActiveKey(crypto.UseNATS)
		if !ok {
			continue // Validate rules this out for active agencies.
		}
		if bare[a.ID] {
			fmt.Fprintf(&b, "  %s {}\n", accountName(a.ID))
			continue
		}
		p := permissions(a.ID)
		fmt.Fprintf(&b, "  %s {\n    users: [ {nkey: %q, permissions: {publish: {allow: %s}, subscribe: {allow: %s}}} ]\n",
			accountName(a.ID), k.Public, quoteList(p.Publish.Allow), quoteList(p.Subscribe.Allow))
		b.WriteString(accountLimits(d.LimitsOf(a.ID)))
		b.WriteString("    imports: [\n")
		for _, subj := range append(p.Publish.Allow, jsAPIInfo) {
			fmt.Fprintf(&b, "      {service: {account: %s, subject: %q}}\n", inboxAccount, subj)
		}
		b.WriteString("    ]\n  }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func quoteList(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// streamConfig returns the inbox stream of an agency with the limits of
// directory d.
func (s *Server) streamConfig(d *crypto.Directory, id string) jetstream.StreamConfig {
	dup := min(s.cfg.DuplicateWindow, s.cfg.MaxAge)
	l := d.LimitsOf(id)
	return jetstream.StreamConfig{
		Name:        client.StreamName(id),
		Description: "Rujukan inbox of agency " + id,
		Subjects:    []string{client.SubjectPrefix + id + ".*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      s.cfg.MaxAge,
		Duplicates:  dup,
		MaxMsgSize:  s.cfg.MaxMsgSize,
		MaxBytes:    l.InboxMaxBytes,
		MaxMsgs:     l.InboxMaxMessages,
		Discard:     jetstream.DiscardNew,
		// One subject per sender: each sender's share of the inbox.
		MaxMsgsPerSubject:    senderMax(l, s.cfg.MaxMsgSize),
		DiscardNewPerSubject: true,
		Replicas:             s.cfg.replicas(),
		DenyDelete:           true,
		DenyPurge:            true,
		AllowDirect:          false,
	}
}

// consumerConfig returns an agency's durable pull consumer.
func (s *Server) consumerConfig() jetstream.ConsumerConfig {
	backoff := append([]time.Duration{s.cfg.AckWait}, s.cfg.BackOff[min(1, len(s.cfg.BackOff)):]...)
	return jetstream.ConsumerConfig{
		Durable:         client.ConsumerName,
		Description:     "Rujukan gateway pull consumer",
		AckPolicy:       jetstream.AckExplicitPolicy,
		AckWait:         s.cfg.AckWait,
		BackOff:         backoff,
		MaxDeliver:      maxDeliver(backoff, s.cfg.MaxAge),
		DeliverPolicy:   jetstream.DeliverAllPolicy,
		ReplayPolicy:    jetstream.ReplayInstantPolicy,
		MaxAckPending:   1000,
		MaxWaiting:      512,
		MaxRequestBatch: client.MaxFetch,
	}
}

// provision creates or updates the inbox stream and consumer of each
// agency in ids, with the limits of directory d, a few at a time.
func (s *Server) provision(ctx context.Context, js jetstream.JetStream, d *crypto.Directory, ids []string) error {
	const workers = 8
	work := make(chan string)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range min(workers, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if err := s.provisionOne(ctx, js, d, id); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		select {
		case work <- id:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("failed to provision %d of %d agencies: %w", len(errs), len(ids), errors.Join(errs[:min(3, len(errs))]...))
	}
	return ctx.Err()
}

func (s *Server) provisionOne(ctx context.Context, js jetstream.JetStream, d *crypto.Directory, id string) error {
	cfg := s.streamConfig(d, id)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resume, err := s.lowerShareSafely(rctx, js, id, &cfg)
	if err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if _, err := js.CreateOrUpdateStream(rctx, cfg); err != nil {
		resume()
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if _, err := js.CreateOrUpdateConsumer(rctx, cfg.Name, s.consumerConfig()); err != nil {
		return fmt.Errorf("consumer %s on %s: %w", client.ConsumerName, cfg.Name, err)
	}
	return nil
}
