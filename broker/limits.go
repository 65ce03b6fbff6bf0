package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

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
//   - an agency's file queue (attachment chunks) keeps at most
//     crypto.Limits.FilesMaxBytes, and one sender at most filesSenderMax
//     chunks of it (FilesSenderMaxBytes / crypto.FileChunkSize, per
//     subject as for the inbox);
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

// filesSenderMax returns the number of chunks one sender may keep in a
// file queue with limits l.
func filesSenderMax(l crypto.Limits) int64 {
	return max(1, l.FilesSenderMaxBytes/crypto.FileChunkSize)
}

// storeNeeded returns the disk the inbox and file queue streams of d may
// use together: the sum of every agency's inbox and files byte limits,
// revoked agencies included (their streams are kept until their messages
// age out). JetStream reserves each stream's MaxBytes against the server's
// max store.
func storeNeeded(d *crypto.Directory) int64 {
	var n int64
	for _, a := range d.Agencies {
		l := d.LimitsOf(a.ID)
		n += l.InboxMaxBytes + l.FilesMaxBytes
	}
	return n
}

// maxStore returns the JetStream max store to run with for directory d:
// Config.MaxStore when set, else what the inboxes and file queues need. It is never lower
// than cur (NATS cannot lower it at run time).
func (s *Server) maxStore(d *crypto.Directory, cur int64) (int64, error) {
	need := storeNeeded(d)
	if s.cfg.MaxStore > 0 {
		if need > s.cfg.MaxStore {
			return 0, fmt.Errorf("%w: the inboxes and file queues of directory version %d may hold %d bytes together (the sum of their inbox_max_bytes and files_max_bytes), more than the broker's max store of %d bytes: raise the max store or lower the limits",
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
// st.
func perSubjectCounts(ctx context.Context, st jetstream.Stream) (map[string]uint64, error) {
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// pausedSubject is what an inbox captures while its per-sender share is
// being lowered, and pausedFilesSubject what a file queue captures:
// nothing publishes there.
func pausedSubject(id string) string      { return "rujukan.paused." + id }
func pausedFilesSubject(id string) string { return "rujukan.paused.file." + id }

// lowerShareSafely makes sure that applying cfg to an existing inbox
// drops no stored message. NATS applies a lowered per-subject limit by
// deleting each sender's oldest messages over it, so before the share goes
// down the inbox stops taking messages for a moment (it captures another
// subject: publishes meanwhile find no stream and are retried by the
// senders, nothing is lost), its per-sender counts are read once it is
// still, and the new share is raised to the largest backlog if one sender
// holds more than it. The share goes the rest of the way down at a later
// provisioning (a reload or a restart), once that backlog has been read.
// The caller's update gives the inbox its subjects back; if it fails, the
// caller calls the returned resume.
func (s *Server) lowerShareSafely(ctx context.Context, js jetstream.JetStream, id, paused string, cfg *jetstream.StreamConfig) (resume func() error, err error) {
	resume = func() error { return nil }
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return resume, nil
	}
	if err != nil {
		return resume, err
	}
	cur := st.CachedInfo().Config
	if cur.MaxMsgsPerSubject > 0 && cfg.MaxMsgsPerSubject >= cur.MaxMsgsPerSubject {
		return resume, nil // not lowered
	}
	pausedCfg := cur
	pausedCfg.Subjects = []string{paused}
	if _, err := js.UpdateStream(ctx, pausedCfg); err != nil {
		return resume, fmt.Errorf("failed to pause the inbox to lower its per-sender share: %w", err)
	}
	// Give the inbox its subjects back as they were.
	resume = func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, err := js.UpdateStream(rctx, cur)
		if err != nil {
			s.log.Error("failed to resume an inbox paused to lower its per-sender share; the next reload or restart resumes it", "inbox", id, "err", err)
		}
		return err
	}
	counts, err := stillCounts(ctx, st)
	if err != nil {
		resume()
		return func() error { return nil }, err
	}
	if held := heldSenderMax(cfg.MaxMsgsPerSubject, counts); held != cfg.MaxMsgsPerSubject {
		s.log.Warn("a sender holds more of an inbox than its new share: the share is lowered only as far as that backlog for now, never by dropping messages",
			"inbox", id, "share", cfg.MaxMsgsPerSubject, "held", held)
		cfg.MaxMsgsPerSubject = held
	}
	return resume, nil
}

// stillCounts waits until paused stream st has stored what it had taken in
// (its last sequence stays the same over a short wait) and returns its
// per-sender counts.
func stillCounts(ctx context.Context, st jetstream.Stream) (map[string]uint64, error) {
	var last uint64
	for i := 0; ; i++ {
		info, err := st.Info(ctx)
		if err != nil {
			return nil, err
		}
		if i > 0 && info.State.LastSeq == last {
			return perSubjectCounts(ctx, st)
		}
		last = info.State.LastSeq
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// heldSenderMax returns the per-sender limit to apply to an inbox whose
// senders hold counts: want, unless a sender already holds more.
func heldSenderMax(want int64, counts map[string]uint64) int64 {
	held := want
	for _, n := range counts {
		held = max(held, int64(n))
	}
	return held
}
