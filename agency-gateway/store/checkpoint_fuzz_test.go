package store

import (
	"crypto/ed25519"
	"testing"

	"github.com/rujukan/rujukan/crypto"
	"golang.org/x/mod/sumdb/note"
)

// FuzzOpenCheckpoint: a checkpoint another gateway sends is parsed and
// checked without panicking, and only a note signed by the known key
// opens.
func FuzzOpenCheckpoint(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(nil)
	signer, err := crypto.NewAuditNoteSigner("iom", priv)
	if err != nil {
		f.Fatal(err)
	}
	good, err := note.Sign(&note.Note{Text: "rujukan.id/iom/audit\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, signer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("rujukan.id/iom/audit\n-1\nAAAA\n\n— x y\n"))
	f.Add([]byte("\n\n"))
	known := note.VerifierList(signer.Verifier())
	f.Fuzz(func(t *testing.T, msg []byte) {
		cp, err := OpenCheckpoint(msg, known)
		if err == nil && (cp.Origin != "rujukan.id/iom/audit" || len(cp.Note) == 0) {
			t.Fatalf("opened %+v from %q", cp, msg)
		}
		parseCheckpointText(string(msg))
	})
}
