//go:build unix

package crypto

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// openNoFollow opens a file for reading without following a symbolic link
// in its last element and without blocking on a FIFO.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

// ownedBySelf refuses a file that another user owns: whoever owns a key
// file can replace the key.
func ownedBySelf(st fs.FileInfo) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(sys.Uid) != uid {
		return fmt.Errorf("is owned by user %d, not by this user (%d)", sys.Uid, uid)
	}
	return nil
}
