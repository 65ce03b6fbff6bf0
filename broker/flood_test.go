package broker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// procKB reads a field (VmRSS, VmHWM) of /proc/<pid>/status in KiB.
func procKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// TestFloodBounded floods the police inbox of a broker process with
// messages of the largest size from eight connections of one agency, with
// that agency's own keys and the default limits. The broker stores no more
// than the agency's share, refuses the rest with a limit error, keeps its
// memory bounded, and still accepts another agency's message.
func TestFloodBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a broker process")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the broker's memory")
	}
	n := newTestNet(t, "iom", "shelter", "police")
	cc := childConfig{
		Listen:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		DataDir:   t.TempDir(),
		Directory: n.sign(t),
		Authority: n.AuthPub,
	}
	url := "nats://" + cc.Listen
	cmd := startChild(t, cc)
	pid := cmd.Process.Pid
	before, err := procKB(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}

	limits := crypto.DefaultLimits()
	share := senderMax(limits, DefaultConfig().MaxMsgSize)
	const (
		publishers = 8
		each       = 100
		size       = client.MaxMessageSize - 4096
	)
	var accepted, limited atomic.Int64
	var other []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	data := make([]byte, size)
	start := time.Now()
	for p := range publishers {
		c := mustConnect(t, url, n.Agencies["iom"])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := c.Publish(context.Background(), "police", fmt.Sprintf("flood-%d-%d", p, i), data)
				switch {
				case err == nil:
					accepted.Add(1)
				case errors.Is(err, client.ErrLimit):
					limited.Add(1)
				default:
					mu.Lock()
					other = append(other, err)
					mu.Unlock()
				}
			}
		}()
	}
	var peak int64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for sampling := true; sampling; {
		select {
		case <-done:
			sampling = false
		case <-time.After(50 * time.Millisecond):
		}
		if kb, err := procKB(pid, "VmRSS"); err == nil {
			peak = max(peak, kb)
		}
	}
	took := time.Since(start)
	hwm, _ := procKB(pid, "VmHWM")
	if len(other) > 0 {
		t.Fatalf("%d publishes failed for another reason than a limit; first: %v", len(other), other[0])
	}
	if accepted.Load() != share {
		t.Fatalf("the broker stored %d of the flood's messages, want exactly the sender's share of %d", accepted.Load(), share)
	}
	if got := accepted.Load() + limited.Load(); got != publishers*each {
		t.Fatalf("%d publishes answered, want %d", got, publishers*each)
	}
	shelter := mustConnect(t, url, n.Agencies["shelter"])
	if err := shelter.Publish(context.Background(), "police", "honest", []byte("referral")); err != nil {
		t.Fatalf("another agency's message refused after the flood: %v", err)
	}
	sent := int64(publishers*each) * size
	t.Logf("flood: %d MiB offered in %s by %d connections, %d messages (%d MiB) stored, %d refused for the limit; broker RSS %d MiB before, peak sampled %d MiB, high-water mark %d MiB",
		sent>>20, took.Round(time.Millisecond), publishers, accepted.Load(), (accepted.Load()*size)>>20, limited.Load(),
		before>>10, peak>>10, hwm>>10)
	// A generous bound: the default limits keep the broker well below it
	// (the point is that it does not grow with the flood).
	if hwm > 768<<10 {
		t.Fatalf("the broker's memory reached %d MiB during the flood", hwm>>10)
	}
}
