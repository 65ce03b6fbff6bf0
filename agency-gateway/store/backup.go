package store

import (
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Snapshot writes a consistent copy of the whole database file, as of one
// read transaction, while the database stays open and writable: open is
// given the copy's size in bytes and returns where to write it. The copy
// opens as a database of its own.
func (d *DB) Snapshot(open func(size int64) (io.Writer, error)) error {
	return d.db.View(func(tx *bolt.Tx) error {
		w, err := open(tx.Size())
		if err != nil {
			return err
		}
		_, err = tx.WriteTo(w)
		return err
	})
}

// DropStaffSessions removes every web app session from the database file
// at path, which no gateway may have open: a copy being restored. Whoever
// was signed in signs in again, and a session that ended after the copy
// was made does not come back. It returns how many it removed.
func DropStaffSessions(path string) (int, error) {
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return 0, fmt.Errorf("%s: %w", path, ErrLocked)
	}
	if err != nil {
		return 0, fmt.Errorf("failed to open database %s: %w", path, err)
	}
	n := 0
	err = bdb.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStaffSessions)
		if b == nil {
			return nil
		}
		n = b.Stats().KeyN
		if err := tx.DeleteBucket(bucketStaffSessions); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketStaffSessions)
		return err
	})
	if cerr := bdb.Close(); err == nil {
		err = cerr
	}
	return n, err
}
