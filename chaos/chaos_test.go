package chaos

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// run is the shape of one chaos run.
type run struct {
	seed     uint64
	load     time.Duration // how long the load and the killer run
	minKills int
	gap      [2]time.Duration // between kills
	down     [2]time.Duration // how long a killed process stays dead
	settle   time.Duration    // bound on the wait for every outcome
	workers  int
}

// runFromEnv is the short run, or the long one RUJUKAN_CHAOS=long or
// RUJUKAN_CHAOS_DURATION asks for; RUJUKAN_CHAOS_SEED replays a seed.
func runFromEnv(t *testing.T) run {
	r := run{seed: rand.Uint64(), load: 25 * time.Second, minKills: 3,
		gap: [2]time.Duration{2 * time.Second, 6 * time.Second}, down: [2]time.Duration{200 * time.Millisecond, 2 * time.Second},
		settle: 2 * time.Minute, workers: 3}
	long := os.Getenv("RUJUKAN_CHAOS") == "long"
	if long {
		r.load = 5 * time.Minute
	}
	if s := os.Getenv("RUJUKAN_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("RUJUKAN_CHAOS_DURATION=%q: want a duration such as 10m", s)
		}
		r.load, long = d, true
	}
	if long {
		r.minKills, r.settle = 10, 3*time.Minute
		r.gap = [2]time.Duration{3 * time.Second, 12 * time.Second}
		r.down = [2]time.Duration{200 * time.Millisecond, 5 * time.Second}
	}
	if s := os.Getenv("RUJUKAN_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RUJUKAN_CHAOS_SEED=%q: want a number", s)
		}
		r.seed = seed
	}
	return r
}

// TestChaos runs the network as five processes under load while one
// process at a time is SIGKILLed and restarted, then checks that every
// promise was kept (see the package documentation).
func TestChaos(t *testing.T) {
	r := runFromEnv(t)
	t.Logf("seed %d (replay with RUJUKAN_CHAOS_SEED=%d); load for %v, at least %d kills", r.seed, r.seed, r.load, r.minKills)
	began := time.Now()
	n := newNetwork(t)
	t.Cleanup(func() {
		if t.Failed() {
			for _, id := range append([]string{brokerID}, agencies...) {
				t.Logf("log of %s: alarms and errors:\n%s\nends:\n%s", id, n.logGrep(id, 20, "alarm", "does not extend", "level=ERROR", "panic"), n.logTail(id, 30))
			}
		}
	})
	for _, id := range append([]string{brokerID}, agencies...) {
		if err := n.start(id); err != nil {
			t.Fatal(err)
		}
	}

	l, tr := newLedger(), &trap{}
	d := &driver{n: n, l: l, trap: tr}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range r.workers {
		rng := rand.New(rand.NewPCG(r.seed, uint64(i)))
		wg.Go(func() { d.run(loadCtx, rng) })
	}
	k := &killer{n: n, trap: tr, gap: r.gap, down: r.down, kills: map[string]int{}}
	killCtx, stopKills := context.WithTimeout(context.Background(), r.load)
	k.run(killCtx, rand.New(rand.NewPCG(r.seed, 1<<32)), r.minKills, t.Logf)
	stopKills()
	stopLoad()
	wg.Wait()
	loaded := time.Since(began)
	for _, err := range k.errs {
		t.Error(err)
	}
	for _, id := range append([]string{brokerID}, agencies...) {
		if !n.running(id) {
			if err := n.start(id); err != nil {
				t.Fatal(err)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	acc := l.snapshot()
	var h *holding
	deadline := time.Now().Add(r.settle)
	for last := ""; ; {
		var ok bool
		if h, ok, last = n.settled(acc); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the messages did not settle within %v: %s", r.settle, last)
			stuck := n.stuck()
			for id, frames := range stuck {
				t.Errorf("%s does not answer its API; its goroutines:\n%s", id, frames)
			}
			if len(stuck) > 0 {
				t.FailNow()
			}
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	settled := time.Since(began)
	var bad []string
	var tallies map[string]*tally
	if h != nil {
		bad, tallies = n.check(h, acc)
	}
	online, held := n.auditOnline()
	bad = append(bad, online...)
	bad = append(bad, n.refusals()...)
	bad = append(bad, n.unexpectedExits()...)
	// The load sends only valid messages: any answer but a promise or
	// none at all (a dead gateway) is a refusal to explain.
	for _, r := range l.refusals() {
		bad = append(bad, "refused: "+r)
	}
	n.close()
	bad = append(bad, n.auditOffline()...)
	for _, b := range bad {
		t.Error(b)
	}
	if tallies != nil {
		t.Logf("summary after %v (load %v, settled %v):\n%s", time.Since(began).Round(time.Second), loaded.Round(time.Second),
			(settled - loaded).Round(100*time.Millisecond), summary(tallies, k.kills, l))
	}
	for _, w := range held {
		t.Log("witness " + w)
	}
}
