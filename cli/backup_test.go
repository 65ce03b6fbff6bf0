package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupCutOrHostile: an archive cut anywhere, or holding a path that
// is no part of a gateway's data, is refused by the check and by restore,
// which then leaves nothing in the folder.
func TestBackupCutOrHostile(t *testing.T) {
	data := DevGatewayConfig(realGatewayLog(t), "iom", "").Data
	out := filepath.Join(t.TempDir(), "b.tar")
	if _, err := BackupFile(context.Background(), data, out); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(data, "at-rest.key")
	restoreInto := func(archive []byte) error {
		p := filepath.Join(t.TempDir(), "x.tar")
		os.WriteFile(p, archive, 0o600)
		dir := t.TempDir()
		_, err := Restore(context.Background(), RestoreConfig{Data: dir, Archive: p, AtRestKey: key})
		if err != nil {
			if _, serr := os.Stat(filepath.Join(dir, "gateway.db")); serr == nil {
				t.Errorf("a refused restore left a database")
			}
		}
		return err
	}
	if err := restoreInto(whole); err != nil {
		t.Fatalf("the whole archive: %v", err)
	}
	for _, cut := range []int{len(whole) - 1, len(whole) - 1024, len(whole) / 2, 700, 512, 100} {
		if err := restoreInto(whole[:cut]); err == nil {
			t.Errorf("an archive cut to %d of %d bytes was restored", cut, len(whole))
		}
	}
	for _, name := range []string{"../escape", "/etc/passwd", "attachments/../../x", "at-rest.key", "notes.txt"} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tr := tar.NewReader(bytes.NewReader(whole))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			tw.WriteHeader(h)
			b := new(bytes.Buffer)
			b.ReadFrom(tr)
			tw.Write(b.Bytes())
		}
		tw.WriteHeader(&tar.Header{Name: name, Size: 2, Mode: 0o600, Typeflag: tar.TypeReg})
		tw.Write([]byte("x\n"))
		tw.Close()
		if err := restoreInto(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "no part of") {
			t.Errorf("an archive holding %q: %v", name, err)
		}
	}
}
