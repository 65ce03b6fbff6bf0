package gateway_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/openapi"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func unb64(t *testing.T, s string) tlog.Hash {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		t.Fatalf("not a base64 hash: %q", s)
	}
	var h tlog.Hash
	copy(h[:], b)
	return h
}

// TestAuditProofsVerify: the checkpoint opens with the key from the
// directory, and inclusion and consistency proofs verify with tlog's own
// checks; the answers match the OpenAPI description.
func TestAuditProofsVerify(t *testing.T) {
	c := mustCore(t)
	gw := c.gws["iom"]
	p := c.staff("iom")
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	first, err := gw.AuditCheckpoint(p)
	if err != nil {
		t.Fatal(err)
	}
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	cp, err := gw.AuditCheckpoint(p)
	if err != nil {
		t.Fatal(err)
	}
	v, err := crypto.AuditNoteVerifier("iom", c.keys["iom"].SigningKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(cp.Checkpoint), note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint does not open: %v\n%s", err, cp.Checkpoint)
	}
	if n.Text[:len("rujukan.id/iom/audit\n")] != "rujukan.id/iom/audit\n" || cp.Size <= first.Size {
		t.Fatalf("checkpoint %q, size %d after %d", n.Text, cp.Size, first.Size)
	}
	root := unb64(t, cp.Root)
	for seq := uint64(1); seq <= cp.Size; seq++ {
		pr, err := gw.AuditInclusion(p, seq, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(pr.Record)
		if unb64(t, pr.LeafHash) != tlog.RecordHash(raw) || string(pr.Event) != string(raw) {
			t.Fatalf("event %d: leaf hash or event is not of the record", seq)
		}
		var proof tlog.RecordProof
		for _, h := range pr.Proof {
			proof = append(proof, unb64(t, h))
		}
		if err := tlog.CheckRecord(proof, int64(cp.Size), root, int64(seq-1), tlog.RecordHash(raw)); err != nil {
			t.Errorf("inclusion of %d: %v", seq, err)
		}
		body, _ := json.Marshal(pr)
		if err := openapi.Check("GET", "/v1/audit/1/proof", 200, "application/json", body); err != nil {
			t.Fatalf("proof answer: %v", err)
		}
	}
	cons, err := gw.AuditConsistency(p, first.Size, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	var tp tlog.TreeProof
	for _, h := range cons.Proof {
		tp = append(tp, unb64(t, h))
	}
	if err := tlog.CheckTree(tp, int64(cp.Size), root, int64(first.Size), unb64(t, first.Root)); err != nil {
		t.Errorf("consistency %d..%d: %v", first.Size, cp.Size, err)
	}
	for name, body := range map[string]any{"consistency": cons, "checkpoint": cp} {
		raw, _ := json.Marshal(body)
		path := map[string]string{"consistency": "/v1/audit/consistency?from=1", "checkpoint": "/v1/audit/checkpoint"}[name]
		if err := openapi.Check("GET", path, 200, "application/json", raw); err != nil {
			t.Errorf("%s answer: %v", name, err)
		}
	}
	ver, err := gw.VerifyAudit(p)
	if err != nil || !ver.OK || ver.Checkpoint == "" || ver.Events < cp.Size {
		t.Fatalf("verify: %+v %v", ver, err)
	}
	// Bad numbers and unknown events.
	if _, err := gw.AuditInclusion(p, 1<<40, 0); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("unknown seq: %v", err)
	}
	if _, err := gw.AuditInclusion(p, 2, 1); !errors.Is(err, gateway.ErrBadRequest) {
		t.Errorf("size below seq: %v", err)
	}
	if _, err := gw.AuditConsistency(p, 2, 1); !errors.Is(err, gateway.ErrBadRequest) {
		t.Errorf("from after to: %v", err)
	}
	if _, err := gw.AuditConsistency(p, 1, 1<<40); !errors.Is(err, gateway.ErrBadRequest) {
		t.Errorf("to after the checkpoint: %v", err)
	}
	// Without audit:read, refused.
	none := p
	none.Scopes = []string{policy.ScopeReferralRead}
	if _, err := gw.AuditCheckpoint(none); err == nil {
		t.Error("checkpoint without audit:read")
	}
}
