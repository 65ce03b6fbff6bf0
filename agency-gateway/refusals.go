package gateway

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
)

// Refused envelopes are counted, not recorded one by one. Any member agency
// can publish to this agency's inbox with its own keys, so what a refusal
// costs here must not grow with what a sender chooses to send:
//
//   - An envelope refused before it is decrypted (malformed, too large, a
//     bad outer signature, an unknown or revoked sender, not addressed
//     here, outside its time window, a kind the network rules never allow
//     from the sender's kind, a replayed id), or by decryption itself,
//     costs no write: it is counted in memory and terminated at the
//     broker. A sender whose outer signature verified gets a signed
//     rejected receipt, written with the next flush.
//   - An envelope refused after it is opened (its body, the rules of its
//     kind, a reference that never arrived) is audited on its own with its
//     receipt, as before; beyond the budget it is counted only.
//
// The budget: refusalRecords refusals per sender per refusalInterval may
// cost a write (an event of their own, or a receipt); the rest are
// counted only. Every refusal counts in
// rujukan_envelopes_refused_total{sender,reason}. Those not audited on
// their own are written as one envelope.refused event per sender per
// refusalInterval (detail: refused.<reason> counts, refused, unverified,
// receipts, since, until); the first after a quiet interval is written at
// the next flush (within refusalFlush) and logged at warn, so an operator
// always finds a trace, and what is left is written when the gateway
// stops. Sender labels and keys are agencies of the directory or
// "unknown", reasons the known codes, so the counts stay bounded.
const (
	refusalInterval = 10 * time.Second
	refusalFlush    = time.Second
	refusalRecords  = 8
)

// ActEnvelopesRefused is the audit action of the summary of a sender's
// refused envelopes over an interval.
const ActEnvelopesRefused store.Action = "envelope.refused"

// refusalLog counts refusals per sender and reason between flushes. The
// zero value is ready to use. Its maps are keyed by senderLabel (agencies
// of the directory, or "unknown") and by reasonLabel (known reason codes),
// so their size is bounded by the directory, not by what peers send.
type refusalLog struct {
	mu      sync.Mutex
	senders map[string]*senderRefusals
}

// senderRefusals is one sender's refusals in the current interval.
type senderRefusals struct {
	window    time.Time // start of the interval the budget counts in
	records   int       // refusals recorded one by one (or receipts queued) in it
	counts    map[string]int
	first     time.Time // first refusal counted since the last summary
	last      time.Time
	summaryAt time.Time // when the last summary event was written
	receipts  []*sealed // rejected receipts waiting for the next flush
	sent      int       // receipts queued since the last summary
	forged    int       // refusals whose outer signature did not verify
}

func (r *refusalLog) sender(label string, now time.Time) *senderRefusals {
	if r.senders == nil {
		r.senders = map[string]*senderRefusals{}
	}
	s := r.senders[label]
	if s == nil {
		s = &senderRefusals{counts: map[string]int{}}
		r.senders[label] = s
	}
	if now.Sub(s.window) >= refusalInterval || now.Before(s.window) {
		s.window, s.records = now, 0
	}
	return s
}

// allowRecord takes one of the sender's per-interval refusals that may
// cost a write (an audit event of its own, or a receipt).
func (r *refusalLog) allowRecord(label string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sender(label, now)
	if s.records >= refusalRecords {
		return false
	}
	s.records++
	return true
}

// count adds one refusal that is not audited on its own, and a receipt to
// write with the next flush (nil for none). It reports whether this is the
// sender's first refusal since its last summary.
func (r *refusalLog) count(label, reason string, verified bool, now time.Time, receipt *sealed) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sender(label, now)
	first := len(s.counts) == 0
	if first {
		s.first = now
	}
	s.counts[reason]++
	if !verified {
		s.forged++
	}
	s.last = now
	if receipt != nil {
		s.receipts = append(s.receipts, receipt)
		s.sent++
	}
	return first
}

// refusalSummary is what one flush writes for one sender.
type refusalSummary struct {
	sender      string
	counts      map[string]int
	first, last time.Time
	receipts    int
	forged      int
}

