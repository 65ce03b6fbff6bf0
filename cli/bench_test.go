package cli

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchTable runs `rujukan bench` with tiny numbers in this process and
// checks the table it ends with: every column, a row per run, a floor
// above zero with every step measured, and plain progress lines (no
// terminal control characters) on a stderr that is not a terminal, and
// the slowest items of each run when asked, the disk's fsync latency and
// the CPU cost of a context switch, counted per item in each run and for
// the paced floor's steps; the paced run is held to the floor measured at
// its rate.
func TestBenchTable(t *testing.T) {
	var out, errOut bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	err := Main(context.Background(), env, []string{"bench", "-n", "20", "-c", "2", "-rate", "20", "-duration", "1s",
		"-statement-rate", "2", "-split=false", "-slowest", "3"})
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, errOut.String())
	}
	if strings.ContainsAny(errOut.String(), "\r\x1b") {
		t.Errorf("progress on a stderr that is not a terminal has control characters:\n%q", errOut.String())
	}
	if !strings.Contains(errOut.String(), "referrals, saturating: 20 of 20 done") {
		t.Errorf("no final progress line for the saturating run:\n%s", errOut.String())
	}
	slow := regexp.MustCompile(`(?m)^referrals, saturating: the 3 slowest, from the POST to the outcome at the sender\n(  posted at +[0-9.]+s  accepted after \S+ +delivered after \S+\n){3}`)
	if !slow.MatchString(errOut.String()) {
		t.Errorf("no list of the 3 slowest referrals of the saturating run:\n%s", errOut.String())
	}
	if !regexp.MustCompile(`(?m)^disk: 4 KiB written and fsynced 200 times, 5ms apart: p50 [0-9.]+ms, p99 [0-9.]+ms, max [0-9.]+ms\.`).MatchString(out.String()) {
		t.Errorf("no line on the disk's fsync latency:\n%s", out.String())
	}
	if !regexp.MustCompile(`(?m)^wake-ups: one context switch costs [0-9.]+us of CPU here \(300 sleeps of 5ms, [0-9.]+ switches each\)\.`).MatchString(out.String()) {
		t.Errorf("no line on the cost of a context switch:\n%s", out.String())
	}
	if m := regexp.MustCompile(`A referral's worth of its\nsteps made ([0-9]+) context switches`).FindStringSubmatch(out.String()); m == nil || m[1] == "0" {
		t.Errorf("no count of the paced floor's context switches (%q):\n%s", m, out.String())
	}
	// The floor is measured before the runs and after them, in busy loops
	// and at the paced run's rate; each measurement's own total is shown.
	if !regexp.MustCompile(`(?m)^the floor as each measurement found it, before the runs and after them: [0-9.]+ms then [0-9.]+ms in busy loops, [0-9.]+ms then [0-9.]+ms at 20/s\.$`).MatchString(out.String()) {
		t.Errorf("no line on the floor's own measurements:\n%s", out.String())
	}
	// The steps one after another are measured too, and shown beside it.
	if !regexp.MustCompile(`(?m)^the floor's steps one after another on one goroutine, each its count of times: [0-9.]+ms in busy loops, [0-9.]+ms at 20/s \(once a tick\)\.$`).MatchString(out.String()) {
		t.Errorf("no line on the floor's steps one after another:\n%s", out.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) < 4 {
		t.Fatalf("output:\n%s", out.String())
	}
	cells := regexp.MustCompile(`\s{2,}`)
	rows := lines[len(lines)-4:]
	head := cells.Split(strings.TrimSpace(rows[0]), -1)
	want := benchHeads()
	if strings.Join(head, "|") != strings.Join(want, "|") {
		t.Fatalf("table heads %q, want %q\noutput:\n%s", head, want, out.String())
	}
	col := map[string]int{}
	for i, h := range head {
		col[h] = i
	}
	for i, name := range []string{"referrals, saturating", "referrals, 20/s offered", "statement requests, 2/s"} {
		row := cells.Split(strings.TrimSpace(rows[i+1]), -1)
		if len(row) != len(head) || row[0] != name {
			t.Fatalf("row %d is %q, want %d cells for %q", i, row, len(head), name)
		}
		for _, h := range []string{"floor", "CPU/item", "switch CPU", "p50", "p99", "p999"} {
			ms, err := strconv.ParseFloat(strings.TrimSuffix(row[col[h]], "ms"), 64)
			if err != nil || ms <= 0 {
				t.Errorf("%s: %s is %q, want a time above zero", name, h, row[col[h]])
			}
		}
		for _, h := range []string{"x floor", "x busy floor", "switches/item", "bbolt commits/item", "per s / bare"} {
			if x, err := strconv.ParseFloat(row[col[h]], 64); err != nil || x <= 0 {
				t.Errorf("%s: %s is %q, want a number above zero", name, h, row[col[h]])
			}
		}
		if row[col["n"]] == "0" || row[col["failed"]] != "0" {
			t.Errorf("%s: n %s, failed %s", name, row[col["n"]], row[col["failed"]])
		}
	}
	// The paced run is held to the floor at its rate, the others to the
	// floor in busy loops.
	floors := map[string]string{}
	for i := range 3 {
		row := cells.Split(strings.TrimSpace(rows[i+1]), -1)
		floors[row[0]] = row[col["floor"]]
	}
	busy := regexp.MustCompile(`(?m)^floor: CPU per referral at the least\s{2,}([0-9.]+)us\s{2,}[0-9.]+us\s{2,}([0-9.]+)us`).FindStringSubmatch(out.String())
	if busy == nil {
		t.Fatalf("no floor line with the floor in busy loops and at 20/s:\n%s", out.String())
	}
	for name, us := range map[string]string{"referrals, saturating": busy[1], "referrals, 20/s offered": busy[2], "statement requests, 2/s": busy[1]} {
		v, _ := strconv.ParseFloat(us, 64)
		if want := millis(time.Duration(v * float64(time.Microsecond))); floors[name] != want {
			t.Errorf("%s: floor %s, want %s", name, floors[name], want)
		}
	}
	for _, s := range floorSteps {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(s.name) + `\s{2,}` + strconv.Itoa(s.count) + `\s{2,}[0-9.]+us\s{2,}[0-9.]+us\s{2,}[0-9]+\s{2,}([0-9.]+us|-)\s{2,}[0-9]+$`).MatchString(out.String()) {
			t.Errorf("floor step %q is not measured:\n%s", s.name, out.String())
		}
	}
}

