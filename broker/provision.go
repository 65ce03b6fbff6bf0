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
//   - publish rujukan.msg.*.<self>: send envelopes to anyone, only as
//     itself;
//   - publish rujukan.file.*.<self>: send attachment chunks to anyone,
//     only as itself;
//   - publish $JS.API.CONSUMER.MSG.NEXT.INBOX_<self>.* and
//     $JS.API.CONSUMER.MSG.NEXT.FILES_<self>.*: pull from the consumers of
//     its own inbox and its own file queue, one per sender (the JetStream
//     API is restricted per stream, because subscribe permissions do not
//     limit what a consumer delivers);
//   - publish $JS.API.CONSUMER.INFO.INBOX_<self>.* and
//     $JS.API.CONSUMER.INFO.FILES_<self>.*: read the state of those
//     consumers (nats.go looks one up before pulling);
//   - publish $JS.ACK.INBOX_<self>.*.> and $JS.ACK.FILES_<self>.*.>: ack,
//     nak and term its own messages and chunks;
//   - subscribe _INBOX_<self>.>: its own replies (publish acks, pulled
//     messages), never the shared _INBOX.>.
//
// The wildcard is the consumer name: every consumer of INBOX_<self> and
// FILES_<self> delivers only what is addressed to <self>, and the stream
// token cannot match another agency's stream (an agency id has no "." and
// no "_", so INBOX_<self> and FILES_<self> are each one token naming one
// stream). No stream or consumer administration, no other agency's
// stream, no direct get, no purge or message delete, no account
// information.
func permissions(id string) *server.Permissions {
	stream, files := client.StreamName(id), client.FilesStreamName(id)
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			client.SubjectPrefix + "*." + id,
			client.FileSubjectPrefix + "*." + id,
			"$JS.API.CONSUMER.MSG.NEXT." + stream + ".*",
			"$JS.API.CONSUMER.INFO." + stream + ".*",
			"$JS.ACK." + stream + ".*.>",
			"$JS.API.CONSUMER.MSG.NEXT." + files + ".*",
			"$JS.API.CONSUMER.INFO." + files + ".*",
			"$JS.ACK." + files + ".*.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			client.InboxPrefix(id) + ".>",
		}},
	}
}

// The broker's accounts. Every inbox stream and file queue stream lives in
// the inbox account,
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
	fmt.Fprintf(&b, "      {service: %q}\n", client.FileSubjectPrefix+">")
	fmt.Fprintf(&b, "      {service: %q, response: stream}\n", "$JS.API.CONSUMER.MSG.NEXT.*.*")
	fmt.Fprintf(&b, "      {service: %q}\n", "$JS.API.CONSUMER.INFO.*.*")
	fmt.Fprintf(&b, "      {service: %q}\n", "$JS.ACK.*.*.>")
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
	if s.cfg.SystemUser != "" {
		fmt.Fprintf(&b, "  %q {\n    users: [ {nkey: %q, permissions: {publish: {allow: %s}, subscribe: {allow: [\"_INBOX.>\"]}}} ]\n  }\n",
			systemAccount, s.cfg.SystemUser, quoteList(monitorSubjects()))
	}
	b.WriteString("}\n")
	if s.cfg.SystemUser != "" {
		fmt.Fprintf(&b, "system_account: %q\n", systemAccount)
	}
	return b.String()
}

// systemAccount is NATS's own system account, named as the server names it
// by default, so that naming it to give it a user changes nothing else.
const systemAccount = "$SYS"