// take removes what is due: every queued receipt, and the counts of each
// sender whose last summary is at least refusalInterval old (all of them
// when final is set).
func (r *refusalLog) take(now time.Time, final bool) (sums []refusalSummary, receipts []*sealed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, label := range slices.Sorted(maps.Keys(r.senders)) {
		s := r.senders[label]
		receipts = append(receipts, s.receipts...)
		s.receipts = nil
		if len(s.counts) == 0 || (!final && now.Sub(s.summaryAt) < refusalInterval && !now.Before(s.summaryAt)) {
			continue
		}
		sums = append(sums, refusalSummary{sender: label, counts: s.counts, first: s.first, last: s.last,
			receipts: s.sent, forged: s.forged})
		s.counts, s.sent, s.forged, s.summaryAt = map[string]int{}, 0, 0, now
	}
	return sums, receipts
}

// restore puts back what a failed flush took, for the next one.
func (r *refusalLog) restore(sums []refusalSummary, receipts []*sealed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, sum := range sums {
		s := r.senders[sum.sender]
		for reason, n := range sum.counts {
			s.counts[reason] += n
		}
		s.sent += sum.receipts
		s.forged += sum.forged
		if s.first.IsZero() || sum.first.Before(s.first) {
			s.first = sum.first
		}
		if sum.last.After(s.last) {
			s.last = sum.last
		}
		s.summaryAt = time.Time{}
	}
	for _, rc := range receipts {
		if s := r.senders[senderLabelOf(rc)]; s != nil {
			s.receipts = append(s.receipts, rc)
		}
	}
}

func senderLabelOf(s *sealed) string { return s.h.To }

// flushRefusals writes the summaries and receipts that are due, in one
// transaction.
func (g *Gateway) flushRefusals(final bool) {
	now := g.now().UTC()
	sums, receipts := g.refusals.take(now, final)
	if len(sums) == 0 && len(receipts) == 0 {
		return
	}
	err := g.db.Update(func(tx *store.Tx) error {
		for _, r := range receipts {
			if err := queueReceipt(tx, r); err != nil {
				return err
			}
		}
		for _, s := range sums {
			detail := map[string]string{"since": s.first.Format(time.RFC3339Nano), "until": s.last.Format(time.RFC3339Nano)}
			total := 0
			for reason, n := range s.counts {
				detail["refused."+reason] = strconv.Itoa(n)
				total += n
			}
			detail["refused"] = strconv.Itoa(total)
			if s.receipts > 0 {
				detail["receipts"] = strconv.Itoa(s.receipts)
			}
			if s.forged > 0 {
				detail["unverified"] = strconv.Itoa(s.forged)
			}
			err := tx.Audit(store.AuditEvent{At: now, Actor: peerActor(s.sender), Action: ActEnvelopesRefused,
				Outcome: "rejected", Detail: detail})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if !final {
			g.refusals.restore(sums, receipts)
		}
		g.log.Error("failed to record refused envelopes; will retry", "err", err)
		return
	}
	for _, s := range sums {
		total := 0
		for _, n := range s.counts {
			total += n
		}
		g.log.Warn("refused envelopes", "from", s.sender, "count", total, "reasons", len(s.counts), "receipts", s.receipts)
	}
	if len(receipts) > 0 {
		g.poke()
	}
}

// refusalLoop flushes counted refusals every refusalFlush, and once more
// when ctx ends.
func (g *Gateway) refusalLoop(ctx context.Context) {
	t := time.NewTicker(refusalFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.flushRefusals(true)
			return
		case <-t.C:
			g.flushRefusals(false)
		}
	}
}

// senderLabel is the sender of a refused envelope as metrics and counts
// name it: an agency of the directory, or "unknown".
func (g *Gateway) senderLabel(from string) string {
	if _, ok := g.state().dir.Agency(from); ok {
		return from
	}
	return "unknown"
}

// reasonLabel keeps reason labels and count keys to the known codes.
func reasonLabel(reason string) string {
	if knownReason(reason) {
		return reason
	}
	return "other"
}
