package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/cli"
)

// rujukanErr runs the program in this process and returns its error.
func rujukanErr(args ...string) error {
	return cli.Main(context.Background(), cli.Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}, args)
}

// TestBackupRestore: a backup is taken from a running gateway process
// (rujukan backup, over its backup socket) with referrals, a file and
// receipts in it; the gateway is killed and its data folder destroyed;
// rujukan restore puts the backup back; the gateway starts again, and
// holds the referrals, their verified receipts and the file as they were
// at the backup, and nothing sent after it; its audit log verifies and
// records the backup.
func TestBackupRestore(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	n.spawnGateway("iom")
	n.startGateway("shelter")
	iom, tok := n.url("iom"), n.tokens["iom"]

	var ids []string
	for range 3 {
		r := call(t, "POST", iom+"/v1/referrals", tok, sampleReferral("shelter"))
		if r.Status != http.StatusAccepted {
			t.Fatalf("send: %d %s", r.Status, r.Raw)
		}
		ids = append(ids, r.str("id"))
	}
	file := fileOf{size: 200 << 10, seed: 7}
	aid := upload(t, iom, tok, "application/pdf", "scan.pdf", file)["id"].(string)
	withFile := sendWithFiles(t, iom, tok, "shelter", aid)
	ids = append(ids, withFile)
	for _, id := range ids {
		waitStatus(t, iom, tok, id, "delivered")
	}

	archive := filepath.Join(t.TempDir(), "iom-backup.tar")
	config := filepath.Join(n.data, "iom.yaml")
	rujukan(t, "backup", "--config", config, "--out", archive)
	// Taking it again into the same file is refused: a backup is never
	// overwritten.
	if err := rujukanErr("backup", "--config", config, "--out", archive); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second backup into the same file: %v", err)
	}
	events := call(t, "GET", iom+"/v1/audit?action=store.backup", tok, nil)
	if !strings.Contains(string(events.Raw), `"outcome":"started"`) || !strings.Contains(string(events.Raw), `"outcome":"completed"`) {
		t.Fatalf("the backup is not in the audit log: %s", events.Raw)
	}

	// The socket answers only its one request.
	conn, err := net.Dial("unix", filepath.Join(n.config("iom").Data, "backup.sock"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET / HTTP/1.1\r\n\r\n")
	answer, _ := io.ReadAll(io.LimitReader(conn, 1<<20))
	conn.Close()
	if !strings.HasPrefix(string(answer), "error unknown request") || len(answer) > 100 {
		t.Fatalf("another request got %d bytes: %.80q", len(answer), answer)
	}

	later := call(t, "POST", iom+"/v1/referrals", tok, sampleReferral("shelter")).str("id")
	waitStatus(t, iom, tok, later, "delivered")

	// Restoring over the running gateway is refused.
	if err := rujukanErr("restore", "--config", config, "--from", archive, "--replace"); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("restore with the gateway running: %v", err)
	}
	n.kill("iom")
	// The at-rest key is kept apart from the backups, with the keys.
	data := n.config("iom").Data
	key := filepath.Join(t.TempDir(), "at-rest.key")
	raw, err := os.ReadFile(filepath.Join(data, "at-rest.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	// Without its at-rest key, or with another, nothing is restored.
	if err := rujukanErr("restore", "--config", config, "--from", archive); err == nil || !strings.Contains(err.Error(), "--at-rest-key") {
		t.Fatalf("restore without the at-rest key: %v", err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	os.WriteFile(other, append(bytes.Clone(raw[:len(raw)-2]), 'x', '\n'), 0o600)
	if err := rujukanErr("restore", "--config", config, "--from", archive, "--at-rest-key", other); err == nil || !strings.Contains(err.Error(), "is not the at-rest key") {
		t.Fatalf("restore with another at-rest key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "gateway.db")); err == nil {
		t.Fatal("a refused restore left a database")
	}
	rujukan(t, "restore", "--config", config, "--from", archive, "--at-rest-key", key)
	// Restoring again over the restored data is refused without --replace.
	if err := rujukanErr("restore", "--config", config, "--from", archive); err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("restore over data: %v", err)
	}
	n.spawnGateway("iom")

	for _, id := range ids {
		st, r := statusOf(t, iom, tok, id)
		if st != "delivered" {
			t.Errorf("referral %s after the restore: %d %s", id, r.Status, r.Raw)
		}
		rc := call(t, "GET", iom+"/v1/referrals/"+id+"/receipts", tok, nil)
		if !strings.Contains(string(rc.Raw), `"event":"delivered"`) || !strings.Contains(string(rc.Raw), `"verified":true`) {
			t.Errorf("receipts of %s after the restore: %s", id, rc.Raw)
		}
	}
	if sum, size := downloadHash(t, iom, tok, withFile, aid); sum != file.sha256() || size != file.size {
		t.Errorf("the file after the restore: %d bytes, sha256 %s", size, sum)
	}
	if r := call(t, "GET", iom+"/v1/referrals/"+later, tok, nil); r.Status != http.StatusNotFound {
		t.Errorf("the referral sent after the backup: %d %s, want 404", r.Status, r.Raw)
	}
	v := call(t, "GET", iom+"/v1/audit/verify", tok, nil)
	if v.JSON["ok"] != true {
		t.Fatalf("the restored audit log does not verify: %s", v.Raw)
	}
	events = call(t, "GET", iom+"/v1/audit?action=store.backup", tok, nil)
	if !strings.Contains(string(events.Raw), `"outcome":"started"`) {
		t.Errorf("the restored log does not hold the backup's start: %s", events.Raw)
	}
	// The restored gateway still works: a new referral goes through.
	again := call(t, "POST", iom+"/v1/referrals", tok, sampleReferral("shelter")).str("id")
	waitStatus(t, iom, tok, again, "delivered")

	// With the gateway stopped, the backup is read from the files, and
	// the audit log of the copy verifies offline.
	n.kill("iom")
	cold := filepath.Join(t.TempDir(), "cold.tar")
	rujukan(t, "backup", "--config", config, "--out", cold)
	rujukan(t, "audit", "verify", "--config", config)
}

// copyTree copies a folder, as `tar` or `cp -a` would, for a broker
// stopped.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, raw, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBrokerColdCopy: the broker's data folder, copied with the broker
// stopped, is a backup of it. A referral waiting for a recipient that is
// down is in the copy; put back later, after the referral was delivered,
// the copy delivers it again and the recipient drops it as the duplicate
// it is: one record, no refusal, and the sender's outcome unchanged.
func TestBrokerColdCopy(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	n.startGateway("iom")
	iom, tok := n.url("iom"), n.tokens["iom"]
	id := call(t, "POST", iom+"/v1/referrals", tok, sampleReferral("shelter")).str("id")
	waitStatus(t, iom, tok, id, "sent")

	n.stopBroker()
	data := filepath.Join(n.data, "broker")
	copied := filepath.Join(t.TempDir(), "broker")
	copyTree(t, data, copied)
	n.startBroker()
	n.startGateway("shelter")
	waitStatus(t, iom, tok, id, "delivered")

	n.stopBroker()
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	copyTree(t, copied, data)
	n.startBroker()
	// The copy still holds the referral for the shelter: it is delivered
	// again, and taken off the inbox.
	eventually(t, "the shelter's inbox at the broker emptying", 20*time.Second, func() (bool, string) {
		us, err := n.broker.Usage(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, u := range us {
			if u.Agency == "shelter" {
				return u.Messages == 0, fmt.Sprint(u.Messages, " waiting")
			}
		}
		return false, "no shelter inbox"
	})
	shelter := listAll(t, n.url("shelter"), n.tokens["shelter"], "inbox")
	if len(shelter) != 1 || shelter[id] == "" {
		t.Fatalf("the shelter's inbox after the copy was put back: %v", shelter)
	}
	eventually(t, "the shelter dropping the referral delivered again", 20*time.Second, func() (bool, string) {
		m := metrics(t, n.metricsURL("shelter"))
		return strings.Contains(m, `kind="referral",result="duplicate"} 1`), ""
	})
	if m := metrics(t, n.metricsURL("shelter")); strings.Contains(m, "rujukan_envelopes_refused_total{") {
		t.Errorf("the redelivery was refused:\n%s", m)
	}
	if st, _ := statusOf(t, iom, tok, id); st != "delivered" {
		t.Errorf("the referral at iom is %s", st)
	}
}
