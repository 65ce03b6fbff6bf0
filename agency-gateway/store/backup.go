package store

import (
	"io"

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
