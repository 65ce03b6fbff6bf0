package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rujukan/rujukan/broker"
)

func init() {
	register(Command{
		Name:    "bench",
		Summary: "measure referral throughput and latency against a bare JetStream baseline",
		Run:     runBench,
	})
}

// BenchConfig is what `rujukan bench` needs.
type BenchConfig struct {
	// N referrals with C concurrent clients, as fast as they go.
	N, C int
	// Rate, when > 0, adds a paced run: Rate referrals per second offered
	// for Duration, to read latency below saturation.
	Rate     int
	Duration time.Duration
	// StatementRate, when > 0, adds a paced run of statement requests from
	// the police to the shelter, timed from the POST to delivered at the
	// police.
	StatementRate int
	// Data is a scratch directory; empty means a new temporary one.
	Data string
	// Slowest, when > 0, lists after each run its Slowest items: when
	// each was posted, accepted (202) and delivered, to tell a slow
	// acceptance from a slow delivery and spikes from a steady tail.
	Slowest int
}

// settle is how long each run waits before it starts, so that it does not
// measure the background work its predecessor left (witnessing rounds
// after a burst of audit events, the broker removing acknowledged
// messages) or the network's start.
const settle = 2 * time.Second

// settleBeforeRun resets the peak RSS, then waits settle. Returning memory
// to the system makes the next allocations fault their pages in again:
// done before the pause, not at the run's start.
func settleBeforeRun(ctx context.Context) error {
	resetPeakRSS()
	select {
	case <-time.After(settle):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// BenchResult is one measured run.
type BenchResult struct {
	Name      string        `json:"name"`
	N         int           `json:"n"`
	Failed    int           `json:"failed"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	PerSecond float64       `json:"per_second"`
	// Rate is the items per second offered, 0 when they were sent as fast
	// as they went.
	Rate int `json:"rate,omitempty"`
	// P50, P99 and P999 are the times from the POST to the delivered
	// outcome at the sender (zero when not measured).
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	// CPU is the CPU time (user and system) per item of this process and
	// of the gateway processes: the cost of one referral across the
	// broker and both gateways.
	CPU time.Duration `json:"cpu_per_item_ns"`
	// Switches is the number of context switches per item of the same
	// processes: what a paced run pays above the floor is about these
	// times Wake.CPU.
	Switches float64 `json:"switches_per_item,omitempty"`
	// Commits is the number of bbolt commits per item at both gateways
	// (zero when not counted).
	Commits float64 `json:"bbolt_commits_per_item,omitempty"`
	// RSS is the peak resident set size of this process during the run:
	// the broker and the load generator, and the gateways unless they run
	// as processes of their own; GatewayRSS is then each one's peak.
	RSS        int64            `json:"max_rss_bytes,omitempty"`
	GatewayRSS map[string]int64 `json:"gateway_max_rss_bytes,omitempty"`
}

// BenchReport is everything `rujukan bench` measured.
type BenchReport struct {
	// Bare is the bare JetStream round trip baseline of this invocation.
	Bare  BenchResult `json:"bare"`
	Floor Floor       `json:"floor"`
	// PacedFloor is the floor with each step done at the paced run's rate
	// (Rate 0 when there was no paced run).
	PacedFloor Floor `json:"floor_paced"`
	// Disk is the disk's own write-and-fsync latency, measured before the
	// runs.
	Disk DiskSync `json:"disk_sync"`
	// Wake is the CPU time of one context switch, measured before the
	// runs.
	Wake Wake          `json:"wake"`
	Runs []BenchResult `json:"runs"`
}

func runBench(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "bench")
	cfg := BenchConfig{}
	fs.IntVar(&cfg.N, "n", 2000, "referrals in the saturating run")
	fs.IntVar(&cfg.C, "c", 16, "concurrent clients")
	fs.IntVar(&cfg.Rate, "rate", 100, "referrals per second offered in the paced run (0: skip it)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the paced run")
	fs.IntVar(&cfg.StatementRate, "statement-rate", 20, "statement requests per second offered in a paced run (0: skip it)")
	fs.IntVar(&cfg.Slowest, "slowest", 0, "after each run, list its `n` slowest items: when each was posted, accepted and delivered")
	jsonOut := fs.Bool("json", false, "print the results as JSON")
	split := fs.Bool("split", true, "also run the gateways as processes of their own to measure each one's memory")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this `file`")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the whole run to this `file`")
	traceOut := fs.String("trace", "", "write an execution trace of the whole run to this `file` (go tool trace)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if cfg.N < 1 || cfg.C < 1 || cfg.C > 1024 || cfg.Rate < 0 || cfg.StatementRate < 0 || cfg.Duration < time.Second || cfg.Slowest < 0 {
		return errors.New("bench: need -n >= 1, 1 <= -c <= 1024, -rate >= 0, -statement-rate >= 0, -duration >= 1s and -slowest >= 0")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if *traceOut != "" {
		f, err := os.Create(*traceOut)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer trace.Stop()
	}
	if *memProfile != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if f, err := os.Create(*memProfile); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	rep, err := Bench(ctx, cfg, env.Stderr)
	if err != nil {
		return err
	}
	if *split {
		dir, err := os.MkdirTemp("", "rujukan-bench-split-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintf(env.Stderr, "referrals iom -> shelter with the gateways as processes: %d with %d clients\n", cfg.N, cfg.C)
		r, err := BenchSplit(ctx, dir, cfg.N, cfg.C, env.Stderr)
		if err != nil {
			return err
		}
		rep.Runs = append(rep.Runs, r)
	}
	if *jsonOut {
		return json.NewEncoder(env.Stdout).Encode(rep)
	}
	return rep.write(env.Stdout)
}

// Bench runs the bare JetStream baseline and measures the floor, then
// sends referrals from iom to the shelter through a development network in
// this process and times each from the POST to the delivered outcome at
// the sender; then it measures the floor again, and keeps each step's
// lower cost.
func Bench(ctx context.Context, cfg BenchConfig, progress io.Writer) (BenchReport, error) {
	var rep BenchReport
	if cfg.Data == "" {
		dir, err := os.MkdirTemp("", "rujukan-bench-")
		if err != nil {
			return rep, err
		}
		defer os.RemoveAll(dir)
		cfg.Data = dir
	}
	fmt.Fprintf(progress, "bare JetStream baseline: %d acked publishes, pulls and AckSyncs of 2 KiB, %d publishers\n", cfg.N, cfg.C)
	cpu0 := cpuTime()
	bare, err := broker.BareRoundTrip(ctx, cfg.N, cfg.C, 2048)
	if err != nil {
		return rep, fmt.Errorf("bench: baseline: %w", err)
	}
	rep.Bare = BenchResult{Name: "bare JetStream round trip", N: bare.Messages, Elapsed: bare.Elapsed,
		PerSecond: bare.PerSecond(), CPU: (cpuTime() - cpu0) / time.Duration(max(bare.Messages, 1))}

	floor, err := NewFloorMeter(ctx)
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	defer floor.Close()
	if rep.Floor, err = measureFloor(ctx, floor, 0, "floor: primitives one referral needs", progress); err != nil {
		return rep, err
	}
	if cfg.Rate > 0 {
		if rep.PacedFloor, err = measureFloor(ctx, floor, cfg.Rate, fmt.Sprintf("floor at %d/s: each primitive %d times a second", cfg.Rate, cfg.Rate), progress); err != nil {
			return rep, err
		}
	}

	fmt.Fprintf(progress, "disk: %d writes of 4 KiB with fsync, %v apart\n", diskSyncs, diskSyncPause)
	if rep.Disk, err = measureDiskSync(ctx, cfg.Data); err != nil {
		return rep, err
	}
	fmt.Fprintf(progress, "wake-ups: %d sleeps of %v\n", wakeSleeps, wakePause)
	if rep.Wake, err = measureWake(ctx); err != nil {
		return rep, err
	}

	done := &outcomes{at: map[string]time.Time{}, failed: map[string]bool{}, wake: make(chan struct{}, 1)}
	st, err := StartDev(ctx, DevConfig{Data: cfg.Data + "/net", RandPorts: true, TokenTTL: time.Hour,
		Logger:    slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelError})),
		OnOutcome: done.record})
	if err != nil {
		return rep, err
	}
	closeDev := sync.OnceValue(st.Close)
	defer closeDev()
	commits := func() (n uint64) {
		for _, g := range st.Gateways {
			n += g.Gateway.DB().Commits()
		}
		return n
	}
	referrals := load{URL: st.Gateways["iom"].URL + "/v1/referrals", Kind: "referral", N: cfg.N, C: cfg.C, Token: st.Tokens["iom"]}
	type run struct {
		name string
		load
	}
	runs := []run{{"referrals, saturating", referrals}}
	if cfg.Rate > 0 {
		l := referrals
		l.N, l.C, l.Rate = cfg.Rate*int(cfg.Duration/time.Second), cfg.C+32, cfg.Rate
		runs = append(runs, run{fmt.Sprintf("referrals, %d/s offered", cfg.Rate), l})
	}
	if cfg.StatementRate > 0 {
		l := load{URL: st.Gateways["police"].URL + "/v1/statement-requests", Kind: "statement-request",
			N: cfg.StatementRate * int(cfg.Duration/time.Second), C: cfg.C + 32, Rate: cfg.StatementRate, Token: st.Tokens["police"]}
		runs = append(runs, run{fmt.Sprintf("statement requests, %d/s", cfg.StatementRate), l})
	}
	for _, rn := range runs {
		if err := settleBeforeRun(ctx); err != nil {
			return rep, err
		}
		c0 := commits()
		r, err := drive(ctx, rn.name, rn.load, done, progress, cfg.Slowest)
		if err != nil {
			return rep, err
		}
		r.Rate = rn.Rate
		r.Commits = float64(commits()-c0) / float64(max(r.N, 1))
		r.RSS = procMaxRSS("self")
		rep.Runs = append(rep.Runs, r)
	}
	closeDev() // its background work is not the floor's
	if rep.Floor, err = measureFloor(ctx, floor, 0, "floor again, after the runs", progress); err != nil {
		return rep, err
	}
	if cfg.Rate > 0 {
		rep.PacedFloor, err = measureFloor(ctx, floor, cfg.Rate, fmt.Sprintf("floor at %d/s again, after the runs", cfg.Rate), progress)
	}
	return rep, err
}

// measureFloor measures the floor once more, in busy loops (rate 0) or at
// rate, with a progress bar.
func measureFloor(ctx context.Context, m *FloorMeter, rate int, name string, progress io.Writer) (Floor, error) {
	var stepped atomic.Int64
	bar := startProgress(progress, name, floorMeasures, "", func() int { return int(stepped.Load()) })
	step := func() { stepped.Add(1) }
	var f Floor
	var err error
	if rate > 0 {
		f, err = m.MeasurePaced(ctx, rate, step)
	} else {
		f, err = m.Measure(ctx, step)
	}
	bar.Stop()
	if err != nil {
		return f, fmt.Errorf("bench: %w", err)
	}
	return f, nil
}

// outcomes collects the time each referral's outcome reached the sender.
type outcomes struct {
	count  atomic.Int64
	mu     sync.Mutex
	at     map[string]time.Time
	failed map[string]bool
	wake   chan struct{}
}

func (o *outcomes) record(agency, id, outcome string) {
	now := time.Now()
	o.mu.Lock()
	o.at[id] = now
	o.failed[id] = outcome != "delivered"
	o.mu.Unlock()
	o.count.Add(1)
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// drive runs the load generator l and waits for the outcome of every item
// it sent. It measures the CPU time and the context switches of this
// process (the broker and the gateways): the load generator is a process
// of its own.
//
// slowest > 0 lists that many of the slowest items on w.
func drive(ctx context.Context, name string, l load, done *outcomes, w io.Writer, slowest int) (BenchResult, error) {
	base := done.count.Load()
	bar := startProgress(w, name, l.N, "delivered", func() int { return int(done.count.Load() - base) })
	defer bar.Stop()
	cpu0, sw0 := cpuTime(), ctxSwitches()
	all, err := l.run(ctx)
	if err != nil {
		return BenchResult{}, err
	}
	if len(all) == 0 {
		return BenchResult{}, fmt.Errorf("bench: %s: nothing was sent", name)
	}
	t0 := all[0].start
	for _, s := range all {
		if s.start.Before(t0) {
			t0 = s.start
		}
	}
	deadline := time.After(2 * time.Minute)
	for {
		done.mu.Lock()
		missing := 0
		for _, s := range all {
			if _, ok := done.at[s.id]; !ok {
				missing++
			}
		}
		done.mu.Unlock()
		if missing == 0 {
			break
		}
		select {
		case <-done.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return BenchResult{}, fmt.Errorf("bench: %d referrals had no outcome after 2 minutes", missing)
		case <-ctx.Done():
			return BenchResult{}, ctx.Err()
		}
	}
	res := BenchResult{Name: name, N: len(all)}
	lat := make([]time.Duration, 0, len(all))
	var last time.Time
	done.mu.Lock()
	for _, s := range all {
		at := done.at[s.id]
		if done.failed[s.id] {
			res.Failed++
		}
		lat = append(lat, at.Sub(s.start))
		if at.After(last) {
			last = at
		}
	}
	type slow struct {
		sentItem
		took   time.Duration
		failed bool
	}
	var slows []slow
	if slowest > 0 {
		for _, s := range all {
			slows = append(slows, slow{s, done.at[s.id].Sub(s.start), done.failed[s.id]})
		}
	}
	done.mu.Unlock()
	if slowest > 0 {
		bar.Stop()
		slices.SortFunc(slows, func(a, b slow) int { return cmp.Compare(b.took, a.took) })
		slows = slows[:min(slowest, len(slows))]
		fmt.Fprintf(w, "%s: the %d slowest, from the POST to the outcome at the sender\n", name, len(slows))
		for _, s := range slows {
			outcome := "delivered"
			if s.failed {
				outcome = "failed"
			}
			fmt.Fprintf(w, "  posted at %8.3fs  accepted after %-10v %s after %v\n",
				s.start.Sub(t0).Seconds(), s.accepted.Round(10*time.Microsecond), outcome, s.took.Round(10*time.Microsecond))
		}
	}
	res.Elapsed = last.Sub(t0)
	res.CPU = (cpuTime() - cpu0) / time.Duration(max(res.N, 1))
	res.Switches = float64(ctxSwitches()-sw0) / float64(max(res.N, 1))
	res.PerSecond = float64(res.N) / res.Elapsed.Seconds()
	res.P50, res.P99, res.P999 = percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 0.999)
	return res, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(float64(len(d)-1) * p)
	return d[i]
}

// benchBody is the referral every bench request sends.
var benchBody = []byte(`{"to":"shelter","priority":"urgent","person":{"pseudonym":"V-2026-0042","sex":"female","age":17,` +
	`"nationality":"ID","languages":["id","sas"]},"exploitation":["sexual","labour"],` +
	`"identified":{"date":"2026-11-20","place":"Lombok International Airport","by":"iom"},` +
	`"needs":["shelter","medical","psychosocial"],"risk":"high","consent":{"given":true,"purposes":["services"],` +
	`"method":"guardian","witness":"S. Rahma","witness_role":"social-worker","recorded_at":"2026-11-20T09:00:00Z"},` +
	`"notes":"` + strings.Repeat("n", 1200) + `"}`)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// cpuTime returns the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	ru := selfUsage()
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfUsage returns the resource usage of this process so far (zero where
// it is not available).
func selfUsage() syscall.Rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return syscall.Rusage{}
	}
	return ru
}
