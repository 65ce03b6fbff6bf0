package gateway

import (
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// fullItem is one record with its timeline, its body and what belongs to
// it, opened from the store.
func (g *Gateway) fullItem(rec *store.Record) (Item, error) {
	it, err := g.item(rec, true)
	if err != nil {
		return Item{}, err
	}
	b, err := g.body(rec)
	if err != nil {
		return Item{}, err
	}
	switch rec.Kind {
	case kindReferral:
		it.Referral = forView(b)
	case kindStatementRequest:
		it.StatementRequest = forView(b)
		if err := g.statementParts(rec, &it); err != nil {
			return Item{}, err
		}
	}
	if it.Attachments, err = g.recordFiles(rec, b); err != nil {
		return Item{}, err
	}
	return it, nil
}

// statementParts adds the consent record and the statement of a
// statement request: at the holding agency its own records, at the police
// the statement received and the consent it carries.
func (g *Gateway) statementParts(rec *store.Record, it *Item) error {
	if rec.Box == store.Inbox {
		cr, err := g.consentOf(rec)
		if err != nil {
			return err
		}
		if cr != nil {
			it.Consent = &ConsentView{Consent: cr.Consent, Notes: cr.Notes}
		}
	}
	id := rec.Related[relStatement]
	if id == "" {
		return nil
	}
	b, err := g.envelopeBody(id, rec.Box == store.Outbox)
	if err != nil {
		return err
	}
	sb, fe := body.ParseStatementBody(b)
	if len(fe) > 0 {
		return fmt.Errorf("stored statement %s does not parse: %s", id, fe[0].Code)
	}
	it.Statement = &sb.Statement
	if rec.Box == store.Outbox {
		it.Consent = &ConsentView{Consent: sb.Consent}
	}
	return nil
}

// body opens the stored envelope of a record.
func (g *Gateway) body(rec *store.Record) ([]byte, error) {
	return g.envelopeBody(rec.ID, rec.Box == store.Inbox)
}

// envelopeBody opens a stored envelope: one received is kept as received
// and opened with the age identity; one sent is read from this gateway's
// own copy, sealed at rest.
func (g *Gateway) envelopeBody(id string, received bool) ([]byte, error) {
	key := id
	if !received {
		key = selfCopy(id)
	}
	var env []byte
	if err := g.db.View(func(tx *store.Tx) (err error) { env, err = tx.Envelope(key); return err }); err != nil {
		return nil, fmt.Errorf("failed to load envelope %s: %w", id, err)
	}
	var b []byte
	var err error
	if received {
		_, b, err = g.opener.OpenStored(env)
	} else {
		b, err = g.keys.AtRest.Open(id, env)
	}
	if err != nil {
		return nil, fmt.Errorf("stored envelope %s does not open: %w", id, err)
	}
	return b, nil
}

// ReceiptView is a stored receipt with its verification result.
type ReceiptView struct {
	Event        string `json:"event"`
	At           string `json:"at"`
	By           string `json:"by"`
	To           string `json:"to"`
	Reason       string `json:"reason,omitempty"`
	EnvelopeID   string `json:"envelope_id"`
	EnvelopeHash string `json:"envelope_sha256"`
	KeyID        string `json:"key_id"`
	Verified     bool   `json:"verified"`
	Error        string `json:"error,omitempty"`
}

// Receipts returns the signed receipts of a referral, each verified against
// the directory.
func (g *Gateway) Receipts(p policy.Principal, id string) ([]ReceiptView, error) {
	return g.receipts(p, policy.ActionReferralReceipts, ActReferralReceipts, id)
}

// StatementRequestReceipts returns the signed receipts of a statement
// request and of its statement.
func (g *Gateway) StatementRequestReceipts(p policy.Principal, id string) ([]ReceiptView, error) {
	return g.receipts(p, policy.ActionStatementRequestRead, ActStatementRequestReceipts, id)
}

func (g *Gateway) receipts(p policy.Principal, a policy.Action, act store.Action, id string) ([]ReceiptView, error) {
	rec, err := g.authorize(p, a, id)
	if err != nil {
		return nil, err
	}
	if err := g.allowed(p, act, id, nil); err != nil {
		return nil, err
	}
	var raw [][]byte
	g.db.View(func(tx *store.Tx) error {
		raw = tx.Receipts(id)
		if s := rec.Related[relStatement]; s != "" {
			raw = append(raw, tx.Receipts(s)...)
		}
		return nil
	})
	dir := g.state().dir
	out := make([]ReceiptView, 0, len(raw))
	for _, b := range raw {
		r, err := crypto.VerifyReceipt(b, dir)
		v := ReceiptView{Event: r.Event, By: r.From, To: r.To, Reason: r.Reason, EnvelopeID: r.EnvelopeID,
			EnvelopeHash: r.HashHex(), KeyID: r.SignerKeyID, Verified: err == nil}
		if !r.At.IsZero() {
			v.At = r.At.UTC().Format(timeFormat)
		}
		if err != nil {
			v.Error = crypto.ReasonCode(err)
		}
		out = append(out, v)
	}
	return out, nil
}
