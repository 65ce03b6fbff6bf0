package store

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rujukan/rujukan/crypto"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TestAuditCheckpointIsSignedNote: the stored checkpoint is a C2SP
// tlog-checkpoint that note.Open verifies with the agency's key, and whose
// root is the tree of the stored events' bytes.
func TestAuditCheckpointIsSignedNote(t *testing.T) {
	db := MustOpen(t)
	appendEvents(t, db, 7)
	var cp Checkpoint
	db.View(func(tx *Tx) (err error) { cp, err = tx.AuditCheckpoint(); return err })
	n, err := note.Open(cp.Note, note.VerifierList(db.signer.Verifier()))
	if err != nil {
		t.Fatalf("note.Open: %v\n%s", err, cp.Note)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[0] != crypto.AuditOrigin("test") || lines[1] != "7" || lines[3] != "" {
		t.Fatalf("checkpoint text %q", n.Text)
	}
	// The root is the RFC 6962 tree of the stored bytes, recomputed here
	// from the events alone.
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			out[i] = hashes[x]
		}
		return out, nil
	})
	db.View(func(tx *Tx) error {
		for seq := uint64(1); seq <= 7; seq++ {
			raw, _ := tx.AuditRecord(seq)
			hs, err := tlog.StoredHashes(int64(seq-1), raw, r)
			if err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, hs...)
		}
		return nil
	})
	root, _ := tlog.TreeHash(7, r)
	if lines[2] != base64.StdEncoding.EncodeToString(root[:]) {
		t.Errorf("checkpoint root %s, recomputed %x", lines[2], root)
	}
	// Another agency's key (or another key of the same name) does not open it.
	_, other, _ := ed25519.GenerateKey(nil)
	ov, _ := crypto.AuditNoteVerifier("test", other.Public().(ed25519.PublicKey))
	if _, err := note.Open(cp.Note, note.VerifierList(ov)); err == nil {
		t.Error("checkpoint opened with another key")
	}
}

// TestAuditProofs: inclusion and consistency proofs from the store verify
// with tlog.CheckRecord and tlog.CheckTree against signed roots.
func TestAuditProofs(t *testing.T) {
	db := MustOpen(t)
	appendEvents(t, db, 13)
	db.View(func(tx *Tx) error {
		cp, err := tx.AuditCheckpoint()
		if err != nil {
			t.Fatal(err)
		}
		for size := uint64(1); size <= cp.Size; size++ {
			th, err := tx.AuditTreeHash(size)
			if err != nil {
				t.Fatal(err)
			}
			if size == cp.Size && th != cp.Root {
				t.Fatalf("tree hash of %d is not the checkpoint root", size)
			}
			for seq := uint64(1); seq <= size; seq++ {
				p, err := tx.AuditInclusion(seq, size)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := tx.AuditRecord(seq)
				if err := tlog.CheckRecord(p, int64(size), th, int64(seq-1), tlog.RecordHash(raw)); err != nil {
					t.Errorf("inclusion of %d in %d: %v", seq, size, err)
				}
				if err := tlog.CheckRecord(p, int64(size), th, int64(seq-1), tlog.RecordHash(append(raw, ' '))); err == nil {
					t.Errorf("inclusion of other bytes of %d in %d verified", seq, size)
				}
			}
			p, err := tx.AuditConsistency(size, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckTree(p, int64(cp.Size), cp.Root, int64(size), th); err != nil {
				t.Errorf("consistency %d..%d: %v", size, cp.Size, err)
			}
		}
		if _, err := tx.AuditInclusion(14, 13); err == nil {
			t.Error("inclusion of an event after the tree")
		}
		if _, err := tx.AuditConsistency(0, 13); err == nil {
			t.Error("consistency from an empty tree")
		}
		return nil
	})
}

// TestAuditCheckpointOtherKey: a checkpoint signed with another key, even
// over the right tree, does not verify.
func TestAuditCheckpointOtherKey(t *testing.T) {
	db := MustOpen(t)
	appendEvents(t, db, 3)
	_, other, _ := ed25519.GenerateKey(nil)
	os, _ := crypto.NewAuditNoteSigner("test", other)
	db.db.Update(func(btx *bolt.Tx) error {
		tx := &Tx{tx: btx, db: db}
		root, _ := tx.AuditTreeHash(3)
		msg, err := note.Sign(&note.Note{Text: checkpointText(os.Name(), 3, root)}, os)
		if err != nil {
			t.Fatal(err)
		}
		return btx.Bucket(bucketMeta).Put(keyAuditCheckpoint, msg)
	})
	if _, err := db.VerifyAudit(); !errors.Is(err, ErrAuditBroken) || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("checkpoint of another key: %v", err)
	}
}

// TestAuditNamesFirstBadEvent: the error names the event.
func TestAuditNamesFirstBadEvent(t *testing.T) {
	db := MustOpen(t)
	appendEvents(t, db, 6)
	db.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		v := append([]byte(nil), b.Get(seqKey(4))...)
		v[len(v)-3] ^= 1
		return b.Put(seqKey(4), v)
	})
	r, err := db.VerifyAudit()
	if err == nil || !strings.Contains(err.Error(), "event 4 was altered") || r.Events != 3 {
		t.Fatalf("got %+v, %v", r, err)
	}
}

// BenchmarkAuditAppend appends the events of one referral (send, publish,
// receipt, read: four) per transaction, with the commit's fsync and
// without it (the CPU cost of the events, tree hashes and checkpoint).
func BenchmarkAuditAppend(b *testing.B) {
	b.Run("fsync", func(b *testing.B) { benchAppend(b, MustOpen(b)) })
	b.Run("nosync", func(b *testing.B) {
		db := MustOpen(b)
		db.db.NoSync = true
		benchAppend(b, db)
	})
}

func benchAppend(b *testing.B, db *DB) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		err := db.Update(func(tx *Tx) error {
			for j := range 4 {
				if err := tx.Audit(AuditEvent{Actor: "iom/caseworker-1", Action: "referral.send", Object: fmt.Sprint("01JD0000000000000000", i), Outcome: "ok",
					Detail: map[string]string{"peer": "shelter", "n": strconv.Itoa(j), "envelope_hash": "9f2c6a1b7e0d4c3f8a5b2e1d0c9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19"}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(4, "events/op")
}

// BenchmarkAuditVerify1M verifies a log of 1,000,000 events (built once,
// outside the timer; it takes a while).
func BenchmarkAuditVerify1M(b *testing.B) {
	const n = 1_000_000
	_, priv, _ := ed25519.GenerateKey(nil)
	signer, _ := crypto.NewAuditNoteSigner("bench", priv)
	path := filepath.Join(b.TempDir(), "gateway.db")
	db, err := Open(path, signer)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.db.NoSync = true
	for i := 0; i < n; {
		err := db.Update(func(tx *Tx) error {
			for j := 0; j < 10000 && i < n; j, i = j+1, i+1 {
				if err := tx.Audit(AuditEvent{Actor: "iom/caseworker-1", Action: "referral.send", Object: fmt.Sprint("01JD00000000000000", i), Outcome: "ok",
					Detail: map[string]string{"peer": "shelter", "envelope_hash": "9f2c6a1b7e0d4c3f8a5b2e1d0c9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19"}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	db.db.NoSync = false
	known := note.VerifierList(signer.Verifier())
	b.ResetTimer()
	for b.Loop() {
		r, err := db.VerifyAuditWith(known)
		if err != nil || r.Events != n {
			b.Fatalf("%+v %v", r, err)
		}
	}
}
