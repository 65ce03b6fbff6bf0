package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/run"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
)

func init() {
	register(Command{
		Name:    "restore",
		Summary: "put a gateway's data back from a backup archive (the gateway stopped)",
		Run:     runRestore,
	})
}

func runRestore(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "restore")
	dataDir := gatewayDataFlags(fs, "restored")
	from := fs.String("from", "", "the backup archive (rujukan backup --out)")
	replace := fs.Bool("replace", false, "move the data there now aside, into DATA/replaced-<time>/, instead of refusing")
	key := fs.String("at-rest-key", "", "the gateway's at-rest key file (kept apart from the backups), when DATA/at-rest.key is not there")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("restore: --from is required")
	}
	dir, err := dataDir(env)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	res, err := Restore(ctx, RestoreConfig{Data: dir, Archive: *from, Replace: *replace, AtRestKey: *key})
	if err != nil {
		return err
	}
	if res.Aside != "" {
		fmt.Fprintf(env.Stderr, "the data that was there is in %s\n", res.Aside)
	}
	fmt.Fprintf(env.Stderr, "restored %s from %s (%d web sessions of the backup dropped: staff sign in again); start the gateway\n", dir, *from, res.Sessions)
	return nil
}

// RestoreConfig is what `rujukan restore` needs.
type RestoreConfig struct {
	// Data is the gateway's data folder.
	Data string
	// Archive is the backup (rujukan backup --out).
	Archive string
	// Replace moves data already in Data aside instead of refusing.
	Replace bool
	// AtRestKey is the at-rest key file to copy into Data, when Data has
	// none.
	AtRestKey string
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	// Aside is where the data that was in the folder went (with Replace).
	Aside string
	// Sessions is how many web app sessions of the backup were dropped.
	Sessions int
}

// Restore unpacks a backup archive into the data folder of a stopped
// gateway, after checking it whole (unpackBackup) and that the at-rest key
// there (or c.AtRestKey, then copied there) is the one the backup was
// made with. It drops the backup's web app sessions: a session that ended
// after the backup does not come back. A folder that already holds a
// database is refused, or with c.Replace its gateway.db and attachments/
// are moved into DATA/replaced-<time>/.
func Restore(ctx context.Context, c RestoreConfig) (RestoreResult, error) {
	data, archive, replace := c.Data, c.Archive, c.Replace
	var d net.Dialer
	if c, err := d.DialContext(ctx, "unix", filepath.Join(data, run.BackupSocketName)); err == nil {
		c.Close()
		return RestoreResult{}, errors.New("restore: the gateway of " + data + " is running: stop it first")
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	if db, err := store.OpenReadOnly(filepath.Join(data, gatewayDBFile)); errors.Is(err, store.ErrLocked) {
		return RestoreResult{}, errors.New("restore: the gateway of " + data + " is running (it holds " + gatewayDBFile + "): stop it first")
	} else if err == nil {
		db.Close()
	}
	exists := false
	for _, name := range []string{gatewayDBFile, "attachments"} {
		if _, err := os.Lstat(filepath.Join(data, name)); err == nil {
			exists = true
			if !replace {
				return RestoreResult{}, fmt.Errorf("restore: %s exists (--replace moves it aside)", filepath.Join(data, name))
			}
		}
	}
	staged, err := os.MkdirTemp(data, ".restore*")
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(staged)
	if err := unpackBackup(archive, staged); err != nil {
		return RestoreResult{}, err
	}
	if err := restoreKey(c, filepath.Join(staged, gateway.BackupKeyIDName)); err != nil {
		return RestoreResult{}, err
	}
	var res RestoreResult
	if res.Sessions, err = store.DropStaffSessions(filepath.Join(staged, gatewayDBFile)); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	aside := ""
	if exists {
		aside = filepath.Join(data, "replaced-"+time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Mkdir(aside, 0o700); err != nil {
			return RestoreResult{}, fmt.Errorf("restore: %w", err)
		}
		if err := moveData(data, aside); err != nil {
			return RestoreResult{}, err
		}
	}
	res.Aside = aside
	if err := moveData(staged, data); err != nil {
		return res, err
	}
	return res, nil
}

// restoreKey checks that the at-rest key in the data folder, or the one
// given (then copied there), is the one whose id is in file idPath.
func restoreKey(c RestoreConfig, idPath string) error {
	want, err := os.ReadFile(idPath)
	if err != nil {
		return fmt.Errorf("restore: %s does not name its at-rest key: %w", c.Archive, err)
	}
	inData := filepath.Join(c.Data, gateway.AtRestKeyFile)
	key := inData
	_, err = os.Lstat(inData)
	switch {
	case err == nil && c.AtRestKey != "":
		return fmt.Errorf("restore: %s has an at-rest key already; --at-rest-key is for a folder without one", c.Data)
	case err == nil:
	case c.AtRestKey == "":
		return fmt.Errorf("restore: %s has no at-rest key: give the one kept with the agency's keys (--at-rest-key FILE)", c.Data)
	default:
		key = c.AtRestKey
	}
	got, err := gateway.AtRestKeyID(key)
	if err != nil {
		return fmt.Errorf("restore: the at-rest key: %w", err)
	}
	if got != string(want) {
		return fmt.Errorf("restore: %s is not the at-rest key %s was made with", key, c.Archive)
	}
	if key == inData {
		return nil
	}
	raw, err := os.ReadFile(key)
	if err != nil {
		return err
	}
	return crypto.WritePrivateFile(inData, raw, false)
}

// moveData moves gateway.db and attachments/ from one folder to another
// (on one file system).
func moveData(from, to string) error {
	for _, name := range []string{gatewayDBFile, "attachments"} {
		err := os.Rename(filepath.Join(from, name), filepath.Join(to, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restore: %w", err)
		}
	}
	return nil
}
