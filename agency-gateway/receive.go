package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Receive loop tuning. The loop reads ahead of its workers: up to
// receiveQueue envelopes (receiveQueueBytes) are fetched and screened, and
// wait in per-sender queues served round-robin. The broker delivers each
// sender's envelopes through a consumer of its own (256 pending
// acknowledgements each), and the bus hands them out a sender at a time,
// so one sender's backlog holds up only its own deliveries; each envelope
// waits far less than its ack wait.
const (
	fetchBatch         = 64
	receiveConcurrency = 16
	receiveScreeners   = 4
	receiveQueue       = 256
	receiveQueueBytes  = 64 << 20
	transientRetry     = 2 * time.Second
)

// receiveLoop pulls from this agency's inbox. A broker message may be a
// bundle of up to maxBundleParts envelopes (bundle.go), each queued on its
// own: the queue's count may then go past receiveQueue by that factor for
// one fetch, while its byte bound, which charges a bundle whole until its
// last envelope leaves, holds. Each envelope is screened as
// it is fetched (screen: the checks that need neither decryption nor a
// write), so a flood of forged envelopes is refused at the speed of a
// signature check and never queues. What passes waits in its sender's
// queue; the workers take one envelope from each sender in turn, so one
// sender's backlog delays another's envelope by at most one envelope per
// sender with work queued.
//
// Urgent envelopes go first. A referral's priority is in its encrypted
// body (the broker never learns it), so the screeners also open what they
// pass (decryption and signature checks, no write) and the queue keeps
// urgent envelopes in a lane of their own, served before the others but
// never more than urgentRun in a row while others wait: a sender that
// marks everything urgent still cannot starve the rest.
func (g *Gateway) receiveLoop(ctx context.Context) {
	fctx, stopFlush := context.WithCancel(context.Background())
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		g.refusalLoop(fctx)
	}()
	q := newFairQueue(receiveQueue, receiveQueueBytes)
	var workers sync.WaitGroup
	for range receiveConcurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				it, ok := q.pop(ctx)
				if !ok {
					return
				}
				g.receive(ctx, it.m, it.in, it.start)
				g.inHand.Add(-1)
			}
		}()
	}
	// Screeners check what the fetcher pulls, in parallel with the next
	// pull; each fetched envelope holds its place in the queue's bounds
	// from the pull until it is refused or queued.
	screen := make(chan queued, fetchBatch)
	var screeners sync.WaitGroup
	for range receiveScreeners {
		screeners.Add(1)
		go func() {
			defer screeners.Done()
			for it := range screen {
				in, err := g.screen(it.m)
				if err == nil {
					err = g.open(it.m, in)
				}
				if err != nil {
					q.release(roomFreed(it.m))
					g.settle(ctx, it.m, in, err, true)
					g.observe(in, err, it.start)
					g.inHand.Add(-1)
					continue
				}
				it.in, it.urgent = in, urgent(in.Body)
				q.push(it)
			}
		}()
	}
	for ctx.Err() == nil {
		n := q.waitRoom(ctx)
		if n == 0 {
			continue
		}
		msgs, err := g.bus.Fetch(ctx, min(fetchBatch, n))
		if err != nil {
			if ctx.Err() == nil {
				wait(ctx, nil, retryMin)
			}
			continue
		}
		msgs = unbundle(msgs)
		if len(msgs) == 1 && g.inHand.Load() == 0 {
			// One envelope and nothing else in hand (a low rate): this
			// goroutine screens and handles it as a screener and a
			// worker would, without waking either. Whatever the broker
			// delivers meanwhile waits for the next fetch.
			g.inHand.Add(1)
			g.Receive(ctx, msgs[0])
			g.inHand.Add(-1)
			continue
		}
		start := time.Now()
		g.inHand.Add(int64(len(msgs)))
		for _, m := range msgs {
			q.reserve(roomTaken(m))
			screen <- queued{m: m, start: start}
		}
	}
	close(screen)
	screeners.Wait()
	// Envelopes still queued are not acked: the broker delivers them again.
	q.close()
	workers.Wait()
	stopFlush()
	<-flushed
}

