package gateway

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"golang.org/x/mod/sumdb/note"
)

// ActAuditBreakAccepted records that the gateway started on an audit log
// that does not verify because its configuration accepts the break
// (audit.accept_break). The event names the first bad event.
const ActAuditBreakAccepted store.Action = "audit.break-accepted"

// ReasonAuditBroken is the /readyz reason while the audit log does not
// verify.
const ReasonAuditBroken = "audit-broken"

// auditVerifier returns the verifiers of this gateway's checkpoints: its
// own signing key and every signing key of the agency in the directory in
// force (a checkpoint signed before a key rotation still verifies).
func (g *Gateway) auditVerifier() (note.Verifiers, error) {
	own := g.keys.SigningKey.Public().(ed25519.PublicKey)
	v, err := crypto.AuditNoteVerifier(g.self, own)
	if err != nil {
		return nil, err
	}
	known := []note.Verifier{v}
	if st := g.state(); st != nil {
		for _, k := range st.self.Keys {
			if k.Use != crypto.UseSign {
				continue
			}
			pub, err := crypto.ParseSigningPublicKey(k.Public)
			if err != nil || pub.Equal(own) {
				continue
			}
			if v, err := crypto.AuditNoteVerifier(g.self, pub); err == nil {
				known = append(known, v)
			}
		}
	}
	return note.VerifierList(known...), nil
}

// checkAuditAtStart verifies the whole audit log before the gateway
// starts. A log that does not verify stops the start, unless the
// configuration accepts the break: then the break is recorded as an
// audit event and reported by /readyz and GET /v1/audit/verify while it
// lasts.
func (g *Gateway) checkAuditAtStart() error {
	known, err := g.auditVerifier()
	if err != nil {
		return err
	}
	r, err := g.db.VerifyAuditWith(known)
	if err == nil {
		g.auditChecked = r
		return nil
	}
	if !errors.Is(err, store.ErrAuditBroken) {
		return err
	}
	if !g.cfg.Audit.AcceptBreak {
		return fmt.Errorf("%w; the gateway does not start on a broken audit log: restore the file from a copy that verifies, or set audit.accept_break: true (RUJUKAN_AUDIT_ACCEPT_BREAK=true) to start anyway and record the break", err)
	}
	g.log.Error("starting on an audit log that does not verify, as audit.accept_break says", "err", err)
	rec := g.db.Update(func(tx *store.Tx) error {
		return tx.Audit(store.AuditEvent{Actor: g.self, Action: ActAuditBreakAccepted, Outcome: "accepted",
			Reason: ReasonAuditBroken, Detail: map[string]string{"error": err.Error(),
				"verified_events": strconv.FormatUint(r.Events, 10)}})
	})
	if rec != nil {
		return fmt.Errorf("%w; and the break cannot be recorded: %v", err, rec)
	}
	g.setAuditBroken(err.Error())
	return nil
}

// setAuditBroken records whether the audit log verifies ("" when it does).
func (g *Gateway) setAuditBroken(reason string) { g.auditBroken.Store(&reason) }

// AuditBroken says why the audit log does not verify, as last checked (at
// start or by GET /v1/audit/verify); "" when it does.
func (g *Gateway) AuditBroken() string {
	if p := g.auditBroken.Load(); p != nil {
		return *p
	}
	return ""
}
