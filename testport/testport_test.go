package testport

import (
	"net"
	"strconv"
	"testing"
)

// TestFree hands out distinct ports below the ephemeral range that can be
// listened on.
func TestFree(t *testing.T) {
	seen := map[int]bool{}
	top := ephemeralLow()
	for range 200 {
		p := Free(t)
		if p < lowest || p >= top {
			t.Fatalf("port %d is outside [%d, %d)", p, lowest, top)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	p := Free(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d cannot be listened on: %v", p, err)
	}
	ln.Close()
}
