package gateway

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
	"golang.org/x/mod/sumdb/tlog"
)

// cosignatureKind is a witness's cosignature of one of this gateway's
// checkpoints (witness.go): checked with the witness's directory key and
// against this log's own tree at that size, and kept as that witness's
// latest. A witness that holds a later checkpoint than the proof started
// from asks for a proof from its size instead, and the next round sends
// one.
type cosignatureKind struct{}

func (cosignatureKind) Name() string { return kindCosignature }

func (cosignatureKind) Prepare(*Gateway, Draft) (*Outgoing, error) {
	return nil, fmt.Errorf("%w: cosignatures are sent by the gateway itself", ErrBadRequest)
}

func (cosignatureKind) Check(g *Gateway, in *Incoming) error {
	if err := g.allowFrom(in, kindCosignature, policy.Facts{}); err != nil {
		return err
	}
	var b cosignatureBody
	if err := decodeStrict(in.Body, &b); err != nil {
		return refuse(ReasonBodyInvalid, err)
	}
	known, err := g.auditVerifier()
	if err != nil {
		return err
	}
	cp, err := store.OpenCheckpoint([]byte(b.Checkpoint), known)
	if err != nil {
		return refuse(ReasonCosignatureInvalid, fmt.Errorf("not a checkpoint of this log: %w", err))
	}
	if b.Signature == "" {
		if b.NeedFrom == 0 {
			return refuse(ReasonBodyInvalid, errors.New("neither a signature nor need_from"))
		}
		g.needProofFrom(in.Sender.ID, b.NeedFrom)
		in.Value = (*cosigned)(nil)
		return nil
	}
	sig, err := base64.StdEncoding.DecodeString(b.Signature)
	if err != nil {
		return refuse(ReasonBodyInvalid, err)
	}
	cs, err := crypto.VerifyCosignature(in.Sender, noteText(cp.Note), sig)
	if err != nil {
		return refuse(ReasonCosignatureInvalid, err)
	}
	in.Value = &cosigned{c: store.Cosigned{Witness: in.Sender.ID, Size: cp.Size, Time: cs.Time, Signature: cs.Signature,
		Checkpoint: b.Checkpoint}, root: cp.Root}
	return nil
}

// cosigned is what Check makes of a cosignature envelope.
type cosigned struct {
	c    store.Cosigned
	root tlog.Hash
}

func (cosignatureKind) Apply(g *Gateway, tx *store.Tx, in *Incoming) error {
	v := in.Value.(*cosigned)
	if v == nil {
		return nil
	}
	c := &v.c
	// The log signed it; it must also be this log's tree at that size (a
	// file rolled back has another, or none).
	own, err := tx.AuditCheckpoint()
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if c.Size > own.Size {
		return refuse(ReasonCosignatureInvalid, fmt.Errorf("cosigned checkpoint of %d events is past this log's %d", c.Size, own.Size))
	}
	if root, err := tx.AuditTreeHash(c.Size); err != nil || root != v.root {
		return refuse(ReasonCosignatureInvalid, fmt.Errorf("cosigned checkpoint of %d events is not this log's tree", c.Size))
	}
	if prev, err := tx.Cosignature(c.Witness); err == nil && prev.Size > c.Size {
		return nil // an older one that arrived late
	}
	return tx.PutCosignature(*c)
}
