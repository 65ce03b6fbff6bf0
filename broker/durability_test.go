package broker

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/testport"
)

// childEnv names the environment variable that turns the test binary into
// a broker process for the durability test.
const childEnv = "RUJUKAN_BROKER_TEST_CHILD"

type childConfig struct {
	Listen    string
	DataDir   string
	Directory []byte `json:"-"` // passed through DirectoryFile
	Authority []byte
	// DirectoryFile is set by startChild.
	DirectoryFile string
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChild(cfg))
	}
	os.Exit(m.Run())
}

// runChild runs a broker until SIGTERM, like the broker command does.
func runChild(raw string) int {
	var cc childConfig
	if err := json.Unmarshal([]byte(raw), &cc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	signed, err := os.ReadFile(cc.DirectoryFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := DefaultConfig()
	cfg.Listen, cfg.DataDir, cfg.Directory, cfg.Authority = cc.Listen, cc.DataDir, signed, ed25519.PublicKey(cc.Authority)
	s, err := New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := s.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("READY %s\n", s.ClientURL())
	<-ctx.Done()
	s.Close()
	return 0
}

func freePort(t *testing.T) int { return freePortB(t) }

func freePortB(t testing.TB) int { return testport.Free(t) }

// startChild starts the broker as a subprocess and waits until it is ready.
func startChild(t *testing.T, cc childConfig) *exec.Cmd { return startChildB(t, cc) }

func startChildB(t testing.TB, cc childConfig) *exec.Cmd {
	t.Helper()
	cc.DirectoryFile = filepath.Join(t.TempDir(), "network.json")
	if err := os.WriteFile(cc.DirectoryFile, cc.Directory, 0o644); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(cc)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY ") {
				ready <- nil
				return
			}
		}
		ready <- errors.New("broker process exited before it was ready")
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("broker process not ready")
	}
	return cmd
}

func TestDurabilitySIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts broker subprocesses")
	}
	n := newTestNet(t, "iom", "shelter")
	// One sender publishes more messages than its default share of an
	// inbox, and nobody reads them: give it a much larger inbox to itself.
	n.setLimits("", &crypto.Limits{InboxMaxBytes: 64 << 30, SenderMaxBytes: 64 << 30})
	cc := childConfig{
		Listen:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		DataDir:   filepath.Join(t.TempDir(), "broker"),
		Directory: n.sign(t),
		Authority: n.AuthPub,
	}
	url := "nats://" + cc.Listen
	child := startChild(t, cc)

	const total = 300
	sender := mustConnect(t, url, n.Agencies["iom"], client.WithTimeout(2*time.Second))
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		next  = make(chan int)
		wg    sync.WaitGroup
	)
	killed := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id := fmt.Sprintf("env-%04d", i)
				if err := sender.Publish(context.Background(), "shelter", id, []byte("body of "+id)); err == nil {
					mu.Lock()
					acked[id] = true
					if len(acked) == total/2 {
						// Kill the broker while publishes are in flight.
						child.Process.Signal(syscall.SIGKILL)
						close(killed)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range total {
		next <- i
	}
	close(next)
	wg.Wait()
	<-killed
	child.Wait()
	mu.Lock()
	ackedBeforeKill := len(acked)
	mu.Unlock()
	t.Logf("%d of %d publishes acknowledged before and around SIGKILL", ackedBeforeKill, total)

	startChild(t, cc)
	// The sender reconnects by itself and retries what was not acked, with
	// the same message ids.
	deadline := time.Now().Add(30 * time.Second)
	for i := range total {
		id := fmt.Sprintf("env-%04d", i)
		if acked[id] {
			continue
		}
		for {
			err := sender.Publish(context.Background(), "shelter", id, []byte("body of "+id))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("republish %s: %v", id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	rx := mustConnect(t, url, n.Agencies["shelter"])
	var all []string
	for i := range total {
		all = append(all, fmt.Sprintf("env-%04d", i))
	}
	seen := drainAll(t, rx, all, 30*time.Second)
	for i := range total {
		id := fmt.Sprintf("env-%04d", i)
		if seen[id] != 1 {
			t.Errorf("%s delivered %d times (acknowledged before the kill: %v)", id, seen[id], acked[id])
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct messages, want %d", len(seen), total)
	}
}

// drainAll fetches and acks until every id in want has arrived (or the
// timeout passes), then once more briefly to catch duplicates. It returns
// how many times each message id was delivered, and checks each body.
func drainAll(t *testing.T, rx *client.Client, want []string, timeout time.Duration) map[string]int {
	t.Helper()
	ctx := context.Background()
	seen := map[string]int{}
	missing := map[string]bool{}
	for _, id := range want {
		missing[id] = true
	}
	deadline := time.Now().Add(timeout)
	quiet := 0
	for quiet < 2 {
		if len(missing) > 0 && time.Now().After(deadline) {
			break
		}
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		msgs, err := rx.Fetch(fctx, 100)
		cancel()
		if err != nil {
			t.Logf("fetch: %v", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if len(msgs) == 0 && len(missing) == 0 {
			quiet++
		}
		for _, m := range msgs {
			id := m.MsgID()
			if string(m.Data()) != "body of "+id {
				t.Fatalf("message %s corrupted: %q", id, m.Data())
			}
			seen[id]++
			delete(missing, id)
			if err := m.AckSync(ctx); err != nil {
				t.Fatalf("ack %s: %v", id, err)
			}
		}
	}
	return seen
}
