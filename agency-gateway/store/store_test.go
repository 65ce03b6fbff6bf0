package store

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rujukan/rujukan/crypto"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// mustSigner returns a checkpoint signer with a new key.
func mustSigner(t testing.TB) *crypto.AuditNoteSigner {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := crypto.NewAuditNoteSigner("test", priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// MustOpen opens a database in a temporary directory and checks its
// consistency when the test ends.
func MustOpen(t testing.TB) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "gateway.db"), mustSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("consistency check: %v", err)
		}
		db.Close()
	})
	return db
}

func TestListPages(t *testing.T) {
	db := MustOpen(t)
	base := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	err := db.Update(func(tx *Tx) error {
		for i := 0; i < 7; i++ {
			status := "sent"
			if i%2 == 0 {
				status = "delivered"
			}
			r := &Record{ID: fmt.Sprintf("r%d", i), Kind: "referral", Box: Outbox, Status: status, CreatedAt: base.Add(time.Duration(i) * time.Minute)}
			if err := tx.PutRecord(r); err != nil {
				return err
			}
		}
		return tx.PutRecord(&Record{ID: "in1", Box: Inbox, Kind: "referral", CreatedAt: base})
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	cursor := ""
	pages := 0
	for {
		var recs []*Record
		err := db.View(func(tx *Tx) (err error) {
			recs, cursor, err = tx.List(ListOptions{Box: Outbox, Limit: 3, Cursor: cursor})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range recs {
			got = append(got, r.ID)
		}
		if cursor == "" {
			break
		}
	}
	if want := "[r6 r5 r4 r3 r2 r1 r0]"; fmt.Sprint(got) != want || pages != 3 {
		t.Fatalf("pages %d, ids %v, want %s in 3 pages", pages, got, want)
	}
	db.View(func(tx *Tx) error {
		recs, _, _ := tx.List(ListOptions{Box: Outbox, Status: "delivered", Limit: 10})
		if len(recs) != 4 {
			t.Errorf("status filter: got %d records, want 4", len(recs))
		}
		recs, _, _ = tx.List(ListOptions{Box: Inbox, Limit: 10})
		if len(recs) != 1 || recs[0].ID != "in1" {
			t.Errorf("inbox: got %v", recs)
		}
		if _, _, err := tx.List(ListOptions{Box: Inbox, Limit: 10, Cursor: "!!"}); !errors.Is(err, ErrBadCursor) {
			t.Errorf("bad cursor: got %v", err)
		}
		return nil
	})
}

func TestQueueOrderAndPending(t *testing.T) {
	db := MustOpen(t)
	now := time.Now()
	db.Update(func(tx *Tx) error {
		for i, id := range []string{"c", "a", "b"} {
			if _, err := tx.Enqueue(QueueItem{ID: id}); err != nil {
				return err
			}
			r := &Record{ID: id, Box: Outbox, CreatedAt: now, Deadline: now.Add(time.Duration(i-1) * time.Hour)}
			tx.PutRecord(r)
			tx.PutPending(r)
		}
		return nil
	})
	db.Update(func(tx *Tx) error {
		items, _ := tx.Queued(10)
		if len(items) != 3 || items[0].ID != "c" || items[1].ID != "a" || items[2].ID != "b" {
			t.Fatalf("queue order: %+v", items)
		}
		tx.Dequeue(items[0].Seq)
		if ids := tx.Overdue(now, 10); len(ids) != 1 || ids[0] != "c" {
			t.Errorf("overdue: %v, want [c]", ids)
		}
		return nil
	})
	db.View(func(tx *Tx) error {
		if tx.QueueLen() != 2 {
			t.Errorf("queue length %d after dequeue, want 2", tx.QueueLen())
		}
		return nil
	})
}

func TestSeenAndReceipts(t *testing.T) {
	db := MustOpen(t)
	db.Update(func(tx *Tx) error {
		if tx.Seen("e1") != "" {
			t.Error("e1 seen before it was stored")
		}
		tx.MarkSeen("e1", "h1")
		tx.AddReceipt("r1", "delivered", []byte("one"))
		tx.AddReceipt("r1", "read", []byte("two"))
		if added, _ := tx.AddReceipt("r1", "read", []byte("three")); added {
			t.Error("a second read receipt was stored")
		}
		return nil
	})
	db.View(func(tx *Tx) error {
		if tx.Seen("e1") != "h1" {
			t.Error("e1 not seen after it was stored")
		}
		if got := tx.Receipts("r1"); len(got) != 2 || string(got[0]) != "one" || string(got[1]) != "two" {
			t.Errorf("receipts: %q", got)
		}
		return nil
	})
}

func TestUpdateRollsBack(t *testing.T) {
	db := MustOpen(t)
	boom := errors.New("boom")
	err := db.Update(func(tx *Tx) error {
		tx.PutRecord(&Record{ID: "x", Box: Outbox})
		tx.Audit(AuditEvent{Actor: "a", Action: "send", Outcome: "ok"})
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	db.View(func(tx *Tx) error {
		if _, err := tx.Record("x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("record survived a failed transaction: %v", err)
		}
		return nil
	})
	if r, err := db.VerifyAudit(); err != nil || r.Events != 0 {
		t.Errorf("audit after rollback: %+v %v", r, err)
	}
}

func appendEvents(t *testing.T, db *DB, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		err := db.Update(func(tx *Tx) error {
			return tx.Audit(AuditEvent{Actor: "caseworker-1", Action: "referral.send", Object: fmt.Sprint("r", i), Outcome: "ok"})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuditVerifies(t *testing.T) {
	db := MustOpen(t)
	appendEvents(t, db, 5)
	r, err := db.VerifyAudit()
	if err != nil || r.Events != 5 {
		t.Fatalf("got %+v, %v", r, err)
	}
}

// Each tampering is done with raw bbolt, as an attacker with the file would.
func TestAuditTamper(t *testing.T) {
	edit := func(seq uint64, fn func(e *AuditEvent)) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			var e AuditEvent
			json.Unmarshal(b.Get(seqKey(seq)), &e)
			fn(&e)
			raw, _ := json.Marshal(e)
			return b.Put(seqKey(seq), raw)
		}
	}
	cases := []struct {
		name   string
		tamper func(tx *bolt.Tx) error
	}{
		{"edit outcome", edit(2, func(e *AuditEvent) { e.Outcome = "denied" })},
		{"edit and rehash", func(tx *bolt.Tx) error {
			if err := edit(2, func(e *AuditEvent) { e.Actor = "someone-else" })(tx); err != nil {
				return err
			}
			raw := tx.Bucket(bucketAudit).Get(seqKey(2))
			h := tlog.RecordHash(raw)
			return tx.Bucket(bucketAuditHashes).Put(hashKey(tlog.StoredHashIndex(0, 1)), h[:])
		}},
		{"same values, other bytes", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			return b.Put(seqKey(2), bytes.Replace(b.Get(seqKey(2)), []byte(`"actor":`), []byte(`"actor" :`), 1))
		}},
		{"delete first", func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Delete(seqKey(1)) }},
		{"delete tree hash", func(tx *bolt.Tx) error { return tx.Bucket(bucketAuditHashes).Delete(hashKey(2)) }},
		{"delete middle", func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Delete(seqKey(3)) }},
		{"delete last", func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Delete(seqKey(5)) }},
		{"delete checkpoint", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyAuditCheckpoint) }},
		{"event zero", func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Put(seqKey(0), []byte(`{"seq":0,}`)) }},
		{"garbage event", func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Put(seqKey(1), []byte("{")) }},
		{"append unsigned", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketAudit)
			raw, _ := json.Marshal(AuditEvent{Seq: 6, Actor: "x", Action: "y", Outcome: "ok"})
			return b.Put(seqKey(6), raw)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := MustOpen(t)
			appendEvents(t, db, 5)
			if err := db.db.Update(tc.tamper); err != nil {
				t.Fatal(err)
			}
			if _, err := db.VerifyAudit(); !errors.Is(err, ErrAuditBroken) {
				t.Fatalf("tampering not detected: %v", err)
			}
		})
	}
}

