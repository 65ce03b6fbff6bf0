package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// refusedCount counts the envelopes from peer refused for reason in audit
// events: events of their own, and the counts of envelope.refused
// summaries.
func refusedCount(evs []map[string]any, peer, reason string) int {
	n := 0
	for _, e := range evs {
		if e["actor"] != "peer:"+peer {
			continue
		}
		switch {
		case e["action"] == "envelope.refused":
			k, _ := strconv.Atoi(detail(e, "refused."+reason))
			n += k
		case e["outcome"] == "rejected" && e["reason"] == reason:
			n++
		}
	}
	return n
}

// waitRefusedCount waits until agency id's audit log counts at least want
// envelopes from peer refused for reason (a summary comes at most one
// interval, 10 s, after the last).
func waitRefusedCount(t *testing.T, n *network, id, peer, reason string, want int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s counting %d envelopes from %s refused for %s", id, want, peer, reason), 25*time.Second,
		func() (bool, string) {
			got := refusedCount(auditAll(t, n.api(id)), peer, reason)
			return got >= want, fmt.Sprintf("%d counted", got)
		})
}
