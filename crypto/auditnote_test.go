package crypto

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

func TestCosignature(t *testing.T) {
	n := MustNet(t)
	iom, shelter := n.agency(t, "iom"), n.agency(t, "shelter")
	signer, err := NewAuditNoteSigner("iom", seedKey("iom/sign"))
	if err != nil {
		t.Fatal(err)
	}
	text := AuditOrigin("iom") + "\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	msg, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, AuditVerifiers(iom)); err != nil {
		t.Fatalf("checkpoint does not open with the directory's keys: %v", err)
	}
	at := time.Unix(1_800_000_000, 0)
	cs, err := CosignCheckpoint("shelter", seedKey("shelter/sign"), []byte(text), at)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cs.Line(), "— rujukan.id/shelter/witness ") {
		t.Errorf("line %q", cs.Line())
	}
	got, err := VerifyCosignature(shelter, []byte(text), cs.Signature)
	if err != nil || !got.Time.Equal(at) || got.Witness != "shelter" {
		t.Fatalf("verify: %+v, %v", got, err)
	}
	// The cosigned message is the C2SP one.
	if !bytes.Equal(cosignedMessage(1_800_000_000, []byte(text)), []byte("cosignature/v1\ntime 1800000000\n"+text)) {
		t.Error("cosigned message is not cosignature/v1")
	}
	if _, err := VerifyCosignature(iom, []byte(text), cs.Signature); err == nil {
		t.Error("a cosignature verified with another agency's key")
	}
	other := strings.Replace(text, "\n3\n", "\n4\n", 1)
	if _, err := VerifyCosignature(shelter, []byte(other), cs.Signature); err == nil {
		t.Error("a cosignature verified over another checkpoint")
	}
	bad := bytes.Clone(cs.Signature)
	bad[11]++ // the time
	if _, err := VerifyCosignature(shelter, []byte(text), bad); err == nil {
		t.Error("a cosignature verified with another time")
	}
	if _, err := CosignCheckpoint("shelter", seedKey("shelter/sign"), []byte("rujukan/v1/receipt\x00x\ny\nz\n"), at); err == nil {
		t.Error("cosigned a text in another signing domain")
	}
}
