package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/cli"
)

// witnessCheckpoint reads a gateway's checkpoint with its cosignatures.
func witnessCheckpoint(t *testing.T, n *network, id string) gateway.AuditCheckpoint {
	t.Helper()
	r := call(t, "GET", n.url(id)+"/v1/audit/checkpoint", n.tokens[id], nil)
	var cp gateway.AuditCheckpoint
	if r.Status != 200 || json.Unmarshal(r.Raw, &cp) != nil {
		t.Fatalf("checkpoint of %s: %d %s", id, r.Status, r.Raw)
	}
	return cp
}

// witnessViews reads a gateway's view of the other logs.
func witnessViews(t *testing.T, n *network, id string) map[string]gateway.WitnessedLog {
	t.Helper()
	r := call(t, "GET", n.url(id)+"/v1/audit/witnesses", n.tokens[id], nil)
	var ws []gateway.WitnessedLog
	if r.Status != 200 || json.Unmarshal(r.Raw, &ws) != nil {
		t.Fatalf("witnesses of %s: %d %s", id, r.Status, r.Raw)
	}
	out := map[string]gateway.WitnessedLog{}
	for _, w := range ws {
		out[w.Log] = w
	}
	return out
}

// cosignedSettled waits until id's log stops growing and every other
// agency has cosigned its checkpoint, and returns its size.
func cosignedSettled(t *testing.T, n *network, id string, every time.Duration) uint64 {
	t.Helper()
	var size uint64
	eventually(t, id+"'s checkpoint cosigned by the other three", 30*time.Second, func() (bool, string) {
		cp := witnessCheckpoint(t, n, id)
		got := 0
		for _, cs := range cp.Cosignatures {
			if cs.Size == cp.Size {
				got++
			}
		}
		if got != 3 {
			return false, fmt.Sprintf("size %d, cosignatures %+v", cp.Size, cp.Cosignatures)
		}
		time.Sleep(2 * every)
		size = cp.Size
		return witnessCheckpoint(t, n, id).Size == size, "still growing"
	})
	return size
}

func copyDB(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWitnessRollback: four real gateways on the broker witness each
// other's audit logs: after traffic, each checkpoint of iom's is cosigned
// by the other three; then iom's gateway is stopped, its store file
// replaced by an older copy and started again, and the other three report
// the rollback within one interval (API and audit log).
func TestWitnessRollback(t *testing.T) {
	const every = time.Second
	n := newNetwork(t)
	n.startBroker()
	opt := gateway.Options{WitnessInterval: every}
	for _, a := range cli.DevAgencies {
		n.startGatewayWith(a.ID, n.config(a.ID), opt)
	}
	send := func(to string) {
		r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral(to))
		if r.Status != 202 {
			t.Fatalf("send: %d %s", r.Status, r.Raw)
		}
		waitStatus(t, n.url("iom"), n.tokens["iom"], r.str("id"), "delivered")
	}
	send("shelter")
	old := cosignedSettled(t, n, "iom", every)
	db := filepath.Join(n.config("iom").Data, "gateway.db")
	n.stopGateway("iom")
	copyDB(t, db, db+".old")
	n.startGatewayWith("iom", n.config("iom"), opt)
	send("dinsos")
	send("police")
	size := cosignedSettled(t, n, "iom", every)
	for _, w := range []string{"dinsos", "police", "shelter"} {
		if v := witnessViews(t, n, w)["iom"]; v.Size != size || v.Alarm != "" {
			t.Fatalf("%s's view of iom before the rollback: %+v", w, v)
		}
	}

	n.stopGateway("iom")
	copyDB(t, db+".old", db)
	start := time.Now()
	n.startGatewayWith("iom", n.config("iom"), opt)
	for _, w := range []string{"dinsos", "police", "shelter"} {
		eventually(t, w+" reporting iom's rollback", every+10*time.Second, func() (bool, string) {
			v := witnessViews(t, n, w)["iom"]
			return v.Alarm == gateway.ReasonRollback, fmt.Sprintf("%+v", v)
		})
		r := call(t, "GET", n.url(w)+"/v1/audit?limit=1000", n.tokens[w], nil)
		var page gateway.AuditPage
		json.Unmarshal(r.Raw, &page)
		found := false
		for _, e := range page.Events {
			if e.Action == gateway.ActWitnessRollback && e.Object == "iom" && e.Detail["seen_size"] == fmt.Sprint(size) &&
				e.Detail["new_size"] == fmt.Sprint(old) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no witness.rollback event about iom from %d to %d events", w, size, old)
		}
	}
	if d := time.Since(start); d > every+2*time.Second {
		t.Errorf("the rollback was reported after %v, the interval is %v", d, every)
	}
	t.Logf("iom rolled back from %d to %d events; reported by the three witnesses after %v", size, old, time.Since(start))
}
