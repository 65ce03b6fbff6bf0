package filetype

import (
	"errors"
	"testing"
)

// heads are the first bytes of a file of each accepted type.
var heads = map[string][]byte{
	"application/pdf": []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"),
	"image/jpeg":      []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
	"image/png":       []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"),
	"image/heic":      []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"),
	"audio/mpeg":      []byte("ID3\x03\x00\x00\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64"),
	"audio/x-m4a":     []byte("\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom\x00\x00\x00\x00"),
	"audio/ogg":       []byte("OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1e\x01vorbis\x00\x00\x00\x00\x02"),
	"audio/wav":       []byte("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x44\xac\x00\x00"),
	"video/mp4":       []byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"),
}

func TestEveryDefaultTypeIsRecognised(t *testing.T) {
	for _, typ := range Default {
		head, ok := heads[typ]
		if !ok {
			t.Fatalf("no sample of %s", typ)
		}
		got, err := Check(head, typ, Default)
		if err != nil || got != typ {
			t.Errorf("%s: got %q, %v", typ, got, err)
		}
	}
}

func TestAliasesAndParameters(t *testing.T) {
	for declared, sample := range map[string]string{
		"audio/mp4":                      "audio/x-m4a",
		"audio/x-wav":                    "audio/wav",
		"audio/mp3":                      "audio/mpeg",
		"APPLICATION/PDF; name=scan.pdf": "application/pdf",
	} {
		if _, err := Check(heads[sample], declared, Default); err != nil {
			t.Errorf("%s: %v", declared, err)
		}
	}
}

// TestHTMLLabelledPDF: bytes that are a web page are refused whatever they
// are called.
func TestHTMLLabelledPDF(t *testing.T) {
	html := []byte("<!DOCTYPE html><html><head><script>alert(1)</script></head><body>x</body></html>")
	if _, err := Check(html, "application/pdf", Default); !errors.Is(err, ErrMismatch) {
		t.Fatalf("got %v, want ErrMismatch", err)
	}
	// A PNG called a JPEG is refused too: the type shown to the recipient
	// is the one the bytes have.
	if _, err := Check(heads["image/png"], "image/jpeg", Default); !errors.Is(err, ErrMismatch) {
		t.Fatalf("got %v, want ErrMismatch", err)
	}
}

func TestNotAllowed(t *testing.T) {
	for _, declared := range []string{"text/html", "application/zip", "", "pdf", "image/svg+xml"} {
		if _, err := Check(heads["application/pdf"], declared, Default); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%q: got %v, want ErrNotAllowed", declared, err)
		}
	}
	if _, err := Check(heads["video/mp4"], "video/mp4", []string{"application/pdf"}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("a type left out of the configuration: got %v", err)
	}
}

func TestEmptyFile(t *testing.T) {
	if got, err := Check(nil, "application/pdf", Default); err != nil || got != "application/pdf" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := Check(nil, "text/html", Default); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("got %v, want ErrNotAllowed", err)
	}
}

func TestAnyBytes(t *testing.T) {
	if _, err := Check([]byte{0x25}, "application/octet-stream", []string{"application/octet-stream"}); err != nil {
		t.Fatal(err)
	}
}

func FuzzCheck(f *testing.F) {
	for typ, h := range heads {
		f.Add(h, typ)
	}
	f.Fuzz(func(t *testing.T, head []byte, declared string) {
		got, err := Check(head, declared, Default)
		if err == nil && Canonical(got) != got {
			t.Fatalf("not canonical: %q", got)
		}
	})
}
