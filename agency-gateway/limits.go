package gateway

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
)

// Broker limits, as the sending gateway sees them. The broker refuses an
// envelope when the recipient's inbox, or this agency's share of it, is
// full (see package broker). The envelope then stays queued, its record
// stays `queued`, and the publish loop leaves that recipient alone for a
// while (doubling from limitBackoffMin to limitBackoffMax) before trying
// again: nothing is lost, and nothing is failed for a limit alone before
// its delivery deadline. The other recipients' envelopes go on as usual.
//
// The operator sees why: every refusal counts in
// rujukan_broker_limit_hits_total{agency,to,reason}; a warning is logged
// and an audit event (envelope.limit, object: the recipient) written at
// most once per recipient per limitAuditInterval, with the number of
// refusals since the last one (detail.hits), so a long refusal does not
// grow the audit log without bound.

// ActEnvelopeLimit is the audit action of refusals by the broker for a
// limit.
const ActEnvelopeLimit store.Action = "envelope.limit"

const (
	limitBackoffMin    = 250 * time.Millisecond
	limitBackoffMax    = 30 * time.Second
	limitAuditInterval = 5 * time.Minute
)

// LimitError is a Bus error for a publish the broker refused because of a
// limit. It matches ErrLimit.
type LimitError struct {
	// Reason says which limit: inbox-messages, inbox-bytes, sender-share,
	// broker-storage or broker-busy.
	Reason string
	// Err is the broker's answer.
	Err error
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("broker limit reached (%s): %v", e.Reason, e.Err)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

func (e *LimitError) Unwrap() error { return e.Err }

// limitReasons are the label values of the limit metric; anything else
// counts as "other".
var limitReasons = map[string]bool{"inbox-messages": true, "inbox-bytes": true, "sender-share": true,
	"broker-storage": true, "broker-busy": true}

// limitState is, per recipient, when to try again and what is still to be
// audited. It holds one entry per recipient ever refused (recipients are
// agencies of the directory).
type limitState struct {
	mu   sync.Mutex
	dest map[string]*limitDest
}

type limitDest struct {
	until     time.Time     // no publish to this recipient before
	backoff   time.Duration // the next wait
	lastAudit time.Time     // the last audit event
	pending   int           // refusals since the last audit event
}

// limitBlocked reports whether publishing to recipient to waits after a
// limit refusal.
func (g *Gateway) limitBlocked(to string, now time.Time) bool {
	g.limits.mu.Lock()
	defer g.limits.mu.Unlock()
	d := g.limits.dest[to]
	return d != nil && now.Before(d.until)
}

// limitWait returns how long the idle publish loop may sleep: d, or less
// if a recipient's wait after a limit refusal ends sooner.
func (g *Gateway) limitWait(d time.Duration) time.Duration {
	now := g.now()
	g.limits.mu.Lock()
	defer g.limits.mu.Unlock()
	for _, l := range g.limits.dest {
		if l.until.After(now) {
			d = min(d, max(l.until.Sub(now), retryMin))
		}
	}
	return d
}

// limitCleared notes that recipient to accepted an envelope: the next
// refusal waits limitBackoffMin again.
func (g *Gateway) limitCleared(to string) {
	g.limits.mu.Lock()
	defer g.limits.mu.Unlock()
	if d := g.limits.dest[to]; d != nil {
		d.until, d.backoff = time.Time{}, 0
	}
}

// limitHit records a refusal of envelope it for a limit: the metric, the
// wait before the next try, and (once per interval) a warning and an
// audit event.
func (g *Gateway) limitHit(it store.QueueItem, le *LimitError) {
	reason := le.Reason
	if !limitReasons[reason] {
		reason = "other"
	}
	g.metrics.limitHits.WithLabelValues(g.self, it.To, reason).Inc()
	now := g.now()
	g.limits.mu.Lock()
	if g.limits.dest == nil {
		g.limits.dest = map[string]*limitDest{}
	}
	d := g.limits.dest[it.To]
	if d == nil {
		d = &limitDest{}
		g.limits.dest[it.To] = d
	}
	if now.After(d.until) {
		// Concurrent refusals of one batch count once towards the wait.
		d.backoff = min(max(2*d.backoff, limitBackoffMin), limitBackoffMax)
		d.until = now.Add(d.backoff)
	}
	d.pending++
	audit := d.lastAudit.IsZero() || now.Sub(d.lastAudit) >= limitAuditInterval
	hits, wait := d.pending, d.backoff
	if audit {
		d.lastAudit, d.pending = now, 0
	}
	g.limits.mu.Unlock()
	if !audit {
		return
	}
	g.log.Warn("the broker refused an envelope: a limit of the recipient's inbox is reached; it stays queued and is sent again later",
		"to", it.To, "reason", reason, "envelope", it.ID, "refusals", hits, "retry_in", wait)
	err := g.db.Batch(func(tx *store.Tx) error {
		return tx.Audit(store.AuditEvent{Actor: g.self, Action: ActEnvelopeLimit, Object: it.To,
			Outcome: "queued", Reason: reason, Detail: map[string]string{
				"to": it.To, "envelope": it.ID, "kind": it.Kind, "hits": strconv.Itoa(hits),
				"interval": limitAuditInterval.String()}})
	})
	if err != nil {
		g.log.Error("failed to audit a broker limit", "to", it.To, "err", err)
	}
}
