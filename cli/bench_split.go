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
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
	"go.yaml.in/yaml/v3"
)

// BenchSplit sends n referrals from iom to the shelter with c clients
// while each gateway runs as a child process (`rujukan gateway`) and the
// broker in this process, then reads each gateway's peak RSS and the CPU
// time of all three processes (the load generator is a fourth, not
// counted). Delivery is observed on the sender's
// /metrics, so latencies and commits are not measured here.
func BenchSplit(ctx context.Context, data string, n, c int, w io.Writer) (BenchResult, error) {
	if err := InitDevNetwork(data); err != nil {
		return BenchResult{}, err
	}
	authority, err := crypto.ParseAuthorityKey("@" + filepath.Join(data, "authority", "authority.pub"))
	if err != nil {
		return BenchResult{}, err
	}
	signed, err := os.ReadFile(filepath.Join(data, "network.json"))
	if err != nil {
		return BenchResult{}, err
	}
	bcfg := broker.DefaultConfig()
	bcfg.Listen = "127.0.0.1:-1"
	bcfg.DataDir = filepath.Join(data, "broker")
	bcfg.Directory, bcfg.Authority = signed, authority
	bcfg.Logger = discardLogger()
	b, err := broker.New(bcfg)
	if err != nil {
		return BenchResult{}, err
	}
	if err := b.Start(ctx); err != nil {
		return BenchResult{}, err
	}
	defer b.Close()
	urls, metrics := map[string]string{}, map[string]string{}
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
			return BenchResult{}, err
		}
		gc.HTTP.Listen = "127.0.0.1:" + strconv.Itoa(port)
		mport, err := freeLoopbackPort()
		if err != nil {
			return BenchResult{}, err
		}
		gc.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(mport)
		metrics[id] = "http://" + gc.Metrics.Listen
		raw, err := yaml.Marshal(gc)
		if err != nil {
			return BenchResult{}, err
		}
		path := filepath.Join(data, id+".yaml")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return BenchResult{}, err
		}
		cmd, err := selfCommand(ctx, "gateway", "--config", path)
		if err != nil {
			return BenchResult{}, err
		}
		cmd.Env = append(append(cmd.Env, os.Environ()...), "RUJUKAN_LOG=error")
		if dir := os.Getenv("RUJUKAN_BENCH_PROFILES"); dir != "" {
			cmd.Env = append(cmd.Env, "RUJUKAN_CPUPROFILE="+filepath.Join(dir, id+".prof"))
		}
		if err := cmd.Start(); err != nil {
			return BenchResult{}, err
		}
		procs[id] = cmd
		urls[id] = "http://" + gc.HTTP.Listen
		if err := waitReady(ctx, urls[id]); err != nil {
			return BenchResult{}, fmt.Errorf("gateway %s: %w", id, err)
		}
	}
	tok, err := MintDevToken(TokenConfig{Data: data, Agency: "iom", Subject: "bench", TTL: time.Hour})
	if err != nil {
		return BenchResult{}, err
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var delivered atomic.Int64
	if err := settleBeforeRun(ctx); err != nil {
		return BenchResult{}, err
	}
	bar := startProgress(w, "referrals, gateways as processes", n, "delivered", func() int { return int(delivered.Load()) })
	defer bar.Stop()
	cpu0 := cpuTime() + procCPU(procs["iom"]) + procCPU(procs["shelter"])
	sw0 := ctxSwitches() + procSwitches(procs["iom"]) + procSwitches(procs["shelter"])
	t0 := time.Now()
	var sendErr error
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		_, sendErr = load{URL: urls["iom"] + "/v1/referrals", Kind: "referral", N: n, C: c, Token: tok}.run(ctx)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := deliveredCount(client, metrics["iom"])
		if err != nil {
			return BenchResult{}, err
		}
		delivered.Store(int64(got))
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			return BenchResult{}, fmt.Errorf("bench: %d of %d delivered after 2 minutes", got, n)
		}
		poll := 20 * time.Millisecond
		select {
		case <-sending:
			if sendErr != nil {
				return BenchResult{}, sendErr
			}
		default:
			poll = 250 * time.Millisecond // while sending, /metrics is read now and then only
		}
		time.Sleep(poll)
	}
	el := time.Since(t0)
	<-sending
	cpu := cpuTime() + procCPU(procs["iom"]) + procCPU(procs["shelter"]) - cpu0
	sw := ctxSwitches() + procSwitches(procs["iom"]) + procSwitches(procs["shelter"]) - sw0
	res := BenchResult{Name: "referrals, gateways as processes", N: n, Elapsed: el, PerSecond: float64(n) / el.Seconds(),
		CPU: cpu / time.Duration(n), Switches: float64(sw) / float64(n), RSS: procMaxRSS("self"), GatewayRSS: map[string]int64{}}
	for id, p := range procs {
		res.GatewayRSS[id] = procMaxRSS(strconv.Itoa(p.Process.Pid))
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

// deliveredCount reads the delivered outcomes counter from the metrics
// listener at base.
func deliveredCount(c *http.Client, base string) (int, error) {
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/metrics answered %d", base, resp.StatusCode)
	}
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

// resetPeakRSS returns the memory this process no longer uses to the
// system and makes its peak resident set size start again from there, so
// that each run reads its own peak; the reset does nothing where /proc does
// not allow it.
func resetPeakRSS() {
	debug.FreeOSMemory()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// procCPU returns the CPU time (user and system) a child process has used
// so far, read from /proc, or 0 where it is not available.
func procCPU(p *exec.Cmd) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: the fields
	// counted from 1 start after its closing parenthesis, at field 3.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on Linux.
const clockTicks = 100
