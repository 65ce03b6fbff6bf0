package cli

import (
	"archive/tar"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/run"
	"github.com/rujukan/rujukan/agency-gateway/store"
)

func init() {
	register(Command{
		Name:    "backup",
		Summary: "copy a gateway's data (database and sealed files) to a tar archive, while it runs or stopped",
		Run:     runBackup,
	})
}

func runBackup(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "backup")
	dataDir := gatewayDataFlags(fs, "backed up")
	out := fs.String("out", "", "archive to write (a new file, 0600), or - for standard output")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("backup: --out is required (a file, or - for standard output)")
	}
	dir, err := dataDir(env)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if *out == "-" {
		return Backup(ctx, dir, env.Stdout)
	}
	n, err := BackupFile(ctx, dir, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "backup of %s: %d bytes in %s (checked)\n", dir, n, *out)
	return nil
}

// gatewayDataFlags adds --config and --data to fs, and returns what reads
// the gateway data folder they name (verb: what is done to it).
func gatewayDataFlags(fs *flag.FlagSet, verb string) func(Env) (string, error) {
	config := fs.String("config", "", "the gateway's config file (its data: folder is "+verb+")")
	data := fs.String("data", "", "the gateway's data folder, instead of --config")
	return func(env Env) (string, error) {
		switch {
		case (*config == "") == (*data == ""):
			return "", errors.New("give --config or --data")
		case *data != "":
			return *data, nil
		}
		gc, err := gateway.LoadConfig(*config, env.Getenv)
		return gc.Data, err
	}
}

// Backup writes a backup archive of the gateway data folder data to w
// (gateway.WriteBackup): made by the gateway itself when it runs (over
// its backup socket, and audited), read from the files when it is
// stopped.
func Backup(ctx context.Context, data string, w io.Writer) error {
	err := run.RequestBackup(ctx, data, w)
	if !errors.Is(err, run.ErrNoBackupSocket) {
		return err
	}
	db, err := store.OpenReadOnly(filepath.Join(data, gatewayDBFile))
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("backup: a gateway holds %s but does not answer on %s", filepath.Join(data, gatewayDBFile), filepath.Join(data, run.BackupSocketName))
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer db.Close()
	return gateway.WriteBackup(db, data, w)
}

// BackupFile writes the backup to a new file out (0600), then checks it
// (CheckBackup) before giving it its name. It returns its size.
func BackupFile(ctx context.Context, data, out string) (int64, error) {
	if _, err := os.Lstat(out); err == nil {
		return 0, fmt.Errorf("backup: %s exists", out)
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp*")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = Backup(ctx, data, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if err := CheckBackup(tmp); err != nil {
		return 0, err
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return 0, err
	}
	if err := os.Link(tmp, out); err != nil { // never replaces a file
		return 0, fmt.Errorf("backup: %w", err)
	}
	return fi.Size(), nil
}

// CheckBackup reads a backup archive through: every entry whole, and its
// gateway.db a database that passes bbolt's consistency check.
func CheckBackup(path string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".backup-check*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	return unpackBackup(path, tmp)
}

// unpackBackup unpacks a backup archive into the empty folder dir and
// checks it: only gateway.db, at-rest.key.id and files and folders under
// attachments/
// (nothing else, no links, no path leaving dir), the archive whole to its
// end marker, the database passing bbolt's consistency check.
func unpackBackup(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("backup: %s is not a whole archive: %w", path, err)
		}
		name := filepath.FromSlash(strings.TrimSuffix(h.Name, "/"))
		inFiles := strings.HasPrefix(name, "attachments"+string(filepath.Separator)) || name == "attachments"
		switch {
		case !filepath.IsLocal(name) || filepath.Clean(name) != name || (name != gateway.BackupDBName && name != gateway.BackupKeyIDName && !inFiles):
			return fmt.Errorf("backup: %s holds %q, which is no part of a gateway's data", path, h.Name)
		case h.Typeflag == tar.TypeDir && inFiles:
			if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
				return err
			}
		case h.Typeflag == tar.TypeReg:
			found = found || name == gateway.BackupDBName
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
				return err
			}
			if err := copyOut(tr, filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("backup: %s is cut short in %s: %w", path, h.Name, err)
			}
		default:
			return fmt.Errorf("backup: %s holds %q, which is not a plain file or folder", path, h.Name)
		}
	}
	if !found {
		return fmt.Errorf("backup: %s holds no %s", path, gateway.BackupDBName)
	}
	if err := endsWhole(f); err != nil {
		return fmt.Errorf("backup: %s: %w", path, err)
	}
	db, err := store.OpenReadOnly(filepath.Join(dir, gatewayDBFile))
	if err != nil {
		return fmt.Errorf("backup: %s: %w", path, err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		return fmt.Errorf("backup: %s: the database is damaged: %w", path, err)
	}
	return nil
}

// endsWhole checks that an archive ends with tar's end marker (two zero
// blocks): one cut between two entries reads as whole without it.
func endsWhole(f *os.File) error {
	var end [1024]byte
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < int64(len(end)) {
		return errors.New("the archive has no end marker: it is cut short")
	}
	if _, err := f.ReadAt(end[:], fi.Size()-int64(len(end))); err != nil {
		return err
	}
	for _, b := range end {
		if b != 0 {
			return errors.New("the archive has no end marker: it is cut short")
		}
	}
	return nil
}

func copyOut(r io.Reader, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