// Receive handles one incoming envelope: screen it, open it, let its kind
// check it, store what it changes once (with its receipt queued) in one
// transaction, then settle it with the broker. A permanent failure is
// refused and terminated (see refusals.go for what a refusal records); an
// envelope that waits for another is kept aside; a transient failure is
// retried.
func (g *Gateway) Receive(ctx context.Context, m Msg) {
	start := time.Now()
	in, err := g.screen(m)
	if err != nil {
		g.settle(ctx, m, in, err, true)
		g.observe(in, err, start)
		return
	}
	g.receive(ctx, m, in, start)
}

// receive is Receive for an envelope that screen passed.
func (g *Gateway) receive(ctx context.Context, m Msg, in *Incoming, start time.Time) {
	var err error
	if in.Body == nil {
		err = g.open(m, in)
	}
	early := err != nil
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
			if len(in.Files) > 0 {
				if err := g.expectFiles(tx, in); err != nil {
					return err
				}
			}
			if m, ok := m.(*waitingMsg); ok {
				if err := tx.DeleteWaiting(m.from, m.id); err != nil {
					return err
				}
			}
			return tx.MarkSeen(in.Header.ID, in.Hash)
		})
	}
	g.settle(ctx, m, in, err, early)
	g.observe(in, err, start)
}

func (g *Gateway) observe(in *Incoming, err error, start time.Time) {
	g.metrics.handling.WithLabelValues(g.self, kindLabel(in.Header.Kind), resultOf(err)).Observe(time.Since(start).Seconds())
}

// screen makes every check of an incoming envelope that needs neither its
// plaintext nor a write: size and shape, the outer signature with the
// sender's key from the directory, the sender the broker authenticated,
// the sender's and its key's status, the recipient, the time window, the
// kind, the network rules as far as the two agencies' kinds decide them,
// and whether the id was seen before. in is never nil: its header is what
// the envelope claims when err != nil.
func (g *Gateway) screen(m Msg) (*Incoming, error) {
	st := g.state()
	in := &Incoming{Env: m.Data(), Now: g.now().UTC()}
	h, err := crypto.VerifyOuter(in.Env, st.dir)
	in.Header = h
	if err != nil {
		return in, reject(crypto.ReasonCode(err), err, false)
	}
	in.Hash = hashHex(in.Env)
	if h.From != m.From() {
		return in, reject(ReasonSenderMismatch, fmt.Errorf("envelope from %q arrived on the subject of %q", h.From, m.From()), true)
	}
	sender, ok := st.dir.Agency(h.From)
	if !ok { // VerifyOuter found it; a directory reload may have dropped it since
		return in, reject(crypto.ReasonUnknownSender, fmt.Errorf("agency %s is not in the directory", h.From), false)
	}
	// A retired key is still good until its not_after (crypto.Open checks
	// the same).
	if k, ok := sender.Key(crypto.UseSign, h.SenderKeyID); !ok || !k.AcceptableAt(in.Now) || sender.Status != crypto.StatusActive {
		return in, reject(crypto.ReasonSenderRevoked, fmt.Errorf("%w: %s key %s", crypto.ErrSenderRevoked, h.From, h.SenderKeyID), true)
	}
	skew := g.opener.ClockSkew
	switch {
	case h.To != g.self:
		return in, reject(crypto.ReasonNotForUs, fmt.Errorf("%w: addressed to %s", crypto.ErrNotForUs, h.To), true)
	case in.Now.Before(h.Created.Add(-skew)):
		return in, reject(crypto.ReasonNotYetValid, fmt.Errorf("%w: created %s", crypto.ErrNotYetValid, h.Created.Format(time.RFC3339)), true)
	case in.Now.After(h.Expires.Add(skew)):
		return in, reject(crypto.ReasonExpired, fmt.Errorf("%w: expired %s", crypto.ErrExpired, h.Expires.Format(time.RFC3339)), true)
	case h.Expires.Sub(h.Created) > crypto.MaxLifetime:
		return in, reject(crypto.ReasonLifetime, fmt.Errorf("%w: %s", crypto.ErrLifetime, h.Expires.Sub(h.Created)), true)
	}
	if _, err := g.kindOf(h.Kind); err != nil {
		return in, err
	}
	// The conditions of a rule (an open request, an existing counterpart)
	// are the kind's to check once the envelope is open; a kind that no
	// rule allows between the two agencies' kinds is refused now.
	facts := policy.Facts{FromAgency: h.From, ToAgency: g.self, OpenRequest: true, Counterpart: true}
	if err := st.rules.Allow(h.Kind, sender.Kind, st.self.Kind, facts); err != nil {
		return in, reject(policy.ReasonOf(err), err, true)
	}
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
		if _, again := m.(*waitingMsg); !again {
			// A copy of an envelope that waits here already: it keeps
			// its place, and costs no decryption.
			if w, ok := tx.Waiting(m.From(), h.ID); ok && hashHex(w.Envelope) == in.Hash {
				return errParked
			}
		}
		return nil
	})
	return in, err
}