// monitorSubjects are the requests the operator's monitoring user may send
// in the system account: the read-only reports of every server (PING) or
// of one (its id), and the JetStream and statistics reports of an account.
// RELOAD, KICK, LDM, PROFILEZ and the JetStream server API ($JS.API.SERVER,
// $JS.API.META: removing a peer, moving the meta leader) are left out.
func monitorSubjects() []string {
	subjects := []string{"$SYS.REQ.SERVER.PING"}
	for _, r := range []string{"IDZ", "STATSZ", "VARZ", "CONNZ", "ROUTEZ", "SUBSZ", "JSZ", "HEALTHZ", "ACCOUNTZ", "RAFTZ"} {
		subjects = append(subjects, "$SYS.REQ.SERVER.*."+r)
	}
	for _, r := range []string{"JSZ", "STATZ", "CONNZ", "INFO"} {
		subjects = append(subjects, "$SYS.REQ.ACCOUNT.*."+r)
	}
	return subjects
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

// filesStreamConfig returns the file queue stream of an agency with the
// limits of directory d: attachment chunks, kept until the agency acks them
// (work queue) and at most MaxAge, like the inbox, with a byte limit and
// per-sender shares of its own.
func (s *Server) filesStreamConfig(d *crypto.Directory, id string) jetstream.StreamConfig {
	dup := min(s.cfg.DuplicateWindow, s.cfg.MaxAge)
	l := d.LimitsOf(id)
	return jetstream.StreamConfig{
		Name:        client.FilesStreamName(id),
		Description: "Rujukan file queue of agency " + id,
		Subjects:    []string{client.FileSubjectPrefix + id + ".*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      s.cfg.MaxAge,
		Duplicates:  dup,
		MaxMsgSize:  client.MaxChunkMessage,
		MaxBytes:    l.FilesMaxBytes,
		Discard:     jetstream.DiscardNew,
		// One subject per sender: each sender's share of the queue.
		MaxMsgsPerSubject:    filesSenderMax(l),
		DiscardNewPerSubject: true,
		Replicas:             s.cfg.replicas(),
		DenyDelete:           true,
		DenyPurge:            true,
		AllowDirect:          false,
	}
}

// Per-consumer bounds. A consumer delivers one sender's envelopes, so
// these bound what one sender can hold of the recipient's gateway: at most
// senderMaxAckPending delivered and not yet settled (the others' consumers
// keep delivering meanwhile) and a few waiting pulls.
const (
	senderMaxAckPending = 256
	senderMaxWaiting    = 64
)

// consumerConfig returns the durable pull consumer that delivers sender
// from's envelopes on recipient to's inbox.
func (s *Server) consumerConfig(to, from string) jetstream.ConsumerConfig {
	backoff := append([]time.Duration{s.cfg.AckWait}, s.cfg.BackOff[min(1, len(s.cfg.BackOff)):]...)
	return jetstream.ConsumerConfig{
		Durable:         client.ConsumerFor(from),
		Description:     "Rujukan gateway pull consumer of " + to + " for the envelopes of " + from,
		FilterSubject:   client.Subject(to, from),
		AckPolicy:       jetstream.AckExplicitPolicy,
		AckWait:         s.cfg.AckWait,
		BackOff:         backoff,
		MaxDeliver:      maxDeliver(backoff, s.cfg.MaxAge),
		DeliverPolicy:   jetstream.DeliverAllPolicy,
		ReplayPolicy:    jetstream.ReplayInstantPolicy,
		MaxAckPending:   senderMaxAckPending,
		MaxWaiting:      senderMaxWaiting,
		MaxRequestBatch: client.MaxFetch,
	}
}

// Per-consumer bounds on a file queue: a chunk is up to 512 KiB, so one
// sender holds far fewer of them delivered and unsettled.
const (
	filesMaxAckPending   = 64
	filesMaxWaiting      = 16
	filesMaxRequestBatch = 16
	filesAckWait         = 10 * time.Second
)

// filesConsumerConfig returns the durable pull consumer that delivers
// sender from's chunks on recipient to's file queue.
func (s *Server) filesConsumerConfig(to, from string) jetstream.ConsumerConfig {
	cc := s.consumerConfig(to, from)
	cc.Description = "Rujukan gateway pull consumer of " + to + " for the attachment chunks of " + from
	cc.FilterSubject = client.FileSubject(to, from)
	cc.MaxAckPending = filesMaxAckPending
	cc.MaxWaiting = filesMaxWaiting
	cc.MaxRequestBatch = filesMaxRequestBatch
	// A chunk is acked within a batch's fsync of being pulled: after a
	// recipient's crash, what it had pulled comes back sooner than an
	// envelope would.
	if cc.AckWait > filesAckWait {
		cc.AckWait = filesAckWait
		cc.BackOff = append([]time.Duration{filesAckWait}, cc.BackOff[1:]...)
		cc.MaxDeliver = maxDeliver(cc.BackOff, s.cfg.MaxAge)
	}
	return cc
}

// senders returns the agencies that get a consumer on every inbox of d:
// every agency in the directory, whatever its status. A revoked agency
// keeps its consumers, so that envelopes it left waiting are still
// delivered (and refused by the recipient's gateway) rather than stranded
// until they age out; it can send nothing new, having no user. An agency
// may send to itself, so its own id is among them.
func senders(d *crypto.Directory) []string {
	ids := make([]string, 0, len(d.Agencies))
	for _, a := range d.Agencies {
		ids = append(ids, a.ID)
	}
	return ids
}

// provision creates or updates the inbox and file queue streams and their
// consumers of each agency in ids, with the limits of directory d, a few at a time.
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
	if err := s.provisionInbox(ctx, js, d, id); err != nil {
		return err
	}
	return s.provisionFiles(ctx, js, d, id)
}

// provisionInbox creates or updates agency id's inbox and its consumers.
func (s *Server) provisionInbox(ctx context.Context, js jetstream.JetStream, d *crypto.Directory, id string) error {
	cfg := s.streamConfig(d, id)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resume, err := s.lowerShareSafely(rctx, js, id, pausedSubject(id), &cfg)
	if err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if _, err := js.CreateOrUpdateStream(rctx, cfg); err != nil {
		resume()
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	// A work-queue stream takes only consumers with filters that do not
	// overlap: the catch-all consumer of earlier versions goes first. What
	// it had delivered and not acknowledged stays in the inbox (work-queue
	// retention removes a message on its ack only) and the per-sender
	// consumers, which start at the inbox's first message, deliver it.
	if err := js.DeleteConsumer(rctx, cfg.Name, client.LegacyConsumerName); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("consumer %s on %s: %w", client.LegacyConsumerName, cfg.Name, err)
	}
	for _, from := range senders(d) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := js.CreateOrUpdateConsumer(cctx, cfg.Name, s.consumerConfig(id, from))
		cancel()
		if err != nil {
			return fmt.Errorf("consumer %s on %s: %w", client.ConsumerFor(from), cfg.Name, err)
		}
	}
	return nil
}

// provisionFiles creates or updates agency id's file queue and its
// consumers. A broker of an earlier version had none: it is created beside
// the inbox, which is left as it was.
func (s *Server) provisionFiles(ctx context.Context, js jetstream.JetStream, d *crypto.Directory, id string) error {
	cfg := s.filesStreamConfig(d, id)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resume, err := s.lowerShareSafely(rctx, js, id, pausedFilesSubject(id), &cfg)
	if err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if _, err := js.CreateOrUpdateStream(rctx, cfg); err != nil {
		resume()
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	for _, from := range senders(d) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := js.CreateOrUpdateConsumer(cctx, cfg.Name, s.filesConsumerConfig(id, from))
		cancel()
		if err != nil {
			return fmt.Errorf("consumer %s on %s: %w", client.ConsumerFor(from), cfg.Name, err)
		}
	}
	return nil
}
