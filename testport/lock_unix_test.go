//go:build unix

package testport

import "testing"

// TestReserveIsExclusive: a port's lock, once held, cannot be taken by
// another holder (flock treats each open file as its own holder, as it
// would another process) until it is let go.
func TestReserveIsExclusive(t *testing.T) {
	p := Free(t)
	if _, ok := reserve(p); ok {
		t.Fatalf("port %d reserved again while handed out", p)
	}
	q := lowest + 7 // any port: take, then let go, then take again
	f, ok := reserve(q)
	if !ok {
		t.Skipf("port %d held by another test process", q)
	}
	if _, ok := reserve(q); ok {
		t.Fatalf("port %d reserved twice", q)
	}
	f.Close()
	g, ok := reserve(q)
	if !ok {
		t.Fatalf("port %d not reservable after its lock was let go", q)
	}
	g.Close()
}
