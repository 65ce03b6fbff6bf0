package gateway_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/openapi"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
	"golang.org/x/mod/sumdb/note"
)

const testWitnessInterval = 300 * time.Millisecond

func mustWitnessCore(t *testing.T) *core {
	return mustCoreOpts(t, gateway.Options{WitnessInterval: testWitnessInterval})
}

// witnessView returns agency id's view of log's audit log.
func (c *core) witnessView(id, log string) (gateway.WitnessedLog, bool) {
	c.t.Helper()
	ws, err := c.gws[id].Witnesses(c.staff(id))
	if err != nil {
		c.t.Fatalf("%s witnesses: %v", id, err)
	}
	for _, w := range ws {
		if w.Log == log {
			return w, true
		}
	}
	return gateway.WitnessedLog{}, false
}

// waitWitnessed waits until every other agency holds a checkpoint of log
// of at least size events.
func (c *core) waitWitnessed(log string, size uint64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for id := range c.gws {
		if id == log {
			continue
		}
		for {
			if w, ok := c.witnessView(id, log); ok && w.Size >= size {
				break
			}
			if time.Now().After(deadline) {
				w, _ := c.witnessView(id, log)
				c.t.Fatalf("%s holds %s's log at %d events, want %d", id, log, w.Size, size)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// settle waits until log's checkpoint stays the same for two intervals
// and every other agency holds it, and returns its size.
func (c *core) settle(log string) uint64 {
	c.t.Helper()
	for range 50 {
		size := c.checkpoint(log).Size
		c.waitWitnessed(log, size)
		time.Sleep(2 * testWitnessInterval)
		if c.checkpoint(log).Size == size {
			return size
		}
	}
	c.t.Fatalf("%s's log keeps growing", log)
	return 0
}

// checkpoint returns agency id's signed checkpoint.
func (c *core) checkpoint(id string) gateway.AuditCheckpoint {
	c.t.Helper()
	cp, err := c.gws[id].AuditCheckpoint(c.staff(id))
	if err != nil {
		c.t.Fatalf("%s checkpoint: %v", id, err)
	}
	return cp
}

func (c *core) directory() *crypto.Directory {
	c.t.Helper()
	authority, _ := crypto.ParseAuthorityKey("@" + filepath.Join(c.data, "authority", "authority.pub"))
	dir, err := crypto.LoadDirectory(filepath.Join(c.data, "network.json"), authority)
	if err != nil {
		c.t.Fatal(err)
	}
	return dir
}

// alarms returns rujukan_witness_alarms_total of agency at id for log.
func (c *core) alarms(id, log string) float64 {
	c.t.Helper()
	mfs, err := c.gws[id].Metrics().Registry.Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rujukan_witness_alarms_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["agency"] == id && labels["log"] == log {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestWitnessCosign: a gateway's checkpoints reach the other three, who
// cosign them (C2SP tlog-cosignature/v1, verified with the witness's key
// from the directory); the log serves the cosignatures with its checkpoint
// and each witness its view of the log, as openapi.json describes them.
func TestWitnessCosign(t *testing.T) {
	c := mustWitnessCore(t)
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("dinsos"))
	dir := c.directory()
	var cp gateway.AuditCheckpoint
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp = c.checkpoint("iom")
		if len(cp.Cosignatures) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("iom's checkpoint has %d cosignatures, want 3: %+v", len(cp.Cosignatures), cp.Cosignatures)
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen := map[string]bool{}
	for _, cs := range cp.Cosignatures {
		seen[cs.Witness] = true
		if cs.Size < 1 || cs.Size > cp.Size {
			t.Errorf("cosignature of %s is of size %d, checkpoint %d", cs.Witness, cs.Size, cp.Size)
		}
		// The text of iom's checkpoint of that size.
		proof, err := c.gws["iom"].AuditConsistency(c.staff("iom"), cs.Size, cs.Size)
		if err != nil {
			t.Fatal(err)
		}
		text := fmt.Sprintf("%s\n%d\n%s\n", crypto.AuditOrigin("iom"), cs.Size, proof.FromRoot)
		sig, _ := base64.StdEncoding.DecodeString(cs.Signature)
		w, _ := dir.Agency(cs.Witness)
		got, err := crypto.VerifyCosignature(w, []byte(text), sig)
		if err != nil || !got.Time.Equal(cs.Time) {
			t.Errorf("cosignature of %s: %v (time %v, served %v)", cs.Witness, err, got.Time, cs.Time)
		}
	}
	for _, id := range []string{"dinsos", "police", "shelter"} {
		if !seen[id] {
			t.Errorf("no cosignature by %s", id)
		}
	}
	raw, _ := json.Marshal(cp)
	if err := openapi.Check("GET", "/v1/audit/checkpoint", 200, "application/json", raw); err != nil {
		t.Errorf("checkpoint answer: %v", err)
	}
	// Each witness holds a checkpoint of iom's log that opens with iom's
	// key, and no alarm.
	c.waitWitnessed("iom", 1)
	for _, id := range []string{"dinsos", "police", "shelter"} {
		w, _ := c.witnessView(id, "iom")
		if w.Alarm != "" {
			t.Errorf("%s: alarm %q about iom", id, w.Alarm)
		}
		if _, err := note.Open([]byte(w.Checkpoint), crypto.AuditVerifiers(mustAgency(t, dir, "iom"))); err != nil {
			t.Errorf("%s holds a checkpoint of iom that does not open: %v", id, err)
		}
		ws, _ := c.gws[id].Witnesses(c.staff(id))
		raw, _ := json.Marshal(ws)
		if err := openapi.Check("GET", "/v1/audit/witnesses", 200, "application/json", raw); err != nil {
			t.Errorf("witnesses answer: %v", err)
		}
		if c.alarms(id, "iom") != 0 {
			t.Errorf("%s counted an alarm", id)
		}
	}
	// Witnessing does not grow the logs: without traffic, the sizes stay.
	before := c.checkpoint("shelter").Size
	time.Sleep(3 * testWitnessInterval)
	if after := c.checkpoint("shelter").Size; after != before {
		t.Errorf("shelter's log grew from %d to %d events without traffic", before, after)
	}
	// Without audit:read, refused.
	none := c.staff("shelter")
	none.Scopes = []string{policy.ScopeReferralRead}
	if _, err := c.gws["shelter"].Witnesses(none); err == nil {
		t.Error("witnesses without audit:read")
	}
}

func mustAgency(t *testing.T, dir *crypto.Directory, id string) *crypto.Agency {
	t.Helper()
	a, ok := dir.Agency(id)
	if !ok {
		t.Fatalf("no agency %s", id)
	}
	return a
}

// signedCheckpoint signs a checkpoint of iom's log with the given key.
func signedCheckpoint(t *testing.T, agency string, signer note.Signer, size uint64, root string) string {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", crypto.AuditOrigin(agency), size, root)}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

// TestWitnessForgedCheckpoint: a checkpoint not signed by the agency's key
// is refused with a signed receipt and raises no alarm.
func TestWitnessForgedCheckpoint(t *testing.T) {
	c := mustWitnessCore(t)
	other := mustCore(t, agency{"iom", "iom"}) // another iom, another key
	signer, err := crypto.NewAuditNoteSigner("iom", other.keys["iom"].SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	cp := signedCheckpoint(t, "iom", signer, 5, base64.StdEncoding.EncodeToString(make([]byte, 32)))
	c.net.Inject("shelter", "iom", c.seal("iom", "shelter", crypto.KindCheckpoint, map[string]any{"checkpoint": cp, "from": 0, "proof": []string{}}))
	e := c.waitAudit("shelter", func(e store.AuditEvent) bool { return e.Action == gateway.ActEnvelopeReject })
	if e.Reason != gateway.ReasonCheckpointInvalid || e.Actor != "peer:iom" {
		t.Fatalf("refusal: %+v", e)
	}
	if w, ok := c.witnessView("shelter", "iom"); ok && (w.Alarm != "" || w.Size == 5) {
		t.Fatalf("the forged checkpoint was taken: %+v", w)
	}
}

// TestWitnessFork: a checkpoint signed with iom's own key that does not
// extend the one the witnesses hold (same size, another root), or is
// smaller, is reported by every witness: an audit event of its own, the
// metric, the alarm in its view; the envelope is refused with a signed
// receipt, and no cosignature is made.
func TestWitnessFork(t *testing.T) {
	for _, tc := range []struct{ alarm string }{{gateway.ReasonFork}, {gateway.ReasonRollback}} {
		t.Run(tc.alarm, func(t *testing.T) {
			c := mustWitnessCore(t)
			c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
			size := c.settle("iom")
			signer, err := crypto.NewAuditNoteSigner("iom", c.keys["iom"].SigningKey)
			if err != nil {
				t.Fatal(err)
			}
			forged := signedCheckpoint(t, "iom", signer, size, base64.StdEncoding.EncodeToString(make([]byte, 32)))
			want := gateway.ActWitnessFork
			if tc.alarm == gateway.ReasonRollback {
				old, err := c.gws["iom"].AuditConsistency(c.staff("iom"), size-1, size-1)
				if err != nil {
					t.Fatal(err)
				}
				forged = signedCheckpoint(t, "iom", signer, size-1, old.FromRoot)
				want = gateway.ActWitnessRollback
			}
			witnesses := []string{"dinsos", "police", "shelter"}
			for _, w := range witnesses {
				c.net.Inject(w, "iom", c.seal("iom", w, crypto.KindCheckpoint, map[string]any{"checkpoint": forged, "from": 0, "proof": []string{}}))
			}
			for _, w := range witnesses {
				e := c.waitAudit(w, func(e store.AuditEvent) bool { return e.Action == want })
				if e.Object != "iom" || e.Actor != w || e.Reason != tc.alarm {
					t.Errorf("%s: alarm event %+v", w, e)
				}
				r := c.waitAudit(w, func(e store.AuditEvent) bool { return e.Action == gateway.ActEnvelopeReject })
				if r.Reason != tc.alarm {
					t.Errorf("%s: refusal %+v", w, r)
				}
				if v, _ := c.witnessView(w, "iom"); v.Alarm != tc.alarm || v.Size != size {
					t.Errorf("%s: view of iom %+v", w, v)
				}
				if n := c.alarms(w, "iom"); n < 1 {
					t.Errorf("%s: metric %v", w, n)
				}
			}
			// No witness cosigned the forged checkpoint.
			for _, cs := range c.checkpoint("iom").Cosignatures {
				if tc.alarm == gateway.ReasonRollback && cs.Size == size-1 {
					t.Errorf("%s cosigned the smaller checkpoint", cs.Witness)
				}
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
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

// TestWitnessRollback: iom's gateway is stopped, its store file replaced
// by an older copy and started again: the other three report the rollback
// within one interval.
func TestWitnessRollback(t *testing.T) {
	c := mustWitnessCore(t)
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	old := c.settle("iom")
	db := filepath.Join(c.config("iom").Data, "gateway.db")
	c.stop("iom")
	copyFile(t, db, db+".old")
	c.start("iom")
	for _, to := range []string{"shelter", "dinsos", "police"} {
		c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral(to))
	}
	size := c.settle("iom")
	c.stop("iom")
	copyFile(t, db+".old", db)
	start := time.Now()
	c.start("iom")
	for _, w := range []string{"dinsos", "police", "shelter"} {
		e := c.waitAudit(w, func(e store.AuditEvent) bool { return e.Action == gateway.ActWitnessRollback })
		if e.Object != "iom" || e.Detail["seen_size"] != fmt.Sprint(size) || e.Detail["new_size"] != fmt.Sprint(old) {
			t.Errorf("%s: %+v", w, e)
		}
		if v, _ := c.witnessView(w, "iom"); v.Alarm != gateway.ReasonRollback {
			t.Errorf("%s: view of iom %+v", w, v)
		}
	}
	// iom records that the witnesses refused its checkpoint.
	e := c.waitAudit("iom", func(e store.AuditEvent) bool { return e.Action == gateway.ActCheckpointRefused })
	if e.Reason != gateway.ReasonRollback {
		t.Errorf("iom: %+v", e)
	}
	if d := time.Since(start); d > testWitnessInterval+2*time.Second {
		t.Errorf("the rollback was reported after %v", d)
	}
	t.Logf("rollback from %d to %d events reported by the three witnesses after %v", size, old, time.Since(start))
}

// TestWitnessBurst: with an interval far longer than the test, a log that
// grows by a burst of events is still sent to the witnesses, and cosigned,
// soon after the burst; a log that grows by less waits for the interval.
func TestWitnessBurst(t *testing.T) {
	c := mustCoreOpts(t, gateway.Options{WitnessInterval: time.Hour, WitnessBurst: 20})
	// The log is empty at start. Fewer events than a burst: not sent.
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	small := c.checkpoint("iom").Size
	if small >= 20 {
		t.Fatalf("one referral made %d events", small)
	}
	time.Sleep(2500 * time.Millisecond)
	if w, ok := c.witnessView("shelter", "iom"); ok {
		t.Fatalf("shelter holds iom's log at %d events before a burst", w.Size)
	}
	// A burst: sent within a poll or two, and cosigned.
	for range 10 {
		if _, err := c.gws["iom"].List(c.staff("iom"), gateway.ListQuery{Box: "outbox"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("dinsos"))
	}
	burst := c.checkpoint("iom").Size
	if burst < small+20 {
		t.Fatalf("the burst made only %d events", burst-small)
	}
	c.waitWitnessed("iom", burst)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, cs := range c.checkpoint("iom").Cosignatures {
			if cs.Size >= burst {
				n++
			}
		}
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d cosignatures of the burst's checkpoint, want 3", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWitnessLateCheckpoint: a checkpoint delayed in flight, delivered
// after a newer one of the same log (as after a witness was killed holding
// it), is no rollback: no alarm, and the newer one stays held.
func TestWitnessLateCheckpoint(t *testing.T) {
	c := mustWitnessCore(t)
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("dinsos"))
	c.settle("iom")
	// Hold iom's next checkpoint to the shelter.
	var holding atomic.Bool
	holding.Store(true)
	c.net.SetHold(func(to, from string, env []byte) bool {
		h, _ := crypto.ParseHeader(env)
		return to == "shelter" && from == "iom" && h.Kind == crypto.KindCheckpoint && holding.CompareAndSwap(true, false)
	})
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("dinsos"))
	for holding.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	// A newer checkpoint reaches the shelter first.
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("police"))
	size := c.settle("iom")
	c.net.SetHold(nil)
	c.net.Release()
	time.Sleep(4 * testWitnessInterval)
	v, _ := c.witnessView("shelter", "iom")
	if v.Alarm != "" || v.Size != size {
		t.Fatalf("the shelter's view of iom after the late checkpoint: %+v, want size %d and no alarm", v, size)
	}
	for _, e := range c.audit("shelter") {
		if e.Action == gateway.ActWitnessRollback || e.Action == gateway.ActWitnessFork {
			t.Fatalf("alarm: %+v", e)
		}
	}
}
