package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Receive loop tuning.
const (
	fetchBatch         = 64
	receiveConcurrency = 16
	transientRetry     = 2 * time.Second
)

// receiveLoop pulls from this agency's inbox and receives each envelope.
func (g *Gateway) receiveLoop(ctx context.Context) {
	sem := make(chan struct{}, receiveConcurrency)
	for ctx.Err() == nil {
		msgs, err := g.bus.Fetch(ctx, fetchBatch)
		if err != nil {
			if ctx.Err() == nil {
				wait(ctx, nil, retryMin)
			}
			continue
		}
		for _, m := range msgs {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				g.Receive(ctx, m)
			}()
		}
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
}

// Receive handles one incoming envelope: verify and open it, let its kind
// check it, store what it changes once (with its receipt queued) in one
// transaction, then settle it with the broker. A permanent failure is
// audited, answered with a signed rejected receipt when the sender is
// verified, and terminated; an envelope that waits for another is kept
// aside; a transient failure is retried.
func (g *Gateway) Receive(ctx context.Context, m Msg) {
	start := time.Now()
	in, err := g.open(m)
	var k Kind
	if err == nil {
		if k, err = g.kindOf(in.Header.Kind); err == nil {
			err = k.Check(g, in)
		}
	}
	if err == nil {
		err = g.db.Batch(func(tx *store.Tx) error {
			in.outcome = ""
			if err := checkSeen(tx, in.Header.ID, in.Hash); err != nil {
				return err
			}
			if err := k.Apply(g, tx, in); err != nil {
				return err
			}
			if m, ok := m.(*waitingMsg); ok {
				if err := tx.DeleteWaiting(m.from, m.id); err != nil {
					return err
				}
			}
			return tx.MarkSeen(in.Header.ID, in.Hash)
		})
	}
	g.settle(ctx, m, in, err)
	g.metrics.handling.WithLabelValues(g.self, kindLabel(in.Header.Kind), resultOf(err)).Observe(time.Since(start).Seconds())
}

// open verifies and decrypts an envelope and checks it came from the agency
// the broker authenticated. in is never nil: its header is what the
// envelope claims when err != nil.
func (g *Gateway) open(m Msg) (*Incoming, error) {
	in := &Incoming{Env: m.Data(), Now: g.now().UTC()}
	in.Hash = hashHex(in.Env)
	h, body, err := g.opener.Open(in.Env, in.Now)
	in.Header = h
	if err != nil {
		return in, reject(crypto.ReasonCode(err), err, crypto.OuterVerified(err))
	}
	in.Body = body
	if h.From != m.From() {
		return in, reject(ReasonSenderMismatch, fmt.Errorf("envelope from %q arrived on the subject of %q", h.From, m.From()), true)
	}
	sender, ok := g.state().dir.Agency(h.From)
	if !ok {
		return in, reject(crypto.ReasonCode(crypto.ErrUnknownSender), fmt.Errorf("agency %s is not in the directory", h.From), false)
	}
	in.Sender = sender
	// A redelivery, a replay or a reused id is told before any further
	// work; the store transaction checks again.
	err = g.db.View(func(tx *store.Tx) error {
		if err := checkSeen(tx, h.ID, in.Hash); err != nil {
			return err
		}
		if tx.Exists(h.ID) {
			// Ids are random; a peer reusing one this gateway already
			// holds (say, of a referral it received from us) is forging.
			return refuse(ReasonIDCollision, fmt.Errorf("envelope id %s is already in use here", h.ID))
		}
		return nil
	})
	if err != nil {
		return in, err
	}
	return in, nil
}

func (g *Gateway) kindOf(name string) (Kind, error) {
	k, ok := g.kinds[name]
	if !ok || name == kindConsent {
		return nil, reject(ReasonKindUnsupported, fmt.Errorf("envelope kind %q is not handled here", name), true)
	}
	return k, nil
}

// settle acks, parks, terminates or naks an envelope by the outcome of
// Receive.
func (g *Gateway) settle(ctx context.Context, m Msg, in *Incoming, err error) {
	var perm *permanent
	if errors.Is(err, errNotYet) {
		err = g.park(m, in, err)
	}
	if w, ok := m.(*waitingMsg); ok && errors.Is(err, errDuplicate) {
		// Applied meanwhile by a copy the broker delivered again.
		if derr := g.db.Update(func(tx *store.Tx) error { return tx.DeleteWaiting(w.from, w.id) }); derr != nil {
			err = derr
		}
	}
	switch {
	case err == nil || errors.Is(err, errDuplicate) || errors.Is(err, errParked):
		if err == nil {
			// Committed: tell the outcome and wake the loops before the
			// ack's round trip to the broker.
			g.decided(in.outcomeRef, in.outcome)
			g.changed()
			g.poke()
			g.pokeWaiting()
		}
		if aerr := m.AckSync(ctx); aerr != nil {
			g.log.Warn("ack failed; the broker will redeliver", "envelope", in.Header.ID, "err", aerr)
		}
		g.metricsEnvelope("in", in.Header.Kind, resultOf(err))
	case errors.As(err, &perm):
		if rerr := g.rejectEnvelope(m, in, perm); rerr != nil {
			// Not recorded: the broker delivers it again.
			g.log.Error("failed to record a rejected envelope; will retry", "err", rerr)
			m.Nak(transientRetry)
			return
		}
		m.Term()
		g.metricsEnvelope("in", in.Header.Kind, "rejected")
	default:
		g.log.Warn("failed to handle an envelope; will retry", "envelope", in.Header.ID, "err", err)
		m.Nak(transientRetry)
	}
}

