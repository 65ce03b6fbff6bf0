package broker

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkScale1000 provisions 1,000 agencies in a broker subprocess and
// reports the startup time (first start, which creates every inbox, and a
// restart on the same data) and the broker's resident memory.
//
//	go test ./broker -run '^$' -bench Scale1000 -benchtime 1x
func BenchmarkScale1000(b *testing.B) {
	const agencies = 1000
	var ids []string
	for i := range agencies {
		ids = append(ids, fmt.Sprintf("agency-%04d", i))
	}
	n := newTestNet(b, ids...)
	for range b.N {
		cc := childConfig{
			Listen:    fmt.Sprintf("127.0.0.1:%d", freePortB(b)),
			DataDir:   filepath.Join(b.TempDir(), "broker"),
			Directory: n.sign(b),
			Authority: n.AuthPub,
		}
		for _, phase := range []string{"first", "restart"} {
			start := time.Now()
			cmd := startChildB(b, cc)
			took := time.Since(start)
			rss, hwm := procMemory(cmd.Process.Pid)
			b.ReportMetric(took.Seconds(), phase+"-startup-s")
			b.ReportMetric(float64(rss)/(1<<20), phase+"-rss-MiB")
			b.ReportMetric(float64(hwm)/(1<<20), phase+"-peak-rss-MiB")
			b.Logf("%s start: %d agencies in %s, RSS %d MiB (peak %d MiB)", phase, agencies, took.Round(time.Millisecond), rss>>20, hwm>>20)
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
	}
}

// procMemory returns the resident and peak resident memory of a process.
func procMemory(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, -1
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm
}
