package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rujukan/rujukan/cli"
)

// syncBuffer is a bytes.Buffer safe for the gateways' concurrent logging.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNoPersonalDataLeaks: pseudonyms, notes, reasons, consent notes and
// witnesses, and a statement's text travel and are shown to the parties,
// but never reach an audit log or the gateways' logs, at any level.
func TestNoPersonalDataLeaks(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := cli.StartDev(context.Background(), cli.DevConfig{Data: t.TempDir(), RandPorts: true, Logger: logger, Argon: testArgon})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			st.Close()
		}
	})
	iom, shelter, police := devAPI(st, "iom"), devAPI(st, "shelter"), devAPI(st, "police")
	secrets := []string{
		"LK-2026-918273",             // referral pseudonym
		"warung near the mosque",     // referral notes
		"uncle waits at the gate",    // status reason (accepted)
		"SR-2026-556677",             // statement request pseudonym
		"SR-2026-556678",             // second request's pseudonym
		"mother held her hand",       // consent notes
		"Kartini Wulandari",          // consent witness
		"Pak Harun took our papers",  // statement text
		"family of the agent nearby", // decline detail
	}

	// A referral, opened and accepted with a reason.
	ref := sampleReferral("shelter")
	ref["person"].(map[string]any)["pseudonym"] = secrets[0]
	ref["notes"] = "She sells at the " + secrets[1] + " every morning."
	r := iom.do(t, "POST", "/v1/referrals", ref)
	if r.Status != 202 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	rid := r.str("id")
	eventually(t, "the referral reaching the shelter", 20*time.Second, func() (bool, string) {
		in := listAll(t, shelter.url, shelter.tok, "inbox")
		return in[rid] == "delivered", in[rid]
	})
	shelter.do(t, "GET", "/v1/referrals/"+rid, nil)
	if a := shelter.do(t, "POST", "/v1/referrals/"+rid+"/status", map[string]string{"status": "accepted", "reason": "her " + secrets[2]}); a.Status != 200 {
		t.Fatalf("accept: %d %s", a.Status, a.Raw)
	}
	waitStatus(t, iom.url, iom.tok, rid, "accepted")
	if one := iom.do(t, "GET", "/v1/referrals/"+rid, nil); !strings.Contains(string(one.Raw), secrets[2]) {
		t.Errorf("the reason did not reach iom: %s", one.Raw)
	}

	// A statement request answered with a statement.
	id := sendRequest(t, police, requestBody("shelter", secrets[3], time.Now().Add(72*time.Hour)))
	waitListed(t, shelter, "inbox", id, "delivered")
	shelter.do(t, "GET", "/v1/statement-requests/"+id, nil)
	c := map[string]any{"given": true, "purposes": []string{"statement"}, "method": "written", "witness_role": "social-worker",
		"witness": secrets[6], "notes": "The " + secrets[5] + ".", "person": map[string]any{"age": 27}}
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/consent", c); r.Status != 200 {
		t.Fatalf("consent: %d %s", r.Status, r.Raw)
	}
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/response", statementBody(secrets[7]+" at Lembar.")); r.Status != 200 {
		t.Fatalf("statement: %d %s", r.Status, r.Raw)
	}
	waitListed(t, police, "outbox", id, "answered")
	if one := police.do(t, "GET", "/v1/statement-requests/"+id, nil); !strings.Contains(string(one.Raw), secrets[7]) {
		t.Errorf("the statement did not reach the police: %s", one.Raw)
	}
	// Another declined with a detail.
	id2 := sendRequest(t, police, requestBody("shelter", secrets[4], time.Now().Add(72*time.Hour)))
	waitListed(t, shelter, "inbox", id2, "delivered")
	if r := shelter.do(t, "POST", "/v1/statement-requests/"+id2+"/response",
		map[string]any{"decline": map[string]any{"reason": "risk-to-victim", "detail": "the " + secrets[8]}}); r.Status != 200 {
		t.Fatalf("decline: %d %s", r.Status, r.Raw)
	}
	waitListed(t, police, "outbox", id2, "declined")
	eventually(t, "the statement's read receipt reaching the shelter", 20*time.Second, func() (bool, string) {
		one := shelter.do(t, "GET", "/v1/statement-requests/"+id, nil)
		return strings.Contains(string(one.Raw), "statement-read"), string(one.Raw)
	})

	audits := map[string]string{}
	for _, a := range cli.DevAgencies {
		evs := auditAll(t, devAPI(st, a.ID))
		raw, _ := json.Marshal(evs)
		audits[a.ID] = string(raw)
		if len(evs) == 0 && a.ID != "dinsos" {
			t.Errorf("%s has no audit events", a.ID)
		}
	}
	closed = true
	if err := st.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	log := logs.String()
	if !strings.Contains(log, `"level":"DEBUG"`) && !strings.Contains(log, `"level":"INFO"`) {
		t.Logf("the gateways logged nothing below WARN (%d bytes)", len(log))
	}
	for _, s := range secrets {
		for agency, a := range audits {
			if strings.Contains(a, s) {
				t.Errorf("the audit log of %s holds %q", agency, s)
			}
		}
		if i := strings.Index(log, s); i >= 0 {
			start := max(0, strings.LastIndex(log[:i], "\n"))
			end := i + strings.Index(log[i:]+"\n", "\n")
			t.Errorf("the gateways' log holds %q: %s", s, log[start:end])
		}
	}
}
