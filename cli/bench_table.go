package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// benchColumns are the columns of the table `rujukan bench` ends with, one
// row per run.
var benchColumns = []struct {
	head string
	cell func(rep *BenchReport, r *BenchResult) string
}{
	{"run", func(_ *BenchReport, r *BenchResult) string { return r.Name }},
	{"n", func(_ *BenchReport, r *BenchResult) string { return strconv.Itoa(r.N) }},
	{"failed", func(_ *BenchReport, r *BenchResult) string { return strconv.Itoa(r.Failed) }},
	{"per s", func(_ *BenchReport, r *BenchResult) string { return fmt.Sprintf("%.0f", r.PerSecond) }},
	{"p50", func(_ *BenchReport, r *BenchResult) string { return millis(r.P50) }},
	{"p99", func(_ *BenchReport, r *BenchResult) string { return millis(r.P99) }},
	{"p999", func(_ *BenchReport, r *BenchResult) string { return millis(r.P999) }},
	{"CPU/item", func(_ *BenchReport, r *BenchResult) string { return millis(r.CPU) }},
	{"floor", func(rep *BenchReport, r *BenchResult) string { return millis(rep.floorOf(r).CPU) }},
	{"x floor", func(rep *BenchReport, r *BenchResult) string { return ratio(rep.floorOf(r).Times(r.CPU)) }},
	{"x busy floor", func(rep *BenchReport, r *BenchResult) string { return ratio(rep.Floor.Times(r.CPU)) }},
	{"switches/item", func(_ *BenchReport, r *BenchResult) string {
		if r.Switches <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", r.Switches)
	}},
	{"switch CPU", func(rep *BenchReport, r *BenchResult) string {
		if r.Switches <= 0 || rep.Wake.CPU <= 0 {
			return "-"
		}
		return millis(time.Duration(r.Switches * float64(rep.Wake.CPU)))
	}},
	{"bbolt commits/item", func(_ *BenchReport, r *BenchResult) string { return ratio(r.Commits) }},
	{"gateway RSS", func(_ *BenchReport, r *BenchResult) string {
		var peak int64
		for _, v := range r.GatewayRSS {
			peak = max(peak, v)
		}
		return mebibytes(peak)
	}},
	{"broker RSS", func(_ *BenchReport, r *BenchResult) string { return mebibytes(r.RSS) }},
	{"bare JetStream/s", func(rep *BenchReport, _ *BenchResult) string { return fmt.Sprintf("%.0f", rep.Bare.PerSecond) }},
	{"per s / bare", func(rep *BenchReport, r *BenchResult) string {
		if rep.Bare.PerSecond <= 0 {
			return "-"
		}
		return ratio(r.PerSecond / rep.Bare.PerSecond)
	}},
}

// floorOf is the floor a run is held to: the floor at its rate where one
// was measured, else the floor in busy loops.
func (rep *BenchReport) floorOf(r *BenchResult) Floor {
	if r.Rate > 0 && rep.PacedFloor.Rate == r.Rate && rep.PacedFloor.CPU > 0 {
		return rep.PacedFloor
	}
	return rep.Floor
}

