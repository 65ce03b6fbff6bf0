package gateway_test

import (
	"strconv"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
)

// refused counts the envelopes from peer that agency id refused for
// reason, as its audit log tells: events of their own and the counts of
// envelope.refused summaries.
func (c *core) refused(id, peer, reason string) int {
	c.t.Helper()
	n := 0
	for _, e := range c.audit(id) {
		if e.Actor != "peer:"+peer {
			continue
		}
		switch {
		case e.Action == gateway.ActEnvelopesRefused:
			k, _ := strconv.Atoi(e.Detail["refused."+reason])
			n += k
		case e.Outcome == "rejected" && e.Reason == reason:
			n++
		}
	}
	return n
}

// waitRefused waits until agency id's audit log shows an envelope from
// peer refused for reason.
func (c *core) waitRefused(id, peer, reason string) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c.refused(id, peer, reason) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("%s: no envelope from %s refused for %s in the audit log", id, peer, reason)
}