// Concurrent Batch calls commit together; one that fails leaves the others
// committed and the audit chain whole.
func TestBatchGroupWithFailure(t *testing.T) {
	db := MustOpen(t)
	boom := errors.New("boom")
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- db.Batch(func(tx *Tx) error {
				if err := tx.PutRecord(&Record{ID: fmt.Sprint("r", i), Box: Outbox, CreatedAt: time.Unix(int64(i), 0)}); err != nil {
					return err
				}
				if err := tx.Audit(AuditEvent{Actor: "a", Action: "send", Object: fmt.Sprint("r", i), Outcome: "ok"}); err != nil {
					return err
				}
				if i == 7 {
					return boom
				}
				return nil
			})
		}()
	}
	failed := 0
	for range n {
		if err := <-errs; err != nil {
			if !errors.Is(err, boom) {
				t.Fatalf("unexpected error: %v", err)
			}
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d calls failed, want 1", failed)
	}
	rep, err := db.VerifyAudit()
	if err != nil || rep.Events != n-1 {
		t.Fatalf("audit: %+v %v, want %d events", rep, err, n-1)
	}
	db.View(func(tx *Tx) error {
		if _, err := tx.Record("r7"); !errors.Is(err, ErrNotFound) {
			t.Errorf("the failed call's record was committed: %v", err)
		}
		if _, err := tx.Record("r8"); err != nil {
			t.Errorf("another call's record is missing: %v", err)
		}
		return nil
	})
}

