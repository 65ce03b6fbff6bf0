// Package store keeps one agency gateway's state in a single bbolt file:
// referral records and their timelines, envelopes exactly as sent or
// received, the outbox queue, received receipts, the dedup set of envelope
// ids, and the audit log (a Merkle tree with a signed checkpoint).
//
// Every change is made inside one bbolt read-write transaction (Update), so
// a record, its envelope, its queue entry and its audit event are committed
// together or not at all. bbolt fsyncs every commit; the store never turns
// that off.
//
// # Caveats
//
// The store holds ciphertext only: envelopes are kept as received and opened
// on read by the caller. Records carry routing metadata and states, never
// personal data.
package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors.
var (
	// ErrNotFound is returned when a record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrBadCursor is returned for a list cursor this store did not make.
	ErrBadCursor = errors.New("bad cursor")
	// ErrLocked is returned when another process holds the database file.
	ErrLocked = errors.New("database is locked by another process")
)

// Box says whether a record was sent or received.
type Box string

// Boxes.
const (
	Inbox  Box = "inbox"
	Outbox Box = "outbox"
)

var (
	bucketRecords   = []byte("records")
	bucketEnvelopes = []byte("envelopes")
	bucketQueue     = []byte("queue")
	bucketReceipts  = []byte("receipts")
	bucketSeen      = []byte("seen")
	bucketAudit     = []byte("audit")
	bucketMeta      = []byte("meta")
	bucketIdxInbox  = []byte("idx-inbox")
	bucketIdxOutbox = []byte("idx-outbox")
	bucketPending   = []byte("pending")
	bucketQueueIdx  = []byte("queue-index")
	bucketLinks     = []byte("links")
	bucketDue       = []byte("due")
	bucketWaiting   = []byte("waiting")
	// bucketAuditHashes holds the audit tree's stored hashes
	// (tlog.StoredHashes), keyed by stored hash index.
	bucketAuditHashes = []byte("audit-hashes")
	allBuckets        = [][]byte{bucketRecords, bucketEnvelopes, bucketQueue, bucketReceipts, bucketSeen,
		bucketAudit, bucketMeta, bucketIdxInbox, bucketIdxOutbox, bucketPending, bucketQueueIdx,
		bucketLinks, bucketDue, bucketWaiting, bucketAuditHashes}
	keyAuditCheckpoint = []byte("audit-checkpoint")
	keyDirectory       = []byte("directory-version")
)

// Event is one entry of a record's timeline. Entries are kept in the order
// the record went through them, which is not always the order of their
// times: At is read from the clock of the agency named by Clock.
type Event struct {
	Event string    `json:"event"`
	At    time.Time `json:"at"`
	// By is who made the step: "agency/subject" for staff, "agency" for a
	// gateway's own steps.
	By string `json:"by"`
	// Clock is the agency whose clock gave At.
	Clock string `json:"clock,omitempty"`
	// Reason is a reason code (such as a rejection reason), never free
	// text.
	Reason string `json:"reason,omitempty"`
	// Note is free text written by staff (the reason given for a status
	// change), encrypted by the caller: it may speak of the person.
	Note []byte `json:"note,omitempty"`
}

// Record is what the gateway knows about one referral or statement request:
// routing metadata, state and timeline. The body stays in the envelope.
type Record struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Box       Box       `json:"box"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Status    string    `json:"status"`
	Priority  string    `json:"priority,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// ReceivedAt is when this gateway stored the envelope (for the sender:
	// when it accepted it).
	ReceivedAt time.Time `json:"received_at"`
	// Deadline is when an undelivered outbox record becomes failed.
	Deadline time.Time `json:"deadline"`
	// Outcome is the one delivery outcome of an outbox record: "",
	// "delivered" or "failed". It is set once and never changed.
	Outcome string `json:"outcome,omitempty"`
	// EnvelopeHash is the hex SHA-256 of the envelope bytes.
	EnvelopeHash string `json:"envelope_hash"`
	// Due is when an open statement request expires (zero for none).
	Due time.Time `json:"due,omitzero"`
	// Related names other envelopes and sealed copies that belong to the
	// record, by role ("statement", "consent"); ids only.
	Related map[string]string `json:"related,omitempty"`
	// Thread is the key id of the thread the record's first message
	// opened (PutThread), for its receipts and status envelopes.
	Thread   string  `json:"thread,omitempty"`
	Timeline []Event `json:"timeline"`
}