// write prints the floor's steps, a legend, and the table of runs last.
func (rep *BenchReport) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	paced := rep.PacedFloor.Rate > 0 && len(rep.PacedFloor.Steps) == len(rep.Floor.Steps)
	head := "floor step\tcount\tCPU/op\twall/op\tops"
	if paced {
		head += fmt.Sprintf("\tCPU/op at %d/s\tops", rep.PacedFloor.Rate)
	}
	fmt.Fprintln(tw, head)
	for i, s := range rep.Floor.Steps {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d", s.Name, s.Count, micros(s.CPU), micros(s.Wall), s.Ops)
		if paced {
			p := rep.PacedFloor.Steps[i]
			fmt.Fprintf(tw, "\t%s\t%d", micros(p.CPU), p.Ops)
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "floor: CPU per referral at the least\t\t%s\t%s\t", micros(rep.Floor.CPU), micros(rep.Floor.Wall))
	if paced {
		fmt.Fprintf(tw, "\t%s\t", micros(rep.PacedFloor.CPU))
	}
	fmt.Fprintln(tw)
	if err := tw.Flush(); err != nil {
		return err
	}
	if line := measuredLine(rep, paced); line != "" {
		fmt.Fprint(w, line)
	}
	if line := chainedLine(rep, paced); line != "" {
		fmt.Fprint(w, line)
	}
	if rep.Disk.N > 0 {
		fmt.Fprintf(w, "\ndisk: 4 KiB written and fsynced %d times, %v apart: p50 %s, p99 %s, max %s. A referral waits for\n"+
			"eight such syncs one after the other (three bbolt commits of two each, two JetStream stores).\n",
			rep.Disk.N, diskSyncPause, millis(rep.Disk.P50), millis(rep.Disk.P99), millis(rep.Disk.Max))
	}
	if rep.Wake.N > 0 {
		fmt.Fprintf(w, "\nwake-ups: one context switch costs %s of CPU here (%d sleeps of %v, %.1f switches each). In busy loops\n"+
			"the floor's steps find their threads awake; at a low rate each step of a referral wakes a sleeping thread.\n"+
			"switches/item counts the context switches of the broker and the gateways per item, switch CPU is that times\n"+
			"the cost of one.\n",
			micros(rep.Wake.CPU), rep.Wake.N, wakePause, rep.Wake.Switches)
	}
	if paced {
		fmt.Fprintf(w, "\nfloor at %d/s: each step done %d times a second, as the paced run does it, less the CPU time of the\n"+
			"ticker that paces it. Threads that wait for an fsync or for the broker sleep between steps and are woken,\n"+
			"and the code and keys have left the caches: what the primitives cost at that rate. The paced run is held\n"+
			"to it (floor, x floor); x busy floor holds every run to the floor in busy loops. A referral's worth of its\n"+
			"steps made %.0f context switches, to compare with the paced run's switches/item.\n",
			rep.PacedFloor.Rate, rep.PacedFloor.Rate, rep.PacedFloor.Switches())
	}
	fmt.Fprintln(w, "\nLatencies run from the POST to the delivered outcome at the sender. CPU/item is the CPU time (user and system)\n"+
		"of the broker and the gateways per item (the load generator is a process of its own, not counted); x floor is\n"+
		"how many times the floor's that is. Gateway RSS is the peak of the busier gateway, when the gateways run as\n"+
		"processes of their own; broker RSS that of the bench process (the broker, and in the in-process runs the four\n"+
		"gateways too). bare JetStream/s are the round trips of the bare baseline, run first.")
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, c := range benchColumns {
		fmt.Fprint(tw, c.head, sep(i))
	}
	for _, r := range rep.Runs {
		for i, c := range benchColumns {
			fmt.Fprint(tw, c.cell(rep, &r), sep(i))
		}
	}
	return tw.Flush()
}

// measuredLine says what each measurement of the floor came to on its own
// when it was measured more than once: the spread between them is how far
// the machine's load moved during the bench, and so how far apart two runs
// of it may be.
func measuredLine(rep *BenchReport, paced bool) string {
	list := func(f Floor) string {
		ms := make([]string, len(f.Measured))
		for i, d := range f.Measured {
			ms[i] = millis(d)
		}
		return strings.Join(ms, " then ")
	}
	if len(rep.Floor.Measured) < 2 {
		return ""
	}
	line := "\nthe floor as each measurement found it, before the runs and after them: " + list(rep.Floor) + " in busy loops"
	if paced && len(rep.PacedFloor.Measured) > 1 {
		line += fmt.Sprintf(", %s at %d/s", list(rep.PacedFloor), rep.PacedFloor.Rate)
	}
	return line + ".\nThe floor keeps each step's lower cost; the spread shows how far the load on this machine moved during the bench.\n"
}

// chainedLine says what the floor's steps cost done one after another,
// as a referral chains them, beside the floor that sums them one by one.
func chainedLine(rep *BenchReport, paced bool) string {
	if rep.Floor.Chained <= 0 {
		return ""
	}
	line := "\nthe floor's steps one after another on one goroutine, each its count of times: " + millis(rep.Floor.Chained) + " in busy loops"
	if paced && rep.PacedFloor.Chained > 0 {
		line += fmt.Sprintf(", %s at %d/s (once a tick)", millis(rep.PacedFloor.Chained), rep.PacedFloor.Rate)
	}
	return line + ".\nAt a low rate each step alone wakes the process from idle; one after another they share the wake-ups.\n" +
		"The runs are held to the floor above, not to this.\n"
}

func sep(i int) string {
	if i == len(benchColumns)-1 {
		return "\n"
	}
	return "\t"
}

// benchHeads are the table's column heads.
func benchHeads() []string {
	var h []string
	for _, c := range benchColumns {
		h = append(h, c.head)
	}
	return h
}

func millis(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	ms := d.Seconds() * 1e3
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}

func micros(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fus", d.Seconds()*1e6)
}

func ratio(x float64) string {
	if x <= 0 {
		return "-"
	}
	switch {
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	case x >= 0.1:
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%.4f", x)
}

func mebibytes(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20))
}
