package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// statementKind is the holding agency's answer to a statement request
// (POST /v1/statement-requests/{id}/response): a statement, or a decline
// with a reason. A statement leaves only in answer to an open request,
// with consent recorded that covers it (policy.CheckStatement), and
// carries that consent record so the police can show the legal basis. A
// decline is always allowed and travels as a status envelope.
//
// The police gateway accepts a statement only in answer to its own open
// request from the agency it asked, with the same rules checked again on
// the consent the statement carries; anything else is refused with a
// signed rejected receipt. Audit events carry the statement's hash, never
// its text.
type statementKind struct{}

func (statementKind) Name() string { return kindStatement }

func (statementKind) Prepare(g *Gateway, d Draft) (*Outgoing, error) {
	resp, fe := body.ParseResponse(d.Body)
	if err := fieldErrors(fe); err != nil {
		return nil, err
	}
	rec := d.Record
	if rec.Box != store.Inbox {
		return nil, &policy.Error{Reason: policy.ReasonNotParty, Detail: "only the agency the request was sent to may answer it"}
	}
	by := actorOf(g.self, d.Principal)
	if !policy.RequestOpen(rec.Status, rec.Due, d.Now) {
		return nil, &policy.Error{Reason: policy.ReasonRequestExpired, Detail: "the statement request is no longer open"}
	}
	if dec := resp.Decline; dec != nil {
		c := &Change{To: policy.SRDeclined, Role: policy.RoleRecipient, By: by, At: d.Now, Reason: dec.Reason,
			Note: dec.Detail, Action: ActStatementDecline}
		return statusOut(g, rec, c, dec.Reason, dec.Detail)
	}
	cr, err := g.consentOf(rec)
	if err != nil {
		return nil, err
	}
	if cr == nil {
		return nil, &policy.Error{Reason: policy.ReasonConsentMissing, Detail: "no consent recorded for this request"}
	}
	if err := policy.CheckStatement(statementFacts(rec, g.self, *cr), d.Now); err != nil {
		return nil, err
	}
	// The witness's name stays here (it may be a family name that points
	// to the person); the police learn that there was one, and its role.
	carried := cr.Consent
	if carried.Witness != "" {
		carried.Witness = witnessWithheld
	}
	files, err := g.attachFiles(d, kindStatement, resp.Attachments)
	if err != nil {
		return nil, err
	}
	sb := body.StatementBody{Ref: rec.ID, Statement: *resp.Statement, Consent: carried, Person: cr.Person, Attachments: files}
	plain, err := json.Marshal(sb)
	if err != nil {
		return nil, err
	}
	st := g.state()
	to, ok := st.dir.Agency(rec.From)
	if !ok || to.Status != crypto.StatusActive {
		return nil, &policy.Error{Reason: policy.ReasonRuleCounterpart, Detail: "the requesting agency is no longer active"}
	}
	if err := st.rules.Allow(kindStatement, st.self.Kind, to.Kind,
		policy.Facts{FromAgency: g.self, ToAgency: to.ID, OpenRequest: true}); err != nil {
		return nil, err
	}
	out := &Outgoing{Kind: kindStatement, To: to, Body: plain, Ref: rec.ID, ID: crypto.NewID(), Files: files,
		Change: &Change{To: policy.SRAnswered, Role: policy.RoleRecipient, By: by, At: d.Now, Action: ActStatementSend,
			Detail: map[string]string{"statement_sha256": sha256Hex(plain)}}}
	out.Store = func(tx *store.Tx, rec *store.Record) error {
		if rec.Related == nil {
			rec.Related = map[string]string{}
		}
		rec.Related[relStatement] = out.ID
		return nil
	}
	return out, nil
}

func (statementKind) Check(g *Gateway, in *Incoming) error {
	sb, fe := body.ParseStatementBody(in.Body)
	if err := fieldErrors(fe); err != nil {
		return refuse(ReasonBodyInvalid, err)
	}
	if !strings.HasPrefix(sb.Consent.RecordedBy, in.Sender.ID+"/") {
		return refuse(policy.ReasonConsentInvalid, fmt.Errorf("consent recorded by someone else than the sender's staff"))
	}
	in.Value = sb
	thread, err := g.peerThread(sb.Ref, in.Sender.ID)
	if err != nil {
		return err
	}
	in.Receipt, err = g.receipt(in.Sender, thread, in.Header.ID, in.Hash, crypto.EventDelivered, "", in.Now)
	receivedFiles(in, sb.Attachments)
	in.record = sb.Ref
	return err
}