// QueueItem is an envelope waiting to be published.
type QueueItem struct {
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	To       string    `json:"to"`
	Ref      string    `json:"ref,omitempty"`
	Deadline time.Time `json:"deadline"`
	Attempts int       `json:"attempts"`
}

// DB is an open gateway database.
type DB struct {
	db     *bolt.DB
	signer Signer // nil when opened read-only
	now    func() time.Time

	// Group commit: Batch and Later calls queue here and are committed
	// together, in one transaction. committer is true while a goroutine
	// commits them (the first Batch call's own, at a low rate, or one
	// that takes over under load); later is the timer that commits Later
	// calls when no Batch call comes for them.
	mu        sync.Mutex
	queue     []*call
	committer bool
	later     *time.Timer

	// commits counts the read-write transactions committed by Update and
	// the group committer (each one fsynced), for rujukan bench.
	commits atomic.Uint64
}

type call struct {
	fn func(*Tx) error
	// done gets a Batch call's outcome; then is told a Later call's.
	done chan error
	then func(error)
	// at is when a Later call was queued (zero for Batch calls).
	at time.Time
}

// answer tells the call its outcome.
func (c *call) answer(err error) {
	if c.at.IsZero() {
		c.done <- err
	} else if c.then != nil {
		c.then(err)
	}
}

// Open opens or creates the database at path. The signer signs the audit
// checkpoint once in every transaction that added audit events.
func Open(path string, signer Signer) (*DB, error) {
	if signer == nil {
		return nil, errors.New("store: no checkpoint signer")
	}
	// The free list is not written at each commit (bbolt rebuilds it when
	// the file is opened: a little time at start for a smaller commit), and
	// kept as a map, whose allocations do not slow down as the file grows.
	// The file is mapped 256 MiB at a time (address space, not memory), so
	// it grows without remapping, which holds up every reader, at each
	// doubling.
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true,
		FreelistType: bolt.FreelistMapType, InitialMmapSize: 256 << 20})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("failed to open database %s: %w", path, err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("failed to create buckets in %s: %w", path, err)
	}
	d := &DB{db: bdb, signer: signer, now: time.Now}
	if err := d.upgradeAudit(); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("failed to upgrade the audit log of %s: %w", path, err)
	}
	return d, nil
}

// OpenReadOnly opens an existing database for reading only, for auditors,
// who verify its audit log with VerifyAuditWith. It waits up to two seconds
// for a running gateway to let go of the file.
func OpenReadOnly(path string) (*DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("failed to open database: %w", err)
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%s: %w (stop the gateway, or ask it: GET /v1/audit/verify)", path, ErrLocked)
		}
		return nil, fmt.Errorf("failed to open database %s: %w", path, err)
	}
	return &DB{db: bdb, now: time.Now}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Check runs bbolt's consistency check.
