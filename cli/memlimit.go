package cli

import (
	"fmt"
	"runtime/debug"
)

// Default soft memory limits of the processes (Go's runtime memory limit:
// the collector works harder as the heap nears it). A flood of the
// largest envelopes makes a lot of short-lived garbage; without a limit
// the heap may grow to twice what is live before it is collected.
const (
	brokerMemoryLimit  = 384 << 20
	gatewayMemoryLimit = 256 << 20
	devMemoryLimit     = 1 << 30 // the broker and four gateways in one process
)

// setMemoryLimit sets the process's soft memory limit to limit bytes,
// unless GOMEMLIMIT is set in the environment (it wins) or limit is 0
// (no limit). It returns what is in force, for the log.
func setMemoryLimit(env Env, limit int64) (string, error) {
	if v := env.Getenv("GOMEMLIMIT"); v != "" {
		return "GOMEMLIMIT=" + v, nil
	}
	if limit < 0 || (limit > 0 && limit < 64<<20) {
		return "", fmt.Errorf("--memory-limit must be 0 (none) or at least 64 MiB (%d bytes), not %d", 64<<20, limit)
	}
	if limit == 0 {
		return "none", nil
	}
	debug.SetMemoryLimit(limit)
	return fmt.Sprintf("%d MiB", limit>>20), nil
}