// open decrypts an envelope that screen passed and verifies it in full
// (OpenVerified checks everything screen did again, against the same
// directory or a newer one, but the outer signature screen verified).
func (g *Gateway) open(m Msg, in *Incoming) error {
	h, body, err := g.opener.OpenVerified(in.Env, in.Now)
	in.Header = h
	if errors.Is(err, crypto.ErrUnknownThread) && crypto.OuterVerified(err) {
		// A status may overtake the referral whose thread it belongs to:
		// it waits for it, for a while (waiting.go).
		return fmt.Errorf("%w: %v", errNotYet, err)
	}
	if err != nil {
		return reject(crypto.ReasonCode(err), err, crypto.OuterVerified(err))
	}
	if h.From != m.From() {
		return reject(ReasonSenderMismatch, fmt.Errorf("envelope from %q arrived on the subject of %q", h.From, m.From()), true)
	}
	sender, ok := g.state().dir.Agency(h.From)
	if !ok {
		return reject(crypto.ReasonCode(crypto.ErrUnknownSender), fmt.Errorf("agency %s is not in the directory", h.From), false)
	}
	in.Body, in.Sender = body, sender
	return nil
}

func (g *Gateway) kindOf(name string) (Kind, error) {
	k, ok := g.kinds[name]
	if !ok || name == kindConsent {
		return nil, reject(ReasonKindUnsupported, fmt.Errorf("envelope kind %q is not handled here", name), true)
	}
	return k, nil
}

// settle acks, parks, terminates or naks an envelope by the outcome of
// Receive. early says it was refused before it was opened.
func (g *Gateway) settle(ctx context.Context, m Msg, in *Incoming, err error, early bool) {
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
			// ack's round trip to the broker. The receipt this commit
			// queued (the only envelope a receive queues) goes out from
			// here, as a sent envelope does from its request: no loop to
			// wake, no queue to read; the publish loop takes it over if
			// that fails.
			g.decided(in.outcomeRef, in.outcome)
			g.changed()
			g.pokeWaiting()
			if in.Receipt != nil && in.Receipt.item.Seq != 0 {
				g.publishNow(ctx, in.Receipt.item)
			}
		}
		if early {
			// A copy of what is stored or waiting here: no need to wait
			// for the broker (a copy it delivers again is told again).
			m.Term()
		} else {
			// What is committed is acked even while the gateway stops.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if aerr := m.AckSync(actx); aerr != nil {
				g.log.Warn("ack failed; the broker will redeliver", "envelope", in.Header.ID, "err", aerr)
			}
			cancel()
		}
		g.metricsEnvelope("in", in.Header.Kind, resultOf(err))
	case errors.As(err, &perm):
		g.refuseEnvelope(m, in, perm, early)
	default:
		g.log.Warn("failed to handle an envelope; will retry", "envelope", in.Header.ID, "err", err)
		m.Nak(transientRetry)
	}
}