func (d *DB) Check() error {
	return d.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

// Tx is a transaction. Read methods work in both kinds; write methods only
// inside Update.
type Tx struct {
	tx *bolt.Tx
	db *DB
	// size is the audit tree size as this transaction leaves it (read
	// from the checkpoint when sizeLoaded); dirty when events were added
	// and the checkpoint needs signing before commit.
	size       int64
	sizeLoaded bool
	dirty      bool
}

// Update runs fn in one read-write transaction, committed with fsync when fn
// returns nil.
func (d *DB) Update(fn func(*Tx) error) error {
	err := d.db.Update(func(btx *bolt.Tx) error {
		t := &Tx{tx: btx, db: d}
		if err := safely(fn, t); err != nil {
			return err
		}
		return t.signCheckpoint()
	})
	if err == nil {
		d.commits.Add(1)
	}
	return err
}

// Commits returns how many transactions Update and Batch have committed
// since the database was opened.
func (d *DB) Commits() uint64 { return d.commits.Load() }

// Batch is Update for functions that only touch the store: concurrent
// calls are committed together, in one transaction and one fsync, while the
// previous group is being written. If one of them fails, the group is rolled
// back and the others run again, each alone; so fn may run twice and must
// have no effect outside the transaction.
//
// A call that finds no commit under way commits its group in its own
// goroutine (at a low rate, alone or with the Later calls waiting): no
// other goroutine is woken for it, and none wakes it. Under load, calls
// that come meanwhile are committed by a goroutine that takes over, so a
// caller waits for its own group only.
func (d *DB) Batch(fn func(*Tx) error) error {
	c := &call{fn: fn, done: make(chan error, 1)}
	if d.enqueue(c) {
		d.commitGroups(true, false)
	}
	return <-c.done
}

// Later is Batch for bookkeeping that may wait a little and may be lost in
// a crash (the caller can redo it): fn joins the next group commit, or
// commits alone after LaterDelay when none comes, and Later returns at
// once. done, when not nil, gets the outcome, called by the goroutine that
// committed: it must not block, nor call Batch, which would wait for the
// goroutine it is called from. It saves a commit and an fsync of its own,
// and the signature of an audit checkpoint.
func (d *DB) Later(fn func(*Tx) error, done func(error)) {
	d.enqueue(&call{fn: fn, then: done, at: time.Now()})
}

// enqueue queues c and says whether the caller is to commit: a Batch call
// that finds no committer. A Later call that finds none arms the timer
// that commits it if no Batch call comes first.
func (d *DB) enqueue(c *call) (commit bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queue = append(d.queue, c)
	if d.committer {
		return false
	}
	if c.at.IsZero() {
		d.committer = true
		d.stopLater()
		return true
	}
	if d.later == nil {
		d.armLater(LaterDelay)
	}
	return false
}

// armLater arms the timer that commits the queued Later calls after wait,
// unless a Batch call takes them first. d.mu is held.
func (d *DB) armLater(wait time.Duration) {
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		d.mu.Lock()
		if d.later != t || d.committer || len(d.queue) == 0 {
			d.mu.Unlock()
			return
		}
		d.later = nil
		d.committer = true
		d.mu.Unlock()
		d.commitGroups(false, false)
	})
	d.later = t
}

// stopLater stops the Later calls' timer: a committer takes them. d.mu is
// held.
func (d *DB) stopLater() {
	if d.later != nil {
		d.later.Stop()
		d.later = nil
	}
}

// groupDelay is how long a busy committer (one that has just committed
// and found calls queued meanwhile) lets the next group gather: under load
// a little latency buys fewer, larger fsyncs. A committer that was idle
// only yields once, so that calls already on their way (a fetched batch,
// concurrent requests) may join the group: at a low rate nothing else
// would come, and a wait would only add to every commit's latency.
// LaterDelay is the longest a Later call waits for a group to join.
const (
	groupDelay = time.Millisecond
	LaterDelay = 25 * time.Millisecond
)

// commitGroups commits queued calls until the queue is empty or holds
// Later calls only that may still wait. d.committer is true, and is false
// again when it returns. A caller's goroutine (own) commits one group, its
// own call's, and hands the rest to a goroutine of their own; busy says
// the last round committed, so that more may be on its way.
func (d *DB) commitGroups(own, busy bool) {
	defer func() {
		if p := recover(); p != nil {
			// The group was answered (commitGroup); the calls queued
			// since are not left without a committer.
			d.mu.Lock()
			if len(d.queue) > 0 {
				go d.commitGroups(false, true)
			} else {
				d.committer = false
			}
			d.mu.Unlock()
			panic(p)
		}
	}()
	for {
		if busy {
			if d.idle() {
				return
			}
			if own {
				// The caller's group is committed: another goroutine
				// takes over, so that the caller waits for its own group
				// only.
				go d.commitGroups(false, true)
				return
			}
			// Calls that came while the last group was being written
			// mean more are on their way: let them gather.
			time.Sleep(groupDelay)
		} else {
			runtime.Gosched()
		}
		if d.idle() {
			return
		}
		d.mu.Lock()
		group := d.queue
		d.queue = nil
		d.mu.Unlock()
		busy = true
		d.commitGroup(group)
	}
}