func resultOf(err error) string {
	var p *permanent
	switch {
	case err == nil:
		return "stored"
	case errors.Is(err, errDuplicate):
		return "duplicate"
	case errors.Is(err, errParked), errors.Is(err, errNotYet):
		return "waiting"
	case errors.As(err, &p):
		return "rejected"
	}
	return "retry"
}

// rejectEnvelope audits a refused envelope and, when its sender is
// verified and it is not itself a receipt, queues a signed rejected
// receipt to the sender. The audit event names the sender the broker
// authenticated, and the sender the envelope claims beside it.
func (g *Gateway) rejectEnvelope(m Msg, in *Incoming, p *permanent) error {
	st := g.state()
	h := in.Header
	var r *sealed
	if p.verified && h.Kind != kindReceipt {
		if sender, ok := st.dir.Agency(h.From); ok && sender.Status == crypto.StatusActive && sender.ID == m.From() {
			var err error
			if r, err = g.receipt(sender, h.ID, in.Hash, crypto.EventRejected, p.reason, in.Now); err != nil {
				return fmt.Errorf("failed to seal a rejected receipt: %w", err)
			}
		}
	}
	detail := map[string]string{"kind": kindLabel(h.Kind), "envelope_sha256": in.Hash}
	object := ""
	if p.verified {
		object = h.ID
		if h.From != m.From() {
			detail["claimed_from"] = h.From
		}
	} else {
		detail["verified"] = "false"
	}
	quiet := false
	err := g.db.Update(func(tx *store.Tx) error {
		if p.verified && tx.Seen(h.ID) == refusedMark+in.Hash {
			quiet = true // a copy refused meanwhile by another worker
			return nil
		}
		if r != nil {
			if err := queueReceipt(tx, r); err != nil {
				return err
			}
		}
		// A verified envelope refused once is refused quietly after: its
		// copies cost no audit event, receipt or fsync of their own.
		if p.verified && tx.Seen(h.ID) == "" && !tx.Exists(h.ID) {
			if err := tx.MarkSeen(h.ID, refusedMark+in.Hash); err != nil {
				return err
			}
		}
		if w, ok := m.(*waitingMsg); ok {
			if err := tx.DeleteWaiting(w.from, w.id); err != nil {
				return err
			}
		}
		return tx.Audit(store.AuditEvent{At: in.Now, Actor: peerActor(m.From()), Action: ActEnvelopeReject,
			Object: object, Outcome: "rejected", Reason: p.reason, Detail: detail})
	})
	if err != nil {
		return fmt.Errorf("failed to audit a rejected envelope: %w", err)
	}
	if quiet {
		return nil
	}
	g.metrics.refused.WithLabelValues(g.self, m.From(), p.reason).Inc()
	g.log.Warn("rejected an envelope", "envelope", object, "from", m.From(), "reason", p.reason, "err", p.err)
	if r != nil {
		g.poke()
	}
	return nil
}

// peerActor names an agency as the actor of an audit event.
func peerActor(agency string) string {
	if agency == "" {
		return "peer:unknown"
	}
	return "peer:" + agency
}

// refusedMark prefixes the hash of a refused envelope in the seen set.
const refusedMark = "refused:"

// checkSeen tells a redelivery of a stored envelope (same bytes) from a
// replay (same id, other bytes).
func checkSeen(tx *store.Tx, id, hash string) error {
	switch seen := tx.Seen(id); {
	case seen == "":
		return nil
	case seen == hash, seen == refusedMark+hash:
		return errDuplicate
	default:
		return reject(ReasonReplay, fmt.Errorf("envelope id %s was already used", id), true)
	}
}

// receipt signs a receipt for envelope id, whose bytes hash to hash (hex),
// and seals it to the sender.
func (g *Gateway) receipt(to *crypto.Agency, id, hash, event, reason string, now time.Time) (*sealed, error) {
	var sum [32]byte
	b, err := hex.DecodeString(hash)
	if err != nil || len(b) != len(sum) {
		return nil, errors.New("envelope hash is not 32 bytes of hex")
	}
	copy(sum[:], b)
	signed, err := crypto.SignReceipt(crypto.Receipt{EnvelopeID: id, EnvelopeHash: sum, From: g.self, To: to.ID,
		Event: event, Reason: reason, At: now}, g.keys.Signer)
	if err != nil {
		return nil, fmt.Errorf("failed to sign receipt: %w", err)
	}
	out := &Outgoing{Kind: kindReceipt, To: to, Body: signed}
	s, err := g.seal(out, now)
	if err != nil {
		return nil, err
	}
	s.own, s.signed = nil, signed
	s.item.Ref = ""
	return s, nil
}

// queueReceipt stores a receipt envelope and its queue entry in tx.
func queueReceipt(tx *store.Tx, s *sealed) error {
	if err := tx.PutEnvelope(s.h.ID, s.env); err != nil {
		return err
	}
	_, err := tx.Enqueue(s.item)
	return err
}

// allowFrom applies the network rules to an envelope of kind from the
// verified sender of in.
func (g *Gateway) allowFrom(in *Incoming, kind string, facts policy.Facts) error {
	st := g.state()
	facts.FromAgency, facts.ToAgency = in.Sender.ID, g.self
	if err := st.rules.Allow(kind, in.Sender.Kind, st.self.Kind, facts); err != nil {
		return reject(policy.ReasonOf(err), err, true)
	}
	return nil
}

// decided reports a record's delivery outcome, once it is committed.
func (g *Gateway) decided(id, outcome string) {
	if outcome == "" {
		return
	}
	g.metrics.outcomes.WithLabelValues(g.self, outcome).Inc()
	if g.onOutcome != nil {
		g.onOutcome(id, outcome)
	}
}
