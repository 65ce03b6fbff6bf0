package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/membus"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/cli"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// agency is one member of a test network.
type agency struct{ id, kind string }

var defaultAgencies = []agency{{"iom", "iom"}, {"dinsos", "dinsos"}, {"police", "police"}, {"shelter", "shelter"}}

// clock is a test clock shared by the gateways of a network.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// core is a network of gateway cores joined by an in-memory bus.
type core struct {
	t     testing.TB
	net   *membus.Network
	data  string
	clock *clock
	gws   map[string]*gateway.Gateway
	kinds map[string]string
	keys  map[string]gateway.Keys
	// opts are the options every gateway starts with (Logger, Now and
	// WaitRetry are set by start).
	opts    gateway.Options
	stopped map[*gateway.Gateway]bool
}

// mustCore builds a signed directory of the given agencies (the four dev
// agencies by default) in t.TempDir() and starts one gateway core per
// agency on an in-memory bus.
func mustCore(t testing.TB, agencies ...agency) *core {
	t.Helper()
	return mustCoreOpts(t, gateway.Options{}, agencies...)
}

// mustCoreOpts is mustCore with options for every gateway.
func mustCoreOpts(t testing.TB, opts gateway.Options, agencies ...agency) *core {
	t.Helper()
	if len(agencies) == 0 {
		agencies = defaultAgencies
	}
	c := &core{t: t, net: membus.New(), data: t.TempDir(), clock: &clock{}, gws: map[string]*gateway.Gateway{},
		kinds: map[string]string{}, keys: map[string]gateway.Keys{}, opts: opts, stopped: map[*gateway.Gateway]bool{}}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(c.data, "authority"), 0o700)
	if err := os.WriteFile(filepath.Join(c.data, "authority", "authority.pub"), []byte(base64.StdEncoding.EncodeToString(pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := crypto.NewDirectory("test", policy.DefaultRulesJSON())
	for _, a := range agencies {
		nk, err := broker.NewNATSKey()
		if err != nil {
			t.Fatal(err)
		}
		entry, err := crypto.WriteAgencyKeys(filepath.Join(c.data, "agencies", a.id), a.id, a.kind, a.id, nk, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := dir.Add(*entry); err != nil {
			t.Fatal(err)
		}
		c.kinds[a.id] = a.kind
	}
	dir.IssuedAt = time.Now().UTC().Truncate(time.Second)
	signed, err := crypto.SignDirectory(dir, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.data, "network.json"), signed, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, a := range agencies {
		c.start(a.id)
	}
	return c
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func (c *core) config(id string) gateway.Config {
	return cli.DevGatewayConfig(c.data, id, "nats://127.0.0.1:1")
}

func (c *core) start(id string) {
	c.t.Helper()
	cfg := c.config(id)
	keys, err := gateway.LoadKeys(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	opts := c.opts
	opts.Logger, opts.Now, opts.WaitRetry = quiet, c.clock.Now, 50*time.Millisecond
	gw, err := gateway.New(cfg, keys, c.net.Bus(id), opts)
	if err != nil {
		c.t.Fatal(err)
	}
	gw.Start()
	c.gws[id], c.keys[id] = gw, keys
	c.t.Cleanup(func() {
		if c.stopped[gw] {
			return
		}
		if err := gw.Close(); err != nil {
			c.t.Errorf("close %s: %v", id, err)
		}
	})
}

// stop closes agency id's gateway (start starts it again).
func (c *core) stop(id string) {
	c.t.Helper()
	gw := c.gws[id]
	c.stopped[gw] = true
	if err := gw.Close(); err != nil {
		c.t.Fatalf("close %s: %v", id, err)
	}
}

// staff is a member of staff of agency id with every scope the agency's
// kind may hold.
func (c *core) staff(id string) policy.Principal {
	return policy.Principal{Agency: id, Subject: "staff-" + id, Scopes: policy.ScopesForKind(c.kinds[id])}
}

// send sends a draft as staff of agency id.
func (c *core) send(id, kind string, a policy.Action, ref string, body any) (gateway.Accepted, error) {
	c.t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.gws[id].Send(context.Background(), c.staff(id), gateway.Draft{Kind: kind, Action: a, Ref: ref, Body: raw})
}

func (c *core) mustSend(id, kind string, a policy.Action, ref string, body any) gateway.Accepted {
	c.t.Helper()
	acc, err := c.send(id, kind, a, ref, body)
	if err != nil {
		c.t.Fatalf("%s sends %s: %v", id, kind, err)
	}
	return acc
}

// item shows a record at agency id without opening it.
func (c *core) item(id string, a policy.Action, rec string) gateway.Item {
	c.t.Helper()
	it, err := c.gws[id].Item(c.staff(id), a, rec)
	if err != nil {
		c.t.Fatalf("%s item %s: %v", id, rec, err)
	}
	return it
}

// waitStatus waits until record rec at agency id has status want.
func (c *core) waitStatus(id string, a policy.Action, rec, want string) gateway.Item {
	c.t.Helper()
	var it gateway.Item
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if it, err = c.gws[id].Item(c.staff(id), a, rec); err == nil && it.Status == want {
			return it
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("%s: record %s is %q, want %q; timeline %+v", id, rec, it.Status, want, it.Timeline)
	return it
}

// audit returns every audit event of agency id.
func (c *core) audit(id string) []store.AuditEvent {
	c.t.Helper()
	var evs []store.AuditEvent
	err := c.gws[id].DB().View(func(tx *store.Tx) (err error) {
		evs, err = tx.AuditEvents(0, 1<<20)
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return evs
}

// waitAudit waits for an audit event at agency id that match accepts.
func (c *core) waitAudit(id string, match func(store.AuditEvent) bool) store.AuditEvent {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range c.audit(id) {
			if match(e) {
				return e
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("%s: no matching audit event", id)
	return store.AuditEvent{}
}

// seal makes an envelope with agency from's own keys, bypassing its
// gateway, as a hostile member could.
func (c *core) seal(from, to, kind string, body any) []byte {
	c.t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.sealRaw(from, to, kind, raw)
}

// sealRaw is seal for a body already encoded.
func (c *core) sealRaw(from, to, kind string, raw []byte) []byte {
	c.t.Helper()
	rcpt, _ := c.directory().Agency(to)
	now := c.clock.Now().UTC()
	env, err := crypto.Seal(crypto.Header{ID: crypto.NewID(), Kind: kind, From: from, To: to, Created: now,
		Expires: now.Add(time.Hour)}, raw, c.keys[from].Signer, rcpt)
	if err != nil {
		c.t.Fatal(err)
	}
	return env
}

// referral is a valid referral body to agency to.
func referral(to string) map[string]any {
	return map[string]any{
		"to": to, "priority": "normal",
		"person":  map[string]any{"pseudonym": "V-2026-0042", "sex": "female", "age": 25},
		"needs":   []string{"shelter"},
		"consent": map[string]any{"given": true, "purposes": []string{"services", "law-enforcement"}, "method": "written", "recorded_at": "2026-11-20T09:00:00Z"},
		"notes":   "secret note Melati",
	}
}

// request is a valid statement request body to agency to.
func request(to string, due time.Time) map[string]any {
	return map[string]any{"to": to, "pseudonym": "V-2026-0077", "legal_basis": "LP/B/123/XI/2026/NTB",
		"purpose": "investigation", "questions": []string{"What happened at the harbour?"}, "due": due.UTC().Format(time.RFC3339)}
}
