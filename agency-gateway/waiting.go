package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
)

// Waiting envelopes: a status may arrive before the referral it is about
// (they travel separately). Such an envelope is kept in the store and
// acked at the broker, so it never holds one of the inbox consumer's
// pending slots, and tried again when a record arrives and every
// waitRetry. After waitTries times waitRetry (two minutes) it is refused
// with a signed rejected receipt. One sender may keep at most waitPerSender envelopes waiting;
// more are refused at once.
const (
	waitRetry     = 10 * time.Second
	waitTries     = 12
	waitPerSender = 64
	waitBatch     = 1024
)

// ReasonWaitedTooLong and ReasonTooManyWaiting are the rejection reasons of
// waiting envelopes.
const (
	ReasonWaitedTooLong  = "reference-unknown"
	ReasonTooManyWaiting = "too-many-waiting"
)

// park keeps an envelope that waits for another. For an envelope already
// waiting it counts the try and, after the last one, refuses it.
func (g *Gateway) park(m Msg, in *Incoming, cause error) error {
	if w, ok := m.(*waitingMsg); ok {
		if in.Now.Sub(w.since) >= time.Duration(waitTries)*g.waitRetry {
			return refuse(ReasonWaitedTooLong, cause)
		}
		return errParked
	}
	// A copy of an envelope already waiting keeps its place (and its
	// clock), and a sender with its share waiting is refused, without a
	// write.
	already, full := false, false
	if err := g.db.View(func(tx *store.Tx) error {
		w, ok := tx.Waiting(m.From(), in.Header.ID)
		already = ok && hashHex(w.Envelope) == in.Hash
		full = !ok && tx.WaitingFrom(m.From()) >= waitPerSender
		return nil
	}); err != nil {
		return err
	}
	switch {
	case already:
		return errParked
	case full:
		return refuse(ReasonTooManyWaiting, fmt.Errorf("%s already has %d envelopes waiting here: %w", m.From(), waitPerSender, cause))
	}
	err := g.db.Update(func(tx *store.Tx) error {
		if tx.WaitingFrom(m.From()) >= waitPerSender {
			full = true
			return nil
		}
		since := in.Now
		if w, ok := tx.Waiting(m.From(), in.Header.ID); ok {
			since = w.Since // a copy does not restart its clock
		}
		g.metrics.waiting.WithLabelValues(g.self, m.From()).Inc()
		return tx.PutWaiting(in.Header.ID, store.Waiting{From: m.From(), Envelope: in.Env, Since: since})
	})
	switch {
	case err != nil:
		return err
	case full:
		return refuse(ReasonTooManyWaiting, fmt.Errorf("%s already has %d envelopes waiting here: %w", m.From(), waitPerSender, cause))
	}
	g.log.Info("an envelope waits for another", "envelope", in.Header.ID, "from", m.From())
	return errParked
}

// waitingLoop tries waiting envelopes again.
func (g *Gateway) waitingLoop(ctx context.Context) {
	var after []byte // where the next scan goes on: every sender's turn comes
	for ctx.Err() == nil {
		var all []store.WaitingEntry
		err := g.db.View(func(tx *store.Tx) (err error) {
			all, after, err = tx.AllWaiting(after, waitBatch)
			return err
		})
		if err != nil {
			g.log.Error("failed to read waiting envelopes", "err", err)
			after = nil
		}
		for _, w := range all {
			if ctx.Err() != nil {
				return
			}
			g.Receive(ctx, &waitingMsg{id: w.ID, from: w.From, data: w.Envelope, since: w.Since, tries: w.Tries})
		}
		// A scan opens every waiting envelope again: at most one a second
		// (or one per waitRetry, when shorter), however often records
		// arrive, so a sender's waiting envelopes cost bounded work.
		wait(ctx, nil, min(time.Second, g.waitRetry))
		wait(ctx, g.recheck, g.waitRetry)
	}
}

// waitingMsg is a waiting envelope fed to Receive again. Settling it only
// changes the store: Receive deletes it when it is applied or refused.
type waitingMsg struct {
	id, from string
	data     []byte
	since    time.Time
	tries    int
}

func (w *waitingMsg) Data() []byte                      { return w.data }
func (w *waitingMsg) From() string                      { return w.from }
func (w *waitingMsg) Delivered() int                    { return w.tries + 1 }
func (w *waitingMsg) AckSync(ctx context.Context) error { return nil }
func (w *waitingMsg) Nak(time.Duration) error           { return nil }
func (w *waitingMsg) Term() error                       { return nil }
