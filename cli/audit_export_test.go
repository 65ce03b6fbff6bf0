package cli

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/membus"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
	"golang.org/x/mod/sumdb/note"
)

// realExport exports iom's audit log from a real gateway's file (see
// realGatewayLog) and returns the data folder and the export's lines.
func realExport(t *testing.T) (string, []string) {
	t.Helper()
	data := realGatewayLog(t)
	cfg := DevGatewayConfig(data, "iom", "nats://127.0.0.1:1")
	keys, err := gateway.LoadKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, keys, membus.New().Bus("iom"), gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	var buf bytes.Buffer
	auditor := policy.Principal{Agency: "iom", Subject: "auditor", Scopes: []string{policy.ScopeAuditRead}}
	if err := gw.AuditExport(auditor, time.Time{}, time.Time{}, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) < 5 {
		t.Fatalf("export of %d lines", len(lines))
	}
	return data, lines
}

// verifyExport runs `rujukan audit verify --export` on the lines.
func verifyExport(t *testing.T, data string, lines []string) (string, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "audit", "verify", "--export", file, "--data", data, "--agency", "iom")
	return out, err
}

// exportFails wants a one-line ErrAuditBroken saying want.
func exportFails(t *testing.T, data string, lines []string, want string) {
	t.Helper()
	_, err := verifyExport(t, data, lines)
	if !errors.Is(err, store.ErrAuditBroken) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %v, want a one-line broken-log error saying %q", err, want)
	}
}

func TestAuditVerifyExport(t *testing.T) {
	data, lines := realExport(t)
	out, err := verifyExport(t, data, lines)
	if err != nil {
		t.Fatal(err)
	}
	n := len(lines) - 1
	if !strings.Contains(out, "audit export of iom verifies: "+itoa(n)+" events") || !strings.Contains(out, "\n— rujukan.id/iom/audit ") {
		t.Errorf("output:\n%s", out)
	}
	// The same with the directory and authority named.
	file := filepath.Join(t.TempDir(), "e.jsonl")
	os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	if _, _, err := runCLI(t, "audit", "verify", "--export", file, "--agency", "iom",
		"--directory", filepath.Join(data, "network.json"), "--authority", "@"+filepath.Join(data, "authority", "authority.pub")); err != nil {
		t.Fatal(err)
	}
	// Another agency's key does not verify it.
	if _, _, err := runCLI(t, "audit", "verify", "--export", file, "--data", data, "--agency", "shelter"); !errors.Is(err, store.ErrAuditBroken) {
		t.Errorf("iom's export verified with the shelter's key: %v", err)
	}
	// A part of the log (some events, with their proofs) verifies.
	part := append([]string{lines[1], lines[3]}, lines[len(lines)-1])
	if _, err := verifyExport(t, data, part); err != nil {
		t.Errorf("a part of the export: %v", err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestAuditVerifyExportOneByteChanged(t *testing.T) {
	data, lines := realExport(t)
	var e store.ExportEvent
	json.Unmarshal([]byte(lines[2]), &e)
	raw, _ := base64.StdEncoding.DecodeString(e.Record)
	i := bytes.Index(raw, []byte(`"outcome":"`)) + len(`"outcome":"`)
	raw[i] ^= 1
	e.Record = base64.StdEncoding.EncodeToString(raw)
	b, _ := json.Marshal(e)
	lines[2] = string(b)
	exportFails(t, data, lines, "event "+itoa(int(e.Seq))+" was altered")
}

func TestAuditVerifyExportProofDropped(t *testing.T) {
	data, lines := realExport(t)
	var tr store.ExportTrailer
	json.Unmarshal([]byte(lines[len(lines)-1]), &tr)
	dropped := tr.Proofs[1].Seq
	tr.Proofs = append(tr.Proofs[:1], tr.Proofs[2:]...)
	b, _ := json.Marshal(tr)
	lines[len(lines)-1] = string(b)
	exportFails(t, data, lines, "event "+itoa(int(dropped))+" has no inclusion proof")
}

func TestAuditVerifyExportCheckpointOtherKey(t *testing.T) {
	data, lines := realExport(t)
	var tr store.ExportTrailer
	json.Unmarshal([]byte(lines[len(lines)-1]), &tr)
	_, other, _ := ed25519.GenerateKey(nil)
	signer, err := crypto.NewAuditNoteSigner("iom", other)
	if err != nil {
		t.Fatal(err)
	}
	text, _, _ := strings.Cut(tr.Checkpoint, "\n\n")
	msg, err := note.Sign(&note.Note{Text: text + "\n"}, signer)
	if err != nil {
		t.Fatal(err)
	}
	tr.Checkpoint = string(msg)
	b, _ := json.Marshal(tr)
	lines[len(lines)-1] = string(b)
	exportFails(t, data, lines, "checkpoint is not signed by the agency's key")
}

func TestAuditVerifyExportCutShort(t *testing.T) {
	data, lines := realExport(t)
	exportFails(t, data, lines[:len(lines)-1], "no checkpoint line")
	// Two events swapped in the file.
	lines[1], lines[2] = lines[2], lines[1]
	exportFails(t, data, lines, "out of place")
}