// idle says whether the committer has nothing to commit now, and then lets
// go: the queue is empty, or holds Later calls only that may still wait
// for a Batch call (their timer is armed for when they may not).
func (d *DB) idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.queue) == 0 {
		d.committer = false
		return true
	}
	if wait := laterWait(d.queue); wait > 0 {
		d.committer = false
		d.armLater(wait)
		return true
	}
	return false
}

// commitGroup commits the calls of group in one transaction and answers
// each. Every call is answered, even when a Later call's done panics (the
// panic goes on once all are) or bbolt does (all are told it failed).
func (d *DB) commitGroup(group []*call) {
	answered := false
	defer func() {
		if p := recover(); p != nil {
			if !answered {
				err := fmt.Errorf("store: panic while committing: %v", p)
				answerAll(group, func(*call) error { return err })
			}
			panic(p)
		}
	}()
	failed := -1
	err := d.db.Update(func(btx *bolt.Tx) error {
		t := &Tx{tx: btx, db: d}
		for i, c := range group {
			if err := safely(c.fn, t); err != nil {
				failed = i
				return err
			}
		}
		return safely(func(t *Tx) error { return t.signCheckpoint() }, t)
	})
	outcome := func(*call) error { return err }
	if err == nil {
		d.commits.Add(1)
	} else if failed >= 0 && len(group) > 1 {
		// The failure may come from another call's writes, now rolled
		// back: every call runs again alone before any is answered.
		errs := make(map[*call]error, len(group))
		for _, c := range group {
			errs[c] = d.Update(c.fn)
		}
		outcome = func(c *call) error { return errs[c] }
	}
	answered = true
	answerAll(group, outcome)
}

// answerAll answers each call of group with its outcome. A done that
// panics does not keep the others from their answers: the first panic goes
// on once every call is answered.
func answerAll(group []*call, outcome func(*call) error) {
	var panicked any
	for _, c := range group {
		func() {
			defer func() {
				if p := recover(); p != nil && panicked == nil {
					panicked = p
				}
			}()
			c.answer(outcome(c))
		}()
	}
	if panicked != nil {
		panic(panicked)
	}
}

// laterWait returns how much longer a group of Later calls only may wait
// for a Batch call, 0 when it commits now.
func laterWait(group []*call) time.Duration {
	oldest := time.Now()
	for _, c := range group {
		if c.at.IsZero() {
			return 0
		}
		if c.at.Before(oldest) {
			oldest = c.at
		}
	}
	return max(0, LaterDelay-time.Since(oldest))
}

// safely runs fn, turning a panic into an error so that one bad call does
// not take the committer down.
func safely(fn func(*Tx) error, t *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in store transaction: %v", p)
		}
	}()
	return fn(t)
}

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(*Tx) error) error {
	return d.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx, db: d}) })
}

func (t *Tx) b(name []byte) *bolt.Bucket { return t.tx.Bucket(name) }

func getJSON(b *bolt.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("corrupt entry %q in bucket: %w", key, err)
	}
	return nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// Record returns the record with the given id.
