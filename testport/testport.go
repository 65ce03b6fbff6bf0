// Package testport hands tests TCP ports on the loopback address for the
// processes and servers they start on a port of their choosing.
//
// A port the kernel picks (listening on port 0) comes from the ephemeral
// range, and once closed the kernel may give it to any outgoing
// connection on the machine: with the broker, the gateways and their
// clients of other tests running at the same time, a node of a test
// cluster then finds its port taken. Free picks below the ephemeral range
// (which the kernel never hands out by itself), checks that the port can
// be bound, and never hands the same port twice: not in one process, and
// not to two test processes running at the same time (go test runs
// packages in parallel), which each hold a lock on a file named after
// every port they were handed until they exit.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	mu     sync.Mutex
	handed = map[int]bool{}
	// locks are the open lock files of the ports handed out; they stay
	// open, and so locked, until the process exits.
	locks []*os.File
)

// lowest is the lowest port Free hands out.
const lowest = 10000

// Free returns a TCP port on 127.0.0.1 that was free a moment ago and that
// nothing but another test picking ports at random will take.
func Free(t testing.TB) int {
	t.Helper()
	port, err := free()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func free() (int, error) {
	top := ephemeralLow() - 1
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		p := lowest + rand.IntN(top-lowest+1)
		if handed[p] {
			continue
		}
		lock, ok := reserve(p)
		if !ok {
			handed[p] = true // another test process holds it
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			lock.Close()
			continue
		}
		ln.Close()
		handed[p] = true
		locks = append(locks, lock)
		return p, nil
	}
	return 0, fmt.Errorf("testport: no free port between %d and %d", lowest, top)
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= lowest+1000 {
		return 32768
	}
	return lo
}
