package gateway_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/httpapi"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/policy"
	bolt "go.etcd.io/bbolt"
)

// stopAndTamper stops agency id's gateway and changes its file with bbolt,
// as someone with the file could.
func (c *core) stopAndTamper(id string, fn func(tx *bolt.Tx) error) {
	c.t.Helper()
	if err := c.gws[id].Close(); err != nil {
		c.t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(c.config(id).Data, "gateway.db"), 0o600, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		c.t.Fatal(err)
	}
}

func (c *core) newGateway(id string, cfg gateway.Config) (*gateway.Gateway, error) {
	return gateway.New(cfg, c.keys[id], c.net.Bus(id), gateway.Options{Logger: quiet, Now: c.clock.Now,
		WaitRetry: 50 * time.Millisecond})
}

// TestAuditBreakAtStart: a gateway whose log was edited while it was
// stopped refuses to start, naming the event; with audit.accept_break it
// starts, records the break as an event, and /readyz and
// GET /v1/audit/verify say so.
func TestAuditBreakAtStart(t *testing.T) {
	c := mustCore(t)
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	// A clean restart starts.
	if err := c.gws["iom"].Close(); err != nil {
		t.Fatal(err)
	}
	gw, err := c.newGateway("iom", c.config("iom"))
	if err != nil {
		t.Fatalf("restart on a log that verifies: %v", err)
	}
	c.gws["iom"] = gw
	if gw.AuditBroken() != "" {
		t.Fatalf("a clean log reported broken: %s", gw.AuditBroken())
	}

	c.stopAndTamper("iom", func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		k := binary.BigEndian.AppendUint64(nil, 2)
		return b.Put(k, bytes.Replace(bytes.Clone(b.Get(k)), []byte(`"outcome":"`), []byte(`"outcome":"X`), 1))
	})
	_, err = c.newGateway("iom", c.config("iom"))
	if !errors.Is(err, store.ErrAuditBroken) || !strings.Contains(err.Error(), "event 2 was altered") ||
		!strings.Contains(err.Error(), "audit.accept_break") {
		t.Fatalf("start on an edited log: %v, want a refusal naming event 2", err)
	}

	cfg := c.config("iom")
	cfg.Audit.AcceptBreak = true
	gw, err = c.newGateway("iom", cfg)
	if err != nil {
		t.Fatalf("start with accept_break: %v", err)
	}
	gw.Start()
	c.gws["iom"] = gw
	t.Cleanup(func() { gw.Close() })
	if r := gw.Ready(); r != gateway.ReasonAuditBroken {
		t.Errorf("Ready() = %q, want %q", r, gateway.ReasonAuditBroken)
	}
	evs := c.audit("iom")
	last := evs[len(evs)-1]
	if last.Action != gateway.ActAuditBreakAccepted || last.Actor != "iom" || !strings.Contains(last.Detail["error"], "event 2 was altered") ||
		last.Detail["verified_events"] != "1" {
		t.Errorf("last event %+v, want the accepted break naming event 2", last)
	}
	v, err := gw.VerifyAudit(c.staff("iom"))
	if err != nil || v.OK || !strings.Contains(v.Error, "event 2 was altered") {
		t.Errorf("verify: %+v %v", v, err)
	}
	// Over HTTP: /readyz answers 503 audit-broken, /v1/audit/verify ok false.
	srv := httptest.NewServer(httpapi.New(gw, 1<<16, quiet))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(body.String(), `"reason":"audit-broken"`) {
		t.Errorf("readyz: %d %s", resp.StatusCode, body.String())
	}
	// The gateway keeps working and recording; the break stays.
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	if v, _ := gw.VerifyAudit(c.staff("iom")); v.OK || gw.Ready() != gateway.ReasonAuditBroken {
		t.Errorf("after more events: verify %+v, ready %q", v, gw.Ready())
	}
}

// TestAuditBreakNotOverwritten: events past the signed checkpoint are
// never written over, so a break of that kind cannot be accepted by
// appending; the gateway refuses to start either way.
func TestAuditBreakNotOverwritten(t *testing.T) {
	c := mustCore(t)
	c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	c.stopAndTamper("iom", func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Delete([]byte("audit-checkpoint"))
	})
	cfg := c.config("iom")
	cfg.Audit.AcceptBreak = true
	_, err := c.newGateway("iom", cfg)
	if !errors.Is(err, store.ErrAuditBroken) || !strings.Contains(err.Error(), "cannot be recorded") {
		t.Fatalf("start on a log without its checkpoint: %v", err)
	}
}