func (t *Tx) Record(id string) (*Record, error) {
	var r Record
	if err := getJSON(t.b(bucketRecords), []byte(id), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// PutRecord stores r, adding it to its box's index when it is new.
func (t *Tx) PutRecord(r *Record) error {
	idx := t.b(bucketIdxOutbox)
	if r.Box == Inbox {
		idx = t.b(bucketIdxInbox)
	}
	if t.b(bucketRecords).Get([]byte(r.ID)) == nil {
		if err := idx.Put(indexKey(r.CreatedAt, r.ID), nil); err != nil {
			return err
		}
	}
	return putJSON(t.b(bucketRecords), []byte(r.ID), r)
}

func indexKey(created time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(created.UnixNano()))
	return append(k, id...)
}

// Envelope returns the stored envelope bytes with the given id.
func (t *Tx) Envelope(id string) ([]byte, error) {
	v := t.b(bucketEnvelopes).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

// PutEnvelope stores envelope bytes under their envelope id.
func (t *Tx) PutEnvelope(id string, env []byte) error {
	return t.b(bucketEnvelopes).Put([]byte(id), env)
}

// Seen returns the hash recorded for an incoming envelope id, or "" when
// the id has not been stored before.
func (t *Tx) Seen(id string) string { return string(t.b(bucketSeen).Get([]byte(id))) }

// MarkSeen records an incoming envelope id with the hash of its bytes, so a
// redelivery (same bytes) is told apart from a replay (same id, other
// bytes).
func (t *Tx) MarkSeen(id, hash string) error {
	return t.b(bucketSeen).Put([]byte(id), []byte(hash))
}

// Enqueue adds an envelope to the outbox queue and returns its sequence
// number. The envelope itself must be stored with PutEnvelope in the same
// transaction.
func (t *Tx) Enqueue(it QueueItem) (uint64, error) {
	q := t.b(bucketQueue)
	seq, err := q.NextSequence()
	if err != nil {
		return 0, err
	}
	it.Seq = seq
	if err := t.b(bucketQueueIdx).Put([]byte(it.ID), seqKey(seq)); err != nil {
		return 0, err
	}
	return seq, putJSON(q, seqKey(seq), it)
}

// Queued1 returns the queue item with the given sequence number.
func (t *Tx) Queued1(seq uint64) (*QueueItem, error) {
	var it QueueItem
	if err := getJSON(t.b(bucketQueue), seqKey(seq), &it); err != nil {
		return nil, err
	}
	return &it, nil
}

// Dequeue removes a published item from the queue.
func (t *Tx) Dequeue(seq uint64) error {
	q := t.b(bucketQueue)
	var it QueueItem
	if err := getJSON(q, seqKey(seq), &it); err == nil {
		if err := t.b(bucketQueueIdx).Delete([]byte(it.ID)); err != nil {
			return err
		}
	}
	return q.Delete(seqKey(seq))
}

// QueuedEnvelope returns the queue item of an envelope id, if it is still
// waiting to be published.
func (t *Tx) QueuedEnvelope(id string) (*QueueItem, bool) {
	k := t.b(bucketQueueIdx).Get([]byte(id))
	if k == nil {
		return nil, false
	}
	var it QueueItem
	if err := getJSON(t.b(bucketQueue), k, &it); err != nil {
		return nil, false
	}
	return &it, true
}

// UpdateQueued replaces a queue item (to count attempts).
func (t *Tx) UpdateQueued(it QueueItem) error { return putJSON(t.b(bucketQueue), seqKey(it.Seq), it) }

// Queued returns up to max queue items in order.
func (t *Tx) Queued(max int) ([]QueueItem, error) {
	var out []QueueItem
	c := t.b(bucketQueue).Cursor()
	for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
		var it QueueItem
		if err := json.Unmarshal(v, &it); err != nil {
			return nil, fmt.Errorf("corrupt queue entry: %w", err)
		}
		out = append(out, it)
	}
	return out, nil
}

// QueuedFrom returns up to max queue items in order, from sequence seq on,
// leaving out those skip (when not nil) names by sequence, which are not
// decoded.
func (t *Tx) QueuedFrom(seq uint64, max int, skip func(uint64) bool) ([]QueueItem, error) {
	var out []QueueItem
	c := t.b(bucketQueue).Cursor()
	for k, v := c.Seek(seqKey(seq)); k != nil && len(out) < max; k, v = c.Next() {
		if skip != nil && len(k) == 8 && skip(binary.BigEndian.Uint64(k)) {
			continue
		}
		var it QueueItem
		if err := json.Unmarshal(v, &it); err != nil {
			return nil, fmt.Errorf("corrupt queue entry: %w", err)
		}
		out = append(out, it)
	}
	return out, nil
}

// QueueLen returns the number of envelopes waiting to be published, as of
// the last commit (changes made in this transaction are not counted).
func (t *Tx) QueueLen() int { return t.b(bucketQueue).Stats().KeyN }

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// AddReceipt stores the signed receipt of one event (delivered, read,
// rejected) for a record. A record keeps at most one receipt per event: it
// reports false, and stores nothing, when the event already has one.
func (t *Tx) AddReceipt(recordID, event string, signed []byte) (bool, error) {
	rb, err := t.b(bucketReceipts).CreateBucketIfNotExists([]byte(recordID))
	if err != nil {
		return false, err
	}
	if rb.Get([]byte(event)) != nil {
		return false, nil
	}
	return true, rb.Put([]byte(event), signed)
}

// Receipts returns the signed receipts of a record.
func (t *Tx) Receipts(recordID string) [][]byte {
	rb := t.b(bucketReceipts).Bucket([]byte(recordID))
	if rb == nil {
		return nil
	}
	var out [][]byte
	rb.ForEach(func(_, v []byte) error {
		out = append(out, bytes.Clone(v))
		return nil
	})
	return out
}

// DirectoryVersion returns the highest network directory version this
// gateway has accepted, 0 if none.
func (t *Tx) DirectoryVersion() uint64 {
	v := t.b(bucketMeta).Get(keyDirectory)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// SetDirectoryVersion records the directory version now in force.
func (t *Tx) SetDirectoryVersion(v uint64) error {
	return t.b(bucketMeta).Put(keyDirectory, seqKey(v))
}

// Exists reports whether id is already used by a record or an envelope of
// this gateway, sent or received.
func (t *Tx) Exists(id string) bool {
	return t.b(bucketRecords).Get([]byte(id)) != nil || t.b(bucketEnvelopes).Get([]byte(id)) != nil
}

// PutPending remembers an outbox record that waits for a delivery outcome,
// keyed by deadline so the sweeper finds the overdue ones first.
func (t *Tx) PutPending(r *Record) error {
	return t.b(bucketPending).Put(indexKey(r.Deadline, r.ID), nil)
}

// DeletePending forgets a pending record once it has its outcome.
func (t *Tx) DeletePending(r *Record) error {
	return t.b(bucketPending).Delete(indexKey(r.Deadline, r.ID))
}

// Overdue returns the ids of pending records whose deadline is before now.
func (t *Tx) Overdue(now time.Time, max int) []string {
	return overdue(t.b(bucketPending), now, max)
}

func overdue(b *bolt.Bucket, now time.Time, max int) []string {
	var ids []string
	c := b.Cursor()
	for k, _ := c.First(); k != nil && len(ids) < max; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) >= now.UnixNano() {
			break
		}
		ids = append(ids, string(k[8:]))
	}
	return ids
}

