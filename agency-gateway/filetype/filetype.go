// Package filetype tells what a file is from its first bytes (its magic
// numbers), never from its name or from what the uploader says, and checks
// that against the type the uploader declared and the types a gateway
// accepts. It is the one place that knows the detection library.
package filetype

import (
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// HeadSize is how many first bytes of a file Check needs (fewer for a file
// that is shorter).
const HeadSize = 3072

// Default are the types a gateway accepts unless configured otherwise:
// documents and scans (PDF, JPEG, PNG, HEIC), recordings (MP3, M4A, OGG,
// WAV) and video (MP4).
var Default = []string{
	"application/pdf", "image/jpeg", "image/png", "image/heic",
	"audio/mpeg", "audio/x-m4a", "audio/ogg", "audio/wav", "video/mp4",
}

// Errors of Check.
var (
	// ErrNotAllowed: the declared type is not one the gateway accepts.
	ErrNotAllowed = errors.New("type not accepted")
	// ErrMismatch: the bytes are not of the declared type.
	ErrMismatch = errors.New("the file's bytes are not of the declared type")
)

// Canonical returns the type a media type string names, in the spelling
// this package uses (parameters dropped, lowercase, aliases such as
// audio/x-wav or audio/mp3 resolved), or "" when it is not a media type.
func Canonical(declared string) string {
	t, _, err := mime.ParseMediaType(declared)
	if err != nil || !strings.Contains(t, "/") {
		return ""
	}
	if t == "audio/mp4" {
		t = "audio/x-m4a" // how M4A recordings are most often labelled
	}
	if m := mimetype.Lookup(t); m != nil {
		return m.String()
	}
	switch t {
	case "audio/m4a":
		return "audio/x-m4a"
	case "audio/wave", "audio/x-wav", "audio/vnd.wave":
		return "audio/wav"
	case "audio/mp3":
		return "audio/mpeg"
	}
	return t
}

// Check returns the canonical type of a file whose first bytes are head,
// declared as declared, when that type is in allowed and the bytes are of
// that type. A gateway that must take any bytes lists
// application/octet-stream, which every file is.
func Check(head []byte, declared string, allowed []string) (string, error) {
	want := Canonical(declared)
	if want == "" || !slices.ContainsFunc(allowed, func(a string) bool { return Canonical(a) == want }) {
		return "", ErrNotAllowed
	}
	if len(head) == 0 {
		// An empty file has no magic number and nothing to render: it is
		// of whatever accepted type it is said to be.
		return want, nil
	}
	got := mimetype.Detect(head)
	for m := got; m != nil; m = m.Parent() {
		if m.Is(want) {
			return want, nil
		}
	}
	return "", fmt.Errorf("%w (declared %s, the bytes are %s)", ErrMismatch, want, got.String())
}
