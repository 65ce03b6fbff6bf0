//go:build unix

package testport

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// reserve takes an exclusive lock on the file that stands for port p,
// shared by all test processes of this user; it fails when another live
// process holds it. The kernel drops the lock when the holder exits,
// however it exits.
func reserve(p int) (*os.File, bool) {
	dir := filepath.Join(os.TempDir(), "rujukan-testport-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}
