//go:build !unix

package testport

import "os"

// reserve cannot lock across processes here: ports are unique only
// within one process.
func reserve(int) (*os.File, bool) {
	f, err := os.Open(os.DevNull)
	return f, err == nil
}
