package store

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestSnapshotAndDropSessions: a snapshot of an open database, taken
// while it is written, opens as a database whose audit log verifies and
// which holds what was committed before it; dropping the sessions of the
// copy removes them all and keeps the accounts.
func TestSnapshotAndDropSessions(t *testing.T) {
	signer := mustSigner(t)
	db, err := Open(filepath.Join(t.TempDir(), "gateway.db"), signer)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	appendEvents(t, db, 5)
	err = db.Update(func(tx *Tx) error {
		if err := tx.PutStaffAccount(&StaffAccount{Name: "rahma", Roles: []string{"caseworker"}, Hash: "h"}); err != nil {
			return err
		}
		for _, k := range []string{"k1", "k2", "k3"} {
			if err := tx.PutStaffSession([]byte(k), &StaffSession{User: "rahma"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var copyBuf bytes.Buffer
	var size int64
	wrote := make(chan error, 1)
	err = db.Snapshot(func(n int64) (io.Writer, error) {
		size = n
		// Committed while the copy is made: not in it.
		go func() {
			wrote <- db.Update(func(tx *Tx) error {
				return tx.Audit(AuditEvent{Actor: "caseworker-1", Action: "referral.send", Object: "later", Outcome: "ok"})
			})
		}()
		return &copyBuf, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if int64(copyBuf.Len()) != size {
		t.Fatalf("the copy has %d bytes, %d announced", copyBuf.Len(), size)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, copyBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := DropStaffSessions(path)
	if err != nil || n != 3 {
		t.Fatalf("dropped %d sessions: %v", n, err)
	}
	c, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	r, err := c.VerifyAuditWith(note.VerifierList(signer.Verifier()))
	if err != nil || r.Events != 5 {
		t.Fatalf("the copy's audit log: %+v, %v", r, err)
	}
	err = c.View(func(tx *Tx) error {
		if keys := tx.StaffSessionKeys(); len(keys) != 0 {
			t.Errorf("%d sessions left", len(keys))
		}
		if a, err := tx.StaffAccount("rahma"); err != nil || a.Hash != "h" {
			t.Errorf("the account after the drop: %+v, %v", a, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
