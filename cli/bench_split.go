package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
	"go.yaml.in/yaml/v3"
)

// SplitResult is a run with the iom and shelter gateways in processes of
// their own, to measure each gateway's memory.
type SplitResult struct {
	BenchResult
	// MaxRSS is the peak resident set size of each gateway process.
	MaxRSS map[string]int64 `json:"max_rss_bytes"`
}

// BenchSplit sends n referrals from iom to the shelter with c clients
// while each gateway runs as a child process (`rujukan gateway`) and the
// broker in this process, then reads each gateway's peak RSS. Delivery is
// observed on the sender's /metrics, so latencies are not measured here.
func BenchSplit(ctx context.Context, data string, n, c int) (SplitResult, error) {
	if err := InitDevNetwork(data); err != nil {
		return SplitResult{}, err
	}
	authority, err := crypto.ParseAuthorityKey("@" + filepath.Join(data, "authority", "authority.pub"))
	if err != nil {
		return SplitResult{}, err
	}
	signed, err := os.ReadFile(filepath.Join(data, "network.json"))
	if err != nil {
		return SplitResult{}, err
	}
	bcfg := broker.DefaultConfig()
	bcfg.Listen = "127.0.0.1:-1"
	bcfg.DataDir = filepath.Join(data, "broker")
	bcfg.Directory, bcfg.Authority = signed, authority
	bcfg.Logger = discardLogger()
	b, err := broker.New(bcfg)
	if err != nil {
		return SplitResult{}, err
	}
	if err := b.Start(ctx); err != nil {
		return SplitResult{}, err
	}
	defer b.Close()
	exe, err := os.Executable()
	if err != nil {
		return SplitResult{}, err
	}
	urls := map[string]string{}
	procs := map[string]*exec.Cmd{}
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	for _, id := range []string{"iom", "shelter"} {
		gc := DevGatewayConfig(data, id, b.ClientURL())
		port, err := freeLoopbackPort()
		if err != nil {
			return SplitResult{}, err
		}
		gc.HTTP.Listen = "127.0.0.1:" + strconv.Itoa(port)
		raw, err := yaml.Marshal(gc)
		if err != nil {
			return SplitResult{}, err
		}
		path := filepath.Join(data, id+".yaml")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return SplitResult{}, err
		}
		cmd := exec.CommandContext(ctx, exe, "gateway", "--config", path)
		cmd.Env = append(os.Environ(), "RUJUKAN_LOG=error")
		if dir := os.Getenv("RUJUKAN_BENCH_PROFILES"); dir != "" {
			cmd.Env = append(cmd.Env, "RUJUKAN_CPUPROFILE="+filepath.Join(dir, id+".prof"))
		}
		if err := cmd.Start(); err != nil {
			return SplitResult{}, err
		}
		procs[id] = cmd
		urls[id] = "http://" + gc.HTTP.Listen
		if err := waitReady(ctx, urls[id]); err != nil {
			return SplitResult{}, fmt.Errorf("gateway %s: %w", id, err)
		}
	}
	tok, err := MintDevToken(TokenConfig{Data: data, Agency: "iom", Subject: "bench", TTL: time.Hour})
	if err != nil {
		return SplitResult{}, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c + 8}, Timeout: 30 * time.Second}
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sendErr error
	t0 := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if _, _, err := postReferral(client, urls["iom"]+"/v1/referrals", tok); err != nil {
					mu.Lock()
					sendErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	if sendErr != nil {
		return SplitResult{}, sendErr
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := deliveredCount(client, urls["iom"])
		if err != nil {
			return SplitResult{}, err
		}
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			return SplitResult{}, fmt.Errorf("bench: %d of %d delivered after 2 minutes", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	el := time.Since(t0)
	res := SplitResult{BenchResult: BenchResult{Name: "referrals, gateways as processes", N: n, Elapsed: el,
		PerSecond: float64(n) / el.Seconds()}, MaxRSS: map[string]int64{}}
	for id, p := range procs {
		res.MaxRSS[id] = procMaxRSS(strconv.Itoa(p.Process.Pid))
	}
	return res, nil
}

func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(ctx context.Context, base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s is not ready after 30s", base)
}

// deliveredCount reads the delivered outcomes counter from /metrics.
func deliveredCount(c *http.Client, base string) (int, error) {
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "rujukan_delivery_outcomes_total{") && strings.Contains(line, `outcome="delivered"`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return int(v), err
		}
	}
	return 0, sc.Err()
}

// procMaxRSS returns the peak resident set size (VmHWM) of a process, by
// pid or "self", or 0 where /proc is not available.
func procMaxRSS(proc string) int64 {
	b, err := os.ReadFile("/proc/" + proc + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
