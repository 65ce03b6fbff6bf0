package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Wake is what one context switch costs in CPU time on this machine,
// measured in the same run: a thread that blocks and is woken again pays
// it, a busy loop does not. The floor is measured in busy loops; at a low
// rate every step of a referral (a request read, a commit's fsync, a
// message from the broker) wakes a sleeping thread, so a paced run pays
// its switches times this on top of the floor.
type Wake struct {
	// N sleeps of wakePause; Switches is how many context switches each
	// cost this process (a Go sleep wakes more than one thread).
	N        int           `json:"n"`
	Switches float64       `json:"switches_per_sleep"`
	CPU      time.Duration `json:"cpu_per_switch_ns"`
}

// Wake probe: wakeSleeps sleeps of wakePause, with nothing else to do.
const (
	wakeSleeps = 300
	wakePause  = 5 * time.Millisecond
)

// measureWake measures Wake. Nothing else in this process should be busy
// meanwhile.
func measureWake(ctx context.Context) (Wake, error) {
	c0, s0 := cpuTime(), ctxSwitches()
	for range wakeSleeps {
		select {
		case <-time.After(wakePause):
		case <-ctx.Done():
			return Wake{}, ctx.Err()
		}
	}
	c, s := cpuTime()-c0, ctxSwitches()-s0
	if s <= 0 {
		return Wake{}, fmt.Errorf("bench: wake probe: no context switch counted in %d sleeps", wakeSleeps)
	}
	return Wake{N: wakeSleeps, Switches: float64(s) / wakeSleeps, CPU: c / time.Duration(s)}, nil
}

// ctxSwitches returns the context switches (voluntary and involuntary) of
// all the threads of this process so far.
func ctxSwitches() int64 {
	ru := selfUsage()
	return ru.Nvcsw + ru.Nivcsw
}

// procSwitches returns the context switches of all the live threads of a
// child process so far, read from /proc, or 0 where it is not available.
func procSwitches(p *exec.Cmd) int64 {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(p.Process.Pid) + "/task/*/status")
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread has exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}
