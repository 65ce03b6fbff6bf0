package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/cli/clitest"
	"github.com/rujukan/rujukan/crypto"
)

// spawnBroker runs the broker as a child process (`rujukan broker`) on
// the network's port and data, and waits until it accepts connections.
// It returns the process, for its memory to be read.
func (n *network) spawnBroker(extra ...string) *exec.Cmd {
	n.t.Helper()
	args := append([]string{"broker", "--network", filepath.Join(n.data, "network.json"),
		"--authority", "@" + filepath.Join(n.data, "authority", "authority.pub"),
		"--data", filepath.Join(n.data, "broker"), "--listen", "127.0.0.1:" + strconv.Itoa(n.brokerPort), "--log-level", "warn"}, extra...)
	cmd := clitest.Command(args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(n.brokerPort), 100*time.Millisecond); err == nil {
			c.Close()
			time.Sleep(200 * time.Millisecond) // provisioning follows the listener
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("the broker did not start: %s", stderr.String())
	return nil
}

// rss is a process's resident memory in bytes (Linux), 0 if unknown.
func rss(pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// dirSize is the bytes of the files below dir.
func dirSize(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

// peak keeps the largest value seen.
type peak struct{ v atomic.Int64 }

func (p *peak) see(v int64) {
	for {
		old := p.v.Load()
		if v <= old || p.v.CompareAndSwap(old, v) {
			return
		}
	}
}

// TestFloodFromOneAgency: IOM, with its own broker credentials and
// signing key, floods the police inbox from eight publishers with
// maximum-size envelopes, validly signed by IOM, whose bodies are no
// referral (the receiving gateway must open each to find out). Meanwhile
// the shelter sends the police a referral. The broker and the police
// gateway are real processes whose memory and store are sampled
// throughout: the shelter's referral is delivered within 10 s, the
// broker's store and memory stay within its limits, and the police audit
// log grows by a bounded number of events.
func TestFloodFromOneAgency(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the broker for 20 s")
	}
	const (
		flood      = 20 * time.Second
		publishers = 8
	)
	n := newNetwork(t)
	brokerProc := n.spawnBroker()
	n.spawnGateway("police")
	n.startGateway("shelter")
	police, shelter := n.api("police"), n.api("shelter")
	auditSize := func() uint64 {
		var cp struct{ Size uint64 }
		r := police.do(t, "GET", "/v1/audit/checkpoint", nil)
		json.Unmarshal(r.Raw, &cp)
		return cp.Size
	}
	// One referral before the flood, for the delivery time without it.
	quiet := time.Now()
	r := shelter.do(t, "POST", "/v1/referrals", sampleReferral("police"))
	if r.Status != 202 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	waitStatus(t, shelter.url, shelter.tok, r.str("id"), "delivered")
	t.Logf("a referral without the flood: delivered after %v", time.Since(quiet))
	before := auditSize()

	seed, err := client.LoadNKeySeed(filepath.Join(n.data, "agencies", "iom", crypto.NATSSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	seal := sealer(t, n, "iom")
	junk := make([]byte, crypto.MaxEnvelopeSize-64<<10)
	rand.Read(junk)
	var brokerRSS, policeRSS, store peak
	var published, refused atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), flood)
	defer cancel()
	var wg sync.WaitGroup
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.Connect(context.Background(), n.brokerURL(), "iom", seed, client.NoRetryOnFailedConnect())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for ctx.Err() == nil {
				id := crypto.NewID()
				env := seal("police", crypto.KindReferral, id, junk)
				if err := c.Publish(ctx, "police", id, env); err != nil {
					if ctx.Err() == nil {
						refused.Add(1)
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				published.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			brokerRSS.see(rss(brokerProc.Process.Pid))
			policeRSS.see(rss(n.procs["police"].Process.Pid))
			store.see(dirSize(filepath.Join(n.data, "broker")))
			time.Sleep(100 * time.Millisecond)
		}
	}()

	// Halfway through, the shelter refers someone to the police.
	time.Sleep(flood / 2)
	start := time.Now()
	r = shelter.do(t, "POST", "/v1/referrals", sampleReferral("police"))
	if r.Status != 202 {
		t.Fatalf("send during the flood: %d %s", r.Status, r.Raw)
	}
	eventually(t, "the shelter's referral delivered to the police during the flood", 10*time.Second, func() (bool, string) {
		s, _ := statusOf(t, shelter.url, shelter.tok, r.str("id"))
		return s == "delivered", s
	})
	during := time.Since(start)
	wg.Wait()
	grew := auditSize() - before
	t.Logf("flood: %d envelopes of %d KiB published by IOM in %v (%.0f MB), %d publishes refused by the broker",
		published.Load(), len(junk)>>10, flood, float64(published.Load())*float64(len(junk))/1e6, refused.Load())
	t.Logf("the shelter's referral during the flood: delivered after %v", during)
	t.Logf("peaks: broker RSS %d MiB, broker store %d MiB, police gateway RSS %d MiB; police audit log +%d events",
		brokerRSS.v.Load()>>20, store.v.Load()>>20, policeRSS.v.Load()>>20, grew)
	if published.Load() == 0 {
		t.Fatal("the flood published nothing")
	}
	// The broker keeps only IOM's share of the police inbox (plus its own
	// metadata), and both processes stay near their soft memory limits
	// (384 MiB and 256 MiB by default; the runtime may pass a soft limit
	// by what is live, so some room is left). Without the limits, the
	// same flood stored 680 MiB and the broker reached 690 MiB.
	share := crypto.DefaultLimits().SenderMaxBytes
	if got := store.v.Load(); got > share+32<<20 {
		t.Errorf("the broker stored up to %d MiB; IOM's share of the police inbox is %d MiB", got>>20, share>>20)
	}
	if got := brokerRSS.v.Load(); got > 512<<20 {
		t.Errorf("the broker's memory reached %d MiB (soft limit 384 MiB)", got>>20)
	}
	if got := policeRSS.v.Load(); got > 320<<20 {
		t.Errorf("the police gateway's memory reached %d MiB (soft limit 256 MiB)", got>>20)
	}
	// Refusals are counted, not logged one by one: the two referrals'
	// events and one summary per sender per interval.
	if grew > 60 {
		t.Errorf("the police audit log grew by %d events during the flood", grew)
	}
}
