package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// Limits at the broker. Every one is enforced by NATS itself; the broker
// only writes them into the server's configuration and the inbox streams:
//
//   - an inbox stream keeps at most crypto.Limits.InboxMaxBytes and
//     InboxMaxMessages (MaxBytes, MaxMsgs, DiscardNew: a full inbox refuses
//     new messages and keeps what it holds);
//   - one sender keeps at most senderMax messages in an inbox
//     (MaxMsgsPerSubject with DiscardNewPerSubject; the subject
//     rujukan.msg.<to>.<from> names the sender, so per subject is per
//     sender). NATS has no per-subject byte limit: the sender's byte share
//     is enforced as a message count, SenderMaxBytes / MaxMsgSize, so even
//     messages of the largest size cannot take more;
//   - an agency's account has at most MaxConnections connections, each with
//     at most MaxSubscriptions subscriptions and messages of at most
//     client.MaxMessageSize (account limits);
//   - the whole server keeps at most Config.MaxStore bytes on disk and
//     Config.MaxMemory bytes of memory-backed streams (JetStream's own
//     server limits), and each stream's ingest queue and each client's
//     outbound buffer are bounded (see options).
//
// NATS (v2.15) has no publish rate limit per account or user, so a rate per
// sender is not enforced at the broker: what a sender can leave in an inbox
// is bounded by its share, and how fast it can be read is the receiving
// gateway's concern.

// senderMax returns the number of messages one sender may keep in an inbox
// with limits l when the largest message is maxMsgSize bytes.
func senderMax(l crypto.Limits, maxMsgSize int32) int64 {
	return max(1, min(l.SenderMaxMessages, l.SenderMaxBytes/int64(max(1, maxMsgSize))))
}

// storeNeeded returns the disk the inbox streams of d may use together:
// the sum of every agency's inbox byte limit, revoked agencies included
// (their inboxes are kept until their messages age out). JetStream reserves
// each stream's MaxBytes against the server's max store.
func storeNeeded(d *crypto.Directory) int64 {
	var n int64
	for _, a := range d.Agencies {
		n += d.LimitsOf(a.ID).InboxMaxBytes
	}
	return n
}

// maxStore returns the JetStream max store to run with for directory d:
// Config.MaxStore when set, else what the inboxes need. It is never lower
// than cur (NATS cannot lower it at run time).
func (s *Server) maxStore(d *crypto.Directory, cur int64) (int64, error) {
	need := storeNeeded(d)
	if s.cfg.MaxStore > 0 {
		if need > s.cfg.MaxStore {
			return 0, fmt.Errorf("%w: the inboxes of directory version %d may hold %d bytes together (the sum of their inbox_max_bytes), more than the broker's max store of %d bytes: raise the max store or lower the limits",
				ErrConfig, d.Version, need, s.cfg.MaxStore)
		}
		return s.cfg.MaxStore, nil
	}
	return max(need, cur, 1<<30), nil
}

// accountLimits returns the limits block of an agency's account.
func accountLimits(l crypto.Limits) string {
	return fmt.Sprintf("    limits: {max_connections: %d, max_subscriptions: %d, max_payload: %d}\n",
		l.MaxConnections, l.MaxSubscriptions, client.MaxMessageSize)
}

// applyLimits sets the server-wide limits on o: JetStream's memory and
// store limits and the queues that would otherwise grow with a flood.
func (s *Server) applyLimits(o *server.Options, maxStore int64) {
	o.JetStreamMaxStore = maxStore
	o.JetStreamMaxMemory = s.cfg.MaxMemory
	// Each stream buffers incoming messages before it stores them; the
	// defaults (128 MiB and 100,000 messages per stream) would let a flood
	// at many inboxes hold gigabytes.
	o.StreamMaxBufferedSize = s.cfg.StreamBuffer
	o.StreamMaxBufferedMsgs = 1000
	// A client that does not read its messages is disconnected once this
	// much is waiting for it (default 64 MiB).
	o.MaxPending = s.cfg.ClientPending
}

// perSubjectCounts returns how many messages each sender has in stream
// name, or nil if the stream does not exist yet.
func perSubjectCounts(ctx context.Context, js jetstream.JetStream, name string) (map[string]uint64, error) {
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// heldSenderMax returns the per-sender limit to apply to an inbox whose
// senders now hold counts: want, unless a sender already holds more. NATS
// applies a lowered per-subject limit by deleting the oldest messages over
// it; the broker never drops an accepted message that way, so the limit
// goes down only as far as the largest backlog, and the rest of the way at
// a later provisioning (a restart or a reload) once the backlog has been
// read.
func heldSenderMax(want int64, counts map[string]uint64) int64 {
	held := want
	for _, n := range counts {
		held = max(held, int64(n))
	}
	return held
}
