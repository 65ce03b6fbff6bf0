package gateway

import (
	"encoding/json"
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
)

// consentKind records the victim's consent decision on a statement request
// received (POST /v1/statement-requests/{id}/consent), at the agency that
// was asked. The whole record (method, witness, notes, the person's age)
// stays here, sealed at rest; the police are told only consent-given or
// consent-refused, in a status envelope. Consent given must cover a
// statement and follow the rule for minors, or it is refused here, before
// anyone relies on it.
type consentKind struct{}

func (consentKind) Name() string { return kindConsent }

// consentRecord is what the holding agency keeps of a consent decision.
type consentRecord struct {
	Consent policy.Consent `json:"consent"`
	Person  body.AgeInfo   `json:"person"`
	Notes   string         `json:"notes,omitempty"`
}

const (
	relConsent   = "consent"
	relStatement = "statement"
)

func (consentKind) Prepare(g *Gateway, d Draft) (*Outgoing, error) {
	cd, fe := body.ParseConsent(d.Body)
	if err := fieldErrors(fe); err != nil {
		return nil, err
	}
	rec := d.Record
	if rec.Box != store.Inbox {
		return nil, &policy.Error{Reason: policy.ReasonNotParty, Detail: "consent is recorded by the agency the request was sent to"}
	}
	if !policy.RequestOpen(rec.Status, rec.Due, d.Now) {
		return nil, &policy.Error{Reason: policy.ReasonRequestExpired, Detail: "the statement request is no longer open"}
	}
	age, err := g.personAge(rec, cd.Person)
	if err != nil {
		return nil, err
	}
	by := actorOf(g.self, d.Principal)
	cr := consentRecord{Person: age, Notes: cd.Notes, Consent: policy.Consent{Given: cd.Given, Purposes: cd.Purposes,
		Method: cd.Method, Witness: cd.Witness, WitnessRole: cd.WitnessRole, RecordedBy: by, RecordedAt: d.Now}}
	if err := cr.Consent.Validate(d.Now); err != nil {
		return nil, err
	}
	to := policy.SRConsentRefused
	if cd.Given {
		to = policy.SRConsentGiven
		f := statementFacts(rec, g.self, cr)
		f.RequestState = policy.SRConsentGiven // as this decision makes it
		if err := policy.CheckStatement(f, d.Now); err != nil {
			return nil, err
		}
	}
	sealedRec, err := json.Marshal(cr)
	if err != nil {
		return nil, err
	}
	key := rec.ID + ".consent"
	c := &Change{To: to, Role: policy.RoleRecipient, By: by, At: d.Now, Action: ActConsentRecord,
		Detail: map[string]string{"method": cr.Consent.Method, "witness_role": cr.Consent.WitnessRole}}
	out, err := statusOut(g, rec, c, "", "")
	if err != nil {
		return nil, err
	}
	out.Store = func(tx *store.Tx, rec *store.Record) error {
		if rec.Related == nil {
			rec.Related = map[string]string{}
		}
		rec.Related[relConsent] = key
		return tx.PutEnvelope(key, g.keys.AtRest.Seal(key, sealedRec))
	}
	return out, nil
}

func (consentKind) Check(*Gateway, *Incoming) error { return errNotReceived }

func (consentKind) Apply(*Gateway, *store.Tx, *Incoming) error { return errNotReceived }

var errNotReceived = refuse(ReasonKindUnsupported, fmt.Errorf("consent decisions travel as status envelopes"))

// personAge is what the holding agency knows of the person's age: given
// with the consent, or from the referral the request names when this
// gateway holds it.
func (g *Gateway) personAge(rec *store.Record, given *body.AgeInfo) (body.AgeInfo, error) {
	if given != nil {
		return *given, nil
	}
	b, err := g.body(rec)
	if err != nil {
		return body.AgeInfo{}, err
	}
	var sr body.StatementRequest
	if err := json.Unmarshal(b, &sr); err != nil {
		return body.AgeInfo{}, err
	}
	if sr.ReferralID != "" {
		var ref *store.Record
		g.db.View(func(tx *store.Tx) error { ref, _ = tx.Record(sr.ReferralID); return nil })
		if ref != nil && ref.Kind == kindReferral {
			rb, err := g.body(ref)
			if err != nil {
				return body.AgeInfo{}, err
			}
			r, fe := body.ParseReferralReceived(rb)
			if len(fe) == 0 {
				return body.AgeInfo{Age: r.Person.Age, AgeRange: r.Person.AgeRange}, nil
			}
		}
	}
	return body.AgeInfo{}, invalid("/person", "required",
		"the person's age or age range is needed: the request is not linked to a referral this agency holds")
}

// consentOf opens the consent record kept for a statement request, or nil.
func (g *Gateway) consentOf(rec *store.Record) (*consentRecord, error) {
	key := rec.Related[relConsent]
	if key == "" {
		return nil, nil
	}
	var sealed []byte
	if err := g.db.View(func(tx *store.Tx) (err error) { sealed, err = tx.Envelope(key); return err }); err != nil {
		return nil, err
	}
	b, err := g.keys.AtRest.Open(key, sealed)
	if err != nil {
		return nil, fmt.Errorf("consent record of %s does not open: %w", rec.ID, err)
	}
	var cr consentRecord
	return &cr, json.Unmarshal(b, &cr)
}

// statementFacts are the facts of a statement from this (holding) agency
// answering rec, with consent cr.
func statementFacts(rec *store.Record, self string, cr consentRecord) policy.StatementFacts {
	c := cr.Consent
	return policy.StatementFacts{RequestState: rec.Status, RequestDue: rec.Due, RequestFrom: rec.From, RequestTo: rec.To,
		From: self, To: rec.From, Age: policy.Age{Years: cr.Person.Age, Range: cr.Person.AgeRange}, Consent: &c}
}