func (statementKind) Apply(g *Gateway, tx *store.Tx, in *Incoming) error {
	sb := in.Value.(*body.StatementBody)
	rec, err := tx.Record(sb.Ref)
	if err != nil || rec.Kind != kindStatementRequest || rec.Box != store.Outbox {
		return refuse(policy.ReasonRuleOpenRequest, fmt.Errorf("a statement for no request of this agency"))
	}
	if rec.To != in.Sender.ID {
		return refuse(policy.ReasonNotParty, fmt.Errorf("a statement from an agency the request was not sent to"))
	}
	if tx.Exists(in.Header.ID) {
		return refuse(ReasonIDCollision, fmt.Errorf("envelope id %s is already in use here", in.Header.ID))
	}
	// Open when it was sealed: a statement sealed before the due date may
	// arrive after this side expired the request (the answer wins), but
	// only within lateGrace of the due date: the sealing time is the
	// sender's word.
	created := in.Header.Created
	late := rec.Status == policy.SRExpired || !in.Now.Before(rec.Due)
	open := policy.RequestOpen(rec.Status, rec.Due, created) ||
		(rec.Status == policy.SRExpired && created.Before(rec.Due))
	if late && (in.Now.Sub(rec.Due) > lateGrace || created.Before(rec.CreatedAt)) {
		open = false
	}
	if err := g.allowFrom(in, kindStatement, policy.Facts{OpenRequest: open}); err != nil {
		return err
	}
	// The statement carries the consent that covers it; check it as the
	// holding agency had to, at the time it was sealed.
	state := rec.Status
	switch state {
	case policy.SRQueued, policy.SRSent, policy.SRDelivered, policy.SRRead, policy.SRConsentRefused, policy.SRExpired:
		state = policy.SRConsentGiven // its consent status may still be on the way, or crossed the expiry
	}
	f := policy.StatementFacts{RequestState: state, RequestDue: rec.Due, RequestFrom: rec.From, RequestTo: rec.To,
		From: in.Sender.ID, To: g.self, Age: policy.Age{Years: sb.Person.Age, Range: sb.Person.AgeRange}, Consent: &sb.Consent}
	if err := policy.CheckStatement(f, in.Header.Created); err != nil {
		return refusePolicy(err)
	}
	if err := g.catchUp(tx, rec, in, policy.SRConsentGiven); err != nil {
		return err
	}
	if rec.Status == policy.SRRead || rec.Status == policy.SRConsentRefused {
		if err := g.transition(tx, rec, Change{To: policy.SRConsentGiven, Role: policy.RoleRecipient, Peer: true,
			By: sb.Consent.RecordedBy, At: sb.Consent.RecordedAt, Clock: in.Sender.ID, Reason: reasonImplied,
			Action: ActStatusReceive, Actor: peerActor(in.Sender.ID)}); err != nil {
			return refusePolicy(err)
		}
	}
	if err := tx.PutEnvelope(in.Header.ID, in.Env); err != nil {
		return err
	}
	if err := addDelivered(tx, in.Header.ID, in); err != nil {
		return err
	}
	if rec.Related == nil {
		rec.Related = map[string]string{}
	}
	rec.Related[relStatement] = in.Header.ID
	err = g.transition(tx, rec, Change{To: policy.SRAnswered, Role: policy.RoleRecipient, Peer: true,
		By: in.Sender.ID, At: in.Header.Created, Clock: in.Sender.ID, Action: ActStatementReceive,
		Actor: peerActor(in.Sender.ID), Detail: map[string]string{"statement_sha256": sha256Hex(in.Body),
			"envelope_sha256": in.Hash}})
	if err != nil {
		return refusePolicy(err)
	}
	return nil
}

// witnessWithheld stands for the witness's name in a statement.
const witnessWithheld = "withheld"

// lateGrace is how long after its due date a statement sealed before it is
// still accepted (it may have waited at the broker or for this gateway).
const lateGrace = 24 * time.Hour

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
