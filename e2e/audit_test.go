package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/cli"
	bolt "go.etcd.io/bbolt"
)

// TestAuditVerifyCommand: `rujukan audit verify` checks a stopped
// gateway's chain with the public key from the directory, and catches an
// event edited in the file.
func TestAuditVerifyCommand(t *testing.T) {
	st, data := MustDev(t)
	r := call(t, "POST", st.Gateways["iom"].URL+"/v1/referrals", st.Tokens["iom"], sampleReferral("shelter"))
	if r.Status != 202 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	waitStatus(t, st.Gateways["iom"].URL, st.Tokens["iom"], r.str("id"), "delivered")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := cli.AuditVerifyConfig{DB: filepath.Join(data, "gateways", "iom", "gateway.db"), Agency: "iom",
		Directory: filepath.Join(data, "network.json"), Authority: "@" + filepath.Join(data, "authority", "authority.pub")}
	rep, err := cli.AuditVerify(cfg)
	if err != nil || rep.Events < 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// Another agency's key does not verify iom's log.
	other := cfg
	other.Agency = "shelter"
	if _, err := cli.AuditVerify(other); err == nil {
		t.Error("iom's audit log verified with the shelter's key")
	}
	// Edit one event in place, as someone with the file could.
	db, err := bolt.Open(cfg.DB, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		k, v := b.Cursor().First()
		return b.Put(k, bytes.Replace(v, []byte(`"outcome":"`), []byte(`"outcome":"x`), 1))
	})
	db.Close()
	if _, err := cli.AuditVerify(cfg); err == nil || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("edited event: %v, want an altered-event error", err)
	}
}

// TestAuditExport: GET /v1/audit/export gives JSON lines that verify with
// only the directory, filtered by time; `audit verify --url` checks a
// running gateway's checkpoint with the directory's key.
func TestAuditExport(t *testing.T) {
	st, data := MustDev(t)
	base, tok := st.Gateways["iom"].URL, st.Tokens["iom"]
	r := call(t, "POST", base+"/v1/referrals", tok, sampleReferral("shelter"))
	if r.Status != 202 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	waitStatus(t, base, tok, r.str("id"), "delivered")
	cfg := cli.AuditVerifyConfig{Agency: "iom", Directory: filepath.Join(data, "network.json"),
		Authority: "@" + filepath.Join(data, "authority", "authority.pub")}
	verify := func(raw []byte) (store.ExportReport, error) {
		t.Helper()
		file := filepath.Join(t.TempDir(), "export.jsonl")
		if err := os.WriteFile(file, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return cli.AuditVerifyExport(cfg, file)
	}
	all := call(t, "GET", base+"/v1/audit/export", tok, nil)
	if all.Status != 200 || all.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %d %s %s", all.Status, all.Header.Get("Content-Type"), all.Raw)
	}
	rep, err := verify(all.Raw)
	if err != nil || rep.Events < 3 || uint64(rep.Events) > rep.Size {
		t.Fatalf("export verify: %+v %v", rep, err)
	}
	lines := strings.Split(strings.TrimSpace(string(all.Raw)), "\n")
	if len(lines) != rep.Events+1 {
		t.Errorf("%d lines for %d events", len(lines), rep.Events)
	}
	// A range in the future has no events, and still a checkpoint.
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	none := call(t, "GET", base+"/v1/audit/export?since="+future, tok, nil)
	if rep, err := verify(none.Raw); none.Status != 200 || err != nil || rep.Events != 0 {
		t.Errorf("export since %s: %d %+v %v", future, none.Status, rep, err)
	}
	// A range ending before now leaves the latest events out.
	var last store.ExportEvent
	json.Unmarshal([]byte(lines[len(lines)-2]), &last)
	rec, _ := base64.StdEncoding.DecodeString(last.Record)
	var ev store.AuditEvent
	json.Unmarshal(rec, &ev)
	until := ev.At.Format(time.RFC3339Nano)
	part := call(t, "GET", base+"/v1/audit/export?until="+url.QueryEscape(until), tok, nil)
	if rep, err := verify(part.Raw); part.Status != 200 || err != nil || rep.Events >= len(lines)-1 || rep.Events == 0 {
		t.Errorf("export until %s: %d %+v %v", until, part.Status, rep, err)
	}
	for _, q := range []string{"since=yesterday", "until=2026-13-01T00:00:00Z", "since=" + future + "&until=" + future} {
		if r := call(t, "GET", base+"/v1/audit/export?"+q, tok, nil); r.Status != 400 {
			t.Errorf("export ?%s: %d, want 400", q, r.Status)
		}
	}
	if r := call(t, "GET", base+"/v1/audit/export", "", nil); r.Status != 401 {
		t.Errorf("export without a token: %d", r.Status)
	}

	// Online: the gateway's verification, and its checkpoint checked here.
	online, err := cli.AuditVerifyURL(context.Background(), cfg, base, tok)
	if err != nil || online.Events < uint64(rep.Events) || !strings.HasPrefix(online.Checkpoint, "rujukan.id/iom/audit\n") {
		t.Fatalf("verify --url: %+v %v", online, err)
	}
	other := cfg
	other.Agency = "shelter"
	if _, err := cli.AuditVerifyURL(context.Background(), other, base, tok); !errors.Is(err, store.ErrAuditBroken) {
		t.Errorf("iom's checkpoint verified with the shelter's key: %v", err)
	}
}
