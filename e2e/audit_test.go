package e2e

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

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
