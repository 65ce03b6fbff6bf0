package gateway

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/referral"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

func hashHex(env []byte) string {
	h := crypto.EnvelopeHash(env)
	return hex.EncodeToString(h[:])
}

// seal signs and encrypts body for agency to.
func (g *Gateway) seal(h crypto.Header, body []byte, to *crypto.Agency) ([]byte, error) {
	env, err := crypto.Seal(h, body, g.signer, to)
	if err != nil {
		return nil, fmt.Errorf("failed to seal %s %s: %w", h.Kind, h.ID, err)
	}
	return env, nil
}

// sealWithCopy seals body for to, and a second time for this agency, so the
// sender can read what it sent while the store keeps only ciphertext.
func (g *Gateway) sealWithCopy(h crypto.Header, body []byte, st *netState, to *crypto.Agency) (env, own []byte, err error) {
	if env, err = g.seal(h, body, to); err != nil {
		return nil, nil, err
	}
	return env, g.atRest.Seal(h.ID, body), nil
}

// open verifies and decrypts an incoming envelope. verified says whether
// the outer signature checked out, so a rejected receipt may go back.
func (g *Gateway) open(env []byte, now time.Time) (crypto.Header, []byte, bool, error) {
	h, body, err := g.opener.Open(env, now)
	if err != nil {
		return h, nil, crypto.OuterVerified(err), err
	}
	return h, body, true, nil
}

// receipt signs a receipt for envelope id, whose bytes hash to hash (hex),
// and seals it to the sender.
func (g *Gateway) receipt(st *netState, to *crypto.Agency, id, hash string, event, reason string, now time.Time) (crypto.Header, []byte, []byte, error) {
	var sum [32]byte
	b, err := hex.DecodeString(hash)
	if err != nil || len(b) != len(sum) {
		return crypto.Header{}, nil, nil, errors.New("envelope hash is not 32 bytes of hex")
	}
	copy(sum[:], b)
	signed, err := crypto.SignReceipt(crypto.Receipt{EnvelopeID: id, EnvelopeHash: sum, From: g.self, To: to.ID,
		Event: event, Reason: reason, At: now}, g.signer)
	if err != nil {
		return crypto.Header{}, nil, nil, fmt.Errorf("failed to sign receipt: %w", err)
	}
	h := crypto.Header{ID: crypto.NewID(), Kind: crypto.KindReceipt, From: g.self, To: to.ID,
		Created: now, Expires: now.Add(g.cfg.DeliveryDeadline)}
	env2, err := g.seal(h, signed, to)
	if err != nil {
		return crypto.Header{}, nil, nil, err
	}
	return h, env2, signed, nil
}

// checkConsent applies the consent rules to a referral being sent. It
// reports whether the referral goes as an audited override.
func checkConsent(p policy.Principal, r *referral.Referral, toKind string, now time.Time) (bool, error) {
	f := referralFacts(r, toKind)
	d, err := policy.CheckReferralConsent(p, f, now)
	return d.Override, err
}

// checkConsentReceived applies the same rules on the receiving side, at the
// time the referral was sealed. The receiver cannot see the sender's
// scopes, so an override is accepted when it carries a justification; the
// sending gateway checked the scope and audited it.
func checkConsentReceived(r *referral.Referral, selfKind string, created time.Time) error {
	f := referralFacts(r, selfKind)
	p := policy.Principal{Agency: "peer", Subject: "peer", Scopes: []string{policy.ScopeConsentOverride}}
	_, err := policy.CheckReferralConsent(p, f, created)
	return err
}

func referralFacts(r *referral.Referral, toKind string) policy.ReferralFacts {
	f := policy.ReferralFacts{ToKind: toKind, Priority: r.Priority,
		Age: policy.Age{Years: r.Person.Age, Range: r.Person.AgeRange}}
	if c := r.Consent; c != nil {
		pc := &policy.Consent{Given: c.Given, Purposes: c.Purposes, Method: c.Method, Witness: c.Witness,
			WitnessRole: c.WitnessRole, RecordedBy: c.RecordedBy, RecordedAt: c.RecordedAt}
		if !c.ExpiresAt.IsZero() {
			exp := c.ExpiresAt
			pc.ExpiresAt = &exp
		}
		if pc.RecordedBy == "" {
			pc.RecordedBy = "pending"
		}
		f.Consent = pc
	}
	if r.ConsentOverride != nil {
		f.OverrideJustification = r.ConsentOverride.Justification
	}
	return f
}

// localTransition checks a status change made at this gateway: the sender
// of a referral may withdraw it; its recipient moves it along.
func localTransition(rec *store.Record, to string) error {
	role := policy.RoleRecipient
	if rec.Box == store.Outbox {
		role = policy.RoleSender
	}
	return policy.Transition(policy.ReferralMachine, rec.Status, to, role)
}

// peerTransition checks a status change announced by the counterpart. The
// sender's copy may lag behind the recipient's (the delivered or read
// receipt can arrive after a status): a change by the recipient proves it
// has read the referral, so those states count as read.
func peerTransition(rec *store.Record, to string) error {
	from := rec.Status
	role := policy.RoleSender
	if rec.Box == store.Outbox {
		role = policy.RoleRecipient
		switch from {
		case StatusQueued, StatusSent, StatusDelivered:
			from = StatusRead
		}
	}
	return policy.Transition(policy.ReferralMachine, from, to, role)
}

// sealNote encrypts a staff note of a record's timeline for the store; an
// empty note stays empty.
func (g *Gateway) sealNote(recordID, note string) []byte {
	if note == "" {
		return nil
	}
	return g.atRest.Seal(recordID+"/note", []byte(note))
}

// openNote decrypts a note sealed by sealNote.
func (g *Gateway) openNote(recordID string, sealed []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	b, err := g.atRest.Open(recordID+"/note", sealed)
	return string(b), err
}
