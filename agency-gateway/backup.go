package gateway

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
)

// ActStoreBackup is recorded when a backup of the gateway's data begins
// (outcome "started", so the copy holds it) and when it ends ("completed"
// with its size in bytes, or "failed").
const ActStoreBackup store.Action = "store.backup"

// Names in a backup archive. The database and the files have the names
// they have in the data folder.
const (
	BackupDBName = "gateway.db"
	// BackupKeyIDName holds AtRestKeyID of the at-rest key the backup
	// needs (the key itself is not in it).
	BackupKeyIDName = "at-rest.key.id"
)

// AtRestKeyFile is the at-rest key's name in the data folder.
const AtRestKeyFile = "at-rest.key"

// AtRestKeyID names the at-rest key in file path without telling it: a
// hash of the file, to check that a backup is restored with its key.
func AtRestKeyID(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(append([]byte("rujukan at-rest key id\n"), raw...))
	return hex.EncodeToString(h[:]), nil
}

// Backup writes a backup of this gateway's data to w while it runs (see
// WriteBackup), recorded in the audit log.
func (g *Gateway) Backup(w io.Writer) error {
	err := g.db.Update(func(tx *store.Tx) error {
		return tx.Audit(store.AuditEvent{At: g.now().UTC(), Actor: g.self, Action: ActStoreBackup, Outcome: "started"})
	})
	if err != nil {
		return err
	}
	cw := &countWriter{w: w}
	berr := WriteBackup(g.db, g.cfg.Data, cw)
	e := store.AuditEvent{At: g.now().UTC(), Actor: g.self, Action: ActStoreBackup, Outcome: "completed",
		Detail: map[string]string{"bytes": strconv.FormatInt(cw.n, 10)}}
	if berr != nil {
		e.Outcome, e.Detail = "failed", nil
	}
	if err := g.db.Update(func(tx *store.Tx) error { return tx.Audit(e) }); err != nil && berr == nil {
		return err
	}
	return berr
}

// WriteBackup writes a tar archive of a gateway's data folder: gateway.db,
// a consistent copy of the open database (store.DB.Snapshot), the id of
// the at-rest key (AtRestKeyID; the key is not in the archive), then every
// whole sealed attachment file under attachments/ (files still arriving,
// *.part, are left out: the sender sends them again). Unpacked into an
// empty folder, it is a data folder the gateway starts from.
//
// The archive holds what the data folder holds but its at-rest key:
// envelopes sealed to the agency's age key and its own copies, notes, file
// names and consent records sealed with the at-rest key (neither key is
// in it), sealed files, records' routing metadata and timelines, the audit
// log, and the web app's staff accounts (password hashes and second-factor
// secrets). Keep the at-rest key apart from the backups, with the agency's
// keys: a backup is restored with it (rujukan restore checks it is the
// one).
func WriteBackup(db *store.DB, data string, w io.Writer) error {
	tw := tar.NewWriter(w)
	now := time.Now().UTC().Truncate(time.Second)
	err := db.Snapshot(func(size int64) (io.Writer, error) {
		return tw, tw.WriteHeader(&tar.Header{Name: BackupDBName, Size: size, Mode: 0o600, ModTime: now, Typeflag: tar.TypeReg})
	})
	if err != nil {
		return fmt.Errorf("backup: the database: %w", err)
	}
	id, err := AtRestKeyID(filepath.Join(data, AtRestKeyFile))
	if err != nil {
		return fmt.Errorf("backup: the at-rest key: %w", err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: BackupKeyIDName, Size: int64(len(id)), Mode: 0o600, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, id); err != nil {
		return err
	}
	root := filepath.Join(data, "attachments")
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == root {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, path)
		name := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: 0o700, ModTime: now, Typeflag: tar.TypeDir})
		case !d.Type().IsRegular() || strings.HasSuffix(name, ".part"):
			return nil
		}
		return addFile(tw, path, name)
	})
	if err != nil {
		return fmt.Errorf("backup: the attachments: %w", err)
	}
	return tw.Close()
}

// addFile adds one sealed file; one removed meanwhile (expired) is left
// out.
func addFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Size: fi.Size(), Mode: 0o600, ModTime: fi.ModTime().UTC(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.CopyN(tw, f, fi.Size())
	return err
}