// ListOptions select a page of records.
type ListOptions struct {
	Box    Box
	Status string // empty: any
	Kind   string // empty: any
	Limit  int
	Cursor string
}

// List returns records of one box, newest first, and the cursor of the next
// page ("" on the last page).
func (t *Tx) List(o ListOptions) ([]*Record, string, error) {
	idx := t.b(bucketIdxOutbox)
	if o.Box == Inbox {
		idx = t.b(bucketIdxInbox)
	}
	c := idx.Cursor()
	var k []byte
	if o.Cursor != "" {
		after, err := base64.RawURLEncoding.DecodeString(o.Cursor)
		if err != nil || len(after) < 9 {
			return nil, "", ErrBadCursor
		}
		// Seek finds the first key >= the cursor; the page goes on below it.
		if k, _ = c.Seek(after); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	} else {
		k, _ = c.Last()
	}
	// A filter that matches little would read the whole box; a page stops
	// after a bounded number of records and its cursor goes on from there.
	budget := 20*o.Limit + 1000
	var out []*Record
	var last []byte // the last key examined; the next page starts below it
	for ; k != nil; k, _ = c.Prev() {
		if len(out) == o.Limit || budget == 0 {
			return out, base64.RawURLEncoding.EncodeToString(last), nil
		}
		budget--
		last = k
		r, err := t.Record(string(k[8:]))
		if err != nil {
			return nil, "", err
		}
		if (o.Status != "" && r.Status != o.Status) || (o.Kind != "" && r.Kind != o.Kind) {
			continue
		}
		out = append(out, r)
	}
	return out, "", nil
}

// PutLink remembers that envelope id (a status or statement envelope this
// gateway sent) concerns record ref, so a receipt for it finds the record.
func (t *Tx) PutLink(id, ref string) error {
	return t.b(bucketLinks).Put([]byte(id), []byte(ref))
}

// Link returns the record an envelope sent by this gateway concerns, or ""
// (also for a record's own envelope, whose id is the record's).
func (t *Tx) Link(id string) string { return string(t.b(bucketLinks).Get([]byte(id))) }