// refuseEnvelope settles a refused envelope. One refused after it was
// opened (or one that waited) is recorded on its own, with its audit event
// and receipt, while its sender's budget for the interval lasts; any other
// is counted for the sender's next envelope.refused summary and costs no
// write. A counted envelope whose outer signature verified gets a signed
// rejected receipt while the budget lasts, written with the next flush.
func (g *Gateway) refuseEnvelope(m Msg, in *Incoming, p *permanent, early bool) {
	label, reason := g.senderLabel(m.From()), reasonLabel(p.reason)
	w, waiting := m.(*waitingMsg)
	if !early || waiting {
		if g.refusals.allowRecord(label, in.Now) {
			if err := g.rejectEnvelope(m, in, p); err != nil {
				// Not recorded: the broker delivers it again.
				g.log.Error("failed to record a rejected envelope; will retry", "err", err)
				m.Nak(transientRetry)
				return
			}
			m.Term()
			g.metricsEnvelope("in", in.Header.Kind, "rejected")
			return
		}
		if waiting {
			if err := g.db.Update(func(tx *store.Tx) error { return tx.DeleteWaiting(w.from, w.id) }); err != nil {
				g.log.Error("failed to drop a refused waiting envelope; will retry", "err", err)
				return
			}
		}
	}
	var r *sealed
	if early && p.verified && !waiting {
		if sender := g.receiptTo(m, in); sender != nil && g.refusals.allowRecord(label, in.Now) {
			var err error
			if r, err = g.receipt(sender, nil, in.Header.ID, in.Hash, crypto.EventRejected, p.reason, in.Now); err != nil {
				g.log.Error("failed to seal a rejected receipt", "err", err)
				r = nil
			}
		}
	}
	if g.refusals.count(label, reason, p.verified, in.Now, r) {
		g.log.Warn("refusing envelopes: counted, and summarised in the audit log", "from", label, "reason", reason,
			"verified", p.verified)
	}
	g.metrics.refused.WithLabelValues(g.self, label, reason).Inc()
	m.Term()
	g.metricsEnvelope("in", in.Header.Kind, "rejected")
}

// receiptTo returns the agency a rejected receipt for in goes to: its
// verified, active sender, as the broker authenticated it, unless in is a
// receipt itself (no loops).
func (g *Gateway) receiptTo(m Msg, in *Incoming) *crypto.Agency {
	h := in.Header
	if h.Kind == kindReceipt || h.From != m.From() || in.Hash == "" {
		return nil
	}
	sender, ok := g.state().dir.Agency(h.From)
	if !ok || sender.Status != crypto.StatusActive {
		return nil
	}
	return sender
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
	h := in.Header
	var r *sealed
	if p.verified {
		if sender := g.receiptTo(m, in); sender != nil {
			var err error
			if r, err = g.receipt(sender, nil, h.ID, in.Hash, crypto.EventRejected, p.reason, in.Now); err != nil {
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
	g.metrics.refused.WithLabelValues(g.self, g.senderLabel(m.From()), reasonLabel(p.reason)).Inc()
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
// and seals it to the sender: with the key of the envelope's thread when
// there is one, else to the sender's hybrid key.
func (g *Gateway) receipt(to *crypto.Agency, thread *crypto.ThreadKey, id, hash, event, reason string, now time.Time) (*sealed, error) {
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
	out := &Outgoing{Kind: kindReceipt, To: to, Body: signed, Thread: thread}
	s, err := g.seal(out, now)
	if err != nil {
		return nil, err
	}
	s.signed = signed
	s.item.Ref = ""
	return s, nil
}

// addDelivered queues the delivered receipt of a received envelope and
// keeps its signed copy under record id, unless the envelope lists files:
// then the receipt waits until they are all here (chunks.go).
func addDelivered(tx *store.Tx, id string, in *Incoming) error {
	if in.Receipt == nil {
		return nil
	}
	if err := queueReceipt(tx, in.Receipt); err != nil {
		return err
	}
	_, err := tx.AddReceipt(id, crypto.EventDelivered, in.Receipt.signed)
	return err
}

// queueReceipt stores a receipt envelope and its queue entry in tx.
func queueReceipt(tx *store.Tx, s *sealed) error {
	if err := tx.PutEnvelope(s.h.ID, s.env); err != nil {
		return err
	}
	seq, err := tx.Enqueue(s.item)
	s.item.Seq = seq
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