// A filter that matches little stops after a bounded scan; the cursor goes
// on from where it stopped, and no record is skipped or repeated.
func TestListScanBudget(t *testing.T) {
	db := MustOpen(t)
	base := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	db.Update(func(tx *Tx) error {
		for i := range 1500 {
			status := "sent"
			if i == 3 || i == 1400 {
				status = "failed"
			}
			tx.PutRecord(&Record{ID: fmt.Sprintf("r%04d", i), Box: Outbox, Status: status, CreatedAt: base.Add(time.Duration(i) * time.Second)})
		}
		return nil
	})
	var got []string
	cursor, pages := "", 0
	for {
		var recs []*Record
		db.View(func(tx *Tx) (err error) {
			recs, cursor, err = tx.List(ListOptions{Box: Outbox, Status: "failed", Limit: 10, Cursor: cursor})
			return err
		})
		pages++
		for _, r := range recs {
			got = append(got, r.ID)
		}
		if cursor == "" {
			break
		}
	}
	if fmt.Sprint(got) != "[r1400 r0003]" || pages < 2 {
		t.Fatalf("got %v in %d pages, want [r1400 r0003] in several", got, pages)
	}
}

// When one call of a group fails because of another call's writes, that
// write is rolled back: nobody is told about it before it is committed.
func TestBatchFailureFromAnotherCall(t *testing.T) {
	for range 20 {
		db := MustOpen(t)
		errDup := errors.New("duplicate")
		var wg sync.WaitGroup
		results := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = db.Batch(func(tx *Tx) error {
					if tx.Seen("x") != "" {
						return errDup
					}
					if i == 0 {
						// This one will fail after marking; its mark must not
						// make the other one a duplicate.
						tx.MarkSeen("x", "h")
						return errors.New("fails after marking")
					}
					return tx.MarkSeen("x", "h")
				})
			}()
		}
		wg.Wait()
		if errors.Is(results[1], errDup) {
			var seen string
			db.View(func(tx *Tx) error { seen = tx.Seen("x"); return nil })
			if seen == "" {
				t.Fatal("told duplicate about a mark that was never committed")
			}
		}
		if results[1] != nil && !errors.Is(results[1], errDup) {
			t.Fatalf("second call: %v", results[1])
		}
	}
}