// PutDue remembers that record id falls due at at.
func (t *Tx) PutDue(at time.Time, id string) error {
	return t.b(bucketDue).Put(indexKey(at, id), nil)
}

// DeleteDue forgets a due date set by PutDue.
func (t *Tx) DeleteDue(at time.Time, id string) error {
	return t.b(bucketDue).Delete(indexKey(at, id))
}

// PastDue returns the ids of records whose due date is before now.
func (t *Tx) PastDue(now time.Time, max int) []string {
	return overdue(t.b(bucketDue), now, max)
}

// Waiting is an incoming envelope that cannot be applied yet (a status that
// arrived before its referral). It is kept here, acknowledged at the
// broker, so it never holds a slot of the inbox consumer.
type Waiting struct {
	// From is the broker-authenticated sender.
	From     string    `json:"from"`
	Envelope []byte    `json:"envelope"`
	Since    time.Time `json:"since"`
	Tries    int       `json:"tries"`
}

// PutWaiting stores (or replaces) a waiting envelope under its id.
func (t *Tx) PutWaiting(id string, w Waiting) error {
	return putJSON(t.b(bucketWaiting), waitKey(w.From, id), w)
}

// Waiting returns the waiting envelope of sender from with id, if any.
func (t *Tx) Waiting(from, id string) (Waiting, bool) {
	var w Waiting
	err := getJSON(t.b(bucketWaiting), waitKey(from, id), &w)
	return w, err == nil
}

// DeleteEnvelope forgets envelope bytes no longer needed (a receipt
// envelope once the broker has it: the signed receipt is kept apart).
func (t *Tx) DeleteEnvelope(id string) error {
	return t.b(bucketEnvelopes).Delete([]byte(id))
}

// DeleteWaiting removes a waiting envelope.
func (t *Tx) DeleteWaiting(from, id string) error {
	return t.b(bucketWaiting).Delete(waitKey(from, id))
}

// WaitingFrom counts the envelopes waiting from one sender.
func (t *Tx) WaitingFrom(from string) int {
	n := 0
	c := t.b(bucketWaiting).Cursor()
	prefix := []byte(from + "\x00")
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// WaitingEntry is one waiting envelope with its id.
type WaitingEntry struct {
	ID string
	Waiting
}

// AllWaiting returns up to max waiting envelopes, in key order (sender,
// then id) after the key after (nil: from the first), and the key to pass
// as after for the next scan (nil once the scan reached the end), so that
// successive scans go round every sender's envelopes however many wait.
func (t *Tx) AllWaiting(after []byte, max int) ([]WaitingEntry, []byte, error) {
	var out []WaitingEntry
	c := t.b(bucketWaiting).Cursor()
	k, v := c.First()
	if after != nil {
		if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	var last []byte
	for ; k != nil && len(out) < max; k, v = c.Next() {
		last = k
		_, id, ok := bytes.Cut(k, []byte{0})
		if !ok {
			continue
		}
		var w Waiting
		if err := json.Unmarshal(v, &w); err != nil {
			return nil, nil, fmt.Errorf("corrupt waiting entry: %w", err)
		}
		out = append(out, WaitingEntry{ID: string(id), Waiting: w})
	}
	if k == nil {
		return out, nil, nil
	}
	return out, bytes.Clone(last), nil
}

func waitKey(from, id string) []byte { return []byte(from + "\x00" + id) }

// Stats are counts for metrics and readiness.
type Stats struct {
	Queued  int
	Pending int
	Records int
	Audit   int
}

// Stats returns the current counts.
func (d *DB) Stats() (s Stats, err error) {
	err = d.View(func(t *Tx) error {
		s = Stats{
			Queued:  t.b(bucketQueue).Stats().KeyN,
			Pending: t.b(bucketPending).Stats().KeyN,
			Records: t.b(bucketRecords).Stats().KeyN,
			Audit:   t.b(bucketAudit).Stats().KeyN,
		}
		return nil
	})
	return s, err
}

// HasReceipt reports whether a record or envelope has a receipt for event.
func (t *Tx) HasReceipt(recordID, event string) bool {
	rb := t.b(bucketReceipts).Bucket([]byte(recordID))
	return rb != nil && rb.Get([]byte(event)) != nil
}