// TestFloorKeepsLower checks that the floor is made of each step's lower
// cost over the measurements, that each measurement's own total is kept
// beside it, in order, and that the chain of the steps keeps its lower
// cost too, by rate.
func TestFloorKeepsLower(t *testing.T) {
	m := &FloorMeter{low: map[int][]FloorStep{}, lowChain: map[int]time.Duration{}, measured: map[int][]time.Duration{}}
	raw := func(cpu func(i int) time.Duration) []FloorStep {
		steps := make([]FloorStep, len(floorSteps))
		for i := range steps {
			steps[i] = FloorStep{Ops: 10, CPU: cpu(i)}
		}
		return steps
	}
	total := func(cpu func(i int) time.Duration) (d time.Duration) {
		for i, s := range floorSteps {
			d += cpu(i) * time.Duration(s.count)
		}
		return d
	}
	// The first measurement is dearer in the even steps, the second in the
	// odd ones.
	first := func(i int) time.Duration { return time.Duration(100+(i+1)%2*50) * time.Microsecond }
	second := func(i int) time.Duration { return time.Duration(100+i%2*70) * time.Microsecond }
	m.keepLower(100, raw(first), 3*time.Millisecond)
	f := m.keepLower(100, raw(second), 2*time.Millisecond)
	if f.Chained != 2*time.Millisecond {
		t.Errorf("chained %v, want the lower 2ms", f.Chained)
	}
	if want := []time.Duration{total(first), total(second)}; !slices.Equal(f.Measured, want) {
		t.Errorf("measured %v, want %v", f.Measured, want)
	}
	low := func(int) time.Duration { return 100 * time.Microsecond }
	if f.CPU != total(low) {
		t.Errorf("floor %v, want %v: each step's lower cost", f.CPU, total(low))
	}
	for i, st := range f.Steps {
		if st.Ops != 20 || st.Count != floorSteps[i].count {
			t.Errorf("step %d: %d ops, count %d; want 20 and %d", i, st.Ops, st.Count, floorSteps[i].count)
		}
	}
	// Another rate is measured apart.
	if g := m.keepLower(0, raw(first), 5*time.Millisecond); len(g.Measured) != 1 || g.Measured[0] != total(first) || g.Chained != 5*time.Millisecond {
		t.Errorf("busy-loop floor measured %v, chained %v; want [%v] and 5ms", g.Measured, g.Chained, total(first))
	}
	if f := m.keepLower(100, raw(first), 4*time.Millisecond); f.Chained != 2*time.Millisecond {
		t.Errorf("chained %v after a dearer measurement, want the lower 2ms kept", f.Chained)
	}
}
