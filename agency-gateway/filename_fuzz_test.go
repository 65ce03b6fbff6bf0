package gateway

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzFileName: whatever name an uploader sends, an accepted one is one
// line of valid UTF-8, at most 255 bytes, with no path in it.
func FuzzFileName(f *testing.F) {
	for _, s := range []string{"scan.pdf", "../../etc/passwd", `C:\Users\x\foto.jpg`, "a\nb", "\u202ereverse", "", "  "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := fileName(s)
		if err != nil {
			return
		}
		if name == "" || len(name) > 255 || !utf8.ValidString(name) || strings.ContainsAny(name, "/\\\n\r\x00") {
			t.Fatalf("accepted %q as %q", s, name)
		}
	})
}

// TestWithoutFilesEscaped: a list of files is taken out of a body however
// its key is written.
func TestWithoutFilesEscaped(t *testing.T) {
	for _, b := range []string{
		`{"to":"x","attachments":[{"key":"k"}]}`,
		`{"to":"x","attachm\u0065nts":[{"key":"k"}]}`,
	} {
		if got := string(forView([]byte(b))); strings.Contains(got, "key") {
			t.Errorf("%s -> %s", b, got)
		}
	}
}