// TestAuditVerifyFrom: checking from a verified prefix covers what was
// appended since, and catches a prefix that no longer ends where it did.
func TestAuditVerifyFrom(t *testing.T) {
	db := MustOpen(t)
	appendEvents(t, db, 5)
	first, err := db.VerifyAudit()
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, db, 3)
	var r AuditReport
	err = db.View(func(tx *Tx) (err error) {
		r, err = tx.VerifyAuditFrom(note.VerifierList(db.signer.Verifier()), first)
		return err
	})
	if err != nil || r.Events != 8 {
		t.Fatalf("from 5: %+v, %v", r, err)
	}
	if err := db.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAudit).Delete(seqKey(7)) }); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *Tx) (err error) {
		_, err = tx.VerifyAuditFrom(note.VerifierList(db.signer.Verifier()), first)
		return err
	})
	if !errors.Is(err, ErrAuditBroken) {
		t.Fatalf("a deleted event after the prefix: %v", err)
	}
	bad := first
	bad.Root = "AAAA"
	err = db.View(func(tx *Tx) (err error) {
		_, err = tx.VerifyAuditFrom(note.VerifierList(db.signer.Verifier()), bad)
		return err
	})
	if !errors.Is(err, ErrAuditBroken) {
		t.Fatalf("a prefix that does not end where it did: %v", err)
	}
}

