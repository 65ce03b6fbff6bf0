package gateway

import (
	"encoding/json"
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// statementRequestKind is a police request for a victim statement, sent to
// the agency holding the victim. Only police agencies may send it (the
// network rules, and the statement:request scope that only police staff
// may hold); it names the person by pseudonym or by a referral id, the
// legal basis (the police report number), the purpose, the questions and
// a due date. Both sides expire it at the due date (see timers.go).
type statementRequestKind struct{}

func (statementRequestKind) Name() string { return kindStatementRequest }

func (statementRequestKind) Prepare(g *Gateway, d Draft) (*Outgoing, error) {
	r, fe := body.ParseStatementRequest(d.Body)
	if err := fieldErrors(fe); err != nil {
		return nil, err
	}
	st := g.state()
	if err := checkRequest(st, r); err != nil {
		return nil, err
	}
	if !r.Due.After(d.Now) {
		return nil, invalid("/due", "range", "must be in the future")
	}
	to, err := g.recipient(st, r.To)
	if err != nil {
		return nil, err
	}
	if err := st.rules.Allow(kindStatementRequest, st.self.Kind, to.Kind, policy.Facts{FromAgency: g.self, ToAgency: to.ID}); err != nil {
		return nil, err
	}
	if r.Attachments, err = g.attachFiles(d, kindStatementRequest, r.Attachments); err != nil {
		return nil, err
	}
	thread := newThread()
	r.ThreadKey = thread.String()
	plain, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("failed to encode statement request: %w", err)
	}
	return &Outgoing{Kind: kindStatementRequest, To: to, Body: plain, Files: r.Attachments, NewThread: thread,
		New: &store.Record{Kind: kindStatementRequest, Box: store.Outbox, From: g.self, To: to.ID,
			CreatedAt: d.Now, ReceivedAt: d.Now, Due: r.Due.UTC()},
		Change: &Change{Create: true, To: policy.SRQueued, Role: policy.RoleSender, By: actorOf(g.self, d.Principal),
			At: d.Now, Action: ActStatementRequestSend,
			Detail: map[string]string{"to": to.ID, "purpose": r.Purpose, "due": r.Due.UTC().Format(timeFormat)}},
		Store: func(tx *store.Tx, rec *store.Record) error { return tx.PutDue(rec.Due, rec.ID) }}, nil
}

// checkRequest applies the rules a schema cannot say.
func checkRequest(st *netState, r *body.StatementRequest) error {
	switch {
	case (r.Pseudonym == "") == (r.ReferralID == ""):
		return invalid("/pseudonym", "conflict", "give exactly one of pseudonym and referral_id")
	case r.Pseudonym != "":
		if err := st.rules.CheckPseudonym(r.Pseudonym); err != nil {
			return invalid("/pseudonym", "pseudonym", "is not a case code of the form this network uses (for example V-2026-0042)")
		}
	}
	return nil
}

func (statementRequestKind) Check(g *Gateway, in *Incoming) error {
	if err := g.allowFrom(in, kindStatementRequest, policy.Facts{}); err != nil {
		return err
	}
	r, fe := body.ParseStatementRequestReceived(in.Body)
	if err := fieldErrors(fe); err != nil {
		return refuse(ReasonBodyInvalid, err)
	}
	if r.To != g.self {
		return refuse(ReasonBodyMismatch, fmt.Errorf("body addressed to %q", r.To))
	}
	if err := checkRequest(g.state(), r); err != nil {
		return refuse(ReasonBodyInvalid, err)
	}
	if !r.Due.After(in.Header.Created) {
		return refuse(policy.ReasonRequestExpired, fmt.Errorf("the request was due before it was sent"))
	}
	in.Value = r
	var err error
	if in.thread, err = bodyThread(r.ThreadKey); err != nil {
		return err
	}
	in.Receipt, err = g.receipt(in.Sender, in.thread, in.Header.ID, in.Hash, crypto.EventDelivered, "", in.Now)
	receivedFiles(in, r.Attachments)
	return err
}

func (statementRequestKind) Apply(g *Gateway, tx *store.Tx, in *Incoming) error {
	r := in.Value.(*body.StatementRequest)
	rec := newInboxRecord(in, "")
	rec.Due = r.Due.UTC()
	if err := tx.PutDue(rec.Due, rec.ID); err != nil {
		return err
	}
	return g.store(tx, in, rec, Change{Create: true, To: policy.SRDelivered, Role: policy.RoleSystem, By: g.self,
		At: in.Now, Action: ActStatementRequestRecv, Actor: peerActor(in.Header.From),
		Detail: map[string]string{"envelope_sha256": in.Hash, "purpose": r.Purpose}})
}