// TestAuditUpgrade: a log of the earlier format (a hash chain with a signed
// head) becomes a Merkle tree over its stored events when the store opens,
// with an event that names the old head; then it verifies and grows.
func TestAuditUpgrade(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	signer, err := crypto.NewAuditNoteSigner("test", priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gateway.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		ev, _ := tx.CreateBucketIfNotExists(bucketAudit)
		meta, _ := tx.CreateBucketIfNotExists(bucketMeta)
		for i := uint64(1); i <= 3; i++ {
			raw := fmt.Sprintf(`{"seq":%d,"at":"2026-11-30T10:00:00Z","actor":"iom/x","action":"referral.send","outcome":"queued","prev":"p%d","hash":"h%d"}`, i, i, i)
			if err := ev.Put(seqKey(i), []byte(raw)); err != nil {
				return err
			}
		}
		return meta.Put(keyAuditHead, []byte(`{"seq":3,"hash":"h3","signature":"00"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	db, err := Open(path, signer)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	appendEvents(t, db, 2)
	r, err := db.VerifyAuditWith(note.VerifierList(signer.Verifier()))
	if err != nil || r.Events != 6 {
		t.Fatalf("after the upgrade: %+v, %v", r, err)
	}
	evs := func() []AuditEvent {
		var out []AuditEvent
		db.View(func(tx *Tx) (err error) { out, err = tx.AuditEvents(0, 10); return err })
		return out
	}()
	if up := evs[3]; up.Action != ActAuditUpgrade || up.Detail["previous_head"] != "h3" || up.Detail["previous_events"] != "3" {
		t.Fatalf("upgrade event %+v", up)
	}
}

// A Later call joins the next Batch call's transaction, commits alone when
// none comes, and one that fails does not fail the Batch it joined.
func TestLater(t *testing.T) {
	db := MustOpen(t)
	// Alone: committed within LaterDelay or so, and reported.
	done := make(chan error, 1)
	db.Later(putRecord("alone"), func(err error) { done <- err })
	answered(t, done, "a Later call alone never committed")
	db.View(func(tx *Tx) error {
		if _, err := tx.Record("alone"); err != nil {
			t.Errorf("not stored: %v", err)
		}
		return nil
	})

	// With a Batch call: one transaction for both.
	var laterTx, batchTx *bolt.Tx
	joined := make(chan error, 1)
	db.Later(func(tx *Tx) error { laterTx = tx.tx; return putRecord("later")(tx) }, func(err error) { joined <- err })
	if err := db.Batch(func(tx *Tx) error { batchTx = tx.tx; return putRecord("batch")(tx) }); err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	if laterTx == nil || laterTx != batchTx {
		t.Error("the Later call did not join the Batch call's transaction")
	}

	// A failing Later call: the Batch call it joined still commits.
	boom := errors.New("boom")
	failed := make(chan error, 1)
	db.Later(func(tx *Tx) error { return boom }, func(err error) { failed <- err })
	if err := db.Batch(putRecord("after")); err != nil {
		t.Fatalf("the Batch call failed with the Later one: %v", err)
	}
	if err := <-failed; !errors.Is(err, boom) {
		t.Fatalf("the Later call reported %v", err)
	}
	db.View(func(tx *Tx) error {
		for _, id := range []string{"later", "batch", "after"} {
			if _, err := tx.Record(id); err != nil {
				t.Errorf("%s not stored: %v", id, err)
			}
		}
		return nil
	})
}

// Batch and Later calls from many goroutines, in bursts and alone: every
// call is committed and answered once, whoever commits it (a caller, the
// goroutine that takes over under load, or the Later calls' timer), and
// no Later call is left behind when the burst ends.
func TestGroupCommitMixed(t *testing.T) {
	db := MustOpen(t)
	const rounds, perRound = 20, 12
	var answered sync.Map
	var laters sync.WaitGroup
	for r := range rounds {
		var wg sync.WaitGroup
		for i := range perRound {
			id := fmt.Sprintf("r%d-%d", r, i)
			put := putRecord(id)
			if i%3 == 0 {
				laters.Add(1)
				db.Later(put, func(err error) {
					if _, again := answered.LoadOrStore(id, err); again {
						t.Errorf("%s answered twice", id)
					}
					laters.Done()
				})
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := db.Batch(put); err != nil {
					t.Errorf("%s: %v", id, err)
				}
				answered.Store(id, nil)
			}()
		}
		wg.Wait()
		if r%4 == 3 {
			// Later calls alone: their timer commits them.
			time.Sleep(LaterDelay / 5)
		}
	}
	// A Later call queued while a group commits, and no Batch call
	// after it.
	laters.Add(1)
	last := putRecord("last")
	err := db.Batch(func(tx *Tx) error {
		db.Later(last, func(err error) {
			if err != nil {
				t.Errorf("last: %v", err)
			}
			laters.Done()
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { laters.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("a Later call was never answered")
	}
	db.View(func(tx *Tx) error {
		for r := range rounds {
			for i := range perRound {
				id := fmt.Sprintf("r%d-%d", r, i)
				if _, err := tx.Record(id); err != nil {
					t.Errorf("%s not stored: %v", id, err)
				}
				if v, ok := answered.Load(id); !ok || v != nil {
					t.Errorf("%s answered %v (%v)", id, v, ok)
				}
			}
		}
		return nil
	})
}

// A Later call's done that panics, in the goroutine of the Batch call that
// committed it: the Batch call's write is committed, the panic reaches that
// caller, and the store goes on committing.
func TestLaterDonePanics(t *testing.T) {
	db := MustOpen(t)
	db.Later(putRecord("later"), func(error) { panic("done panics") })
	func() {
		defer func() {
			if p := recover(); p != "done panics" {
				t.Fatalf("recovered %v, want the done's panic", p)
			}
		}()
		db.Batch(putRecord("batch"))
		t.Fatal("no panic reached the committing caller")
	}()
	ids := []string{"later", "batch"}
	errs := make(chan error, 8)
	for i := range 8 {
		id := fmt.Sprint("after", i)
		ids = append(ids, id)
		go func() { errs <- db.Batch(putRecord(id)) }()
	}
	for range 8 {
		answered(t, errs, "the store stopped committing after a panic")
	}
	db.View(func(tx *Tx) error {
		for _, id := range ids {
			if _, err := tx.Record(id); err != nil {
				t.Errorf("%s not stored: %v", id, err)
			}
		}
		return nil
	})
}

// answered waits for a call's answer on ch and fails the test if it is an
// error, or if none comes within 10 s (saying stuck).
func answered(t *testing.T, ch <-chan error, stuck string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal(stuck)
	}
}

// putRecord is a store call that puts an outbox record with id.
func putRecord(id string) func(*Tx) error {
	return func(tx *Tx) error {
		return tx.PutRecord(&Record{ID: id, Box: Outbox, CreatedAt: time.Unix(1, 0)})
	}
}
